//! Wire conformance with an independent implementation: `conformance/rpcgen/nlm4_client`
//! (rpcgen + libtirpc, validated against NFS-Ganesha) runs the shared lock scenarios against
//! brlockd over TCP and UDP, and every answer line must be the expected one.
//!
//! The client is built with `conformance/rpcgen/build.sh <target>/rpcgen` (needs rpcgen,
//! libtirpc-dev and cc; `tests/install-tools.sh` installs them).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use brlock_native::nlm::NlmVersion;
use brlock_tests::brlockd::{Brlockd, target_dir, workspace_root};
use brlock_tests::scenarios;
use brlock_tests::script;

fn nlm4_client() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let build = workspace_root().join("conformance/rpcgen/build.sh");
        let out_dir = target_dir().join("rpcgen");
        let output = Command::new("bash")
            .arg(&build)
            .arg(&out_dir)
            .stdin(Stdio::null())
            .output()
            .expect("run conformance/rpcgen/build.sh");
        assert!(
            output.status.success(),
            "{} failed ({}); run tests/install-tools.sh for rpcgen and libtirpc-dev:\n{}",
            build.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim().to_string());
        assert!(
            path.is_file(),
            "build.sh printed {path:?}, which is not a file"
        );
        path
    })
    .clone()
}

/// Feeds `text` to nlm4_client and returns its answer lines.
fn run_client(
    server: &Brlockd,
    transport: &str,
    extra: &[&str],
    text: &str,
) -> (Vec<String>, String) {
    let mut child = Command::new(nlm4_client())
        .args(extra)
        .arg(server.addr.ip().to_string())
        .arg(server.addr.port().to_string())
        .arg(transport)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start nlm4_client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write script");
    let output = child.wait_with_output().expect("nlm4_client");
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    (lines, String::from_utf8_lossy(&output.stderr).into_owned())
}

fn conformance(name: &str) {
    let (_, text, versions) = scenarios::ALL
        .iter()
        .find(|(n, _, _)| *n == name)
        .expect("scenario exists");
    assert!(versions.contains(&NlmVersion::V4));
    let server = Brlockd::start();
    for (transport, extra) in [
        ("tcp", &[][..]),
        ("udp", &[][..]),
        ("tcp", &["--auth-none"][..]),
    ] {
        let fh = format!("rpcgen-{name}-{transport}-{}", extra.len());
        let text = script::substitute(text, &[("F", &fh)]);
        let steps = script::parse(&text);
        let commands: String = steps.iter().map(|s| format!("{}\n", s.command)).collect();
        let (answers, stderr) = run_client(&server, transport, extra, &commands);
        let what =
            format!("nlm4_client {extra:?} over {transport}, scenario {name} (stderr: {stderr:?})");
        script::assert_answers(&what, &steps, &answers);
    }
}

macro_rules! conformance_tests {
    ($($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                conformance(stringify!($test));
            }
        )*
    };
}

conformance_tests!(
    exclusive_conflict,
    partial_unlock,
    shared,
    whole_file,
    block_then_cancel,
    wide_offsets,
    shares_nm_lock_free_all,
);
