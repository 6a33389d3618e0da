//! Rows 4, 5, 6, 7 and 11: tables a client can grow.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use brlock_native::nlm::{NlmVersion, ShareAccess, ShareMode, Stat};
use brlock_testkit::client::{NlmClient, Owner, Transport};

use super::{Siege, WITNESS_FH, noise};

fn client(addr: SocketAddr) -> NlmClient {
    NlmClient::connect(Transport::Tcp, addr, NlmVersion::V4).unwrap()
}

/// Counts of each status in `stats`.
fn tally(stats: &[Stat]) -> Vec<(Stat, usize)> {
    let mut out: Vec<(Stat, usize)> = Vec::new();
    for s in stats {
        match out.iter_mut().find(|(k, _)| k == s) {
            Some((_, n)) => *n += 1,
            None => out.push((*s, 1)),
        }
    }
    out
}

fn count(stats: &[Stat], want: Stat) -> usize {
    stats.iter().filter(|s| **s == want).count()
}

/// Row 4: 1,500 SHARE reservations over 150 files from 10 hosts, with `--max-shares-total 500`:
/// 500 are granted, the rest refused DENIED_NOLOCKS (they were all granted, +284 MiB per 200k).
#[test]
fn row4_share_reservations_are_limited() {
    let siege = Siege::start(&["--max-shares-total", "500"], Transport::Tcp);
    let mut c = client(siege.addr());
    let stats: Vec<Stat> = (0..1500)
        .map(|i| {
            let fh = format!("share-file-{}", i % 150);
            c.share(
                false,
                &format!("share-host-{}", i % 10),
                &format!("oh-{i}"),
                fh.as_bytes(),
                ShareMode::DenyNone,
                ShareAccess::Read,
            )
            .unwrap()
        })
        .collect();
    eprintln!("row 4: {:?}", tally(&stats));
    assert_eq!(count(&stats, Stat::Granted), 500);
    assert_eq!(count(&stats, Stat::DeniedNolocks), 1000);
    siege.finish("row 4 (shares)", 16);
}

/// Row 5: blocking LOCKs spread over 600 files (one waiter per file, so no per-file queue fills),
/// with `--max-waiters-total 300`: 300 wait, the rest are refused DENIED_NOLOCKS.
#[test]
fn row5_waiters_are_limited_in_total() {
    let siege = Siege::start(&["--max-waiters-total", "300"], Transport::Tcp);
    let mut c = client(siege.addr());
    let holder = Owner::new("holder-host", 1, "holder");
    for f in 0..600 {
        let fh = format!("waited-file-{f}");
        assert_eq!(
            c.lock(&holder, fh.as_bytes(), true, 0, 10, false).unwrap(),
            Stat::Granted
        );
    }
    let stats: Vec<Stat> = (0..600)
        .map(|f| {
            let waiter = Owner::new(&format!("waiter-host-{}", f % 10), f, "waiter");
            let fh = format!("waited-file-{f}");
            c.lock(&waiter, fh.as_bytes(), true, 0, 10, true).unwrap()
        })
        .collect();
    eprintln!("row 5: {:?}", tally(&stats));
    assert_eq!(count(&stats, Stat::Blocked), 300);
    assert_eq!(count(&stats, Stat::DeniedNolocks), 300);
    siege.finish("row 5 (waiters over many files)", 16);
}

/// Row 6: 20 owners queue shared waiters on each of 60 held files (1,200 waiters), then 200
/// exclusive blocking LOCKs arrive on those files, each a deadlock search over the wait-for graph.
/// Each is answered quickly and a fresh client's TEST is not held up (one LOCK took 1.33 s of
/// CPU before the graph was kept incrementally).
#[test]
fn row6_deadlock_search_stays_cheap_under_many_queued_waiters() {
    let siege = Siege::start(&[], Transport::Tcp);
    let mut c = client(siege.addr());
    let holder = Owner::new("deadlock-holder", 1, "holder");
    const FILES: u32 = 60;
    for f in 0..FILES {
        let fh = format!("dl-file-{f}");
        assert_eq!(
            c.lock(&holder, fh.as_bytes(), true, 0, 100, false).unwrap(),
            Stat::Granted
        );
    }
    for o in 0..20 {
        let queued = Owner::new(&format!("queued-host-{o}"), o, "queued");
        for f in 0..FILES {
            let fh = format!("dl-file-{f}");
            let stat = c.lock(&queued, fh.as_bytes(), false, 0, 100, true).unwrap();
            assert_eq!(stat, Stat::Blocked);
        }
    }
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for x in 0..200 {
        let writer = Owner::new(&format!("writer-host-{x}"), x, "writer");
        let fh = format!("dl-file-{}", x % FILES);
        let t = Instant::now();
        let stat = c.lock(&writer, fh.as_bytes(), true, 0, 100, true).unwrap();
        slowest = slowest.max(t.elapsed());
        assert_eq!(stat, Stat::Blocked);
    }
    eprintln!(
        "row 6: 200 exclusive LOCKs over 1,200 queued waiters in {:?} (slowest round trip {slowest:?})",
        started.elapsed()
    );
    siege.finish("row 6 (deadlock search)", 32);
}

