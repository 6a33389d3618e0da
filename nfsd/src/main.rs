//! `brlock-nfsd`: exports a local directory over NFSv3 (nfsserve: NFS and MOUNT on `--listen`,
//! TCP) and serves NLM and NSM for it through brlock-native's NLM service, in one process.
//!
//! ```text
//! brlock-nfsd --export ./shared --listen 127.0.0.1:2049
//! mount -t nfs -o vers=3,proto=tcp,mountproto=tcp HOST:/abs/path/of/shared /mnt
//! ```
//!
//! The MOUNT path is the exported directory's absolute path (printed at start). NFS 100003 v3 and
//! MOUNT 100005 v3 are registered with rpcbind next to NLM, so a plain `mount -t nfs -o vers=3`
//! with locking on finds all three. Exit codes: 0 after SIGTERM/Ctrl-C, 1 when it cannot start,
//! 2 for a bad setting, 3 when another instance took the lock store over.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use brlock_native::config::{SecsSetting, ServerConfig, Settings};
use brlock_native::server::outbound::Transport;
use brlock_native::server::rpcbind;
use brlock_native::service::NlmService;
use brlock_nfsd::{ExportHandles, LocalFs};
use clap::Parser;
use nfsserve::tcp::{NFSTcp, NFSTcpListener};
use tokio::signal::unix::{SignalKind, signal};
use tracing::info;
use tracing_subscriber::EnvFilter;

const NFS_PROGRAM: u32 = 100_003;
const MOUNT_PROGRAM: u32 = 100_005;
const EXIT_FENCED: u8 = 3;

#[derive(Parser, Debug)]
#[command(
    name = "brlock-nfsd",
    version,
    about = "An NFSv3 server for a local directory, with NLM locking by brlock, in one process"
)]
struct Args {
    /// The directory to export. Its absolute path is the MOUNT path.
    #[arg(long, value_name = "DIR")]
    export: PathBuf,
    /// Where NFS and MOUNT are served (TCP). The NFS side has no access list of its own: bind it
    /// to an address only your clients reach.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:2049")]
    listen: SocketAddr,
    /// Where NLM is served (TCP and UDP) [default: --listen's address, port 4045].
    #[arg(long, value_name = "ADDR:PORT")]
    nlm_listen: Option<SocketAddr>,
    /// Where held locks are persisted: sqlite://PATH, postgres://…, or memory.
    #[arg(long, value_name = "URL", default_value = "sqlite://./brlock-nfsd.db")]
    store: String,
    /// rpcbind to register NFS, MOUNT and NLM with, or `none`.
    #[arg(long, value_name = "ADDR:PORT|none", default_value = "127.0.0.1:111")]
    rpcbind: String,
    /// Source networks allowed to call NLM (repeatable) [default: loopback].
    #[arg(long, value_name = "CIDR")]
    allow: Vec<String>,
    /// Grace period after a restart (`90s`; a bare number is seconds) [default: the profile's].
    #[arg(long, value_name = "DURATION")]
    grace: Option<SecsSetting>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,
    /// Serve NFS and MOUNT only, without NLM (clients must mount with `nolock`): what nfsserve
    /// alone gives, kept to measure what locking costs the NFS side.
    #[arg(long)]
    no_locking: bool,
}

fn nlm_config(args: &Args) -> Result<ServerConfig, String> {
    let nlm_listen = args
        .nlm_listen
        .unwrap_or_else(|| SocketAddr::new(args.listen.ip(), 4045));
    ServerConfig::from_args(Settings {
        listen: Some(nlm_listen.to_string()),
        store: Some(args.store.clone()),
        rpcbind: Some(args.rpcbind.clone()),
        allow: (!args.allow.is_empty()).then(|| args.allow.clone()),
        grace: args.grace,
        metrics: args.metrics.clone(),
        ..Settings::default()
    })
    .map_err(|e| e.to_string())
}

/// NFS v3 and MOUNT v3, both on the NFS port over TCP (nfsserve serves no UDP).
fn nfs_programs() -> rpcbind::Programs {
    vec![(NFS_PROGRAM, vec![3]), (MOUNT_PROGRAM, vec![3])]
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match nlm_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("brlock-nfsd: {e}");
            return ExitCode::from(2);
        }
    };
    let fs = match LocalFs::new(&args.export) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("brlock-nfsd: --export {}: {e}", args.export.display());
            return ExitCode::from(2);
        }
    };
    // One worker, as brlockd: the NLM path crosses three tasks per request, and with a worker per
    // vCPU each hop is a cross-thread wake-up (brlockd measured ~40 % of its CPU there). The
    // multi-threaded scheduler still lets SQLite's blocking commits hand the worker's tasks on.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("brlock-nfsd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(args, config, fs))
}

async fn serve(args: Args, config: ServerConfig, fs: LocalFs) -> ExitCode {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("brlock-nfsd: cannot install the signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rpcbind = config.rpcbind;
    let nlm = if args.no_locking {
        None
    } else {
        match NlmService::builder(config)
            .file_handles(ExportHandles(fs.clone()))
            .start()
            .await
        {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("brlock-nfsd: NLM: {e}");
                return ExitCode::from(e.exit_code());
            }
        }
    };
    let export_path = fs.root().display().to_string();
    let mut nfs = match NFSTcpListener::bind(&args.listen.to_string(), fs).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "brlock-nfsd: cannot listen for NFS on --listen {}: {e}",
                args.listen
            );
            if let Some(nlm) = nlm {
                nlm.shutdown().await;
            }
            return ExitCode::FAILURE;
        }
    };
    nfs.with_export_name(&export_path);
    let nfs_port = nfs.get_listen_port();
    let nfs_addr = SocketAddr::new(args.listen.ip(), nfs_port);
    if let Some(rpcbind) = rpcbind {
        // UNSET first (a crashed run's mappings), then SET the address listened on.
        rpcbind::register(rpcbind, nfs_addr, &nfs_programs(), &[Transport::Tcp]).await;
    }
    let nlm_addr = nlm.as_ref().map(|n| n.local_addr().to_string());
    let nlm_addr = nlm_addr.as_deref().unwrap_or("off (--no-locking)");
    info!(export = %export_path, nfs = %args.listen, nlm = nlm_addr, "serving");
    println!(
        "exporting {export_path} over NFSv3 on {}:{nfs_port}; NLM on {nlm_addr}",
        args.listen.ip(),
    );
    let fatal = async {
        match &nlm {
            Some(nlm) => nlm.fatal().await,
            None => std::future::pending().await,
        }
    };
    let code = tokio::select! {
        _ = term.recv() => ExitCode::SUCCESS,
        _ = int.recv() => ExitCode::SUCCESS,
        reason = fatal => {
            eprintln!("brlock-nfsd: {reason}");
            ExitCode::from(EXIT_FENCED)
        }
        result = nfs.handle_forever() => {
            eprintln!("brlock-nfsd: the NFS listener stopped: {result:?}");
            ExitCode::FAILURE
        }
    };
    info!("shutting down");
    if let Some(rpcbind) = rpcbind {
        rpcbind::unset(rpcbind, &nfs_programs()).await;
    }
    if let Some(nlm) = nlm {
        nlm.shutdown().await;
    }
    code
}
