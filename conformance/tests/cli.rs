//! `brlock` as a user runs it: help and version, `replay`'s outputs, `--check`, postcard, and bad traces
//! as clear errors with the line number and exit code 2.

use std::path::PathBuf;
use std::process::{Command, Output};

const HEADER: &str = r#"{"brlock_trace":1}"#;
const LOCK: &str = r#"{"now":5,"event":{"lock":{"request":1,"client":"a","owner":"a","file":"f","range":{"offset":0,"length":10},"kind":"exclusive","wait":false,"reclaim":false,"cookie":[]}}}"#;

fn scenario(name: &str) -> String {
    format!("{}/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn brlock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brlock"))
        .args(args)
        .output()
        .expect("run brlock")
}

/// Writes `content` to a temp file named after the test.
fn temp(name: &str, content: &[u8]) -> String {
    let path: PathBuf =
        std::env::temp_dir().join(format!("brlock-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, content).expect("write temp file");
    path.to_string_lossy().into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_and_version_print_to_stdout_and_exit_0() {
    let help = brlock(&["--help"]);
    assert_eq!(help.status.code(), Some(0), "{}", stderr(&help));
    assert!(
        stdout(&help).contains("Usage: brlock <COMMAND>") && stdout(&help).contains("replay"),
        "{}",
        stdout(&help)
    );
    for args in [&["replay", "--help"][..], &["help", "replay"]] {
        let out = brlock(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("Usage: brlock replay [OPTIONS] <TRACE>")
                && text.contains("--format")
                && text.contains("--check"),
            "{args:?}: {text}"
        );
    }
    let version = brlock(&["--version"]);
    assert_eq!(version.status.code(), Some(0), "{}", stderr(&version));
    assert_eq!(
        stdout(&version).trim(),
        format!("brlock {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Bad arguments: exit 2, the reason on stderr, nothing on stdout.
#[test]
fn bad_arguments_exit_2() {
    let split = scenario("split.jsonl");
    for (args, want) in [
        (&["frobnicate"][..], "unrecognized subcommand 'frobnicate'"),
        (&[], "Usage: brlock <COMMAND>"),
        (&["replay"], "<TRACE>"),
        (
            &["replay", "--format", "xml", &split],
            "invalid value 'xml'",
        ),
        (&["replay", "--no-such-flag", &split], "--no-such-flag"),
        (&["replay", &split, &split], "unexpected argument"),
    ] {
        let out = brlock(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}: {}", stdout(&out));
    }
    // `--format jsonl` is the old spelling of json and still works.
    let out = brlock(&["replay", "--format", "jsonl", &split]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn replay_prints_one_json_line_per_event() {
    let out = brlock(&["replay", &scenario("split.jsonl")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 7);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .starts_with(r#"{"step":1,"actions":[{"persist""#),
        "{text}"
    );
}

#[test]
fn check_passes_on_the_recorded_output_and_names_the_first_difference() {
    let ok = brlock(&[
        "replay",
        "--check",
        &scenario("split.expected.jsonl"),
        &scenario("split.jsonl"),
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));

    let wrong = std::fs::read_to_string(scenario("split.expected.jsonl"))
        .unwrap()
        .replace(
            r#""request":4,"outcome":{"denied""#,
            r#""request":4,"outcome":{"danied""#,
        );
    let wrong = temp("wrong.expected.jsonl", wrong.as_bytes());
    let out = brlock(&["replay", "--check", &wrong, &scenario("split.jsonl")]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown outcome in EXPECTED is a bad file: {}",
        stderr(&out)
    );

    let differs = std::fs::read_to_string(scenario("split.expected.jsonl"))
        .unwrap()
        .replace(
            r#"{"reply":{"request":7,"outcome":"granted"}}"#,
            r#"{"reply":{"request":7,"outcome":"too_big"}}"#,
        );
    let differs = temp("differs.expected.jsonl", differs.as_bytes());
    let out = brlock(&["replay", "--check", &differs, &scenario("split.jsonl")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let message = stderr(&out);
    assert!(
        message.contains("step 7") && message.contains("action 2") && message.contains("too_big"),
        "{message}"
    );
}

#[test]
fn postcard_in_and_out_round_trips() {
    let trace = brlock_conformance::parse_jsonl(
        &std::fs::read_to_string(scenario("deadlock.jsonl")).unwrap(),
    )
    .unwrap();
    let bin = temp(
        "deadlock.postcard",
        &brlock_conformance::encode_trace(&trace),
    );
    let out = brlock(&["replay", "--format", "postcard", &bin]);
    assert!(out.status.success(), "{}", stderr(&out));
    let outputs = brlock_conformance::decode_outputs(&out.stdout).unwrap();
    assert_eq!(outputs, brlock_conformance::replay(&trace).unwrap());
    let recorded = temp("deadlock.out.postcard", &out.stdout);
    let check = brlock(&["replay", "--format", "postcard", "--check", &recorded, &bin]);
    assert!(check.status.success(), "{}", stderr(&check));
}

/// Each bad trace: the error names the line and the problem, and the exit code is 2.
#[test]
fn bad_traces_are_clear_errors_with_the_line_number() {
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown-event",
            format!(
                "{HEADER}\n# a comment\n{}",
                LOCK.replace("\"lock\"", "\"lok\"")
            ),
            "line 3: unknown variant `lok`",
        ),
        (
            "missing-field",
            format!("{HEADER}\n{}", LOCK.replace(r#""wait":false,"#, "")),
            "line 2: missing field `wait`",
        ),
        (
            "time-backwards",
            format!(
                "{HEADER}\n{LOCK}\n\n{}",
                LOCK.replace(r#""now":5"#, r#""now":4"#)
            ),
            "line 4: time goes backwards: now 4 after 5",
        ),
        (
            "wrong-version",
            format!("{}\n{LOCK}", HEADER.replace('1', "2")),
            "line 1: unsupported trace version 2",
        ),
        ("no-header", LOCK.to_string(), "line 1: not a trace header"),
        (
            "bad-json",
            format!("{HEADER}\n{{\"now\":"),
            "line 2: EOF while parsing",
        ),
    ];
    for (name, text, want) in cases {
        let path = temp(name, text.as_bytes());
        let out = brlock(&["replay", &path]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(want),
            "{name}: expected {want:?} in {:?}",
            stderr(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "{name}: printed output for a bad trace"
        );
    }
    let out = brlock(&[
        "replay",
        "--format",
        "postcard",
        &temp("garbage", &[2, 0, 0]),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unsupported trace version 2"),
        "{}",
        stderr(&out)
    );
}
