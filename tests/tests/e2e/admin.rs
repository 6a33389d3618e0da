//! The admin HTTP endpoints of a live brlockd, and `brlock locks` / `brlock graph` against them:
//! locks and blocking waiters taken over NLM from two hosts (127.0.0.1 over TCP, 127.0.0.2 over
//! UDP) are listed with their owners, exact offsets and queue positions; the wait-for graph shows
//! who waits for whom (a request that would close a cycle is refused NLM4_DEADLCK, so the graph
//! stays a chain; a cycle a later grant closes is broken by the core, and none is listed); filters, `limit`, and
//! bad queries.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

use brlock_native::nlm::{NlmVersion, ShareAccess, ShareMode, Stat};
use brlock_testkit::client::{NlmClient, Owner, Transport};
use brlock_tests::brlockd::{Brlockd, Options, build_workspace_binary};
use serde_json::{Value, json};

/// `method path` on brlockd's HTTP listener: the status and the body as JSON.
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head[9..12].parse().unwrap();
    assert!(
        head.contains("Content-Type: application/json"),
        "{path}: {head}"
    );
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    (status, body)
}

fn get(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = request(addr, "GET", path);
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn brlock(args: &[&str]) -> Output {
    Command::new(build_workspace_binary("brlock-conformance", "brlock"))
        .args(args)
        .output()
        .expect("brlock runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "brlock failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

const F1: &[u8] = b"\x01\x02file-one";
const F2: &[u8] = b"file-two";
const F3: &[u8] = b"\xfffile-three";
/// 2^53 + 1: a JSON number read as a double would lose the last bit.
const BIG: u64 = (1 << 53) + 1;

/// The locks, waiters and shares every check below reads.
struct Scene {
    server: Brlockd,
    http: SocketAddr,
}

fn scene() -> Scene {
    let server = Brlockd::start_with(Options {
        metrics: true,
        ..Options::default()
    });
    let http = server.metrics.expect("the HTTP listener");
    let a = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    let local_b: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let b = NlmClient::connect_udp_from(local_b, server.addr, NlmVersion::V4).unwrap();
    let a1 = Owner::new("host-a", 1, "oh-a");
    let a3 = Owner::new("host-a", 3, "oh-c");
    let b2 = Owner::new("host-b", 2, "oh-b");
    // (host: 0 = a, 1 = b), owner, file, offset, len, block, expected answer
    let mut hosts = [a, b];
    for (host, owner, fh, offset, len, block, expect) in [
        (0, &a1, F1, 0, 100, false, Stat::Granted),
        (1, &b2, F2, BIG, 10, false, Stat::Granted),
        // b2 waits for a1 on F1.
        (1, &b2, F1, 50, 10, true, Stat::Blocked),
        // a1 waiting for b2 would close the cycle: refused.
        (0, &a1, F2, BIG, 0, true, Stat::Deadlck),
        // a3 waits for b2 on F2 (to EOF).
        (0, &a3, F2, 0, 0, true, Stat::Blocked),
    ] {
        let stat = hosts[host]
            .lock(owner, fh, true, offset, len, block)
            .unwrap();
        assert_eq!(stat, expect, "{owner:?} {fh:?} {offset}+{len}");
    }
    let [_, b] = &mut hosts;
    let stat = b
        .share(
            false,
            "host-b",
            "oh-s",
            F3,
            ShareMode::DenyWrite,
            ShareAccess::Read,
        )
        .unwrap();
    assert_eq!(stat, Stat::Granted);
    Scene { server, http }
}

#[test]
fn admin_endpoints_show_the_locks_waiters_graph_and_hosts_of_a_live_server() {
    let Scene { server, http } = scene();

    let mut locks = get(http, "/locks");
    // How long each lock has been held: since_ms on brlockd's clock, held_ms up to now.
    for lock in locks["locks"].as_array_mut().unwrap() {
        let lock = lock.as_object_mut().unwrap();
        let since = lock
            .remove("since_ms")
            .and_then(|v| v.as_u64())
            .expect("since_ms");
        let held = lock
            .remove("held_ms")
            .and_then(|v| v.as_u64())
            .expect("held_ms");
        assert!(held < 60_000 && since < 60_000, "since {since} held {held}");
    }
    assert_eq!(
        locks,
        json!({
            "locks": [
                {"file": hex(F1), "client": "host-a", "owner": "host-a/1/oh-a", "kind": "exclusive",
                 "start": "0", "end": "99", "unreclaimed": false},
                {"file": hex(F2), "client": "host-b", "owner": "host-b/2/oh-b", "kind": "exclusive",
                 "start": "9007199254740993", "end": "9007199254741002", "unreclaimed": false},
            ],
            "truncated": false,
            "limit": 10000,
        })
    );

    let waiters = get(http, "/waiters")["waiters"].clone();
    let summary: Vec<_> = waiters
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["file"].clone(),
                w["owner"].clone(),
                w["position"].clone(),
                w["start"].clone(),
                w["end"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                json!(hex(F1)),
                json!("host-b/2/oh-b"),
                json!(1),
                json!("50"),
                json!("59")
            ),
            (
                json!(hex(F2)),
                json!("host-a/3/oh-c"),
                json!(1),
                json!("0"),
                json!("EOF")
            ),
        ]
    );
    assert!(waiters[0]["waiting_ms"].is_u64() && waiters[0]["kind"] == "exclusive");

    let graph = get(http, "/wait-for");
    let edges: Vec<_> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"]["owner"].clone(),
                e["to"]["owner"].clone(),
                e["file"].clone(),
                e["in_cycle"].clone(),
            )
        })
        .collect();
    assert_eq!(edges.len(), 2, "{graph}");
    for edge in [
        (
            json!("host-b/2/oh-b"),
            json!("host-a/1/oh-a"),
            json!(hex(F1)),
            json!(false),
        ),
        (
            json!("host-a/3/oh-c"),
            json!("host-b/2/oh-b"),
            json!(hex(F2)),
            json!(false),
        ),
    ] {
        assert!(edges.contains(&edge), "{edge:?} not in {graph}");
    }
    assert_eq!(graph["cycles"], json!([]));

    assert_eq!(
        get(http, "/shares")["shares"],
        json!([{"file": hex(F3), "client": "host-b", "owner": "host-b/0/oh-s", "access": "read", "deny": "write"}])
    );

    let clients = get(http, "/clients")["clients"].clone();
    let hosts: Vec<_> = clients
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].clone(),
                c["address"].clone(),
                c["local_address"].clone(),
                c["monitored"].clone(),
                c["known_to_core"].clone(),
            )
        })
        .collect();
    assert_eq!(
        hosts,
        [
            (
                json!("host-a"),
                json!("127.0.0.1"),
                json!("127.0.0.1"),
                json!(true),
                json!(true)
            ),
            (
                json!("host-b"),
                json!("127.0.0.2"),
                json!("127.0.0.1"),
                json!(true),
                json!(true)
            ),
        ]
    );
    assert!(clients[0]["last_seen_ms_ago"].is_u64());

    assert_eq!(
        get(http, "/grace"),
        json!({"in_grace": false, "remaining_ms": 0, "expected_clients": 0, "pending_clients": []})
    );
    let config = get(http, "/config");
    assert_eq!(
        (
            &config["store"],
            &config["listen"],
            &config["metrics"],
            &config["grace"],
            &config["profile"]
        ),
        (
            &json!("memory"),
            &json!("127.0.0.1:0"),
            &json!("127.0.0.1:0"),
            &json!("0s"),
            &json!("brlock")
        )
    );
    assert_eq!(get(http, "/healthz"), json!({"status": "alive"}));
    assert_eq!(
        get(http, "/readyz"),
        json!({"ready": true, "state": "serving", "reason": "serving NLM"})
    );
    super::assert_still_serves(server.addr);
}

