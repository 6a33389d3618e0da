//! The NLM service as a library: everything `brlockd` serves — NLM v1/v3/v4 on TCP and UDP,
//! GRANTED callbacks, NSM, rpcbind registration, the durable store and its grace period,
//! metrics — started inside another tokio program with a few lines. `brlockd` is one user of it;
//! `brlock-nfsd` (an NFSv3 server that locks through it) is the other.
//!
//! ```no_run
//! use brlock_native::config::ServerConfig;
//! use brlock_native::server::{FileHandleCheck, FileHandleStatus};
//! use brlock_native::service::NlmService;
//!
//! /// The NFS server's own view of its handles: NLM locks only what it issued.
//! struct MyExports;
//! impl FileHandleCheck for MyExports {
//!     fn check(&self, fh: &[u8]) -> FileHandleStatus {
//!         if fh.len() == 16 { FileHandleStatus::Valid } else { FileHandleStatus::Stale }
//!     }
//! }
//!
//! # async fn run() -> Result<(), brlock_native::service::ServiceError> {
//! let service = NlmService::builder(ServerConfig::defaults())
//!     .listen("127.0.0.1:4045".parse().unwrap())
//!     .store("sqlite://./locks.db")
//!     .rpcbind(Some("127.0.0.1:111".parse().unwrap()))
//!     .file_handles(MyExports)
//!     .start()
//!     .await?;
//! println!("NLM on {}", service.local_addr());
//! // … serve NFS; at the end:
//! service.shutdown().await;
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brlock_core::{Limits, Profile};
use ipnet::IpNet;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::ServerConfig;
use crate::leader::{Leadership, LeaseSettings, Role};
use crate::metrics::Metrics;
use crate::server::http_endpoint::HttpEndpoint;
use crate::server::startup::{self, StartError};
use crate::server::{AcceptAllHandles, BindError, FileHandleCheck, Server, Sockets};
use crate::store::{Store, StoreError};

/// How long a new leader waits for `--listen` to come free (the old leader on the same host may
/// still hold it until it notices it lost the lease and exits) before it gives the lease up.
const BIND_PATIENCE: Duration = Duration::from_secs(60);

/// Why the service did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The store could not be opened, or its records restored.
    #[error("--store {store}: {error}")]
    Store { store: String, error: StartError },
    /// A socket could not be bound (the store was not touched); the error names the listener
    /// and its setting.
    #[error(transparent)]
    Listen(#[from] crate::server::BindError),
    /// The bound sockets could not be put to work.
    #[error("cannot serve: {error}")]
    Serve { error: std::io::Error },
}

impl ServiceError {
    /// The exit code a program that cannot go on without the service should end with:
    /// 2 for a setting that can never work (a malformed store URL), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServiceError::Store {
                error: StartError::Store(StoreError::InvalidUrl { .. }),
                ..
            } => 2,
            _ => 1,
        }
    }
}

/// Settings for one NLM service; see [`NlmService::builder`].
pub struct NlmServiceBuilder {
    config: ServerConfig,
    handles: Arc<dyn FileHandleCheck>,
    role: watch::Sender<Role>,
}

