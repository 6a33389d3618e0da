//! Rows 1, 2, 3 and 9: what a client can do with connections alone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use brlock_native::nlm::{self, NLM_PROGRAM, NlmCall, NlmProc, NlmVersion, TestArgs};
use brlock_native::rpc::{Auth, CallHeader, encode_call, encode_record};
use brlock_testkit::client::{Owner, Transport};
use brlock_testkit::socket::connect_small_buffered;
use brlock_tests::brlockd::Options;

use super::{Siege, cpu_time, fd_count, metric, scrape};

/// A TCP connection to `addr` whose kernel buffers are as small as Linux allows, so that a client
/// that stops reading (or a server that stops reading it) is felt after a few calls, not megabytes.
fn small_buffered(addr: SocketAddr) -> TcpStream {
    connect_small_buffered(addr, 4096).expect("connect with small buffers")
}

/// The file every row-1 TEST asks about, held by an owner with a 1 KiB oh: each reply names it,
/// so replies are ~1.1 KB and the kernel's buffers fill after thousands of calls, not millions.
const FLOOD_FH: &[u8] = b"flood-file";

/// A framed NLM v4 TEST call record with `xid`.
fn test_record(xid: u32, owner: &Owner) -> Vec<u8> {
    let call = NlmCall::Test(TestArgs {
        cookie: xid.to_be_bytes().to_vec(),
        exclusive: true,
        lock: owner.lock(FLOOD_FH, 0, 10),
    });
    let mut args = Vec::new();
    nlm::encode_call(NlmVersion::V4, &call, &mut args).unwrap();
    let header = CallHeader {
        xid,
        program: NLM_PROGRAM,
        version: 4,
        procedure: NlmProc::Test as u32,
        cred: Auth::None,
        verf: Auth::None,
    };
    let mut msg = Vec::new();
    encode_call(&header, &args, &mut msg).unwrap();
    let mut framed = Vec::new();
    encode_record(&msg, &mut framed);
    framed
}

/// Row 1: 8 clients pipeline TEST calls (2 KiB each) and never read a reply (1.1 KiB each). Each
/// connection is read only while it owes fewer than `--max-pipelined-calls` replies, so once the
/// kernel's buffers are full its writes block (TCP flow control pushes back on that client alone)
/// and the server's memory does not grow with the calls sent (it was +209 MiB per 200k).
#[test]
fn row1_pipelined_calls_without_reading_replies_are_pushed_back() {
    let siege = Siege::start(&["--max-pipelined-calls", "32"], Transport::Tcp);
    let addr = siege.addr();
    let mut holder =
        brlock_testkit::client::NlmClient::connect(Transport::Tcp, addr, NlmVersion::V4).unwrap();
    let mut big_oh = Owner::new("flood-holder", 1, "");
    big_oh.oh = vec![b'o'; 1024];
    assert_eq!(
        holder.lock(&big_oh, FLOOD_FH, true, 0, 100, false).unwrap(),
        brlock_native::nlm::Stat::Granted
    );
    const CLIENTS: u32 = 8;
    const MAX_CALLS: u32 = 40_000;
    let flooders: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut stream = small_buffered(addr);
                stream
                    .set_write_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let name = format!("flood-{i}-{}", "x".repeat(1000));
                let mut owner = Owner::new(&name, i, "");
                owner.oh = vec![b'f'; 1000];
                let deadline = Instant::now() + Duration::from_secs(15);
                let mut sent = 0u32;
                let mut blocked = false;
                while sent < MAX_CALLS && Instant::now() < deadline {
                    let batch: Vec<u8> = (0..32)
                        .flat_map(|k| test_record(i << 24 | (sent + k), &owner))
                        .collect();
                    match stream.write_all(&batch) {
                        Ok(()) => sent += 32,
                        Err(_) => {
                            blocked = true;
                            break;
                        }
                    }
                }
                (stream, sent, blocked)
            })
        })
        .collect();
    let results: Vec<_> = flooders.into_iter().map(|t| t.join().unwrap()).collect();
    let sent: u32 = results.iter().map(|r| r.1).sum();
    let blocked = results.iter().filter(|r| r.2).count();
    eprintln!(
        "row 1: {sent} calls written by {CLIENTS} clients before their writes blocked ({blocked} blocked)"
    );
    assert_eq!(
        blocked, CLIENTS as usize,
        "every flooding client must be pushed back; {sent} calls went through"
    );
    siege.finish("row 1 (pipelined, unread)", 48);
    drop(results);
}

