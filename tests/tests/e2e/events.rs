//! `GET /events` of a live brlockd: a subscriber gets the core's state first (a trace header with a
//! snapshot), then every event and its actions as they happen; a trace captured from the stream
//! replays with exactly the actions the server gave; a second subscriber's snapshot holds the locks,
//! the waiter and the share reservation taken over NLM from two hosts; a subscriber that never reads
//! is dropped while the server keeps answering; and one subscriber too many is refused.

use brlock_testkit::socket::connect_small_buffered;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use brlock_conformance::{StepOutput, parse_jsonl, replay};
use brlock_core::{ClientId, FileId, LockKind, Replay, ShareMode, WaiterId};
use brlock_native::nlm::NlmVersion;
use brlock_testkit::client::{NlmClient, Transport};
use brlock_tests::brlockd::{Brlockd, Options};
use brlock_tests::script;

use crate::assert_still_serves;

/// One `/events` stream, read message by message.
struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    fn open(addr: SocketAddr) -> Events {
        let stream = TcpStream::connect(addr).unwrap();
        Self::request(stream, addr)
    }

    fn request(mut stream: TcpStream, addr: SocketAddr) -> Events {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "GET /events HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
        Events {
            reader: BufReader::new(stream),
        }
    }

    /// The response head's status line, after reading the whole head.
    fn status(&mut self) -> String {
        let mut status = String::new();
        self.reader.read_line(&mut status).unwrap();
        let mut line = String::new();
        while {
            line.clear();
            self.reader.read_line(&mut line).unwrap() > 0 && line != "\r\n"
        } {}
        status.trim().to_string()
    }

    /// The next message as (event name, data); comments and `retry:` lines are skipped.
    fn next(&mut self) -> (String, String) {
        let (mut event, mut data) = (String::new(), String::new());
        loop {
            let mut line = String::new();
            let n = self
                .reader
                .read_line(&mut line)
                .expect("an /events message in time");
            assert!(n > 0, "/events ended; so far: {event} {data}");
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if !event.is_empty() || !data.is_empty() {
                    return (event, data);
                }
            } else if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_string();
            } else if let Some(text) = line.strip_prefix("data: ") {
                data = text.to_string();
            }
        }
    }

    /// The header line of the stream.
    fn header(&mut self) -> String {
        assert_eq!(self.status(), "HTTP/1.1 200 OK");
        let (event, data) = self.next();
        assert_eq!(event, "header", "{data}");
        data
    }

    /// The next event's trace step line and its actions.
    fn step(&mut self) -> (String, StepOutput) {
        let (event, step) = self.next();
        assert_eq!(event, "step", "{step}");
        let (event, actions) = self.next();
        assert_eq!(event, "actions", "{actions}");
        (step, serde_json::from_str(&actions).unwrap())
    }
}

/// A trace captured from a stream: its header, then the step lines.
fn trace_text(header: &str, steps: &[(String, StepOutput)]) -> String {
    let mut text = format!("{header}\n");
    for (step, _) in steps {
        text.push_str(step);
        text.push('\n');
    }
    text
}

fn start() -> (Brlockd, SocketAddr) {
    let server = Brlockd::start_with(Options {
        metrics: true,
        ..Options::default()
    });
    let http = server.metrics.expect("metrics address");
    (server, http)
}

fn run(c: &mut NlmClient, line: &str, expect: &str) {
    let answer = script::execute(c, line);
    assert!(answer.starts_with(expect), "{line}: {answer}");
}