impl NlmServiceBuilder {
    /// Where NLM is served, on TCP and UDP (port 0: a free port, the same for both).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.config.listen = addr;
        self
    }

    /// `sqlite://PATH`, `postgres://…` or `memory` (nothing survives a restart).
    pub fn store(mut self, url: impl Into<String>) -> Self {
        self.config.store = url.into();
        self
    }

    /// Lock-manager semantics preset; keeps the grace period and limits set so far.
    pub fn profile(mut self, profile: Profile) -> Self {
        let mut core = profile.config();
        core.grace = self.config.core.grace;
        core.limits = self.config.core.limits.clone();
        self.config.core = core;
        self.config.profile = profile;
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.core.limits = limits;
        self
    }

    /// The rpcbind to register NLM with, or `None`.
    pub fn rpcbind(mut self, rpcbind: Option<SocketAddr>) -> Self {
        self.config.rpcbind = rpcbind;
        self
    }

    /// Source networks allowed to call.
    pub fn allow(mut self, nets: Vec<IpNet>) -> Self {
        self.config.allow = nets;
        self
    }

    /// The NFS server's check of NLM file handles: a handle it did not issue (or whose file is
    /// gone) is answered NLM4_STALE_FH, a directory NLM4_FAILED, before the lock manager sees it.
    pub fn file_handles(mut self, check: impl FileHandleCheck) -> Self {
        self.handles = Arc::new(check);
        self
    }

    /// What this instance is (standby, leader, …) from now on, also while `start` waits as a
    /// standby: for a readiness check (`Role::serves`).
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    /// The whole configuration, for settings without a method of their own.
    pub fn config_mut(&mut self) -> &mut ServerConfig {
        &mut self.config
    }

    /// Binds every socket, then (and only then: an instance that cannot listen must not touch,
    /// and so fence, the store) opens the store, restores its locks into the grace period and
    /// serves.
    ///
    /// On a PostgreSQL store this first waits, as a standby, until this instance holds the
    /// leadership lease (`leader.rs`); see [`NlmServiceBuilder::start_by_lease`].
    pub async fn start(self) -> Result<NlmService, ServiceError> {
        if startup::shared_store(&self.config.store) {
            return self.start_by_lease().await;
        }
        let config = self.config;
        let listen = config.listen;
        let sockets = Sockets::bind(&config).await?;
        let _ = self.role.send(Role::Sole);
        let bound = sockets.local_addr().unwrap_or(listen);
        let holder = format!("pid {}, listening on {bound}", std::process::id());
        let restored =
            startup::restore(&config, &holder)
                .await
                .map_err(|error| ServiceError::Store {
                    store: startup::redacted(&config.store),
                    error,
                })?;
        let store = restored.store.clone();
        let server = Server::start_restored(config, sockets, restored, self.handles)
            .await
            .map_err(|error| ServiceError::Serve { error })?;
        Ok(NlmService {
            server,
            store,
            leadership: None,
            role: self.role.subscribe(),
        })
    }

    /// The PostgreSQL start: serve metrics (a standby is watched too), open the store, wait as a
    /// standby until the lease is ours, bind `--listen` (waiting a while for an old leader on this
    /// host to let go of it), then begin a new epoch — fencing every older writer — restore into
    /// grace and serve. The lease is only taken, never the epoch, by an instance that then cannot
    /// listen: it gives the lease back and fails.
    async fn start_by_lease(self) -> Result<NlmService, ServiceError> {
        let config = self.config;
        let store_error = |error: StartError| ServiceError::Store {
            store: startup::redacted(&config.store),
            error,
        };
        let metrics = Arc::new(Metrics::new());
        let endpoint = Sockets::serve_http(&config, metrics.clone(), self.role.subscribe()).await?;
        if let Some(e) = &endpoint {
            info!(addr = %e.addr(), "metrics on {}", e.addr());
        }
        let store = Arc::new(
            Store::open(&config.store)
                .await
                .map_err(|e| store_error(e.into()))?,
        );
        let lease = store
            .lease()
            .expect("shared_store names only PostgreSQL, which has a lease");
        let settings = LeaseSettings {
            lease: config.lease,
            holder: format!(
                "pid {} on {}, serving {}",
                std::process::id(),
                config.hostname,
                config.listen
            ),
        };
        let _ = self.role.send(Role::Standby {
            leader: String::new(),
            since: String::new(),
        });
        let leadership = Leadership::acquire(lease, settings, metrics.clone(), self.role.clone())
            .await
            .map_err(|e| store_error(e.into()))?;
        let sockets = match bind_when_free(&config, metrics, endpoint, &leadership).await {
            Ok(s) => s,
            Err(e) => {
                leadership.step_down().await;
                return Err(e.into());
            }
        };
        let mut restored = match startup::restore_opened(&config, store.clone()).await {
            Ok(r) => r,
            Err(e) => {
                leadership.step_down().await;
                return Err(store_error(e));
            }
        };
        restored.gate = leadership.gate();
        let server = Server::start_restored(config, sockets, restored, self.handles)
            .await
            .map_err(|error| ServiceError::Serve { error })?;
        Ok(NlmService {
            server,
            store: Some(store),
            leadership: Some(leadership),
            role: self.role.subscribe(),
        })
    }
}

