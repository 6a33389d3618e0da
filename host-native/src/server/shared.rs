//! What the server's tasks share: the queue into the core task ([`CoreMsg`]) and [`Shared`], the
//! settings, metrics, bounds and sockets every transport task holds a handle to.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use brlock_core::{CallbackResult, LockRecord, ShareRecord, WaiterId};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use super::admin;
use super::callbacks;
use super::connections;
use super::drc::Drc;
use super::flow;
use super::intake::CallCtx;
use super::labels::proc_label;
use super::outbound_calls;
use super::request_log;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::nlm::{self, NlmCall, NlmReply};
use crate::nsm::StatChange;
use crate::rpc::{AcceptStat, Reply, encode_reply};
use crate::store::StoreError;

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
    Recovered(Result<(Vec<LockRecord>, Vec<ShareRecord>), StoreError>),
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
    pub(crate) drc: Mutex<Drc>,
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
        // A *_MSG call's immediate void reply: its line comes with its result (`*_RES`).
        if status != "accepted" {
            request_log::answered(ctx, status);
        }
        self.metrics
            .observe_request(proc_label(ctx.procedure), status, ctx.received.elapsed());
    }
}

impl Shared {
    /// Sends a `*_MSG` call's result to its sender as the matching `*_RES` call (in a task of its
    /// own: the sender's portmapper is asked first), and counts the request as answered.
    pub(crate) fn send_res(self: &Arc<Self>, ctx: &CallCtx, res: NlmCall, status: &str) {
        request_log::answered(ctx, status);
        self.metrics
            .observe_request(proc_label(ctx.procedure), status, ctx.received.elapsed());
        let (ip, version, transport) = (ctx.peer.ip(), ctx.version, ctx.transport);
        tokio::spawn(callbacks::send_res(
            self.clone(),
            ip,
            version,
            transport,
            res,
        ));
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