#[test]
fn a_stream_starts_from_the_state_and_its_trace_replays_identically() {
    let (server, http) = start();
    let mut a = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    // Something held before anyone watches: the snapshot must carry it.
    run(&mut a, "lock host-a 1 oa fh-e 1 0 100 0 0 1", "granted");

    let mut first = Events::open(http);
    let header = first.header();
    let trace = parse_jsonl(&header).unwrap();
    let before = Replay::start(&trace.header).unwrap();
    let fh = FileId::from("fh-e");
    assert_eq!(before.core.held_locks(&fh).len(), 1, "{header}");

    // Two hosts: host-b (from 127.0.0.2) waits behind host-a and reserves a share.
    let local: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let mut b = NlmClient::connect_udp_from(local, server.addr, NlmVersion::V4).unwrap();
    run(&mut b, "lock host-b 2 ob fh-e 1 50 10 1 0 1", "blocked");
    run(&mut b, "share host-b ob fh-s 0 1 0", "granted");
    run(&mut a, "test host-a 9 oz fh-e 0 0 10", "denied");
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(first.step());
    }
    let kinds: Vec<&str> = seen
        .iter()
        .map(|(s, _)| s.split('"').nth(5).unwrap_or_default())
        .collect();
    assert_eq!(kinds, ["lock", "share", "test"], "{seen:?}");
    assert!(
        serde_json::to_string(&seen[0].1.actions)
            .unwrap()
            .contains("{\"blocked\":{\"waiter\":"),
        "{seen:?}"
    );

    // The captured trace replays with the server's actions, step for step.
    let captured = parse_jsonl(&trace_text(&header, &seen)).unwrap();
    let replayed = replay(&captured).unwrap();
    let live: Vec<StepOutput> = seen.iter().map(|(_, o)| o.clone()).collect();
    assert_eq!(replayed, live);

    // A later subscriber starts from the state all this left: lock, waiter in queue order, share.
    let mut second = Events::open(http);
    let later = parse_jsonl(&second.header()).unwrap();
    let now = Replay::start(&later.header).unwrap();
    let held = now.core.held_locks(&fh);
    assert_eq!(
        held.iter()
            .map(|l| (l.client.clone(), l.kind, l.range.offset, l.range.length))
            .collect::<Vec<_>>(),
        [(ClientId::from("host-a"), LockKind::Exclusive, 0, 100)]
    );
    let waiters = now.core.waiters(&fh);
    assert_eq!(
        waiters
            .iter()
            .map(|w| (w.waiter, w.client.clone(), w.range.offset))
            .collect::<Vec<_>>(),
        [(WaiterId(1), ClientId::from("host-b"), 50)]
    );
    let shares = now.core.shares(&FileId::from("fh-s"));
    assert_eq!(
        shares
            .iter()
            .map(|s| (s.client.clone(), s.access, s.deny))
            .collect::<Vec<_>>(),
        [(ClientId::from("host-b"), ShareMode::Read, ShareMode::None)]
    );

    // Both streams go on alike: host-a's unlock grants host-b's waiter, the same in each.
    run(&mut a, "unlock host-a 1 oa fh-e 0 0", "granted");
    let (step_one, out_one) = first.step();
    let (step_two, out_two) = second.step();
    assert_eq!(step_one, step_two);
    assert_eq!(out_one.actions, out_two.actions);
    assert_eq!(out_two.step, 1);
    let text = serde_json::to_string(&out_one.actions).unwrap();
    assert!(text.contains("\"send_granted\":{\"waiter\":1"), "{text}");
    seen.push((step_one, out_one));
    assert_eq!(
        replay(&parse_jsonl(&trace_text(&header, &seen)).unwrap()).unwrap(),
        seen.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>()
    );
    assert_still_serves(server.addr);
}

/// A TCP connection with a tiny receive buffer, so a reader that never reads fills it at once.
fn tiny_window(addr: SocketAddr) -> TcpStream {
    connect_small_buffered(addr, 2048).expect("connect with small buffers")
}

const CALLS: usize = 20_000;

#[test]
fn a_subscriber_that_never_reads_is_dropped_and_the_server_keeps_answering() {
    let (server, http) = start();
    let mut stuck = Events::request(tiny_window(http), http);
    assert!(
        server.log_contains("/events subscriber joined", Duration::from_secs(10)),
        "{}",
        server.stderr_text()
    );
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    run(&mut c, "lock h 1 o fh-slow 1 0 10 0 0 1", "granted");
    // Far more than the tap keeps for a subscriber (1024 frames) and than the kernel's socket
    // buffers hold (~500 bytes a step, 4 MiB of send buffer at most); every call is answered at
    // once all the same.
    let started = Instant::now();
    for i in 0..CALLS {
        let line = format!("test h2 2 o2 fh-slow-{} 1 0 10", i % 7);
        run(&mut c, &line, "granted");
    }
    let took = started.elapsed();
    // The stuck reader's stream was ended by the server: reading it now finds its end in time.
    let mut rest = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut chunk = [0u8; 65536];
    loop {
        match stuck.reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("the stuck subscriber was not dropped ({e}) after {took:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the stuck subscriber was not dropped"
        );
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.starts_with("HTTP/1.1 200 OK"),
        "{}",
        &text[..80.min(text.len())]
    );
    let steps = text.matches("event: step\n").count();
    assert!(
        steps < CALLS + 1,
        "a reader that never read got all {steps} steps"
    );
    // Its place is free again, and the server still serves NLM.
    let mut fresh = Events::open(http);
    fresh.header();
    assert_still_serves(server.addr);
}

#[test]
fn one_subscriber_too_many_is_refused() {
    let (server, http) = start();
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    let mut open: Vec<Events> = (0..brlock_native::http_events::MAX_SUBSCRIBERS)
        .map(|_| {
            let mut e = Events::open(http);
            e.header();
            e
        })
        .collect();
    let mut refused = Events::open(http);
    assert_eq!(refused.status(), "HTTP/1.1 503 Service Unavailable");
    drop(open.pop());
    // The server notices the closed stream at its next writes: events, or a keep-alive.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        run(&mut c, "test h 1 o fh-cap 1 0 10", "granted");
        let mut again = Events::open(http);
        if again.status() == "HTTP/1.1 200 OK" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed subscriber's place was not freed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