#[test]
fn listings_filter_by_file_owner_and_client_and_stop_at_the_limit() {
    let Scene {
        server: _server,
        http,
    } = scene();
    let owners = |path: &str| -> Vec<String> {
        let body = get(http, path);
        let key = path
            .trim_start_matches('/')
            .split('?')
            .next()
            .unwrap()
            .to_string();
        body[&key]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: {body}"))
            .iter()
            .map(|r| r["owner"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        owners(&format!("/locks?file={}", hex(F1))),
        ["host-a/1/oh-a"]
    );
    assert_eq!(
        owners(&format!("/locks?file=0x{}", hex(F2))),
        ["host-b/2/oh-b"]
    );
    assert_eq!(owners("/locks?file=00"), Vec::<String>::new());
    assert_eq!(owners("/locks?client=host-b"), ["host-b/2/oh-b"]);
    assert_eq!(owners("/locks?owner=host-a%2F1%2Foh-a"), ["host-a/1/oh-a"]);
    assert_eq!(owners("/locks?owner=host-a/1"), ["host-a/1/oh-a"]);
    assert_eq!(owners("/waiters?client=host-a"), ["host-a/3/oh-c"]);
    assert_eq!(
        owners(&format!("/waiters?file={}&owner=host-b", hex(F1))),
        ["host-b/2/oh-b"]
    );
    assert_eq!(owners("/shares?client=host-a"), Vec::<String>::new());
    assert_eq!(owners("/shares?owner=host-b/0/oh-s"), ["host-b/0/oh-s"]);

    let one = get(http, "/locks?limit=1");
    assert_eq!(
        (
            one["locks"].as_array().unwrap().len(),
            &one["truncated"],
            &one["limit"]
        ),
        (1, &json!(true), &json!(1))
    );
    let two = get(http, "/locks?limit=2");
    assert_eq!(
        (two["locks"].as_array().unwrap().len(), &two["truncated"]),
        (2, &json!(false))
    );
    let graph = get(http, "/wait-for?limit=1");
    assert_eq!(
        (
            graph["edges"].as_array().unwrap().len(),
            &graph["truncated"]
        ),
        (1, &json!(true))
    );

    for (method, path, status, says) in [
        ("GET", "/locks?limit=0", 400, "limit"),
        ("GET", "/locks?limit=many", 400, "limit"),
        ("GET", "/waiters?file=xyz", 400, "file"),
        (
            "GET",
            "/shares?sort=file",
            400,
            "unknown parameter \"sort\"",
        ),
        ("GET", "/grace?x=1", 400, "takes none"),
        ("GET", "/lock", 404, "no such path"),
        ("POST", "/locks", 405, "use GET"),
    ] {
        let (got, body) = request(http, method, path);
        assert_eq!(got, status, "{method} {path}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{method} {path}: {error}");
    }
}

#[test]
fn brlock_locks_and_graph_show_a_live_server() {
    let Scene {
        server: _server,
        http,
    } = scene();
    let addr = http.to_string();

    let table = stdout(&brlock(&["locks", "--server", &addr]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        words(lines[0]),
        ["FILE", "OWNER", "CLIENT", "KIND", "START", "END", "STATE"]
    );
    // Each file's held locks, then its waiters (files in handle order: 0102… before 6669…).
    assert_eq!(
        words(lines[1])[..7],
        [
            hex(F1),
            "host-a/1/oh-a".into(),
            "host-a".into(),
            "exclusive".into(),
            "0".into(),
            "99".into(),
            "held".into()
        ]
    );
    assert_eq!(
        words(lines[2])[..7],
        [
            hex(F1),
            "host-b/2/oh-b".into(),
            "host-b".into(),
            "exclusive".into(),
            "50".into(),
            "59".into(),
            "waiting".into()
        ]
    );
    assert!(lines[2].ends_with("(#1 in queue)"), "{table}");
    assert_eq!(
        words(lines[3])[..7],
        [
            hex(F2),
            "host-b/2/oh-b".into(),
            "host-b".into(),
            "exclusive".into(),
            BIG.to_string(),
            (BIG + 9).to_string(),
            "held".into()
        ]
    );
    assert_eq!(
        words(lines[4])[..6],
        [
            hex(F2),
            "host-a/3/oh-c".into(),
            "host-a".into(),
            "exclusive".into(),
            "0".into(),
            "EOF".into()
        ]
    );

    let filtered = stdout(&brlock(&[
        "locks",
        "--server",
        &addr,
        "--client",
        "host-a",
        "--file",
        &hex(F2),
    ]));
    assert_eq!(filtered.lines().count(), 2, "{filtered}");
    assert!(filtered.contains("host-a/3/oh-c"), "{filtered}");

    let raw: Value =
        serde_json::from_str(&stdout(&brlock(&["locks", "--server", &addr, "--json"]))).unwrap();
    // The same listing (held_ms grows between the two requests).
    let without_age = |mut v: Value| {
        for lock in v["locks"].as_array_mut().unwrap() {
            lock.as_object_mut().unwrap().remove("held_ms");
        }
        v
    };
    assert_eq!(
        without_age(raw["locks"].clone()),
        without_age(get(http, "/locks"))
    );
    assert_eq!(raw["waiters"]["waiters"].as_array().unwrap().len(), 2);

    let dot = stdout(&brlock(&["graph", "--server", &addr]));
    assert!(dot.contains("digraph wait_for {"), "{dot}");
    for edge in [
        "\"host-b/2/oh-b\" -> \"host-a/1/oh-a\" [label=\"file 010266696c65… (waiter ",
        "\"host-a/3/oh-c\" -> \"host-b/2/oh-b\" [label=\"file 66696c652d74776f",
    ] {
        assert!(dot.contains(edge), "no {edge:?} in\n{dot}");
    }
    assert!(!dot.contains("color=red"), "{dot}");

    let refused = brlock(&["locks", "--server", "127.0.0.1:1"]);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("cannot connect to 127.0.0.1:1: connection refused"),
        "{said}"
    );
    let bad = brlock(&["locks", "--server", &addr, "--limit", "0"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("limit"));
}

/// A cycle no request's own check could see: a non-blocking lock (judged against held locks only)
/// lands on a range an owner already waits for. The core breaks it at once at the waiter behind the
/// new edge; `/wait-for` and `brlock graph` show what is left, with no cycle, and the waiter's next
/// retry is told DEADLCK.
#[test]
fn a_cycle_a_grant_closes_is_broken_and_wait_for_shows_no_cycle() {
    let server = Brlockd::start_with(Options {
        metrics: true,
        ..Options::default()
    });
    let http = server.metrics.expect("the HTTP listener");
    let mut a = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    let local_b: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let mut b = NlmClient::connect_udp_from(local_b, server.addr, NlmVersion::V4).unwrap();
    let x = Owner::new("host-a", 1, "x");
    let z = Owner::new("host-a", 3, "z");
    let y = Owner::new("host-b", 2, "y");
    assert_eq!(a.lock(&x, b"g", true, 0, 10, false).unwrap(), Stat::Granted);
    assert_eq!(b.lock(&y, b"g", true, 0, 10, true).unwrap(), Stat::Blocked);
    assert_eq!(a.lock(&z, b"f", true, 0, 10, false).unwrap(), Stat::Granted);
    assert_eq!(a.lock(&x, b"f", true, 0, 20, true).unwrap(), Stat::Blocked);
    // y takes f[15, 20), which nobody holds: x would wait for y while y waits for x.
    assert_eq!(b.lock(&y, b"f", true, 15, 5, false).unwrap(), Stat::Granted);

    let graph = get(http, "/wait-for");
    assert_eq!(graph["cycles"], json!([]), "{graph}");
    let edges: Vec<(String, String)> = graph["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| {
            (
                e["from"]["owner"].as_str().unwrap_or_default().to_string(),
                e["to"]["owner"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        [("host-b/2/y".to_string(), "host-a/1/x".to_string())],
        "{graph}"
    );
    let waiters = get(http, "/waiters");
    assert_eq!(
        waiters["waiters"].as_array().map(Vec::len),
        Some(1),
        "{waiters}"
    );
    let dot = stdout(&brlock(&["graph", "--server", &http.to_string()]));
    assert!(!dot.contains("color=red"), "{dot}");
    assert!(dot.contains("\"host-b/2/y\" -> \"host-a/1/x\""), "{dot}");
    // x's client sends its blocking LOCK again (as the Linux client does) and learns of the deadlock.
    assert_eq!(a.lock(&x, b"f", true, 0, 20, true).unwrap(), Stat::Deadlck);
}
