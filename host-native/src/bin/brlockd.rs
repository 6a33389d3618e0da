//! `brlockd`: the NLM server. Flags: `brlockd --help`. Prints `listening on ADDR:PORT` once serving
//! (and `metrics on ADDR:PORT` when enabled); SIGTERM or Ctrl-C stops it gracefully with exit 0.
//!
//! At start-up it binds every socket, then takes the store's instance lock (SQLite), opens the store
//! (`--store`, default `sqlite://./brlock.db`), begins a new epoch, restores the previous epoch's
//! locks and shares and serves them in a grace period, and tells the client hosts it kept that it
//! restarted (docs/operations.md). Exit codes: 0 after SIGTERM/Ctrl-C, 1 when it cannot start
//! (address in use, another instance serving the SQLite store, store unreachable or corrupt), 2 for
//! a bad configuration, 3 when fenced (another instance took over the store).

use std::process::ExitCode;

use brlock_native::config::{ParseOutcome, ServerConfig};
use brlock_native::service::NlmService;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

/// Exit code of an instance whose store was taken over by a newer one.
const EXIT_FENCED: u8 = 3;

fn main() -> ExitCode {
    let config = match ServerConfig::parse_from(std::env::args_os()) {
        Ok(c) => c,
        Err(ParseOutcome::Clap(e)) => {
            // --help and --version exit 0; usage errors exit 2.
            e.exit();
        }
        Err(ParseOutcome::Config(e)) => {
            eprintln!("brlockd: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
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
            reason = server.fatal() => {
                tracing::error!("{reason}");
                eprintln!("brlockd: {reason}");
                ExitCode::from(EXIT_FENCED)
            }
        };
        tracing::info!("shutting down");
        server.shutdown().await;
        code
    })
}
