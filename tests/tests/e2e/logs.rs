//! brlockd's log lines as an operator reads them: with `--log-format json` every line is a JSON
//! object; at debug level each request has a line naming procedure, caller, owner, file, range,
//! outcome and latency; at info level a grant after waiting, a deadlock and a limit refusal each
//! have one.

use std::time::Duration;

use brlock_native::nlm::{NlmCall, NlmVersion, Stat};
use brlock_testkit::client::{NlmClient, Owner, Transport};
use brlock_testkit::listener::ClientHost;
use brlock_tests::brlockd::{Brlockd, Options};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// Every stderr line as JSON (a line that is not JSON fails the test).
fn json_lines(server: &Brlockd) -> Vec<Value> {
    server
        .stderr_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The lines whose message is `message` (tracing-subscriber's json: `fields.message`).
fn with_message(lines: &[Value], message: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["fields"]["message"] == message)
        .cloned()
        .collect()
}

fn wait_for_message(server: &Brlockd, message: &str) -> Vec<Value> {
    assert!(
        server.log_contains(&format!("\"message\":\"{message}\""), WAIT),
        "no {message:?} line within {WAIT:?}:\n{}",
        server.stderr_text()
    );
    with_message(&json_lines(server), message)
}

#[test]
fn json_logs_have_a_line_per_request_and_per_wait_deadlock_and_limit() {
    let host = ClientHost::spawn().unwrap();
    let server = Brlockd::start_with(Options {
        portmap_port: Some(host.portmapper.port()),
        log_filter: Some("info,brlock_native=debug".into()),
        extra: ["--log-format", "json", "--max-locks-per-file", "3"]
            .map(String::from)
            .to_vec(),
        ..Options::default()
    });
    let fh = b"fh-logs".to_vec();
    let a = Owner::new("hostA", 1, "ownerA");
    let b = Owner::new("hostB", 7, "ownerB");
    let mut ca = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    let mut cb = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();

    // A waits behind B and is granted when B unlocks.
    assert_eq!(cb.lock(&b, &fh, true, 0, 10, false).unwrap(), Stat::Granted);
    assert_eq!(ca.lock(&a, &fh, true, 5, 10, true).unwrap(), Stat::Blocked);
    assert_eq!(cb.unlock(&b, &fh, 0, 10).unwrap(), Stat::Granted);
    let (grant, _) = host
        .listener
        .wait_for(WAIT, |c| matches!(c, NlmCall::Granted(_)));
    assert!(grant.is_some(), "no NLM_GRANTED to the waiter");
    let granted = wait_for_message(&server, "granted after waiting");
    assert_eq!(granted[0]["level"], "INFO", "{:?}", granted[0]);
    assert_eq!(granted[0]["fields"]["owner"], "hostA/1/ownerA");
    assert_eq!(granted[0]["fields"]["range"], "[5+10]");
    assert!(
        granted[0]["fields"]["waited_ms"].is_u64(),
        "{:?}",
        granted[0]
    );

    // A holds [5,15); B takes [20,30), then each waits for the other: the second wait is refused.
    assert_eq!(
        cb.lock(&b, &fh, true, 20, 10, false).unwrap(),
        Stat::Granted
    );
    assert_eq!(cb.lock(&b, &fh, true, 5, 1, true).unwrap(), Stat::Blocked);
    assert_eq!(ca.lock(&a, &fh, true, 20, 1, true).unwrap(), Stat::Deadlck);
    let deadlock = wait_for_message(&server, "deadlock: LOCK refused (NLM4_DEADLCK)");
    let cycle = deadlock[0]["fields"]["cycle"].as_str().unwrap();
    assert!(
        cycle.contains("hostA/1/ownerA") && cycle.contains("hostB/7/ownerB"),
        "{cycle}"
    );

    // Three records on the file (A's, B's, and C's below) is the limit; a fourth is refused.
    let c = Owner::new("hostC", 3, "ownerC");
    assert_eq!(
        ca.lock(&c, &fh, false, 100, 1, false).unwrap(),
        Stat::Granted
    );
    assert_eq!(
        ca.lock(&c, &fh, false, 200, 1, false).unwrap(),
        Stat::DeniedNolocks
    );
    let limit = wait_for_message(&server, "refused by a limit (NLM4_DENIED_NOLOCKS)");
    assert_eq!(limit[0]["fields"]["setting"], "--max-locks-per-file");
    assert_eq!(limit[0]["fields"]["caller"], "hostC");

    // The debug line of each request: the blocked LOCK, with everything an operator asks about.
    let requests = with_message(&json_lines(&server), "request");
    let blocked = requests
        .iter()
        .find(|l| l["fields"]["outcome"] == "blocked")
        .unwrap_or_else(|| panic!("no request line for the BLOCKED lock:\n{requests:#?}"));
    let f = &blocked["fields"];
    assert_eq!(blocked["level"], "DEBUG");
    assert_eq!(f["procedure"], "lock");
    assert_eq!(f["caller"], "hostA");
    assert_eq!(f["owner"], "hostA/1/ownerA");
    assert_eq!(f["file"], "fh-logs");
    assert_eq!(f["range"], "[5+10]");
    assert_eq!(f["kind"], "exclusive");
    assert!(f["latency_us"].is_u64(), "{f:?}");
    for outcome in ["granted", "deadlck", "deniednolocks"] {
        assert!(
            requests.iter().any(|l| l["fields"]["outcome"] == outcome),
            "no request line with outcome {outcome}:\n{requests:#?}"
        );
    }
}

/// At the default level (info) no request line is written.
#[test]
fn no_request_lines_at_info() {
    let server = Brlockd::start_with(Options {
        log_filter: Some("info".into()),
        ..Options::default()
    });
    let a = Owner::new("hostA", 1, "ownerA");
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    assert_eq!(
        c.lock(&a, b"fh-quiet", true, 0, 1, false).unwrap(),
        Stat::Granted
    );
    assert!(!server.log_contains(" request ", Duration::from_millis(200)));
    assert!(
        server.log_contains("serving NLM", WAIT),
        "{}",
        server.stderr_text()
    );
}
