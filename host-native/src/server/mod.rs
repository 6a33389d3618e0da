//! brlockd's NLM server: transports, the core task and callbacks.
//!
//! The shape (quinn's `ConnectionDriver`, the house style's model): TCP connection tasks and the UDP
//! task decode records (`intake`) and send each NLM call over an mpsc to the **one task that owns
//! the `Core`**.
//! That task turns the call into an `Event` (`dispatch`), calls `Core::handle`, and carries out the
//! actions in order: persist batches go to the [`PersistSink`]; replies (found by `RequestId`) and
//! GRANTED callbacks wait until their batch is durable; one timer armed from `poll_timeout()` sends
//! `Event::Tick`. Time is monotonic milliseconds since the server started. The host decides no lock
//! semantics; it only checks what the core cannot see: the source network, caller_name ↔ address
//! binding and file handles.
//!
//! A failed persist batch makes the task rebuild its core from the store (see `persist.rs`); a
//! fenced one (another instance took the store over) makes it refuse everything and report
//! [`Server::fatal`], on which brlockd exits.

pub mod accept_backoff;
pub mod admin;
pub mod callbacks;
pub(crate) mod connections;
pub mod dispatch;
pub mod drc;
pub mod events;
pub(crate) mod flow;
pub mod grant_replies;
pub mod host_churn;
pub mod http_endpoint;
pub mod intake;
pub mod notices;
pub mod nsm_service;
pub mod outbound;
pub(crate) mod outbound_calls;
pub mod persist;
pub mod request_log;
pub mod rpcbind;
pub mod startup;
pub mod tcp;
pub mod udp;

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use brlock_core::{
    Action, CallbackResult, ClientId, Core, Event, FileId, LockRecord, Outcome, RequestId,
    WaiterId, WaiterRemovedReason,
};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{NsmMode, ServerConfig, StatdSetting};
use crate::metrics::{Metrics, StoreFailureLabels};
use crate::nlm::{
    self, Lock, NLM_PROGRAM, NlmCall, NlmProc, NlmReply, NlmVersion, Res, ShareRes, Stat, TestArgs,
    TestRes,
};
use crate::nsm::StatChange;
use crate::rpc::{AcceptStat, Reply, encode_reply};
use dispatch::GrantCookie;
use drc::Drc;
use intake::CallCtx;
use outbound::Transport;
pub use persist::{Durable, MemorySink, PersistBatch, PersistSink, Recovered, StorePersistSink};
pub use startup::{Restored, StartError};

use crate::store::{ClientHost, HostWrite, StoreError};

/// What a file handle names, as far as the host can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileHandleStatus {
    Valid,
    /// Not (or no longer) a file: NLM4_STALE_FH.
    Stale,
    /// A directory or other non-regular file: NLM4_FAILED (v1/v3: DENIED_NOLOCKS).
    NotRegular,
}

/// Checks NLM file handles before the core sees them (an NFS server plugs in its export table here).
pub trait FileHandleCheck: Send + Sync + 'static {
    fn check(&self, fh: &[u8]) -> FileHandleStatus;
}

/// Accepts every handle as a regular file: brlockd alone knows no file system.
#[derive(Debug, Default)]
pub struct AcceptAllHandles;

impl FileHandleCheck for AcceptAllHandles {
    fn check(&self, _fh: &[u8]) -> FileHandleStatus {
        FileHandleStatus::Valid
    }
}

/// Messages to the core task.
pub(crate) enum CoreMsg {
    Call {
        ctx: Box<CallCtx>,
        call: NlmCall,
    },
    CallbackOutcome {
        waiter: WaiterId,
        result: CallbackResult,
        attempt: u32,
    },
    GrantedMsgExpired {
        waiter: WaiterId,
        attempt: u32,
    },
    Durable {
        batch: u64,
        result: Result<(), StoreError>,
    },
    /// What `PersistSink::recover` read back.
    Recovered(Result<(Vec<LockRecord>, Vec<brlock_core::ShareRecord>), StoreError>),
    /// SM_NOTIFY to the built-in NSM: the host `notice.mon_name` rebooted, says `peer`.
    ClientRebooted {
        peer: SocketAddr,
        notice: StatChange,
    },
    /// Time to call `PersistSink::recover` again.
    RetryRecover,
    /// A read-only question from the HTTP task (`admin::CoreQueries::ask`).
    Inspect(admin::Inspect),
    Shutdown(oneshot::Sender<()>),
}

/// Room in the core task's queue besides the calls in flight: callback outcomes, durable batches,
/// timers and the like, whose senders wait for room.
pub(crate) const CORE_QUEUE_INTERNAL: usize = 1024;

/// What every task of one server shares.
pub(crate) struct Shared {
    pub config: ServerConfig,
    pub metrics: Arc<Metrics>,
    /// Bounded (`--max-calls-in-flight` plus [`CORE_QUEUE_INTERNAL`]): see `flow.rs`.
    pub core_tx: mpsc::Sender<CoreMsg>,
    pub calls_in_flight: flow::CallsInFlight,
    pub connections: Arc<connections::ConnectionTable>,
    pub partial_bytes: Arc<connections::PartialBytes>,
    /// Callbacks, `*_RES`, GETPORT and statd calls: shared UDP sockets, `--max-outbound-calls`.
    pub outbound: outbound_calls::OutboundCalls,
    drc: Mutex<Drc>,
    /// brlockd's NSM state number for this run.
    pub nsm_state: u32,
    /// `--nsm builtin` (resolved): NSM calls are answered on the NLM port.
    pub nsm_builtin: bool,
    /// Checked right before anything is sent to a client: shut once this instance's leadership
    /// lease has run out (`leader.rs`); always open without one.
    pub gate: Arc<crate::leader::LeaseGate>,
}

impl Shared {
    pub(crate) fn drc_lock(&self) -> MutexGuard<'_, Drc> {
        self.drc.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends an NLM result as the SUCCESS reply to `ctx`.
    pub(crate) fn reply_nlm(&self, ctx: &CallCtx, reply: &NlmReply, status: &str) {
        let mut results = Vec::new();
        let rpc = match nlm::encode_reply(ctx.version, reply, &mut results) {
            Ok(()) => Reply::success(ctx.xid, results),
            Err(e) => {
                warn!(peer = %ctx.peer, error = %e, "cannot encode NLM reply");
                Reply::accepted(ctx.xid, AcceptStat::SystemErr)
            }
        };
        let mut out = Vec::new();
        if encode_reply(&rpc, &mut out).is_ok() {
            self.send_reply(&ctx.reply_to, ctx.peer, ctx.drc.as_ref(), &out);
        }
        // A *_MSG call's immediate void reply: its line comes with its result (`answer`).
        if status != "accepted" {
            request_log::answered(ctx, status);
        }
        self.metrics
            .observe_request(proc_label(ctx.procedure), status, ctx.received.elapsed());
    }
}