/// Row 7: 2,000 DENIED LOCKs from 127.0.0.2, each with a fresh 1 KiB caller_name, with
/// `--max-client-hosts 50`. Each host is forgotten right after its request (it holds nothing), so
/// the table never fills: every one is DENIED (never DENIED_NOLOCKS), and memory stays flat (it
/// was +429 MiB per 200k, kept for 150–450 s).
#[test]
fn row7_fresh_caller_names_are_forgotten_at_once() {
    let siege = Siege::start(&["--max-client-hosts", "50"], Transport::Tcp);
    let from: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let mut c = NlmClient::connect_udp_from(from, siege.addr(), NlmVersion::V4).unwrap();
    let stats: Vec<Stat> = (0..2000u64)
        .map(|i| {
            let name: String = noise(1024, i)
                .into_iter()
                .map(|b| char::from(b'a' + b % 26))
                .collect();
            let owner = Owner::new(&name, 1, "oh");
            c.lock(&owner, WITNESS_FH, true, 0, 10, false).unwrap()
        })
        .collect();
    eprintln!("row 7: {:?}", tally(&stats));
    assert_eq!(count(&stats, Stat::Denied), 2000);
    siege.finish("row 7 (fresh caller_names)", 16);
}

/// Row 7 as well: the host table is bounded even by hosts that hold something. With
/// `--max-client-hosts 5` full of hosts holding locks, a sixth host is refused DENIED_NOLOCKS
/// (counted as `limit="client_hosts"`); once one of them holds nothing, the next new host makes
/// room by forgetting it.
#[test]
fn row7_a_full_host_table_refuses_new_hosts_then_makes_room() {
    let server = brlock_tests::brlockd::Brlockd::start_with(brlock_tests::brlockd::Options {
        metrics: true,
        extra: vec!["--max-client-hosts".into(), "5".into()],
        ..Default::default()
    });
    let mut c = client(server.addr);
    let hosts: Vec<Owner> = (0..6)
        .map(|i| Owner::new(&format!("table-host-{i}"), i, "oh"))
        .collect();
    let fh = |i: usize| format!("table-file-{i}");
    for (i, h) in hosts.iter().enumerate().take(5) {
        assert_eq!(
            c.lock(h, fh(i).as_bytes(), true, 0, 10, false).unwrap(),
            Stat::Granted
        );
    }
    assert_eq!(
        c.lock(&hosts[5], fh(5).as_bytes(), true, 0, 10, false)
            .unwrap(),
        Stat::DeniedNolocks
    );
    let page = super::scrape(server.metrics.expect("metrics"));
    assert_eq!(
        super::metric(
            &page,
            r#"brlock_limit_refusals_total{limit="client_hosts"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        c.unlock(&hosts[0], fh(0).as_bytes(), 0, 10).unwrap(),
        Stat::Granted
    );
    // Room is made at most once a second.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        c.lock(&hosts[5], fh(5).as_bytes(), true, 0, 10, false)
            .unwrap(),
        Stat::Granted
    );
    super::assert_still_serves(server.addr);
}

/// Row 11: one host sends 40 blocking LOCKs on a busy file whose queue holds 40
/// (`--max-waiters-per-file 40`): it gets a quarter of the queue (10), the rest DENIED_NOLOCKS,
/// and another host's blocking LOCK still queues.
#[test]
fn row11_one_host_cannot_fill_a_busy_files_queue() {
    let siege = Siege::start(&["--max-waiters-per-file", "40"], Transport::Tcp);
    let mut c = client(siege.addr());
    let stats: Vec<Stat> = (0..40)
        .map(|svid| {
            let squatter = Owner::new("squatter-host", svid, "squat");
            c.lock(&squatter, WITNESS_FH, true, 0, 10, true).unwrap()
        })
        .collect();
    eprintln!("row 11: {:?}", tally(&stats));
    assert_eq!(count(&stats, Stat::Blocked), 10);
    assert_eq!(count(&stats, Stat::DeniedNolocks), 30);
    let real = Owner::new("real-host", 1, "real");
    assert_eq!(
        c.lock(&real, WITNESS_FH, true, 0, 10, true).unwrap(),
        Stat::Blocked
    );
    siege.finish("row 11 (queue squatting)", 16);
}
