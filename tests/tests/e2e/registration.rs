//! brlockd's dealings with the host's other RPC services: rpcbind UNSET then SET (v4, with the
//! universal address listened on) of NLM v1, v3, v4 (tcp and udp) at start, UNSET at shutdown, SM_MON to statd on a client's first
//! monitored LOCK and SM_UNMON once brlockd forgets the client, and the statd reboot relay (NLM
//! procedure 16, Linux lockd's private SM_NOTIFY callback) freeing the rebooted client's locks.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brlock_native::nlm::{NLM_PROGRAM, NlmProc, NlmVersion, Stat};
use brlock_native::nsm::{
    Mon, MonId, NSM_PROGRAM, NSM_VERSION, NsmProc, RebootCallback, SmResult, SmStat, SmStatRes,
};
use brlock_native::portmap::{Mapping, PmapProc, RpcbProc};
use brlock_native::rpc::{AcceptStat, Reply};
use brlock_native::xdr::{decode_exact, encode_to_vec};
use brlock_testkit::client::{NlmClient, Owner, RpcClient, Transport, success_results};
use brlock_testkit::portmapper::Portmapper;
use brlock_testkit::rpc_server::{CALLS_KEPT, Handler, RpcServer};
use brlock_tests::brlockd::{Brlockd, Options};

use super::{assert_still_serves, wait_until};

const WAIT: Duration = Duration::from_secs(10);

/// At start: UNSET of every NLM version (a crashed instance's mappings), then rpcbind v4 SET
/// (100021, v, tcp|udp, universal address listened on) for v in 1, 3, 4. On SIGTERM: UNSET of
/// every version, then exit 0.
#[test]
fn registers_with_rpcbind_and_unregisters_on_sigterm() {
    let rpcbind = Portmapper::spawn(0).unwrap();
    let mut server = Brlockd::start_with(Options {
        rpcbind: Some(format!("127.0.0.1:{}", rpcbind.port())),
        extra: vec!["--nsm".into(), "none".into()],
        ..Options::default()
    });
    let port = server.addr.port();
    let uaddr = format!("127.0.0.1.{}.{}", port >> 8, port & 0xff);

    let mut want_sets = Vec::new();
    for vers in [1, 3, 4] {
        for netid in ["tcp", "udp"] {
            want_sets.push((vers, netid.to_string(), uaddr.clone()));
        }
    }
    want_sets.sort();
    let sets = || {
        let mut sets: Vec<(u32, String, String)> = rpcbind
            .rpcb_registrations()
            .into_iter()
            .filter(|(p, _)| *p == RpcbProc::Set)
            .map(|(_, r)| {
                assert_eq!(r.prog, NLM_PROGRAM, "SET of another program: {r:?}");
                (r.vers, r.netid, r.addr)
            })
            .collect();
        sets.sort();
        sets
    };
    let got = wait_until(WAIT, || (sets() == want_sets).then_some(()));
    assert!(
        got.is_some(),
        "expected SETs {want_sets:?}; rpcbind received {:?}",
        rpcbind.rpcb_registrations()
    );
    let unsets_at_start: Vec<u32> = rpcbind
        .registrations()
        .iter()
        .filter(|(p, m)| *p == PmapProc::Unset && m.prog == NLM_PROGRAM)
        .map(|(_, m)| m.vers)
        .collect();
    assert_eq!(
        unsets_at_start,
        [1, 3, 4],
        "an UNSET of each version before the SETs"
    );
    assert_still_serves(server.addr);

    let status = server.terminate(WAIT);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "brlockd did not exit 0 within {WAIT:?} of SIGTERM: {status:?}"
    );
    let regs = rpcbind.registrations();
    let unsets: Vec<Mapping> = regs
        .iter()
        .filter(|(p, _)| *p == PmapProc::Unset)
        .map(|(_, m)| *m)
        .collect();
    assert_eq!(
        unsets.len(),
        6,
        "three UNSETs at start, three at shutdown: {regs:?}"
    );
    for vers in [1, 3, 4] {
        assert!(
            unsets[3..]
                .iter()
                .any(|m| m.prog == NLM_PROGRAM && m.vers == vers),
            "no UNSET of NLM v{vers} at shutdown; the portmapper received {regs:?}"
        );
    }
    assert!(
        unsets.iter().all(|m| m.prog == NLM_PROGRAM),
        "UNSET of another program: {unsets:?}"
    );
    assert_eq!(
        rpcbind.rpcb_registrations().len(),
        6,
        "SET after the UNSETs: {:?}",
        rpcbind.rpcb_registrations()
    );
}

