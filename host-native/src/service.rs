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

use brlock_core::{Limits, Profile};
use ipnet::IpNet;

use crate::config::ServerConfig;
use crate::server::startup::{self, StartError};
use crate::server::{AcceptAllHandles, FileHandleCheck, Server, Sockets};
use crate::store::{Store, StoreError};

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

    /// The whole configuration, for settings without a method of their own.
    pub fn config_mut(&mut self) -> &mut ServerConfig {
        &mut self.config
    }

    /// Binds every socket, then (and only then: an instance that cannot listen must not touch,
    /// and so fence, the store) opens the store, restores its locks into the grace period and
    /// serves.
    pub async fn start(self) -> Result<NlmService, ServiceError> {
        let config = self.config;
        let listen = config.listen;
        let sockets = Sockets::bind(&config).await?;
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
        Ok(NlmService { server, store })
    }
}

/// A running NLM service. Dropping it does not stop it; call [`NlmService::shutdown`].
pub struct NlmService {
    server: Server,
    store: Option<Arc<Store>>,
}

impl NlmService {
    /// Starts from `config` (e.g. [`ServerConfig::defaults`] or brlockd's parsed flags), with every
    /// file handle accepted until [`NlmServiceBuilder::file_handles`] says otherwise.
    pub fn builder(config: ServerConfig) -> NlmServiceBuilder {
        NlmServiceBuilder {
            config,
            handles: Arc::new(AcceptAllHandles),
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
        self.server.fatal().await
    }

    /// Stops serving, finishes what is in flight, unregisters from rpcbind, closes the store.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
        if let Some(store) = self.store {
            store.close().await;
        }
    }
}
