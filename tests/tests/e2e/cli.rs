//! The command-line contract: `listening on` / `metrics on` lines, exit code 2 on a bad
//! flag, exit 0 on SIGTERM, and `--profile` reaching the lock rules.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use brlock_native::nlm::NlmVersion;
use brlock_tests::brlockd::{Brlockd, Options, brlockd_path};
use brlock_tests::client::{NlmClient, Transport};
use brlock_tests::script;

const BASE: [&str; 12] = [
    "--listen",
    "127.0.0.1:0",
    "--store",
    "memory",
    "--grace",
    "0",
    "--portmap-port",
    "1",
    "--rpcbind",
    "none",
    "--statd",
    "none",
];

fn exit_code(extra: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(brlockd_path())
        .args(BASE)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("run brlockd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flag_exits_2() {
    for extra in [
        &["--no-such-flag"][..],
        &["--store", "no-such-store"],
        &["--grace", "soon"],
        &["--profile", "no-such-profile"],
        &["--allow", "not-a-cidr"],
    ] {
        let (code, stderr) = exit_code(extra);
        assert_eq!(
            code,
            Some(2),
            "brlockd {extra:?} exited with {code:?}; stderr:\n{stderr}"
        );
        assert!(
            !stderr.is_empty(),
            "brlockd {extra:?} said nothing on stderr"
        );
    }
}

#[test]
fn sigterm_exits_0() {
    let mut server = Brlockd::start();
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    c.null().unwrap();
    // At once: `listening on` promises the server is up, SIGTERM handling included.
    let status = server.terminate(Duration::from_secs(10));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "exit status after SIGTERM: {status:?}; stderr:\n{}",
        server.stderr_text()
    );
}

#[test]
fn metrics_line_and_endpoint() {
    let server = Brlockd::start_with(Options {
        metrics: true,
        ..Options::default()
    });
    let metrics = server.metrics.expect("metrics address");
    assert!(metrics.ip().is_loopback());
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    assert_eq!(
        script::execute(&mut c, "lock h 1 o fh-m 1 0 1 0 0 1"),
        "granted"
    );
    let mut stream = TcpStream::connect(metrics).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body);
    assert!(
        body.starts_with("HTTP/1.1 200") || body.starts_with("HTTP/1.0 200"),
        "{body}"
    );
}

/// `--profile linux` limits offsets to i64::MAX as Linux lockd does (OFFSET_MAX); the
/// default accepts the whole 64-bit range.
#[test]
fn profile_linux_limits_offsets_to_63_bits() {
    let lock = "lock h 1 o fh-p 1 9223372036854775808 1 0 0 1";
    let server = Brlockd::start();
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    assert_eq!(script::execute(&mut c, lock), "granted", "default profile");
    let linux = Brlockd::start_with(Options {
        extra: vec!["--profile".into(), "linux".into()],
        ..Options::default()
    });
    let mut c = NlmClient::connect(Transport::Tcp, linux.addr, NlmVersion::V4).unwrap();
    assert_eq!(script::execute(&mut c, lock), "fbig", "--profile linux");
    assert_eq!(
        script::execute(&mut c, "lock h 1 o fh-p 1 9223372036854775807 1 0 0 1"),
        "granted",
        "--profile linux, the last byte below 2^63"
    );
}

/// `--allow CIDR`: calls from outside the allowed networks are refused (AUTH_ERROR
/// AUTH_TOOWEAK), over TCP and UDP; inside them they are served.
#[test]
fn allow_refuses_callers_outside_the_networks() {
    use brlock_native::rpc::{AuthStat, RejectStat, ReplyBody};
    use brlock_tests::client::RpcClient;

    let outside = Brlockd::start_with(Options {
        extra: vec!["--allow".into(), "10.0.0.0/8".into()],
        ..Options::default()
    });
    for transport in Transport::ALL {
        let mut c = RpcClient::connect(transport, outside.addr).unwrap();
        let reply = c.call_raw(100_021, 4, 0, &[]).unwrap();
        assert_eq!(
            reply.body,
            ReplyBody::Denied(RejectStat::AuthError(AuthStat::TooWeak)),
            "NULL from 127.0.0.1 with --allow 10.0.0.0/8 over {transport:?}"
        );
    }
    let inside = Brlockd::start_with(Options {
        extra: vec!["--allow".into(), "127.0.0.1/32".into()],
        ..Options::default()
    });
    for transport in Transport::ALL {
        let mut c = NlmClient::connect(transport, inside.addr, NlmVersion::V4).unwrap();
        c.null().unwrap();
    }
}