/// What the fake statd was asked.
#[derive(Debug)]
enum StatdCall {
    Mon(Mon),
    Unmon(MonId),
}

/// A fake statd (NSM 100024 v1): answers SM_MON `stat_succ` and SM_UNMON with state 1, and
/// reports each call; anything else is PROC_UNAVAIL.
fn fake_statd() -> (RpcServer, Receiver<StatdCall>) {
    // Bounded as the kit's fakes are: past it, calls are answered and not kept.
    let (tx, rx) = mpsc::sync_channel(CALLS_KEPT);
    let tx = Mutex::new(tx);
    let handler: Arc<Handler> = Arc::new(move |_transport, header, args| {
        if header.program != NSM_PROGRAM {
            return Some(Reply::accepted(header.xid, AcceptStat::ProgUnavail));
        }
        if header.version != NSM_VERSION {
            return Some(Reply::accepted(
                header.xid,
                AcceptStat::ProgMismatch { low: 1, high: 1 },
            ));
        }
        let (call, results) = match header.procedure {
            p if p == NsmProc::Null as u32 => return Some(Reply::success(header.xid, Vec::new())),
            p if p == NsmProc::Mon as u32 => {
                let Ok(mon) = decode_exact::<Mon>(args) else {
                    return Some(Reply::accepted(header.xid, AcceptStat::GarbageArgs));
                };
                let res = SmStatRes {
                    result: SmResult::Success,
                    state: 1,
                };
                (StatdCall::Mon(mon), encode_to_vec(&res))
            }
            p if p == NsmProc::Unmon as u32 => {
                let Ok(mon_id) = decode_exact::<MonId>(args) else {
                    return Some(Reply::accepted(header.xid, AcceptStat::GarbageArgs));
                };
                (
                    StatdCall::Unmon(mon_id),
                    encode_to_vec(&SmStat { state: 1 }),
                )
            }
            _ => return Some(Reply::accepted(header.xid, AcceptStat::ProcUnavail)),
        };
        let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).try_send(call);
        Some(Reply::success(
            header.xid,
            results.expect("statd results encode"),
        ))
    });
    (RpcServer::spawn(handler).unwrap(), rx)
}

/// The next call to the fake statd, which must be SM_MON for `host`.
fn expect_mon(statd: &Receiver<StatdCall>, host: &Owner, after: &str) -> Mon {
    match statd.recv_timeout(WAIT) {
        Ok(StatdCall::Mon(mon)) if mon.mon_id.mon_name == host.caller => mon,
        Ok(other) => panic!(
            "{after}: expected SM_MON for {:?}, statd got {other:?}",
            host.caller
        ),
        Err(_) => panic!("{after}: no SM_MON within {WAIT:?}"),
    }
}

/// The next call to the fake statd, which must be SM_UNMON undoing `mon` (same name, same
/// my_id: statd matches both).
fn expect_unmon(statd: &Receiver<StatdCall>, mon: &Mon, within: Duration, after: &str) {
    match statd.recv_timeout(within) {
        Ok(StatdCall::Unmon(mon_id)) => assert_eq!(
            mon_id, mon.mon_id,
            "{after}: SM_UNMON does not match the SM_MON"
        ),
        Ok(other) => panic!("{after}: expected SM_UNMON, statd got {other:?}"),
        Err(_) => panic!("{after}: no SM_UNMON within {within:?}"),
    }
}