/// Binds NLM's sockets, retrying while the address is in use and the lease is held, for up to
/// [`BIND_PATIENCE`]. The old leader's connections left in TIME_WAIT do not hold the port: tokio's
/// `TcpListener::bind` sets SO_REUSEADDR (mio does, on Unix); only a live process (a paused old
/// leader on this host) does, until it exits.
async fn bind_when_free(
    config: &ServerConfig,
    metrics: Arc<Metrics>,
    mut endpoint: Option<HttpEndpoint>,
    leadership: &Leadership,
) -> Result<Sockets, BindError> {
    let started = Instant::now();
    let mut waited = false;
    loop {
        match Sockets::bind_nlm(config, metrics.clone(), endpoint).await {
            Ok(sockets) => return Ok(sockets),
            Err((e, back)) => {
                endpoint = back;
                let in_use = e.error.kind() == std::io::ErrorKind::AddrInUse;
                if !in_use || !leadership.holds() || started.elapsed() >= BIND_PATIENCE {
                    if let Some(endpoint) = endpoint {
                        endpoint.stop();
                    }
                    return Err(e);
                }
                if !waited {
                    warn!(addr = %config.listen, "leader: {e}; waiting for the old leader to let go of it");
                    waited = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why a running service stopped serving on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fatal {
    /// A newer instance began an epoch on the store: its writes are refused.
    Fenced(String),
    /// The leadership lease ran out or was taken over.
    LeaseLost(String),
}

impl Fatal {
    pub fn reason(&self) -> &str {
        match self {
            Fatal::Fenced(r) | Fatal::LeaseLost(r) => r,
        }
    }

    /// brlockd's exit code for it: 3 fenced, 4 lease lost.
    pub fn exit_code(&self) -> u8 {
        match self {
            Fatal::Fenced(_) => 3,
            Fatal::LeaseLost(_) => 4,
        }
    }
}

/// A running NLM service. Dropping it does not stop it; call [`NlmService::shutdown`].
pub struct NlmService {
    server: Server,
    store: Option<Arc<Store>>,
    /// Held on a PostgreSQL store: the lease this instance serves under.
    leadership: Option<Leadership>,
    role: watch::Receiver<Role>,
}

impl NlmService {
    /// Starts from `config` (e.g. [`ServerConfig::defaults`] or brlockd's parsed flags), with every
    /// file handle accepted until [`NlmServiceBuilder::file_handles`] says otherwise.
    pub fn builder(config: ServerConfig) -> NlmServiceBuilder {
        NlmServiceBuilder {
            config,
            handles: Arc::new(AcceptAllHandles),
            role: watch::channel(Role::Standby {
                leader: String::new(),
                since: String::new(),
            })
            .0,
        }
    }

    /// The bound NLM address (TCP; UDP is on the same address and port).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.metrics_addr()
    }

    /// Resolves with the reason once the service can no longer serve (another instance took its
    /// store over); the program should then shut it down and exit non-zero.
    pub async fn fatal(&self) -> String {
        self.stopped_serving().await.reason().to_owned()
    }

    /// [`NlmService::fatal`] with its cause: fenced, or the leadership lease lost.
    pub async fn stopped_serving(&self) -> Fatal {
        let lease_lost = async {
            match &self.leadership {
                Some(l) => l.lost().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            reason = self.server.fatal() => Fatal::Fenced(reason),
            reason = lease_lost => Fatal::LeaseLost(reason),
        }
    }

    /// Leader, standby or stepped down, as it changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Stops serving, finishes what is in flight, unregisters from rpcbind, gives the leadership
    /// lease up (a standby takes over at once), closes the store.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        if let Some(leadership) = self.leadership {
            leadership.step_down().await;
        }
        if let Some(store) = self.store {
            store.close().await;
        }
    }
}