/// Resolves once `stop` says true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    fatal: watch::Receiver<Option<String>>,
    done: JoinHandle<()>,
}

/// Every socket a server listens on, bound before the store is touched (a second instance that
/// cannot listen must not fence the running one).
pub struct Sockets {
    tcp: TcpListener,
    udp: UdpSocket,
    metrics: Arc<Metrics>,
    endpoint: Option<http_endpoint::HttpEndpoint>,
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
    ) -> Result<Option<http_endpoint::HttpEndpoint>, BindError> {
        let Some(addr) = config.metrics else {
            return Ok(None);
        };
        let error = |e| BindError::new("metrics (http)", "--metrics", addr, e);
        let listener = TcpListener::bind(addr).await.map_err(error)?;
        http_endpoint::HttpEndpoint::spawn(listener, config, metrics, role)
            .map(Some)
            .map_err(error)
    }

    /// Binds NLM's sockets next to an HTTP endpoint already serving (a standby that took over).
    pub async fn bind_nlm(
        config: &ServerConfig,
        metrics: Arc<Metrics>,
        endpoint: Option<http_endpoint::HttpEndpoint>,
    ) -> Result<Sockets, (BindError, Option<http_endpoint::HttpEndpoint>)> {
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

/// `--nsm` as resolved at start, with the reason for the log.
struct NsmResolved {
    builtin: bool,
    statd: Option<SocketAddr>,
    notices: bool,
    why: String,
}

async fn resolve_nsm(config: &ServerConfig) -> NsmResolved {
    let registered = || async {
        let rpcbind = config.rpcbind?;
        let port = outbound::getport(
            rpcbind,
            crate::nsm::NSM_PROGRAM,
            crate::nsm::NSM_VERSION,
            Transport::Udp,
            Duration::from_secs(1),
        )
        .await
        .ok()
        .filter(|&p| p != 0)?;
        let addr = SocketAddr::new(rpcbind.ip(), port);
        // A crashed brlockd with the built-in NSM leaves its mapping behind, and a live one answers
        // NLM on the same port: neither is a statd to use.
        let answers = |program: u32, version: u32| async move {
            outbound::call(
                Transport::Udp,
                addr,
                (program, version, 0),
                &[],
                Duration::from_secs(1),
                true,
            )
            .await
            .is_ok()
        };
        if !answers(crate::nsm::NSM_PROGRAM, crate::nsm::NSM_VERSION).await {
            info!(%addr, "rpcbind names an NSM that does not answer (a stale mapping): ignored");
            return None;
        }
        if answers(NLM_PROGRAM, NlmVersion::V4 as u32).await {
            info!(%addr, "the NSM rpcbind names is another brlockd's built-in one: ignored");
            return None;
        }
        Some(addr)
    };
    let statd_at = |addr: SocketAddr, why: String| NsmResolved {
        builtin: false,
        statd: Some(addr),
        notices: true,
        why,
    };
    let builtin = |why: String| NsmResolved {
        builtin: true,
        statd: None,
        notices: true,
        why,
    };
    match (config.nsm, config.statd) {
        (NsmMode::None, _) => NsmResolved {
            builtin: false,
            statd: None,
            notices: false,
            why: "--nsm none: client reboots go unnoticed and no reboot notices are sent".into(),
        },
        (NsmMode::Builtin, _) => builtin("--nsm builtin".into()),
        (NsmMode::Statd | NsmMode::Auto, StatdSetting::At(addr)) => {
            statd_at(addr, format!("--statd {addr}"))
        }
        (NsmMode::Statd, _) => match registered().await {
            Some(addr) => statd_at(addr, format!("--nsm statd; rpcbind knows statd at {addr}")),
            None => NsmResolved {
                builtin: false,
                statd: None,
                notices: true,
                why: "--nsm statd, but rpcbind knows no statd: client reboots go unnoticed".into(),
            },
        },
        (NsmMode::Auto, StatdSetting::Disabled) => builtin("--statd none: no statd to use".into()),
        (NsmMode::Auto, StatdSetting::Discover) => match registered().await {
            Some(addr) => statd_at(
                addr,
                format!("another statd is registered with rpcbind (at {addr})"),
            ),
            None if config.rpcbind.is_some() => {
                builtin("no live statd is registered with rpcbind".into())
            }
            None => builtin("--rpcbind none: no statd to find".into()),
        },
    }
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
            metrics.touch_request(proc_label(procedure), usual_status(procedure));
        }
        let (core_tx, core_rx) = mpsc::channel(config.max_calls_in_flight + CORE_QUEUE_INTERNAL);
        let nsm = resolve_nsm(&config).await;
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
        let mut task = CoreTask {
            core: restored.core,
            start: Instant::now(),
            shared: shared.clone(),
            sink: restored.sink,
            handles,
            statd,
            next_request: 1,
            next_batch: 0,
            pending: HashMap::new(),
            held: VecDeque::new(),
            callers: HashMap::new(),
            monitored: HashMap::new(),
            host_writes: Vec::new(),
            host_churn: Default::default(),
            granted_msg: grant_replies::GrantReplies::new(),
            blocked_since: HashMap::new(),
            out: Vec::new(),
            failed_from: None,
            recovering: false,
            fenced: None,
            fatal: fatal_tx,
            durable: persist::watch_durable(
                core_tx.clone(),
                shared.metrics.clone(),
                config.max_calls_in_flight + CORE_QUEUE_INTERNAL,
            ),
            store_failures: 0,
            tap: events::EventTap::default(),
        };
        task.restore_hosts(&restored.hosts);
        task.after_event(restored.actions);
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

/// A request waiting for its `Action::Reply`.
struct Pending {
    ctx: CallCtx,
    cookie: Vec<u8>,
}

/// One event's actions, held until their persist batch (and every earlier one) is durable.
struct Held {
    batch: u64,
    actions: Vec<Action>,
    ready: bool,
}

/// A client host statd monitors for us.
struct Monitored {
    /// The NSM state its latest monitored LOCK carried.
    state: u32,
    /// Its latest request naming a lock or share.
    last_seen: Instant,
    /// SM_MON for it went to the local statd (`--nsm statd`).
    statd: bool,
}

/// Where a caller_name's calls come from, and the address of ours they arrived at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bound {
    ip: IpAddr,
    local: IpAddr,
}