/// Asserts statd hears nothing for `quiet`.
fn expect_no_statd_call(statd: &Receiver<StatdCall>, quiet: Duration, while_: &str) {
    if let Ok(call) = statd.recv_timeout(quiet) {
        panic!("statd got {call:?} {while_}");
    }
}

/// Sends NLM procedure 16 (`RebootCallback`) over UDP from a privileged port of 127.0.0.1, in the
/// version and procedure brlockd gave statd in SM_MON's `my_id`, and expects a void reply.
fn reboot_notice(server: SocketAddr, mon: &Mon, state: u32) {
    let notice = RebootCallback {
        mon_name: mon.mon_id.mon_name.clone(),
        state,
        private: mon.private,
    };
    let args = encode_to_vec(&notice).expect("reboot callback encodes");
    // From a privileged port, as statd sends it (brlockd refuses the relay from any other).
    let port = (600..1000)
        .find(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free privileged port");
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    let mut rpc = RpcClient::connect_udp_from(local, server).unwrap();
    let reply = rpc
        .call_raw(
            mon.mon_id.my_id.my_prog,
            mon.mon_id.my_id.my_vers,
            mon.mon_id.my_id.my_proc,
            &args,
        )
        .unwrap_or_else(|e| panic!("reboot notice (state {state}): {e}"));
    let results = success_results(reply).unwrap_or_else(|e| panic!("reboot notice: {e}"));
    assert!(
        results.is_empty(),
        "reboot notice answered non-void {results:02x?}"
    );
}

/// A monitored LOCK makes brlockd SM_MON the caller; statd's reboot relay (procedure 16) with
/// the same state is ignored, with a new state it frees the client's locks and unmonitors the
/// host (SM_UNMON), which its next LOCK monitors again.
#[test]
fn statd_reboot_notice_frees_monitored_client_locks() {
    let (statd, statd_calls) = fake_statd();
    let server = Brlockd::start_with(Options {
        statd: Some(format!("127.0.0.1:{}", statd.port)),
        ..Options::default()
    });
    let fh = b"fh-reboot".to_vec();
    let a = Owner::new("rebooting-host", 1, "ownerA");
    let b = Owner::new("other-host", 2, "ownerB");
    let mut ca = NlmClient::connect(Transport::Udp, server.addr, NlmVersion::V4).unwrap();
    let mut cb = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();

    // A monitored LOCK (state 1, as `lock_args` sends).
    assert_eq!(
        ca.lock(&a, &fh, true, 0, 100, false).unwrap(),
        Stat::Granted
    );
    let mon = expect_mon(&statd_calls, &a, "a monitored LOCK");
    assert_eq!(
        (mon.mon_id.my_id.my_prog, mon.mon_id.my_id.my_proc),
        (NLM_PROGRAM, NlmProc::NsmNotify as u32),
        "statd told to call back something else: {mon:?}"
    );
    assert_eq!(cb.lock(&b, &fh, true, 50, 10, false).unwrap(), Stat::Denied);
    // A host that holds nothing after its first LOCK is forgotten at once (issue 13, row 7).
    let b_mon = expect_mon(&statd_calls, &b, "the other host's monitored LOCK");
    assert_ne!(b_mon.mon_id.mon_name, mon.mon_id.mon_name);
    expect_unmon(&statd_calls, &b_mon, WAIT, "a denied LOCK of a new host");

    // Same state as the LOCK carried: not a reboot, the lock stays.
    reboot_notice(server.addr, &mon, 1);
    assert_eq!(cb.lock(&b, &fh, true, 50, 10, false).unwrap(), Stat::Denied);
    let b_mon = expect_mon(&statd_calls, &b, "the other host's monitored LOCK");
    expect_unmon(&statd_calls, &b_mon, WAIT, "a denied LOCK of a new host");
    expect_no_statd_call(
        &statd_calls,
        Duration::from_millis(300),
        "after a reboot notice with an unchanged state",
    );

    // A new state: the host rebooted, its locks are gone, and so is its monitoring.
    reboot_notice(server.addr, &mon, 3);
    expect_unmon(&statd_calls, &mon, WAIT, "a reboot notice");
    assert_eq!(
        cb.lock(&b, &fh, true, 50, 10, false).unwrap(),
        Stat::Granted
    );
    expect_mon(&statd_calls, &b, "the other host's granted LOCK");
    assert_eq!(ca.lock(&a, &fh, true, 0, 10, false).unwrap(), Stat::Granted);
    expect_mon(&statd_calls, &a, "the rebooted host's next LOCK");

    assert_still_serves(server.addr);
}

/// FREE_ALL (a client that rebooted without statd) forgets the host at once: SM_UNMON, and its
/// next monitored LOCK sends SM_MON again.
#[test]
fn free_all_unmonitors_the_host_at_once() {
    let (statd, statd_calls) = fake_statd();
    // The default idle time (5 minutes): only FREE_ALL can unmonitor within this test.
    let server = Brlockd::start_with(Options {
        statd: Some(format!("127.0.0.1:{}", statd.port)),
        ..Options::default()
    });
    let fh = b"fh-free-all".to_vec();
    let a = Owner::new("freeing-host", 1, "ownerA");
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    assert_eq!(c.lock(&a, &fh, true, 0, 10, false).unwrap(), Stat::Granted);
    let mon = expect_mon(&statd_calls, &a, "a monitored LOCK");
    c.free_all("freeing-host", 2).unwrap();
    expect_unmon(&statd_calls, &mon, WAIT, "FREE_ALL");
    assert_eq!(c.lock(&a, &fh, true, 0, 10, false).unwrap(), Stat::Granted);
    expect_mon(&statd_calls, &a, "a LOCK after FREE_ALL");
    assert_still_serves(server.addr);
}

/// A host is unmonitored (SM_UNMON, as Linux lockd's host GC does) once it has held nothing and
/// sent no lock request for `--unmonitor-idle-ms` — never while it still holds a lock, nor while
/// its blocked request waits — and its next monitored LOCK sends SM_MON again.
#[test]
fn a_host_idle_and_holding_nothing_is_unmonitored_and_its_next_lock_monitors_it_again() {
    const IDLE_MS: u64 = 300;
    let idle = Duration::from_millis(IDLE_MS);
    let (statd, statd_calls) = fake_statd();
    let server = Brlockd::start_with(Options {
        statd: Some(format!("127.0.0.1:{}", statd.port)),
        extra: vec!["--unmonitor-idle-ms".into(), IDLE_MS.to_string()],
        ..Options::default()
    });
    let fh = b"fh-idle".to_vec();
    let a = Owner::new("idle-host", 1, "ownerA");
    let b = Owner::new("waiting-host", 2, "ownerB");
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();

    assert_eq!(c.lock(&a, &fh, true, 0, 10, false).unwrap(), Stat::Granted);
    let mon_a = expect_mon(&statd_calls, &a, "A's monitored LOCK");
    assert_eq!(c.lock(&b, &fh, true, 0, 10, true).unwrap(), Stat::Blocked);
    let mon_b = expect_mon(&statd_calls, &b, "B's blocking LOCK");
    expect_no_statd_call(
        &statd_calls,
        idle * 4,
        "while A holds a lock and B waits for it",
    );

    // B gives up waiting; A still holds its lock: only B is forgotten.
    assert_eq!(c.cancel(&b, &fh, true, 0, 10, true).unwrap(), Stat::Granted);
    expect_unmon(&statd_calls, &mon_b, WAIT, "B cancelled its only request");
    expect_no_statd_call(&statd_calls, idle * 3, "while A holds a lock");

    assert_eq!(c.unlock(&a, &fh, 0, 10).unwrap(), Stat::Granted);
    expect_unmon(&statd_calls, &mon_a, WAIT, "A unlocked its only lock");

    assert_eq!(c.lock(&a, &fh, true, 0, 10, false).unwrap(), Stat::Granted);
    let again = expect_mon(&statd_calls, &a, "A's LOCK after it was unmonitored");
    assert_eq!(again.mon_id, mon_a.mon_id);
    assert_still_serves(server.addr);
}
