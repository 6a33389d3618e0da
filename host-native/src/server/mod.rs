//! brlockd's NLM server: transports, the core task and callbacks.
//!
//! The shape (quinn's `ConnectionDriver`, the house style's model): TCP connection tasks and the UDP
//! task decode records (`intake`) and send each NLM call over a bounded queue (`shared::CoreMsg`) to
//! the **one task that owns the `Core`**, `driver::CoreDriver`. The driver only moves things, each
//! through a type that owns its state and has its own tests:
//! - `front_end::NlmFrontEnd` turns a call into an `Event` (with `dispatch`'s translations) after the
//!   host's own checks, and the core's actions into replies, `*_RES` calls and GRANTED callbacks;
//! - `client_hosts::ClientHosts` binds caller_names to addresses, tracks statd monitoring and
//!   forgets idle hosts;
//! - `persist_gate::PersistGate` holds each event's replies and callbacks until the batch of rows it
//!   wrote, and every earlier one, is durable in the [`PersistSink`].
//!
//! One timer armed from `poll_timeout()` sends `Event::Tick`. Time is monotonic milliseconds since
//! the server started. The host decides no lock semantics; it only checks what the core cannot see:
//! the source network, caller_name ↔ address binding and file handles.
//!
//! A failed persist batch makes the driver rebuild its core from the store (`Core::rebuild`, see
//! `persist.rs`); a fenced one (another instance took the store over) makes it refuse everything and
//! report [`Server::fatal`], on which brlockd exits.

pub mod accept_backoff;
pub mod admin;
pub mod callbacks;
pub(crate) mod client_hosts;
pub(crate) mod connections;
pub mod dispatch;
pub mod drc;
pub(crate) mod driver;
pub mod events;
pub mod file_handles;
pub(crate) mod flow;
pub(crate) mod front_end;
pub mod grant_replies;
pub mod http_endpoint;
pub mod intake;
pub(crate) mod labels;
pub mod notices;
pub(crate) mod nsm_mode;
pub mod nsm_service;
pub mod outbound;
pub(crate) mod outbound_calls;
pub mod persist;
pub(crate) mod persist_gate;
pub mod request_log;
pub mod rpcbind;
pub(crate) mod shared;
pub mod sockets;
pub mod startup;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::ServerConfig;
use crate::nlm::{NLM_PROGRAM, NlmProc, NlmVersion};
use drc::Drc;
pub use file_handles::{AcceptAllHandles, FileHandleCheck, FileHandleStatus};
use outbound::Transport;
pub use persist::{Durable, MemorySink, PersistBatch, PersistSink, Recovered, StorePersistSink};
pub(crate) use shared::stopped;
use shared::{CORE_QUEUE_INTERNAL, CoreMsg, Shared};
pub use sockets::{BindError, Sockets};
pub use startup::{Restored, StartError};

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    fatal: watch::Receiver<Option<String>>,
    done: JoinHandle<()>,
}

impl Server {
    /// Binds, registers with rpcbind (if configured and present) and starts serving, with the memory
    /// store and every file handle accepted.
    pub async fn start(config: ServerConfig) -> std::io::Result<Server> {
        Self::start_with(config, Box::new(MemorySink), Arc::new(AcceptAllHandles)).await
    }

    pub async fn start_with(
        config: ServerConfig,
        sink: Box<dyn PersistSink>,
        handles: Arc<dyn FileHandleCheck>,
    ) -> std::io::Result<Server> {
        let sockets = Sockets::bind(&config).await?;
        let restored = Restored {
            sink,
            ..Restored::fresh(&config)
        };
        Self::start_restored(config, sockets, restored, handles).await
    }

