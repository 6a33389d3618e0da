//! `/metrics` of a live brlockd: `promtool check metrics` accepts it (promtool is required: it
//! comes with Debian's `prometheus` package, installed by scripts/setup.sh), the content type says
//! which format the body is in, and the series a dashboard needs exist before their first event.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use brlock_native::nlm::NlmVersion;
use brlock_testkit::client::{NlmClient, Transport};
use brlock_tests::brlockd::{Brlockd, Options};
use brlock_tests::script;

/// `GET /metrics` with `accept`; the response's Content-Type and body.
fn scrape(addr: SocketAddr, accept: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        })
        .map(|(_, v)| v.trim().to_string())
        .expect("a Content-Type header");
    (content_type, body.to_string())
}

fn promtool_check(body: &str) -> (Option<i32>, String) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "cannot run promtool ({e}): it is required for this test; install it with \
             scripts/setup.sh (Debian package `prometheus`, /usr/bin/promtool)"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), said)
}

#[test]
fn promtool_accepts_the_metrics_of_a_live_server() {
    let server = Brlockd::start_with(Options {
        metrics: true,
        ..Options::default()
    });
    let metrics = server.metrics.expect("metrics address");
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    for (line, expect) in [
        ("lock h 1 o fh-m 1 0 10 0 0 1", "granted"),
        ("lock h2 2 o2 fh-m 1 5 10 0 0 1", "denied"),
        ("test h2 2 o2 fh-m 1 5 10", "denied holder"),
        ("unlock h 1 o fh-m 0 10", "granted"),
    ] {
        let answer = script::execute(&mut c, line);
        assert!(answer.starts_with(expect), "{line}: {answer}");
    }
    let (content_type, body) = scrape(metrics, "text/plain");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let (code, said) = promtool_check(&body);
    assert_eq!(
        code,
        Some(0),
        "promtool check metrics:\n{said}\n--- body ---\n{body}"
    );
    assert!(said.trim().is_empty(), "promtool complained:\n{said}");
    for line in [
        "brlock_lock_replies_total{outcome=\"denied\"} 1",
        "brlock_held_locks 0",
        "brlock_wait_duration_seconds_count 0",
        "brlock_store_failures_total{kind=\"error\"} 0",
        "brlock_rpc_requests_total{procedure=\"share\",status=\"granted\"} 0",
    ] {
        assert!(body.lines().any(|l| l == line), "no {line:?} in\n{body}");
    }
    for name in [
        "brlock_build_info{version=",
        "brlock_grace_remaining_seconds ",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_start_time_seconds ",
    ] {
        assert!(body.contains(name), "no {name} in\n{body}");
    }

    // What Prometheus asks for, it gets: OpenMetrics, said so.
    let (content_type, open) = scrape(
        metrics,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    );
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(open.contains("# TYPE brlock_lock_replies counter\n"));
}
