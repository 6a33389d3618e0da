//! The sockets a server listens on: NLM's TCP listener and UDP socket on one address and port, and
//! the HTTP endpoint (`--metrics`). They are bound before the store is touched, so that a second
//! instance that cannot listen never fences the one that serves.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use super::http_endpoint::HttpEndpoint;
use crate::config::ServerConfig;
use crate::metrics::Metrics;

/// Every socket a server listens on, bound before the store is touched (a second instance that
/// cannot listen must not fence the running one).
pub struct Sockets {
    pub(crate) tcp: TcpListener,
    pub(crate) udp: UdpSocket,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) endpoint: Option<HttpEndpoint>,
}

/// A listener that could not be bound: which one, where, and the setting that names it.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for {listener} on {addr}: {error}{hint} (change {setting})")]
pub struct BindError {
    /// `NLM (tcp)`, `NLM (udp)` or `metrics (http)`.
    pub listener: &'static str,
    pub setting: &'static str,
    pub addr: SocketAddr,
    pub error: std::io::Error,
    hint: &'static str,
}

impl BindError {
    fn new(
        listener: &'static str,
        setting: &'static str,
        addr: SocketAddr,
        error: std::io::Error,
    ) -> Self {
        let hint = match error.kind() {
            std::io::ErrorKind::AddrInUse if setting == "--listen" => {
                ": another program serves that port (the kernel's lockd? see docs/operations.md)"
            }
            std::io::ErrorKind::AddrInUse => ": another program serves that port",
            std::io::ErrorKind::AddrNotAvailable => ": no interface of this host has that address",
            std::io::ErrorKind::PermissionDenied => {
                ": ports below 1024 need root or CAP_NET_BIND_SERVICE"
            }
            _ => "",
        };
        BindError {
            listener,
            setting,
            addr,
            error,
            hint,
        }
    }
}

impl From<BindError> for std::io::Error {
    fn from(e: BindError) -> Self {
        std::io::Error::new(e.error.kind(), e.to_string())
    }
}

impl Sockets {
    pub async fn bind(config: &ServerConfig) -> Result<Sockets, BindError> {
        let (tcp, udp) = bind_pair(config.listen).await?;
        let metrics = Arc::new(Metrics::new());
        // No lease: this instance is the only one and serves (the sender may go; the value stays).
        let role = watch::channel(crate::leader::Role::Sole).1;
        let endpoint = Self::serve_http(config, metrics.clone(), role).await?;
        Ok(Sockets {
            tcp,
            udp,
            metrics,
            endpoint,
        })
    }

    /// Binds `--metrics` (if set) and serves HTTP there (`crate::http`): before the NLM sockets
    /// when a standby must be watchable while it waits. `role` answers `/readyz` until the core
    /// can.
    pub async fn serve_http(
        config: &ServerConfig,
        metrics: Arc<Metrics>,
        role: watch::Receiver<crate::leader::Role>,
    ) -> Result<Option<HttpEndpoint>, BindError> {
        let Some(addr) = config.metrics else {
            return Ok(None);
        };
        let error = |e| BindError::new("metrics (http)", "--metrics", addr, e);
        let listener = TcpListener::bind(addr).await.map_err(error)?;
        HttpEndpoint::spawn(listener, config, metrics, role)
            .map(Some)
            .map_err(error)
    }

    /// Binds NLM's sockets next to an HTTP endpoint already serving (a standby that took over).
    pub async fn bind_nlm(
        config: &ServerConfig,
        metrics: Arc<Metrics>,
        endpoint: Option<HttpEndpoint>,
    ) -> Result<Sockets, (BindError, Option<HttpEndpoint>)> {
        match bind_pair(config.listen).await {
            Ok((tcp, udp)) => Ok(Sockets {
                tcp,
                udp,
                metrics,
                endpoint,
            }),
            Err(e) => Err((e, endpoint)),
        }
    }

    /// The NLM address (TCP; UDP is on the same address and port).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// The metrics the server started on these sockets will keep.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}

/// A TCP listener and a UDP socket on the same address and port (for port 0, retried until a port
/// free on both is found).
async fn bind_pair(addr: SocketAddr) -> Result<(TcpListener, UdpSocket), BindError> {
    let mut last = None;
    for _ in 0..if addr.port() == 0 { 20 } else { 1 } {
        let tcp = |e| BindError::new("NLM (tcp)", "--listen", addr, e);
        let listener = TcpListener::bind(addr).await.map_err(tcp)?;
        let bound = listener.local_addr().map_err(tcp)?;
        match UdpSocket::bind(bound).await {
            Ok(udp) => return Ok((listener, udp)),
            Err(e) => last = Some(BindError::new("NLM (udp)", "--listen", bound, e)),
        }
    }
    Err(last.expect("at least one attempt"))
}
