//! `brlockd`: the NLM server. Flags: `brlockd --help`. Prints `listening on ADDR:PORT` once serving
//! (and `metrics on ADDR:PORT` when enabled); SIGTERM or Ctrl-C stops it gracefully with exit 0.

use std::process::ExitCode;

use brlock_native::config::{ParseOutcome, ServerConfig};
use brlock_native::server::Server;
use tracing_subscriber::EnvFilter;

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
    if config.store != "memory" {
        eprintln!(
            "brlockd: --store: {:?} is not supported by this build (use memory)",
            config.store
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
        let server = match Server::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("brlockd: cannot listen: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("listening on {}", server.local_addr());
        if let Some(m) = server.metrics_addr() {
            println!("metrics on {m}");
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
