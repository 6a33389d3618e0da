//! Finding, building and running the real `brlockd` binary.
//!
//! `env!("CARGO_BIN_EXE_brlockd")` exists only inside `brlock-native`'s own tests, so this
//! crate finds the binary itself, the robust way:
//!
//! 1. If `BRLOCKD` is set, that path is used as is (e.g. a release build in CI or for the
//!    benchmark).
//! 2. Otherwise the binary is built once per test process with
//!    `$CARGO build -p brlock-native --bin brlockd` into the *same* target directory and
//!    profile as the running test executable (`<target>/<profile>/deps/<test>` →
//!    `<target>/<profile>/brlockd`). Cargo makes this a no-op when the binary is up to date,
//!    so a stale `brlockd` is never tested after a source change; a build failure fails the
//!    test with cargo's message.
//!
//! [`Brlockd`] is a guard: dropping it kills the process (SIGKILL) and reaps it.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a starting server may take to print `listening on`.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The directory holding the running executable's profile output (`<target>/<profile>`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe has a parent");
    // Test and bench executables live in <profile>/deps; binaries in <profile> itself.
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().expect("deps has a parent").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// The cargo target directory the running executable was built in (`<target>`).
pub fn target_dir() -> PathBuf {
    profile_dir()
        .parent()
        .expect("profile dir has a parent")
        .to_path_buf()
}

/// The cargo arguments selecting the profile that produced `profile_dir`.
fn profile_args(profile_dir: &Path) -> Vec<String> {
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => Vec::new(),
        Some("release") => vec!["--release".into()],
        Some(other) => vec!["--profile".into(), other.into()],
    }
}

/// Builds `bin` of `package` into the running executable's target directory and profile,
/// once per process, and returns its path.
pub fn build_workspace_binary(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<Vec<(String, PathBuf)>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(Vec::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, path)) = built.iter().find(|(name, _)| name == bin) {
        return path.clone();
    }
    let profile_dir = profile_dir();
    let target_dir = profile_dir.parent().expect("profile dir has a parent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            package,
            "--bin",
            bin,
            "--target-dir",
        ])
        .arg(target_dir)
        .args(profile_args(&profile_dir))
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo:?} to build {bin}: {e}"));
    assert!(
        output.status.success(),
        "`cargo build -p {package} --bin {bin}` failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let path = profile_dir.join(bin);
    assert!(
        path.is_file(),
        "{} missing after a successful build",
        path.display()
    );
    built.push((bin.to_string(), path.clone()));
    path
}

/// The repository root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `brlockd` to test: `$BRLOCKD`, else a fresh build (see the module doc).
pub fn brlockd_path() -> PathBuf {
    match std::env::var_os("BRLOCKD") {
        Some(path) => PathBuf::from(path),
        None => build_workspace_binary("brlock-native", "brlockd"),
    }
}

/// A port on 127.0.0.1 where nothing answers, for servers that must be given a
/// `--portmap-port` but whose test makes no callbacks. (Port 1, tcpmux, is never served.)
pub const DEAD_PORT: u16 = 1;

/// Command-line options beyond the fixed test ones.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--portmap-port`; [`DEAD_PORT`] if unset.
    pub portmap_port: Option<u16>,
    /// Pass `--metrics 127.0.0.1:0` and wait for the `metrics on` line too.
    pub metrics: bool,
    /// `--store`; `memory` if unset.
    pub store: Option<String>,
    /// `--grace` in seconds; 0 if unset.
    pub grace: Option<u64>,
    /// `--rpcbind ADDR:PORT`; `none` if unset.
    pub rpcbind: Option<String>,
    /// `--statd ADDR:PORT`; `none` if unset; not passed at all if empty (brlockd then asks
    /// rpcbind for a statd).
    pub statd: Option<String>,
    /// `RUST_LOG` for the server; the test's own `RUST_LOG`, else `info`, if unset.
    pub log_filter: Option<String>,
    /// `--listen`; `127.0.0.1:0` if unset.
    pub listen: Option<String>,
    pub extra: Vec<String>,
}

/// A running `brlockd`, killed when dropped.
pub struct Brlockd {
    child: Child,
    /// Where it serves NLM, TCP and UDP.
    pub addr: SocketAddr,
    /// Where it serves metrics, when asked for.
    pub metrics: Option<SocketAddr>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// stdout's lines, read by a thread (`listening on`, `metrics on`).
    lines: mpsc::Receiver<String>,
    args: Vec<String>,
}

