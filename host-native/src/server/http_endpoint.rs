//! brlockd's HTTP listener (`--metrics`: /metrics and the admin endpoints of `crate::http`) as a
//! running task that can start before the core exists: a standby (`leader.rs`) is scraped and asked
//! `/readyz` while it waits, and the core's answers join in once the server that owns the core has
//! started ([`HttpEndpoint::attach`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::admin::CoreQueries;
use super::shared::CoreMsg;
use crate::config::ServerConfig;
use crate::http::HttpContext;
use crate::leader::Role;
use crate::metrics::Metrics;

/// The HTTP routes being served, from `metrics` and (once attached) the core task.
pub struct HttpEndpoint {
    addr: SocketAddr,
    core: CoreQueries,
    task: JoinHandle<()>,
}

impl HttpEndpoint {
    /// Starts serving on `listener`; questions for the core find none until `attach` (the
    /// metrics read the core's statistics as zero, the admin listings answer 503).
    pub fn spawn(
        listener: TcpListener,
        config: &ServerConfig,
        metrics: Arc<Metrics>,
        role: watch::Receiver<Role>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let core = CoreQueries::unattached();
        let context = HttpContext {
            metrics,
            core: core.clone(),
            settings: Arc::new(config.settings.clone()),
            role,
            live: Arc::new(crate::http_events::LiveHttp::new(
                core.clone(),
                config.web_root.clone(),
            )),
        };
        let router = Arc::new(crate::http::routes(&context));
        let task = tokio::spawn(crate::http::serve(listener, router));
        Ok(HttpEndpoint { addr, core, task })
    }

    /// From now on the routes ask the core task over `core_tx`.
    pub(crate) fn attach(&self, core_tx: mpsc::Sender<CoreMsg>) {
        self.core.attach(core_tx);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving.
    pub fn stop(self) {
        self.task.abort();
    }
}
