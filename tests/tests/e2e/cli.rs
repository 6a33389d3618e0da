//! The command-line contract: `listening on` / `metrics on` lines, exit code 2 on a bad
//! flag, exit 0 on SIGTERM, and `--profile` reaching the lock rules.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use brlock_native::nlm::NlmVersion;
use brlock_testkit::client::{NlmClient, Transport};
use brlock_tests::brlockd::{Brlockd, Options, brlockd_path};
use brlock_tests::script;

use super::assert_still_serves;

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
    // A --store in `extra` replaces the test one (clap refuses a flag given twice).
    let base: Vec<&str> = if extra.contains(&"--store") {
        let at = BASE
            .iter()
            .position(|a| *a == "--store")
            .expect("BASE has --store");
        [&BASE[..at], &BASE[at + 2..]].concat()
    } else {
        BASE.to_vec()
    };
    let out = Command::new(brlockd_path())
        .args(base)
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
    use brlock_testkit::client::RpcClient;

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

/// brlockd's exit code and stderr for `args` (without the fixed test flags).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let out = Command::new(brlockd_path())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run brlockd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts brlockd with `extra` (over the test flags) cannot start: exit 1, and stderr says
/// every one of `needles`.
fn assert_start_error(extra: &[&str], needles: &[&str]) {
    let (code, stderr) = exit_code(extra);
    assert_eq!(code, Some(1), "brlockd {extra:?}: stderr:\n{stderr}");
    for needle in needles {
        assert!(
            stderr.contains(needle),
            "brlockd {extra:?}: no {needle:?} in stderr:\n{stderr}"
        );
    }
}

#[test]
fn print_config_prints_the_effective_settings_and_exits_0() {
    let config = std::env::temp_dir().join(format!("brlockd-print-{}.toml", std::process::id()));
    std::fs::write(&config, "grace = \"2m\"\nmax_locks_per_file = 9\n").unwrap();
    let (code, stdout, stderr) = run(
        &[
            "--config",
            config.to_str().unwrap(),
            "--max-locks-per-file",
            "7",
            "--callback-timeout-ms",
            "1500",
            "--print-config",
        ],
        &[],
    );
    let _ = std::fs::remove_file(&config);
    assert_eq!(code, Some(0), "{stderr}");
    for line in [
        "grace = \"2m\"",
        "max_locks_per_file = 7",
        "callback_timeout_ms = \"1s 500ms\"",
        "listen = \"127.0.0.1:4045\"",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "no {line:?} in\n{stdout}"
        );
    }
    // What it printed is a configuration brlockd takes as it is.
    let printed = std::env::temp_dir().join(format!("brlockd-printed-{}.toml", std::process::id()));
    std::fs::write(&printed, &stdout).unwrap();
    let (code, again, stderr) = run(
        &["--config", printed.to_str().unwrap(), "--print-config"],
        &[],
    );
    let _ = std::fs::remove_file(&printed);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(again, stdout);
}

#[test]
fn the_example_configuration_is_accepted() {
    let example = brlock_tests::brlockd::workspace_root().join("examples/brlockd.toml");
    let (code, stdout, stderr) = run(
        &["--config", example.to_str().unwrap(), "--print-config"],
        &[],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("store = \"sqlite:///var/lib/brlockd/brlock.db\""),
        "{stdout}"
    );
}

#[test]
fn time_flags_take_units() {
    let server = Brlockd::start_with(Options {
        extra: ["--callback-timeout-ms", "2s", "--unmonitor-idle-ms", "5m"]
            .map(String::from)
            .to_vec(),
        ..Options::default()
    });
    assert_still_serves(server.addr);
    let (code, stderr) = exit_code(&["--notify-retry-ms", "soon"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--notify-retry-ms") && stderr.contains("500ms"),
        "{stderr}"
    );
}

#[test]
fn an_invalid_log_filter_is_a_start_up_error_naming_it() {
    let (code, _, stderr) = run(&BASE, &[("RUST_LOG", "info,brlock_native=loud")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("\"brlock_native=loud\""), "{stderr}");
    let (code, stderr) = exit_code(&["--log-format", "xml"]);
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn address_in_use_names_the_listener_and_its_flag() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{port}");
    let (code, _, stderr) = run(
        &[
            "--listen",
            &listen,
            "--store",
            "memory",
            "--rpcbind",
            "none",
            "--statd",
            "none",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("NLM (udp) on {listen}"))
            && stderr.contains("Address already in use")
            && stderr.contains("--listen"),
        "{stderr}"
    );
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = tcp.local_addr().unwrap().to_string();
    assert_start_error(
        &["--metrics", &metrics],
        &[
            &format!("metrics (http) on {metrics}"),
            "Address already in use",
            "--metrics",
        ],
    );
}

#[test]
fn a_sqlite_file_in_a_missing_directory_names_the_directory() {
    let dir = std::env::temp_dir().join(format!("brlockd-no-such-dir-{}", std::process::id()));
    let url = format!("sqlite://{}/brlock.db", dir.display());
    assert_start_error(
        &["--store", &url],
        &[
            &format!("the directory {} does not exist", dir.display()),
            "--store",
        ],
    );
}

#[test]
fn postgres_down_says_connection_refused() {
    // A port nobody listens on: bound, then freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    assert_start_error(
        &["--store", &url],
        &[
            &format!("cannot connect to PostgreSQL at 127.0.0.1:{port}"),
            "Connection refused",
            "--store",
        ],
    );
}

/// Needs the PostgreSQL of TOOLCHAIN.md at 127.0.0.1:5432.
#[test]
fn a_missing_postgres_database_is_named() {
    let db = format!("brlock_no_such_db_{}", std::process::id());
    let url = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let (code, stderr) = exit_code(&["--store", &url]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("has no database \"{db}\"")) && stderr.contains("--store"),
        "{stderr}"
    );
    assert!(!stderr.contains("at line"), "{stderr}");
}
