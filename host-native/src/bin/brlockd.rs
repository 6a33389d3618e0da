//! `brlockd`: the NLM server. Flags: `brlockd --help`. Prints `listening on ADDR:PORT` once serving
//! (and `metrics on ADDR:PORT` when enabled); SIGTERM or Ctrl-C stops it gracefully with exit 0.
//!
//! At start-up it binds every socket, then takes the store's instance lock (SQLite), opens the store
//! (`--store`, default `sqlite://./brlock.db`), begins a new epoch, restores the previous epoch's
//! locks and shares and serves them in a grace period, and tells the client hosts it kept that it
//! restarted (docs/operations.md). Exit codes: 0 after SIGTERM/Ctrl-C, 1 when it cannot start
//! (address in use, another instance serving the SQLite store, store unreachable or corrupt), 2 for
//! a bad configuration (an invalid `RUST_LOG` too), 3 when fenced (another instance took over the
//! store), 4 when its PostgreSQL leadership lease ran out or was taken over. `--print-config` prints
//! the effective settings as TOML and exits 0.
//!
//! On a PostgreSQL store, instances started with the same `--store` elect one leader through a
//! lease in the database (`leader.rs`); the others wait as hot standbys (logging `standby: waiting
//! for the leader …`), bind nothing clients use, and take over when the leader's lease runs out.

use std::process::ExitCode;

use brlock_native::config::{LogFormat, ServerConfig, Settings};
use brlock_native::service::NlmService;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Directive;

/// The log filter from `RUST_LOG` (`info` when unset or empty). A directive that does not parse is
/// an error naming it, not a silent fall-back to the default.
fn log_filter() -> Result<EnvFilter, String> {
    let spec = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => s,
        Ok(_) | Err(std::env::VarError::NotPresent) => return Ok(EnvFilter::new("info")),
        Err(std::env::VarError::NotUnicode(_)) => return Err("RUST_LOG is not UTF-8".into()),
    };
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if let Err(e) = directive.parse::<Directive>() {
            return Err(format!(
                "RUST_LOG: bad directive {directive:?} ({e}); write e.g. info, brlock_native=debug"
            ));
        }
    }
    EnvFilter::builder()
        .parse(&spec)
        .map_err(|e| format!("RUST_LOG={spec:?}: {e}"))
}

fn main() -> ExitCode {
    // --help and --version exit 0; usage errors exit 2 (clap prints them itself).
    let flags = Settings::parse();
    let settings = match Settings::effective(&flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("brlockd: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match ServerConfig::from_settings(&settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("brlockd: {e}");
            return ExitCode::from(2);
        }
    };
    if flags.print_config {
        print!("{}", settings.to_toml());
        return ExitCode::SUCCESS;
    }
    let filter = match log_filter() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("brlockd: {e}");
            return ExitCode::from(2);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().with_current_span(false).init(),
    }
    // One worker thread: every request crosses three tasks (connection reader → core task →
    // connection writer), and the core task is serial anyway. With a worker per vCPU each hop was
    // a cross-thread wake-up (futex wake + context switch: ~40 % of the server's CPU in `perf`, and
    // most of a 1-connection round trip); with one worker a hop is a local run-queue push. Still
    // the multi-threaded scheduler, so the SQLite store's `block_in_place` hands the worker's
    // tasks to another thread while a commit blocks, as before.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("brlockd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Before anything can print `listening on`: a SIGTERM right after that line must find the
        // handler installed (and end in a clean exit, not death by signal 15).
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("brlockd: cannot install the signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let server = match NlmService::builder(config).start().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("brlockd: {e}");
                return ExitCode::from(e.exit_code());
            }
        };
        println!("listening on {}", server.local_addr());
        if let Some(m) = server.metrics_addr() {
            println!("metrics on {m}");
        }
        let code = tokio::select! {
            _ = term.recv() => ExitCode::SUCCESS,
            _ = int.recv() => ExitCode::SUCCESS,
            fatal = server.stopped_serving() => {
                tracing::error!("{}", fatal.reason());
                eprintln!("brlockd: {}", fatal.reason());
                ExitCode::from(fatal.exit_code())
            }
        };
        tracing::info!("shutting down");
        server.shutdown().await;
        code
    })
}