/// Row 2: 100 connections each send the start of a 1 MiB record and stop. The bytes held in
/// partial records stay under `--max-partial-record-bytes` (the connection that would pass it is
/// closed), and every stalled connection is closed by `--record-deadline`.
#[test]
fn row2_stalled_partial_records_are_capped_and_closed() {
    let siege = Siege::start(
        &[
            "--record-deadline",
            "2s",
            "--max-partial-record-bytes",
            "8388608",
        ],
        Transport::Tcp,
    );
    let addr = siege.addr();
    let header = (1u32 << 31 | (1 << 20)).to_be_bytes();
    let chunk = vec![0x5au8; 200 * 1024];
    let mut stalled: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            // A closed connection fails the write: that is the cap at work.
            let _ = s.write_all(&header).and_then(|()| s.write_all(&chunk));
            s
        })
        .collect();
    // Every one is closed by the deadline (2 s after its first byte), whatever the cap did.
    let started = Instant::now();
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let mut buf = [0u8; 64];
        let closed = matches!(s.read(&mut buf), Ok(0) | Err(_));
        assert!(
            closed,
            "a stalled connection is still open after {:?}",
            started.elapsed()
        );
    }
    eprintln!(
        "row 2: 100 stalled connections closed within {:?}",
        started.elapsed()
    );
    siege.finish("row 2 (stalled partial records)", 32);
}

/// Row 3: idle TCP connections up to far past `--max-connections`: each new one closes the one
/// idle longest, so the table never passes the bound and a fresh client is always served.
#[test]
fn row3_idle_connections_cannot_starve_new_clients() {
    let siege = Siege::start(&["--max-connections", "64"], Transport::Tcp);
    let addr = siege.addr();
    let fds_before = fd_count(siege.pid);
    let mut idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let fds = fd_count(siege.pid);
    eprintln!("row 3: 300 idle connections; server fds {fds_before} → {fds}");
    assert!(
        fds <= fds_before + 64 + 4,
        "the server holds {fds} descriptors (was {fds_before}; bound 64 connections)"
    );
    // The oldest were closed to make room.
    let first = &mut idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 8];
    assert!(matches!(first.read(&mut buf), Ok(0) | Err(_)));
    siege.finish("row 3 (idle connections)", 24);
}

/// Row 3 as well: a connection with nothing read or written for `--idle-timeout` is closed.
#[test]
fn row3_idle_connections_time_out() {
    let siege = Siege::start(&["--idle-timeout", "1s"], Transport::Udp);
    let mut quiet = TcpStream::connect(siege.addr()).unwrap();
    quiet
        .set_read_timeout(Some(Duration::from_secs(4)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 8];
    assert!(matches!(quiet.read(&mut buf), Ok(0) | Err(_)));
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(900),
        "closed too early: {after:?}"
    );
    siege.finish("row 3 (idle timeout)", 16);
}

/// Row 9: with the server out of file descriptors, clients keep connecting to the NLM and the
/// metrics ports. Both accept loops back off instead of spinning: the server uses little CPU, UDP
/// clients are still served, and once descriptors are free again the metrics port answers.
#[test]
fn row9_accept_errors_back_off() {
    let siege = Siege::start_with(
        Options {
            metrics: true,
            extra: vec!["--max-connections".into(), "4096".into()],
            ..Options::default()
        },
        Transport::Udp,
    );
    let pid = siege.pid;
    let metrics = siege.server.metrics.expect("metrics address");
    // Leave the server 24 descriptors more than it has, then use them up with connections.
    let limit = fd_count(pid) + 24;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .expect("prlimit (util-linux)");
    assert!(status.success(), "prlimit failed");
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(TcpStream::connect(siege.addr()).unwrap());
    }
    // Pending connections on the metrics port: each accept fails with EMFILE.
    let pending: Vec<TcpStream> = (0..16)
        .filter_map(|_| TcpStream::connect_timeout(&metrics, Duration::from_secs(1)).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_time(pid) - before;
    eprintln!("row 9: {used:?} of CPU in 2 s with descriptors exhausted and accepts pending");
    assert!(
        used < Duration::from_millis(500),
        "the server spun: {used:?} of CPU in 2 s"
    );
    drop(pending);
    drop(held);
    std::thread::sleep(Duration::from_millis(1500));
    let page = scrape(metrics);
    assert!(metric(&page, "brlock_open_connections").is_some(), "{page}");
    siege.finish("row 9 (accept errors)", 24);
}
