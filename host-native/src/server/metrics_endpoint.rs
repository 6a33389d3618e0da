//! The metrics HTTP endpoint as a running task that can start before the core exists: a standby
//! (`leader.rs`) serves `brlock_leader 0` while it waits, and the core's statistics join in once
//! the server that owns the core has started ([`MetricsEndpoint::attach`]).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::CoreMsg;
use crate::metrics::{Metrics, StatsSource};

/// `/metrics` being served from `metrics`.
pub struct MetricsEndpoint {
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    core: Arc<OnceLock<mpsc::UnboundedSender<CoreMsg>>>,
    task: JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Starts serving on `listener`; the core's statistics read as zero until `attach`.
    pub fn spawn(listener: TcpListener, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let core: Arc<OnceLock<mpsc::UnboundedSender<CoreMsg>>> = Arc::default();
        let late = core.clone();
        let source: StatsSource = Arc::new(move || {
            let tx = late.get().cloned();
            Box::pin(async move {
                let (otx, orx) = oneshot::channel();
                tx?.send(CoreMsg::Stats(otx)).ok()?;
                orx.await.ok()
            })
        });
        let task = tokio::spawn(crate::metrics::serve(listener, metrics.clone(), source));
        Ok(MetricsEndpoint {
            addr,
            metrics,
            core,
            task,
        })
    }

    /// From now on scrapes include the core's statistics, asked of the core task over `core_tx`.
    pub(crate) fn attach(&self, core_tx: mpsc::UnboundedSender<CoreMsg>) {
        let _ = self.core.set(core_tx);
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stops serving.
    pub fn stop(self) {
        self.task.abort();
    }
}