/// How long to wait before asking a store that failed again.
const RECOVER_RETRY: Duration = Duration::from_millis(500);

struct CoreTask {
    core: Core,
    start: Instant,
    shared: Arc<Shared>,
    sink: Box<dyn PersistSink>,
    handles: Arc<dyn FileHandleCheck>,
    /// The queue of SM_MON/SM_UNMON calls to the local statd, if there is one.
    statd: Option<mpsc::Sender<callbacks::StatdCall>>,
    next_request: u64,
    next_batch: u64,
    pending: HashMap<RequestId, Pending>,
    held: VecDeque<Held>,
    /// caller_name → the address it first called from (restored from the store after a restart).
    callers: HashMap<Vec<u8>, Bound>,
    /// Client hosts statd was asked to monitor (SM_MON), by caller_name.
    monitored: HashMap<Vec<u8>, Monitored>,
    /// Changes to `callers`/`monitored` for the store, written with the next persist batch.
    host_writes: Vec<HostWrite>,
    /// Hosts bound by the call in hand, and the table's bound (`host_churn.rs`).
    host_churn: host_churn::HostChurn,
    /// GRANTED_MSG callbacks waiting for their GRANTED_RES.
    granted_msg: grant_replies::GrantReplies,
    /// Waiters whose LOCK was answered BLOCKED → when (for the "granted after waiting" line).
    blocked_since: HashMap<WaiterId, Instant>,
    out: Vec<Action>,
    /// The first batch that failed: its event's and every later event's replies become failures,
    /// until the core is rebuilt from the store.
    failed_from: Option<u64>,
    /// Rebuilding the core from the store: events are not handed to the core meanwhile.
    recovering: bool,
    /// Another instance took the store over: nothing is served any more.
    fenced: Option<StoreError>,
    fatal: watch::Sender<Option<String>>,
    /// Batches waiting to be durable, to the task that tells us when they are.
    durable: mpsc::Sender<persist::Submitted>,
    store_failures: u64,
    /// `GET /events` subscribers' feed (events.rs).
    tap: events::EventTap,
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// `stat`'s metrics label (`{stat:?}` in lower case), formatted once per process rather than per
/// reply.
fn status_name(stat: Stat) -> &'static str {
    static NAMES: std::sync::OnceLock<Vec<(Stat, String)>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        Stat::ALL
            .iter()
            .map(|&s| (s, format!("{s:?}").to_lowercase()))
            .collect()
    });
    names
        .iter()
        .find(|(s, _)| *s == stat)
        .map_or("unknown", |(_, n)| n)
}

/// The status most calls of `procedure` are answered with: its request series exists from the
/// start with this label (other statuses appear with their first call).
fn usual_status(procedure: NlmProc) -> &'static str {
    match procedure {
        _ if CoreTask::is_msg(procedure) => "accepted",
        // A server has no blocked request of its own to match (see `on_call`).
        NlmProc::Granted => status_name(Stat::Denied),
        p if p.reply_shape() == nlm::ReplyShape::Void => "ok",
        _ => status_name(Stat::Granted),
    }
}

/// `procedure`'s metrics label (`{procedure:?}` in lower case), formatted once per process.
pub(crate) fn proc_label(procedure: NlmProc) -> &'static str {
    static NAMES: std::sync::OnceLock<Vec<(NlmProc, String)>> = std::sync::OnceLock::new();
    let names = NAMES.get_or_init(|| {
        NlmProc::ALL
            .iter()
            .map(|&p| (p, format!("{p:?}").to_lowercase()))
            .collect()
    });
    names
        .iter()
        .find(|(p, _)| *p == procedure)
        .map_or("unknown", |(_, n)| n)
}