impl Brlockd {
    /// `brlockd --listen 127.0.0.1:0 --store memory --grace 0 --portmap-port DEAD_PORT
    /// --rpcbind none --statd none`, started and serving.
    pub fn start() -> Self {
        Self::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Self {
        Self::start_binary(&brlockd_path(), options)
    }

    pub fn start_binary(binary: &Path, options: Options) -> Self {
        let wants_metrics = options.metrics;
        let mut server = Self::spawn_binary(binary, options);
        let deadline = Instant::now() + START_TIMEOUT;
        while !server.wait_listening(deadline.saturating_duration_since(Instant::now()))
            || (wants_metrics && server.metrics.is_none())
        {
            if Instant::now() >= deadline {
                let status = server.child.try_wait().ok().flatten();
                panic!(
                    "brlockd {:?} printed no `listening on` line within {START_TIMEOUT:?} \
                     (exit status: {status:?}); stderr:\n{}",
                    server.args,
                    server.stderr_text()
                );
            }
        }
        server
    }

    /// Starts `brlockd` without waiting for it to serve (a standby never does until it takes
    /// over): see [`Brlockd::wait_listening`].
    pub fn spawn_with(options: Options) -> Self {
        Self::spawn_binary(&brlockd_path(), options)
    }

    pub fn spawn_binary(binary: &Path, options: Options) -> Self {
        let portmap_port = options.portmap_port.unwrap_or(DEAD_PORT).to_string();
        let store = options.store.clone().unwrap_or_else(|| "memory".into());
        let grace = options.grace.unwrap_or(0).to_string();
        let rpcbind = options.rpcbind.clone().unwrap_or_else(|| "none".into());
        let statd = options.statd.clone().unwrap_or_else(|| "none".into());
        let listen = options
            .listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:0".into());
        let mut args: Vec<String> = [
            "--listen",
            &listen,
            "--store",
            &store,
            "--grace",
            &grace,
            "--portmap-port",
            &portmap_port,
            "--rpcbind",
            &rpcbind,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !statd.is_empty() {
            args.extend(["--statd".to_string(), statd.clone()]);
        }
        if options.metrics {
            args.extend(["--metrics".to_string(), "127.0.0.1:0".to_string()]);
        }
        args.extend(options.extra.iter().cloned());
        let mut child = Command::new(binary)
            .args(&args)
            .env(
                "RUST_LOG",
                options
                    .log_filter
                    .clone()
                    .unwrap_or_else(|| std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));

        let stderr = Arc::new(Mutex::new(Vec::new()));
        {
            let sink = Arc::clone(&stderr);
            let mut pipe = child.stderr.take().expect("stderr piped");
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            });
        }
        // Keep draining stdout after the address lines so the server never blocks on it.
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = lines_tx.send(line);
            }
        });

        Brlockd {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            metrics: None,
            stderr,
            lines: lines_rx,
            args,
        }
    }

    /// Waits up to `within` for the `listening on` line (true once it has come, then at once);
    /// notes `metrics on` on the way.
    pub fn wait_listening(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.is_listening() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.take_line(&line),
                Err(_) => return false,
            }
        }
        true
    }

    /// Whether it has printed `listening on` (reads what stdout has so far, without waiting).
    pub fn is_listening(&mut self) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.take_line(&line);
        }
        self.addr.port() != 0
    }

    fn take_line(&mut self, line: &str) {
        if let Some(rest) = line.strip_prefix("listening on ") {
            self.addr = parse_addr(rest, line);
        } else if let Some(rest) = line.strip_prefix("metrics on ") {
            self.metrics = Some(parse_addr(rest, line));
        }
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`, `libc::SIGCONT`) to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal}) failed");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Waits up to `within` for `needle` to appear in the server's log: lines are read by another
    /// thread, and a line logged just before a reply may not have been read when the reply arrives.
    pub fn log_contains(&self, needle: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.stderr_text().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits up to `within` for the exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGKILL, no goodbye (a crash), and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `within` for the process to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

fn parse_addr(text: &str, line: &str) -> SocketAddr {
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("cannot parse the address in {line:?}: {e}"))
}

impl Drop for Brlockd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let text = self.stderr_text();
            let tail: String = {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(60)..].join("\n")
            };
            eprintln!(
                "--- brlockd stderr (last 60 lines) ---\n{tail}\n--- end of brlockd stderr ---"
            );
        }
    }
}