    /// Serves `restored` (usually from [`startup::restore`]) on `sockets`, first carrying out the
    /// restore's own actions, with persist batches going to its sink; then tells the client hosts
    /// it kept that brlockd restarted.
    pub async fn start_restored(
        config: ServerConfig,
        sockets: Sockets,
        restored: Restored,
        handles: Arc<dyn FileHandleCheck>,
    ) -> std::io::Result<Server> {
        let Sockets {
            tcp: listener,
            udp,
            metrics,
            endpoint,
        } = sockets;
        let local_addr = listener.local_addr()?;
        let udp = Arc::new(udp);
        for procedure in NlmProc::ALL {
            metrics.touch_request(
                labels::proc_label(procedure),
                labels::usual_status(procedure),
            );
        }
        let (core_tx, core_rx) = mpsc::channel(config.max_calls_in_flight + CORE_QUEUE_INTERNAL);
        let nsm = nsm_mode::resolve_nsm(&config).await;
        info!(
            mode = if nsm.builtin { "builtin" } else if nsm.statd.is_some() { "statd" } else { "none" },
            statd = ?nsm.statd,
            reboot_notices = nsm.notices,
            "NSM: {}", nsm.why
        );
        let shared = Arc::new(Shared {
            drc: Mutex::new(Drc::new(config.drc_size)),
            config: config.clone(),
            metrics: metrics.clone(),
            core_tx: core_tx.clone(),
            calls_in_flight: flow::CallsInFlight::new(config.max_calls_in_flight),
            connections: connections::ConnectionTable::new(
                config.connection_limits.max_connections,
            ),
            partial_bytes: connections::PartialBytes::new(
                config.connection_limits.max_partial_record_bytes,
            ),
            outbound: outbound_calls::OutboundCalls::new(config.max_outbound_calls),
            nsm_state: restored.nsm_state,
            nsm_builtin: nsm.builtin,
            gate: restored.gate.clone(),
        });
        if let Some(endpoint) = &endpoint {
            endpoint.attach(core_tx.clone());
        }
        if restored.gate.is_open() {
            metrics.leader.set(1);
        }
        let metrics_addr = endpoint.as_ref().map(|e| e.addr());

        let mut programs: rpcbind::Programs = vec![(
            NLM_PROGRAM,
            NlmVersion::ALL.iter().map(|&v| v as u32).collect(),
        )];
        if nsm.builtin {
            programs.push((crate::nsm::NSM_PROGRAM, vec![crate::nsm::NSM_VERSION]));
        }
        let registered = match config.rpcbind {
            Some(rpcbind) => {
                rpcbind::register(
                    rpcbind,
                    local_addr,
                    &programs,
                    &[Transport::Tcp, Transport::Udp],
                )
                .await
            }
            None => false,
        };
        let statd = nsm
            .statd
            .map(|addr| callbacks::statd_calls(shared.clone(), addr));

        let (fatal_tx, fatal) = watch::channel(None);
        let start = driver::Start {
            core: restored.core,
            shared: shared.clone(),
            sink: restored.sink,
            front_end: front_end::NlmFrontEnd::new(handles, metrics.clone(), &config.hostname),
            hosts: client_hosts::ClientHosts::new(
                config.max_client_hosts,
                config.unmonitor_idle,
                statd.is_some(),
            ),
            statd,
            fatal: fatal_tx,
        };
        let task = driver::CoreDriver::new(start, &restored.hosts, restored.actions);
        let core_task = tokio::spawn(task.run(core_rx));
        let (stop, stop_rx) = watch::channel(false);
        let tcp_task = tokio::spawn(tcp::accept_loop(listener, shared.clone(), stop_rx.clone()));
        let udp_task = tokio::spawn(udp::serve(udp, shared.clone(), stop_rx));
        info!(%local_addr, profile = config.profile.name(), store = %startup::redacted(&config.store), nsm_state = restored.nsm_state, "serving NLM v1, v3, v4 on tcp and udp");
        if nsm.notices {
            notices::spawn(
                notices::targets(&restored.hosts, config.notify_name.as_deref()),
                restored.nsm_state,
                config.portmap_port,
                config.notice_timing,
                shared.metrics.clone(),
            );
        }
        let instance_lock = restored.instance_lock;

        let done = tokio::spawn(async move {
            let _ = tcp_task.await;
            let _ = udp_task.await;
            let (dtx, drx) = oneshot::channel();
            if core_tx.send(CoreMsg::Shutdown(dtx)).await.is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(10), drx).await;
            }
            let _ = core_task.await;
            if let (true, Some(rpcbind)) = (registered, config.rpcbind) {
                rpcbind::unset(rpcbind, &programs).await;
            }
            if let Some(endpoint) = endpoint {
                endpoint.stop();
            }
            // Held until here: no second instance may start on the store while this one serves.
            drop(instance_lock);
            info!("stopped");
        });
        Ok(Server {
            local_addr,
            metrics_addr,
            stop,
            fatal,
            done,
        })
    }

    /// The bound address (TCP; UDP is on the same address and port).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Resolves with the reason once the server can no longer serve (its store was taken over by
    /// another instance: fenced). It then refuses every request; the caller should shut it down
    /// and exit non-zero. Never resolves otherwise.
    pub async fn fatal(&self) -> String {
        let mut rx = self.fatal.clone();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Stops accepting, finishes requests in flight, unregisters from rpcbind.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.done.await;
    }
}