impl CoreTask {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    async fn run(mut self, mut rx: mpsc::Receiver<CoreMsg>) {
        let mut stopping: Option<oneshot::Sender<()>> = None;
        // Half the idle time: a host is unmonitored between 1 and 1.5 idle times after it went quiet.
        let mut unmonitor_sweep = tokio::time::interval(
            (self.shared.config.unmonitor_idle / 2).max(Duration::from_millis(1)),
        );
        unmonitor_sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if stopping.is_some() && self.held.is_empty() {
                break;
            }
            let deadline = self.core.poll_timeout().map(|at| {
                tokio::time::Instant::from_std(self.start + Duration::from_millis(at.as_millis()))
            });
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() && self.serving() => {
                    self.handle(Event::Tick);
                    continue;
                }
                _ = unmonitor_sweep.tick(), if !self.callers.is_empty() && self.serving() => {
                    self.unmonitor_idle();
                    self.forget_unbound_callers();
                    self.flush_host_writes();
                    continue;
                }
            };
            match msg {
                None => break,
                Some(CoreMsg::Shutdown(done)) => stopping = Some(done),
                Some(CoreMsg::Inspect(ask)) => ask(&self.view()),
                Some(CoreMsg::Call { ctx, call }) => {
                    self.on_call(*ctx, call);
                    self.forget_fresh_host_if_idle();
                    // A binding made by a call the core never saw (refused on its file handle).
                    self.flush_host_writes();
                }
                // The core these belong to is being replaced (its waiters are gone) or retired.
                Some(
                    CoreMsg::CallbackOutcome { waiter, .. }
                    | CoreMsg::GrantedMsgExpired { waiter, .. },
                ) if !self.serving() => {
                    debug!(
                        waiter = waiter.0,
                        "callback outcome dropped: the core is being rebuilt"
                    );
                }
                Some(CoreMsg::CallbackOutcome {
                    waiter,
                    result,
                    attempt,
                }) => {
                    debug!(waiter = waiter.0, attempt, ?result, "callback outcome");
                    self.handle(Event::CallbackOutcome { waiter, result })
                }
                Some(CoreMsg::GrantedMsgExpired { waiter, attempt }) => {
                    if self.granted_msg.expired(waiter, attempt) {
                        info!(waiter = waiter.0, "no GRANTED_RES in time");
                        self.handle(Event::CallbackOutcome {
                            waiter,
                            result: CallbackResult::Failed,
                        });
                    }
                }
                Some(CoreMsg::Durable { batch, result }) => {
                    match result {
                        // Batches become durable in order: every one up to `batch` is.
                        Ok(()) => {
                            for h in self.held.iter_mut().take_while(|h| h.batch <= batch) {
                                h.ready = true;
                            }
                        }
                        Err(e) => {
                            self.persist_failed(batch, e);
                            // `held` is in batch order, and thousands deep under pipelined load.
                            if let Ok(i) = self.held.binary_search_by_key(&batch, |h| h.batch) {
                                self.held[i].ready = true;
                            }
                        }
                    }
                    self.drain_held();
                }
                Some(CoreMsg::Recovered(result)) => self.recovered(result),
                Some(CoreMsg::ClientRebooted { peer, notice }) => {
                    self.client_rebooted(peer, notice)
                }
                Some(CoreMsg::RetryRecover) => self.start_recovery(),
            }
        }
        if let Some(done) = stopping {
            let _ = done.send(());
        }
    }

    fn handle(&mut self, event: Event) {
        if !self.serving() {
            debug!(
                ?event,
                "event dropped: the core is being rebuilt from the store, or fenced"
            );
            return;
        }
        let now = brlock_core::Instant::from_millis(self.now());
        let mut out = std::mem::take(&mut self.out);
        let watched = self.tap.watching().then(|| event.clone());
        self.core.handle(now, event, &mut out);
        if let Some(event) = watched {
            self.tap.publish(now, event, &out);
        }
        let actions = std::mem::take(&mut out);
        self.out = out;
        self.after_event(actions);
    }

    /// Persist first; everything else once durable, and never ahead of an earlier event's actions.
    /// Client-host changes made since the last batch go with this one.
    fn after_event(&mut self, actions: Vec<Action>) {
        let ops: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Persist { epoch, seq, op } => Some((*epoch, *seq, op.clone())),
                _ => None,
            })
            .collect();
        let hosts = std::mem::take(&mut self.host_writes);
        if ops.is_empty() && hosts.is_empty() && self.held.is_empty() {
            self.execute(actions);
            return;
        }
        let batch = self.next_batch;
        self.next_batch += 1;
        let mut ready = true;
        if !ops.is_empty() || !hosts.is_empty() {
            self.shared.metrics.store_writes.inc_by(ops.len() as u64);
            let mut durable = self.sink.submit(PersistBatch { ops, hosts });
            match durable
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
            {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => self.persist_failed(batch, e),
                Poll::Pending => {
                    ready = false;
                    let submitted = persist::Submitted {
                        batch,
                        at: Instant::now(),
                        durable,
                    };
                    if self.durable.try_send(submitted).is_err() {
                        // Past every bound that feeds it (see `watch_durable`): refuse and rebuild.
                        self.persist_failed(
                            batch,
                            StoreError::Unavailable(
                                "too many batches waiting to be durable".into(),
                            ),
                        );
                        ready = true;
                    }
                }
            }
        }
        self.held.push_back(Held {
            batch,
            actions,
            ready,
        });
        self.drain_held();
    }

    fn drain_held(&mut self) {
        while self.held.front().is_some_and(|h| h.ready) {
            let held = self.held.pop_front().expect("checked");
            if self.failed_from.is_some_and(|f| held.batch >= f) {
                self.execute_failed(held.actions);
            } else {
                self.execute(held.actions);
            }
        }
        if self.held.is_empty()
            && self.failed_from.is_some()
            && self.fenced.is_none()
            && !self.recovering
        {
            self.recovering = true;
            self.start_recovery();
        }
    }

    /// What the admin endpoints may read.
    fn view(&self) -> admin::CoreView<'_> {
        let readiness = match (&self.fenced, self.failed_from) {
            (Some(_), _) => admin::Readiness::Fenced,
            (None, Some(_)) => admin::Readiness::Rebuilding,
            (None, None) => admin::Readiness::Serving,
        };
        admin::CoreView {
            core: &self.core,
            now: brlock_core::Instant::from_millis(self.now()),
            readiness,
            callers: &self.callers,
            monitored: &self.monitored,
            tap: &self.tap,
        }
    }

    /// Whether events go to the core (not while it is rebuilt, nor once fenced).
    fn serving(&self) -> bool {
        self.failed_from.is_none() && self.fenced.is_none()
    }

    /// Batch `batch` will never be durable. From it on, withheld replies become failures; once every
    /// submitted batch has resolved the core is rebuilt from the store (`drain_held`).
    fn persist_failed(&mut self, batch: u64, e: StoreError) {
        self.store_failures += 1;
        let kind = if matches!(e, StoreError::Fenced { .. }) {
            "fenced"
        } else {
            "error"
        };
        self.shared
            .metrics
            .store_failures
            .get_or_create(&StoreFailureLabels { kind })
            .inc();
        if let StoreError::Fenced { mine, current } = e {
            if self.fenced.is_none() {
                let reason = format!(
                    "fenced: another brlockd started on this store (it writes as epoch {current}, \
                     this one as epoch {mine}); refusing every request and stopping"
                );
                error!(mine, current, "{reason}");
                self.fenced = Some(e);
                let _ = self.fatal.send(Some(reason));
            }
        } else if self.failed_from.is_none() {
            error!(batch, error = %e, store_failures = self.store_failures,
                "persist failed: refusing the requests that needed it (NLM4_FAILED / DENIED_NOLOCKS) \
                 and rebuilding the core from the store");
        }
        self.failed_from = Some(self.failed_from.map_or(batch, |f| f.min(batch)));
    }

    fn start_recovery(&mut self) {
        if !self.recovering {
            return;
        }
        let recovered = self.sink.recover();
        let tx = self.shared.core_tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(CoreMsg::Recovered(recovered.await)).await;
        });
    }

    fn recovered(
        &mut self,
        result: Result<(Vec<LockRecord>, Vec<brlock_core::ShareRecord>), StoreError>,
    ) {
        if self.fenced.is_some() {
            return;
        }
        let (records, shares) = match result {
            Ok(kept) => kept,
            Err(e) => {
                if matches!(e, StoreError::Fenced { .. }) {
                    return self.persist_failed(self.next_batch, e);
                }
                warn!(error = %e, "store still unavailable; asking again");
                let tx = self.shared.core_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RECOVER_RETRY).await;
                    let _ = tx.send(CoreMsg::RetryRecover).await;
                });
                return;
            }
        };
        self.rebuild(records, shares);
    }

    /// Swaps in the core's own rebuild from what the store holds (`Core::rebuild`: which locks,
    /// waiters, grace state and reclaims survive is the core's rule), and carries out its actions.
    /// Waiter ids survive, so per-waiter state here stays valid.
    fn rebuild(&mut self, records: Vec<LockRecord>, shares: Vec<brlock_core::ShareRecord>) {
        let (count, share_count) = (records.len(), shares.len());
        let now = brlock_core::Instant::from_millis(self.now());
        let (core, actions) = match self.core.rebuild(now, records, shares) {
            Ok(rebuilt) => rebuilt,
            Err(e) => {
                // Cannot happen with records the core wrote; keep refusing rather than guess.
                error!(error = %e, "cannot rebuild the core from the store; refusing requests");
                self.fenced = Some(StoreError::Corrupt(e.to_string()));
                let _ = self.fatal.send(Some(format!("store corrupt: {e}")));
                return;
            }
        };
        self.core = core;
        self.tap.restart();
        self.shared.metrics.store_rebuilds.inc();
        self.failed_from = None;
        self.recovering = false;
        // The host writes of the failed batches are lost with them: write every binding again.
        let names: Vec<Vec<u8>> = self.callers.keys().cloned().collect();
        for name in names {
            self.sync_host(&name);
        }
        self.after_event(actions);
        self.flush_host_writes();
        info!(
            locks = count,
            shares = share_count,
            store_failures = self.store_failures,
            "store answers again: core rebuilt from its {count} lock records and {share_count} shares; serving"
        );
    }

    /// A withheld event's actions after its batch (or an earlier one) failed: its replies say so,
    /// its callbacks are not sent (the grant was never durable and is undone by the rebuild).
    fn execute_failed(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Reply { request, .. } => self.refuse(request),
                Action::SendGranted { waiter, client, .. } => {
                    info!(waiter = waiter.0, %client, "GRANTED not sent: its grant was not persisted")
                }
                _ => {}
            }
        }
    }

    /// Answers `request` NLM4_FAILED (v1/v3: DENIED_NOLOCKS): the store did not take it.
    fn refuse(&mut self, request: RequestId) {
        if let Some(Pending { ctx, cookie, .. }) = self.pending.remove(&request) {
            self.answer(ctx, cookie, Stat::Failed, None);
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Persist { .. } => {}
                Action::Reply { request, outcome } => self.reply(request, outcome),
                Action::SendGranted {
                    waiter,
                    client,
                    owner,
                    file,
                    range,
                    kind,
                    cookie,
                    attempt,
                    callback_cookie,
                    ..
                } => {
                    if attempt == 1 {
                        let waited = self.blocked_since.remove(&waiter).map(|t| t.elapsed());
                        request_log::granted_after_wait(
                            waiter.0, &client, &owner, &file, range, waited,
                        );
                    }
                    let callback = callbacks::Callback {
                        waiter,
                        attempt,
                        nlm_cookie: callback_cookie.to_vec(),
                    };
                    self.send_granted(callback, &client, &owner, file, range, kind, &cookie)
                }
                Action::Released {
                    client,
                    file,
                    range,
                    reason,
                    ..
                } => debug!(%client, %file, %range, ?reason, "released"),
                Action::WaiterRemoved {
                    waiter,
                    client,
                    reason,
                    ..
                } => {
                    self.granted_msg.forget(waiter);
                    self.blocked_since.remove(&waiter);
                    // NLM has no message for an expired wait: the client's own retry finds out.
                    if reason == WaiterRemovedReason::Expired {
                        info!(waiter = waiter.0, %client, "blocked request expired");
                    } else {
                        debug!(waiter = waiter.0, %client, ?reason, "waiter removed");
                    }
                }
                Action::ConnectionRefused {
                    client,
                    adapter,
                    limit,
                } => {
                    info!(%client, %adapter, limit, "connection refused")
                }
                Action::GraceEnded { released } => info!(released, "grace period ended"),
            }
        }
    }

    fn next_request(&mut self) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        id
    }

    /// Binds `caller_name` to the address of its first request (and notes the address of ours it
    /// reached, `local`); DENIED when it comes from another, DENIED_NOLOCKS when the host table
    /// is full. A binding survives a restart (the store keeps it) until the host is freed or
    /// forgotten.
    fn admit(&mut self, caller: &[u8], peer: SocketAddr, local: IpAddr) -> Result<(), Stat> {
        let ip = canonical(peer.ip());
        match self.callers.get(caller).copied() {
            Some(bound) if bound.ip != ip => {
                info!(%peer, caller = %String::from_utf8_lossy(caller), bound = %bound.ip, "refused: caller_name bound to another address");
                Err(Stat::Denied)
            }
            Some(_) => Ok(()),
            None if !self.room_for_new_host() => {
                self.shared.metrics.client_host_refused();
                debug!(%peer, caller = %String::from_utf8_lossy(caller), "refused: client-host table full (--max-client-hosts)");
                Err(Stat::DeniedNolocks)
            }
            None => {
                let local = canonical(intake::local_for(local, peer.ip()));
                self.callers.insert(caller.to_vec(), Bound { ip, local });
                self.host_churn.bound(caller);
                self.sync_host(caller);
                Ok(())
            }
        }
    }

    /// The store row of client host `name`, if it is bound.
    fn host_row(&self, name: &[u8]) -> Option<ClientHost> {
        let bound = self.callers.get(name)?;
        let monitored = self.monitored.get(name);
        Some(ClientHost {
            caller_name: name.to_vec(),
            address: bound.ip,
            local_address: bound.local,
            nsm_state: monitored.map(|m| m.state),
            statd_monitored: monitored.is_some_and(|m| m.statd),
        })
    }

    /// Queues the store write that makes `name`'s row match `callers` and `monitored`.
    fn sync_host(&mut self, name: &[u8]) {
        let write = match self.host_row(name) {
            Some(row) => HostWrite::Put(row),
            None => HostWrite::Delete(name.to_vec()),
        };
        self.host_writes.push(write);
    }

    /// Writes queued host changes now if no event carried them.
    fn flush_host_writes(&mut self) {
        if !self.host_writes.is_empty() && self.serving() {
            self.after_event(Vec::new());
        }
    }

    /// Takes back the bindings and monitoring the store kept (after a restart).
    fn restore_hosts(&mut self, hosts: &[ClientHost]) {
        for h in hosts {
            self.callers.insert(
                h.caller_name.clone(),
                Bound {
                    ip: h.address,
                    local: h.local_address,
                },
            );
            if let Some(state) = h.nsm_state {
                self.monitored.insert(
                    h.caller_name.clone(),
                    Monitored {
                        state,
                        last_seen: Instant::now(),
                        statd: h.statd_monitored,
                    },
                );
            }
        }
    }

    /// Forgets client host `name`: no binding, no monitoring (SM_UNMON to statd), nothing stored.
    fn forget_host(&mut self, name: &[u8]) {
        self.unmonitor(name);
        self.callers.remove(name);
        self.sync_host(name);
    }

    /// SM_NOTIFY to the built-in NSM: every host named `mon_name` (or, as statd matches, bound to
    /// an address spelled `mon_name`) whose bound address is the sender's and whose NSM state
    /// differs rebooted: its locks are freed. A notice from any other address frees nothing.
    fn client_rebooted(&mut self, peer: SocketAddr, notice: StatChange) {
        let sender = canonical(peer.ip());
        let name = String::from_utf8_lossy(&notice.mon_name).into_owned();
        let by_address = name.parse::<IpAddr>().ok().map(canonical);
        let mut matched: Vec<Vec<u8>> = self
            .callers
            .iter()
            .filter(|(caller, bound)| {
                caller.as_slice() == notice.mon_name.as_slice() || Some(bound.ip) == by_address
            })
            .map(|(caller, _)| caller.clone())
            .collect();
        matched.sort();
        if matched.is_empty() {
            debug!(%peer, host = %name, "reboot notice for a host brlockd does not know");
            return;
        }
        for caller in matched {
            let bound = self.callers[&caller].ip;
            let caller_text = String::from_utf8_lossy(&caller).into_owned();
            if bound != sender {
                warn!(%peer, host = %caller_text, %bound,
                    "reboot notice refused: it does not come from the host's bound address");
                continue;
            }
            if self
                .monitored
                .get(&caller)
                .is_some_and(|m| m.state == notice.state)
            {
                debug!(host = %caller_text, state = notice.state, "reboot notice with the state we know: not a reboot");
                continue;
            }
            info!(host = %caller_text, state = notice.state, "client rebooted (SM_NOTIFY): freeing its locks");
            self.forget_host(&caller);
            self.handle(Event::FreeAll {
                client: ClientId::new(caller),
            });
        }
        self.flush_host_writes();
    }

    /// Tells statd to stop watching `name` (SM_UNMON) and forgets it, so that its next monitored
    /// LOCK sends SM_MON again.
    fn unmonitor(&mut self, name: &[u8]) {
        if let Some(m) = self.monitored.remove(name) {
            if m.statd
                && let Some(statd) = &self.statd
                && statd
                    .try_send(callbacks::StatdCall::Unmon(name.to_vec()))
                    .is_err()
            {
                warn!(host = %String::from_utf8_lossy(name), "SM_UNMON dropped: the statd queue is full");
            }
            self.sync_host(name);
        }
    }

    /// Linux lockd's host garbage collection (`nlm_gc_hosts`, then `nsm_unmonitor`): a host the core
    /// no longer tracks (nothing held, queued or reserved: it unlocked, cancelled, was freed, lost a
    /// grant or was never granted anything) and that has sent no lock request for `unmonitor_idle`
    /// is unmonitored. Never sooner: a host that still holds locks must stay on statd's list, which
    /// is who sm-notify tells to reclaim after our own reboot; and waiting keeps a host that locks
    /// and unlocks in turn from costing statd a disk write per lock.
    fn unmonitor_idle(&mut self) {
        let idle = self.shared.config.unmonitor_idle;
        let forgotten: Vec<Vec<u8>> = self
            .monitored
            .iter()
            .filter(|(name, m)| {
                m.last_seen.elapsed() >= idle
                    && !self.core.knows_client(&ClientId::new(name.to_vec()))
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in forgotten {
            debug!(host = %String::from_utf8_lossy(&name), "idle: unmonitoring");
            self.unmonitor(&name);
        }
    }

    /// Drops the caller_name → address binding of every host that the core no longer tracks and
    /// that statd no longer watches for us: it holds nothing a spoofer could take over, and without
    /// this the map would grow with every host that ever called.
    fn forget_unbound_callers(&mut self) {
        let (core, monitored) = (&self.core, &self.monitored);
        let forgotten: Vec<Vec<u8>> = self
            .callers
            .keys()
            .filter(|name| {
                !monitored.contains_key(*name) && !core.knows_client(&ClientId::new(name.to_vec()))
            })
            .cloned()
            .collect();
        for name in forgotten {
            self.callers.remove(&name);
            self.sync_host(&name);
        }
    }

    fn is_msg(p: NlmProc) -> bool {
        matches!(
            p,
            NlmProc::TestMsg
                | NlmProc::LockMsg
                | NlmProc::CancelMsg
                | NlmProc::UnlockMsg
                | NlmProc::GrantedMsg
        )
    }

    /// Answers `ctx` with `stat` without the core (a host-level refusal, or GRANTED).
    fn answer(&mut self, ctx: CallCtx, cookie: Vec<u8>, stat: Stat, holder: Option<nlm::Holder>) {
        if Self::is_msg(ctx.procedure) {
            let res = match ctx.procedure {
                NlmProc::TestMsg => NlmCall::TestRes(TestRes {
                    cookie,
                    stat,
                    holder,
                }),
                NlmProc::LockMsg => NlmCall::LockRes(Res { cookie, stat }),
                NlmProc::CancelMsg => NlmCall::CancelRes(Res { cookie, stat }),
                NlmProc::UnlockMsg => NlmCall::UnlockRes(Res { cookie, stat }),
                _ => NlmCall::GrantedRes(Res { cookie, stat }),
            };
            request_log::answered(&ctx, status_name(stat));
            self.shared.metrics.observe_request(
                proc_label(ctx.procedure),
                status_name(stat),
                ctx.received.elapsed(),
            );
            tokio::spawn(callbacks::send_res(
                self.shared.clone(),
                ctx.peer.ip(),
                ctx.version,
                ctx.transport,
                res,
            ));
            return;
        }
        let reply = match ctx.procedure.reply_shape() {
            nlm::ReplyShape::Test => NlmReply::Test(TestRes {
                cookie,
                stat,
                holder,
            }),
            nlm::ReplyShape::Res => NlmReply::Res(Res { cookie, stat }),
            nlm::ReplyShape::Share => NlmReply::Share(ShareRes {
                cookie,
                stat,
                sequence: 0,
            }),
            nlm::ReplyShape::Void => NlmReply::Void,
        };
        self.shared.reply_nlm(&ctx, &reply, status_name(stat));
    }

    fn reply(&mut self, request: RequestId, outcome: Outcome) {
        let Some(Pending { ctx, cookie }) = self.pending.remove(&request) else {
            return;
        };
        let holder = match &outcome {
            Outcome::Denied { holder } => Some(dispatch::holder(ctx.version, holder)),
            Outcome::Deadlock { cycle } => {
                request_log::deadlock(&ctx, cycle);
                None
            }
            Outcome::NoLocks { limit } => {
                request_log::limit_refusal(&ctx, *limit);
                None
            }
            Outcome::Blocked { waiter } => {
                self.blocked_since.insert(*waiter, Instant::now());
                None
            }
            _ => None,
        };
        let stat = dispatch::stat(&outcome);
        self.answer(ctx, cookie, stat, holder);
    }

    /// Host-level checks every request naming a lock or share must pass: the caller_name ↔ address
    /// binding and the file handle. `Some(stat)` refuses.
    fn precheck(
        &mut self,
        caller: &[u8],
        fh: &[u8],
        peer: SocketAddr,
        local: IpAddr,
    ) -> Option<Stat> {
        if let Err(stat) = self.admit(caller, peer, local) {
            return Some(stat);
        }
        if let Some(m) = self.monitored.get_mut(caller) {
            m.last_seen = Instant::now();
        }
        match self.handles.check(fh) {
            FileHandleStatus::Valid => None,
            FileHandleStatus::Stale => Some(Stat::StaleFh),
            FileHandleStatus::NotRegular => Some(Stat::Failed),
        }
    }

    fn submit(
        &mut self,
        mut ctx: CallCtx,
        cookie: Vec<u8>,
        event: impl FnOnce(RequestId) -> Event,
    ) {
        let request = self.next_request();
        let event = event(request);
        if ctx.what.is_none() {
            ctx.what = request_log::RequestSummary::of_event(&event);
        }
        self.pending.insert(request, Pending { ctx, cookie });
        if !self.serving() {
            // Rebuilding from the store, or fenced: the core must not decide anything now.
            return self.refuse(request);
        }
        if !self.shared.gate.is_open() {
            // The leadership lease ran out: not a single answer from this core's memory.
            self.pending.remove(&request);
            return;
        }
        self.handle(event);
    }

    fn on_call(&mut self, mut ctx: CallCtx, call: NlmCall) {
        // Calls refused before the core sees them are logged with what they asked for too.
        if tracing::enabled!(tracing::Level::DEBUG) {
            ctx.what = request_log::RequestSummary::of_call(&call);
        }
        // A *_MSG call is answered at once with an empty reply; its result goes out as *_RES
        // (Linux lockd's nlmsvc_callback: the _MSG procedures encode void).
        if Self::is_msg(ctx.procedure) {
            self.shared.reply_nlm(&ctx, &NlmReply::Void, "accepted");
        }
        let client = |caller: &[u8]| ClientId::new(caller.to_vec());
        let file = |fh: &[u8]| FileId::new(fh.to_vec());
        match call {
            NlmCall::Null => self.shared.reply_nlm(&ctx, &NlmReply::Void, "ok"),
            NlmCall::Test(a) | NlmCall::TestMsg(a) => {
                if let Some(stat) =
                    self.precheck(&a.lock.caller_name, &a.lock.fh, ctx.peer, ctx.local)
                {
                    // A TEST answered DENIED must name a holder, and a refused caller has none.
                    let stat = match stat {
                        Stat::Denied => Stat::DeniedNolocks,
                        other => other,
                    };
                    return self.answer(ctx, a.cookie, stat, None);
                }
                let l = a.lock;
                self.submit(ctx, a.cookie, |request| Event::Test {
                    request,
                    client: client(&l.caller_name),
                    owner: dispatch::owner_id(&l.caller_name, l.svid, &l.oh),
                    file: file(&l.fh),
                    range: dispatch::range(l.offset, l.len),
                    kind: dispatch::kind(a.exclusive),
                });
            }
            NlmCall::Lock(a) | NlmCall::LockMsg(a) | NlmCall::NmLock(a) => {
                if let Some(stat) =
                    self.precheck(&a.lock.caller_name, &a.lock.fh, ctx.peer, ctx.local)
                {
                    return self.answer(ctx, a.cookie, stat, None);
                }
                let monitored = ctx.procedure != NlmProc::NmLock;
                if monitored {
                    let name = &a.lock.caller_name;
                    let before = self.monitored.get(name).map(|m| (m.state, m.statd));
                    let statd = match (before, &self.statd) {
                        (Some((_, true)), _) => true,
                        (_, Some(statd)) => {
                            if statd
                                .try_send(callbacks::StatdCall::Mon(name.clone()))
                                .is_err()
                            {
                                warn!(host = %String::from_utf8_lossy(name), "SM_MON dropped: the statd queue is full");
                            }
                            true
                        }
                        (_, None) => false,
                    };
                    let seen = Monitored {
                        state: a.state,
                        last_seen: Instant::now(),
                        statd,
                    };
                    self.monitored.insert(name.clone(), seen);
                    if before != Some((a.state, statd)) {
                        self.sync_host(name);
                    }
                }
                let grant = GrantCookie {
                    version: ctx.version,
                    transport: ctx.transport,
                    msg: ctx.procedure == NlmProc::LockMsg,
                };
                let l = a.lock;
                self.submit(ctx, a.cookie, |request| Event::Lock {
                    request,
                    client: client(&l.caller_name),
                    owner: dispatch::owner_id(&l.caller_name, l.svid, &l.oh),
                    file: file(&l.fh),
                    range: dispatch::range(l.offset, l.len),
                    kind: dispatch::kind(a.exclusive),
                    wait: a.block,
                    reclaim: a.reclaim,
                    cookie: grant.encode(),
                });
            }
            NlmCall::Cancel(a) | NlmCall::CancelMsg(a) => {
                if let Some(stat) =
                    self.precheck(&a.lock.caller_name, &a.lock.fh, ctx.peer, ctx.local)
                {
                    return self.answer(ctx, a.cookie, stat, None);
                }
                let l = a.lock;
                self.submit(ctx, a.cookie, |request| Event::Cancel {
                    request,
                    client: client(&l.caller_name),
                    owner: dispatch::owner_id(&l.caller_name, l.svid, &l.oh),
                    file: file(&l.fh),
                    range: dispatch::range(l.offset, l.len),
                    kind: dispatch::kind(a.exclusive),
                });
            }
            NlmCall::Unlock(a) | NlmCall::UnlockMsg(a) => {
                if let Some(stat) =
                    self.precheck(&a.lock.caller_name, &a.lock.fh, ctx.peer, ctx.local)
                {
                    return self.answer(ctx, a.cookie, stat, None);
                }
                let l = a.lock;
                self.submit(ctx, a.cookie, |request| Event::Unlock {
                    request,
                    client: client(&l.caller_name),
                    owner: dispatch::owner_id(&l.caller_name, l.svid, &l.oh),
                    file: file(&l.fh),
                    range: dispatch::range(l.offset, l.len),
                });
            }
            // GRANTED is the client's procedure (a server tells a client its lock is granted); a
            // server has no blocked request of its own to match, so it answers DENIED.
            NlmCall::Granted(a) | NlmCall::GrantedMsg(a) => {
                debug!(peer = %ctx.peer, "GRANTED sent to a server: denied");
                self.answer(ctx, a.cookie, Stat::Denied, None)
            }
            NlmCall::GrantedRes(res) => {
                let from = canonical(ctx.peer.ip());
                let answered = self
                    .core
                    .waiter_of_cookie(&res.cookie)
                    .map(|w| (w, self.granted_msg.answered(w, from)));
                match answered {
                    Some((waiter, Ok(sent))) => {
                        let result = if res.stat == Stat::Granted {
                            CallbackResult::Delivered
                        } else {
                            CallbackResult::Refused
                        };
                        self.shared.metrics.observe_callback(
                            &format!("{result:?}").to_lowercase(),
                            sent.elapsed(),
                        );
                        self.handle(Event::CallbackOutcome { waiter, result });
                    }
                    Some((waiter, Err(grant_replies::Unanswerable::WrongAddress { expected }))) => {
                        warn!(peer = %ctx.peer, waiter = waiter.0, %expected,
                            "GRANTED_RES refused: it does not come from the address the GRANTED_MSG went to")
                    }
                    Some((_, Err(grant_replies::Unanswerable::NotOut))) | None => {
                        debug!(peer = %ctx.peer, "GRANTED_RES for no pending GRANTED_MSG")
                    }
                }
                self.shared.reply_nlm(&ctx, &NlmReply::Void, "ok");
            }
            // We send no TEST_MSG/LOCK_MSG/…: their results have nothing to match.
            NlmCall::TestRes(_)
            | NlmCall::LockRes(_)
            | NlmCall::CancelRes(_)
            | NlmCall::UnlockRes(_) => self.shared.reply_nlm(&ctx, &NlmReply::Void, "ok"),
            NlmCall::NsmNotify(notice) => {
                // Only the local statd may say a host rebooted: a loopback address and a privileged
                // port (Linux lockd's nlmsvc_proc_sm_notify), so that no local user can free
                // another host's locks.
                if canonical(ctx.peer.ip()).is_loopback() && ctx.peer.port() < 1024 {
                    let name = notice.mon_name.clone();
                    match self.monitored.get(&name).map(|m| m.state) {
                        Some(state) if state != notice.state => {
                            info!(host = %String::from_utf8_lossy(&name), state = notice.state, "client rebooted: freeing its locks");
                            self.forget_host(&name);
                            self.handle(Event::FreeAll {
                                client: client(&name),
                            });
                        }
                        _ => {
                            debug!(host = %String::from_utf8_lossy(&name), "reboot notice ignored (not monitored or same state)")
                        }
                    }
                } else {
                    warn!(peer = %ctx.peer, "reboot notice (NLM procedure 16) refused: not from a privileged port on a loopback address");
                }
                self.shared.reply_nlm(&ctx, &NlmReply::Void, "ok");
            }
            NlmCall::Share(a) | NlmCall::Unshare(a) => {
                let s = &a.share;
                if let Some(stat) = self.precheck(&s.caller_name, &s.fh, ctx.peer, ctx.local) {
                    return self.answer(ctx, a.cookie, stat, None);
                }
                let owner = dispatch::owner_id(&s.caller_name, 0, &s.oh);
                let (client, file) = (client(&s.caller_name), file(&s.fh));
                if ctx.procedure == NlmProc::Share {
                    let (access, deny) = dispatch::share_modes(s.access, s.mode);
                    let reclaim = a.reclaim;
                    self.submit(ctx, a.cookie, |request| Event::Share {
                        request,
                        client,
                        owner,
                        file,
                        access,
                        deny,
                        reclaim,
                    });
                } else {
                    self.submit(ctx, a.cookie, |request| Event::Unshare {
                        request,
                        client,
                        owner,
                        file,
                    });
                }
            }
            NlmCall::FreeAll(n) => {
                if self.admit(&n.name, ctx.peer, ctx.local).is_ok() {
                    info!(host = %String::from_utf8_lossy(&n.name), "FREE_ALL");
                    self.forget_host(&n.name);
                    self.handle(Event::FreeAll {
                        client: client(&n.name),
                    });
                }
                self.shared.reply_nlm(&ctx, &NlmReply::Void, "ok");
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_granted(
        &mut self,
        callback: callbacks::Callback,
        client: &ClientId,
        owner: &brlock_core::OwnerId,
        file: FileId,
        range: brlock_core::Range,
        kind: brlock_core::LockKind,
        cookie: &[u8],
    ) {
        let (waiter, attempt) = (callback.waiter, callback.attempt);
        let (Some(grant), Some(&ip)) = (
            GrantCookie::decode(cookie),
            self.callers.get(client.as_bytes()).map(|b| &b.ip),
        ) else {
            info!(waiter = waiter.0, %client, "cannot call back: client address unknown");
            // Through the queue like every outcome (the core task must not wait on its own queue).
            let tx = self.shared.core_tx.clone();
            tokio::spawn(async move {
                let outcome = CoreMsg::CallbackOutcome {
                    waiter,
                    result: CallbackResult::Failed,
                    attempt,
                };
                let _ = tx.send(outcome).await;
            });
            return;
        };
        let (svid, oh) = dispatch::parse_owner(owner)
            .map(|(_, svid, oh)| (svid, oh))
            .unwrap_or_else(|| (0, owner.as_bytes().to_vec()));
        let args = TestArgs {
            cookie: Vec::new(),
            exclusive: kind == brlock_core::LockKind::Exclusive,
            lock: Lock {
                caller_name: self.shared.config.hostname.as_bytes().to_vec(),
                fh: file.to_vec(),
                oh,
                svid,
                offset: range.offset,
                len: range.length,
            },
        };
        if grant.msg {
            self.granted_msg.sent(waiter, attempt, ip);
        }
        debug!(waiter = waiter.0, %client, attempt, msg = grant.msg, "sending GRANTED");
        tokio::spawn(callbacks::send_granted(
            self.shared.clone(),
            ip,
            callback,
            grant,
            args,
        ));
    }
}
