//! The NLM front end: an NLM call becomes an `Event` for the core (after the checks only the host can
//! make: the source's caller_name binding and the file handle), and the core's actions become NLM
//! replies, `*_RES` calls and GRANTED callbacks. It owns what links the two: the requests waiting for
//! their reply, the GRANTED_MSG callbacks waiting for their GRANTED_RES, and when each waiter was
//! told BLOCKED. Sans-io: it says what to send ([`Outgoing`]) and what to ask the core ([`Step`]);
//! the driver does both.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use brlock_core::{
    Action, CallbackResult, ClientId, Core, Event, FileId, LockKind, OwnerId, Range, RequestId,
    WaiterId, WaiterRemovedReason,
};
use foldhash::{HashMap, HashMapExt};
use tracing::{debug, info, warn};

use super::callbacks::Callback;
use super::client_hosts::{ClientHosts, canonical, tracked_by};
use super::dispatch::{self, Answer, GrantCookie};
use super::file_handles::{FileHandleCheck, FileHandleStatus};
use super::grant_replies::{GrantReplies, Unanswerable};
use super::intake::CallCtx;
use super::labels::{is_msg, status_name};
use super::request_log;
use crate::metrics::Metrics;
use crate::nlm::{self, Lock, NlmCall, NlmProc, NlmReply, Res, Stat, TestArgs};

/// Something to send.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// The RPC reply to `ctx`'s call.
    Reply {
        ctx: Box<CallCtx>,
        reply: NlmReply,
        status: &'static str,
    },
    /// A `*_MSG` call's result, as the matching `*_RES` call to its sender.
    Res {
        ctx: Box<CallCtx>,
        res: NlmCall,
        status: &'static str,
    },
    /// GRANTED or GRANTED_MSG to the client host at `to`.
    Granted {
        to: IpAddr,
        callback: Callback,
        grant: GrantCookie,
        args: TestArgs,
    },
    /// A GRANTED that cannot be sent (the client's address is unknown): the core hears it failed,
    /// through the core task's queue like every callback outcome.
    Unreachable { waiter: WaiterId, attempt: u32 },
}

/// What one call asks of the driver, in order.
#[derive(Debug)]
pub(crate) enum Step {
    Send(Outgoing),
    /// A request for the core: its answer comes back as `Action::Reply` for `request`, unless the
    /// core is not deciding anything now ([`NlmFrontEnd::refuse`], [`NlmFrontEnd::abandon`]).
    Decide(RequestId, Event),
    /// An event that answers no request of its own (a host freed, a callback's outcome).
    Event(Event),
}

/// A request waiting for its `Action::Reply`.
#[derive(Debug)]
struct Pending {
    ctx: Box<CallCtx>,
    cookie: Vec<u8>,
}

/// Calls in, replies and callbacks out.
pub(crate) struct NlmFrontEnd {
    handles: Arc<dyn FileHandleCheck>,
    metrics: Arc<Metrics>,
    /// Our own name, in the GRANTED callbacks we send.
    hostname: Vec<u8>,
    next_request: u64,
    /// Bounded by the calls in flight (`--max-calls-in-flight`): one entry per call the core has.
    pending: HashMap<RequestId, Pending>,
    /// GRANTED_MSG callbacks waiting for their GRANTED_RES.
    granted_msg: GrantReplies,
    /// Waiters whose LOCK was answered BLOCKED → when (for the "granted after waiting" line).
    blocked_since: HashMap<WaiterId, Instant>,
}

impl NlmFrontEnd {
    pub(crate) fn new(
        handles: Arc<dyn FileHandleCheck>,
        metrics: Arc<Metrics>,
        hostname: &str,
    ) -> Self {
        NlmFrontEnd {
            handles,
            metrics,
            hostname: hostname.as_bytes().to_vec(),
            next_request: 1,
            pending: HashMap::new(),
            granted_msg: GrantReplies::new(),
            blocked_since: HashMap::new(),
        }
    }

    /// Handles one NLM call: what to send and what to ask the core go to `steps`, in order.
    pub(crate) fn on_call(
        &mut self,
        mut ctx: Box<CallCtx>,
        call: NlmCall,
        hosts: &mut ClientHosts,
        core: &Core,
        now: Instant,
        steps: &mut Vec<Step>,
    ) {
        // Calls refused before the core sees them are logged with what they asked for too.
        if tracing::enabled!(tracing::Level::DEBUG) {
            ctx.what = request_log::RequestSummary::of_call(&call);
        }
        let holds = tracked_by(core);
        let client = |caller: &[u8]| ClientId::new(caller.to_vec());
        let file = |fh: &[u8]| FileId::new(fh.to_vec());
        let owner = |l: &Lock| dispatch::owner_id(&l.caller_name, l.svid, &l.oh);
        let range = |l: &Lock| dispatch::range(l.offset, l.len);
        // A *_MSG call is answered at once with an empty reply; its result goes out as *_RES
        // (Linux lockd's nlmsvc_callback: the _MSG procedures encode void).
        if is_msg(ctx.procedure) {
            steps.push(Step::Send(Outgoing::Reply {
                ctx: Box::new(ctx.echo()),
                reply: NlmReply::Void,
                status: "accepted",
            }));
        }
        match call {
            NlmCall::Null => steps.push(void(ctx)),
            NlmCall::Test(a) | NlmCall::TestMsg(a) => {
                let l = &a.lock;
                if let Some(stat) = self.precheck(hosts, &l.caller_name, &l.fh, &ctx, now, holds) {
                    // A TEST answered DENIED must name a holder, and a refused caller has none.
                    let stat = match stat {
                        Stat::Denied => Stat::DeniedNolocks,
                        other => other,
                    };
                    return steps.push(self.answer(ctx, a.cookie, stat, None));
                }
                let event = |request| Event::Test {
                    request,
                    client: client(&l.caller_name),
                    owner: owner(l),
                    file: file(&l.fh),
                    range: range(l),
                    kind: dispatch::kind(a.exclusive),
                };
                steps.push(self.submit(ctx, a.cookie, event));
            }
            NlmCall::Lock(a) | NlmCall::LockMsg(a) | NlmCall::NmLock(a) => {
                let l = &a.lock;
                if let Some(stat) = self.precheck(hosts, &l.caller_name, &l.fh, &ctx, now, holds) {
                    return steps.push(self.answer(ctx, a.cookie, stat, None));
                }
                if ctx.procedure != NlmProc::NmLock {
                    hosts.monitor(&l.caller_name, a.state, now);
                }
                let grant = GrantCookie {
                    version: ctx.version,
                    transport: ctx.transport,
                    msg: ctx.procedure == NlmProc::LockMsg,
                };
                let event = |request| Event::Lock {
                    request,
                    client: client(&l.caller_name),
                    owner: owner(l),
                    file: file(&l.fh),
                    range: range(l),
                    kind: dispatch::kind(a.exclusive),
                    wait: a.block,
                    reclaim: a.reclaim,
                    cookie: grant.encode(),
                };
                steps.push(self.submit(ctx, a.cookie, event));
            }
            NlmCall::Cancel(a) | NlmCall::CancelMsg(a) => {
                let l = &a.lock;
                if let Some(stat) = self.precheck(hosts, &l.caller_name, &l.fh, &ctx, now, holds) {
                    return steps.push(self.answer(ctx, a.cookie, stat, None));
                }
                let event = |request| Event::Cancel {
                    request,
                    client: client(&l.caller_name),
                    owner: owner(l),
                    file: file(&l.fh),
                    range: range(l),
                    kind: dispatch::kind(a.exclusive),
                };
                steps.push(self.submit(ctx, a.cookie, event));
            }
            NlmCall::Unlock(a) | NlmCall::UnlockMsg(a) => {
                let l = &a.lock;
                if let Some(stat) = self.precheck(hosts, &l.caller_name, &l.fh, &ctx, now, holds) {
                    return steps.push(self.answer(ctx, a.cookie, stat, None));
                }
                let event = |request| Event::Unlock {
                    request,
                    client: client(&l.caller_name),
                    owner: owner(l),
                    file: file(&l.fh),
                    range: range(l),
                };
                steps.push(self.submit(ctx, a.cookie, event));
            }
            // GRANTED is the client's procedure (a server tells a client its lock is granted); a
            // server has no blocked request of its own to match, so it answers DENIED.
            NlmCall::Granted(a) | NlmCall::GrantedMsg(a) => {
                debug!(peer = %ctx.peer, "GRANTED sent to a server: denied");
                steps.push(self.answer(ctx, a.cookie, Stat::Denied, None));
            }
            NlmCall::GrantedRes(res) => {
                if let Some(event) = self.granted_res(&ctx, &res, core) {
                    steps.push(Step::Event(event));
                }
                steps.push(void(ctx));
            }
            // We send no TEST_MSG/LOCK_MSG/…: their results have nothing to match.
            NlmCall::TestRes(_)
            | NlmCall::LockRes(_)
            | NlmCall::CancelRes(_)
            | NlmCall::UnlockRes(_) => steps.push(void(ctx)),
            NlmCall::NsmNotify(notice) => {
                // Only the local statd may say a host rebooted: a loopback address and a privileged
                // port (Linux lockd's nlmsvc_proc_sm_notify), so that no local user can free
                // another host's locks.
                let name = notice.mon_name;
                if !canonical(ctx.peer.ip()).is_loopback() || ctx.peer.port() >= 1024 {
                    warn!(peer = %ctx.peer, "reboot notice (NLM procedure 16) refused: not from a privileged port on a loopback address");
                } else if hosts.rebooted_by_statd(&name, notice.state) {
                    info!(host = %String::from_utf8_lossy(&name), state = notice.state, "client rebooted: freeing its locks");
                    hosts.forget(&name);
                    steps.push(Step::Event(Event::FreeAll {
                        client: client(&name),
                    }));
                } else {
                    debug!(host = %String::from_utf8_lossy(&name), "reboot notice ignored (not monitored or same state)");
                }
                steps.push(void(ctx));
            }
            NlmCall::Share(a) | NlmCall::Unshare(a) => {
                let s = &a.share;
                if let Some(stat) = self.precheck(hosts, &s.caller_name, &s.fh, &ctx, now, holds) {
                    return steps.push(self.answer(ctx, a.cookie, stat, None));
                }
                let owner = dispatch::owner_id(&s.caller_name, 0, &s.oh);
                let (client, file) = (client(&s.caller_name), file(&s.fh));
                let step = if ctx.procedure == NlmProc::Share {
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
                    })
                } else {
                    self.submit(ctx, a.cookie, |request| Event::Unshare {
                        request,
                        client,
                        owner,
                        file,
                    })
                };
                steps.push(step);
            }
            NlmCall::FreeAll(n) => {
                if hosts
                    .admit(&n.name, ctx.peer, ctx.local, now, holds)
                    .is_ok()
                {
                    info!(host = %String::from_utf8_lossy(&n.name), "FREE_ALL");
                    hosts.forget(&n.name);
                    steps.push(Step::Event(Event::FreeAll {
                        client: client(&n.name),
                    }));
                }
                steps.push(void(ctx));
            }
        }
    }

    /// Host-level checks every request naming a lock or share must pass: the caller_name ↔ address
    /// binding and the file handle. `Some(stat)` refuses.
    fn precheck(
        &self,
        hosts: &mut ClientHosts,
        caller: &[u8],
        fh: &[u8],
        ctx: &CallCtx,
        now: Instant,
        holds: impl Fn(&[u8]) -> bool,
    ) -> Option<Stat> {
        if let Err(stat) = hosts.admit(caller, ctx.peer, ctx.local, now, holds) {
            if stat == Stat::DeniedNolocks {
                self.metrics.client_host_refused();
            }
            return Some(stat);
        }
        hosts.seen(caller, now);
        match self.handles.check(fh) {
            FileHandleStatus::Valid => None,
            FileHandleStatus::Stale => Some(Stat::StaleFh),
            FileHandleStatus::NotRegular => Some(Stat::Failed),
        }
    }

    /// Registers a request for the core; its reply comes back as `Action::Reply`.
    fn submit(
        &mut self,
        mut ctx: Box<CallCtx>,
        cookie: Vec<u8>,
        event: impl FnOnce(RequestId) -> Event,
    ) -> Step {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        let event = event(request);
        if ctx.what.is_none() {
            ctx.what = request_log::RequestSummary::of_event(&event);
        }
        self.pending.insert(request, Pending { ctx, cookie });
        Step::Decide(request, event)
    }

    /// A GRANTED_RES: the core's outcome for the waiter its cookie names, if it answers a
    /// GRANTED_MSG that is out, from the address that GRANTED_MSG went to.
    fn granted_res(&mut self, ctx: &CallCtx, res: &Res, core: &Core) -> Option<Event> {
        let from = canonical(ctx.peer.ip());
        let Some(waiter) = core.waiter_of_cookie(&res.cookie) else {
            debug!(peer = %ctx.peer, "GRANTED_RES for no pending GRANTED_MSG");
            return None;
        };
        match self.granted_msg.answered(waiter, from) {
            Ok(sent) => {
                let result = if res.stat == Stat::Granted {
                    CallbackResult::Delivered
                } else {
                    CallbackResult::Refused
                };
                let label = match result {
                    CallbackResult::Delivered => "delivered",
                    CallbackResult::Refused => "refused",
                    CallbackResult::Failed => "failed",
                };
                self.metrics.observe_callback(label, sent.elapsed());
                Some(Event::CallbackOutcome { waiter, result })
            }
            Err(Unanswerable::WrongAddress { expected }) => {
                warn!(peer = %ctx.peer, waiter = waiter.0, %expected,
                    "GRANTED_RES refused: it does not come from the address the GRANTED_MSG went to");
                None
            }
            Err(Unanswerable::NotOut) => {
                debug!(peer = %ctx.peer, "GRANTED_RES for no pending GRANTED_MSG");
                None
            }
        }
    }

    /// GRANTED_MSG attempt `attempt` for `waiter` had no GRANTED_RES in time: the core's event, if
    /// no answer or later attempt replaced it.
    pub(crate) fn granted_msg_expired(&mut self, waiter: WaiterId, attempt: u32) -> Option<Event> {
        self.granted_msg.expired(waiter, attempt).then(|| {
            info!(waiter = waiter.0, "no GRANTED_RES in time");
            Event::CallbackOutcome {
                waiter,
                result: CallbackResult::Failed,
            }
        })
    }

    /// Answers `ctx` with `stat` without the core (a host-level refusal, or GRANTED).
    fn answer(
        &self,
        ctx: Box<CallCtx>,
        cookie: Vec<u8>,
        stat: Stat,
        holder: Option<nlm::Holder>,
    ) -> Step {
        let status = status_name(stat);
        Step::Send(
            match dispatch::answer(ctx.procedure, cookie, stat, holder) {
                Answer::Reply(reply) => Outgoing::Reply { ctx, reply, status },
                Answer::Res(res) => Outgoing::Res { ctx, res, status },
            },
        )
    }

    /// The core will not decide `request` now (it is being rebuilt from the store, or fenced): it
    /// is answered NLM4_FAILED (v1/v3: DENIED_NOLOCKS).
    pub(crate) fn refuse(&mut self, request: RequestId) -> Option<Outgoing> {
        let Pending { ctx, cookie } = self.pending.remove(&request)?;
        match self.answer(ctx, cookie, Stat::Failed, None) {
            Step::Send(out) => Some(out),
            _ => None,
        }
    }

    /// `request` gets no answer at all: this instance lost its leadership lease, and not a single
    /// answer may come from its memory.
    pub(crate) fn abandon(&mut self, request: RequestId) {
        self.pending.remove(&request);
    }

    /// One of the core's actions, once its batch is durable: what to send for it.
    pub(crate) fn on_action(&mut self, action: Action, hosts: &ClientHosts) -> Option<Outgoing> {
        match action {
            Action::Persist { .. } => None,
            Action::Reply { request, outcome } => {
                let Pending { ctx, cookie } = self.pending.remove(&request)?;
                let holder = match &outcome {
                    brlock_core::Outcome::Denied { holder } => {
                        Some(dispatch::holder(ctx.version, holder))
                    }
                    brlock_core::Outcome::Deadlock { cycle } => {
                        request_log::deadlock(&ctx, cycle);
                        None
                    }
                    brlock_core::Outcome::NoLocks { limit } => {
                        request_log::limit_refusal(&ctx, *limit);
                        None
                    }
                    brlock_core::Outcome::Blocked { waiter } => {
                        self.blocked_since.insert(*waiter, Instant::now());
                        None
                    }
                    _ => None,
                };
                match self.answer(ctx, cookie, dispatch::stat(&outcome), holder) {
                    Step::Send(out) => Some(out),
                    _ => None,
                }
            }
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
                let callback = Callback {
                    waiter,
                    attempt,
                    nlm_cookie: callback_cookie.to_vec(),
                };
                Some(self.granted(
                    callback,
                    hosts.address_of(client.as_bytes()),
                    &owner,
                    file,
                    range,
                    kind,
                    &cookie,
                ))
            }
            Action::Released {
                client,
                file,
                range,
                reason,
                ..
            } => {
                debug!(%client, %file, %range, ?reason, "released");
                None
            }
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
                None
            }
            Action::ConnectionRefused {
                client,
                adapter,
                limit,
            } => {
                info!(%client, %adapter, limit, "connection refused");
                None
            }
            Action::GraceEnded { released } => {
                info!(released, "grace period ended");
                None
            }
        }
    }

    /// One of the core's actions whose batch (or an earlier one) failed: its reply says so, its
    /// callback is not sent (the grant was never durable and is undone by the rebuild).
    pub(crate) fn on_failed_action(&mut self, action: Action) -> Option<Outgoing> {
        match action {
            Action::Reply { request, .. } => self.refuse(request),
            Action::SendGranted { waiter, client, .. } => {
                info!(waiter = waiter.0, %client, "GRANTED not sent: its grant was not persisted");
                None
            }
            _ => None,
        }
    }

    /// The GRANTED callback for a granted waiter, to its client host's bound address.
    #[allow(clippy::too_many_arguments)]
    fn granted(
        &mut self,
        callback: Callback,
        to: Option<IpAddr>,
        owner: &OwnerId,
        file: FileId,
        range: Range,
        kind: LockKind,
        cookie: &[u8],
    ) -> Outgoing {
        let (waiter, attempt) = (callback.waiter, callback.attempt);
        let (Some(grant), Some(to)) = (GrantCookie::decode(cookie), to) else {
            info!(
                waiter = waiter.0,
                "cannot call back: client address unknown"
            );
            return Outgoing::Unreachable { waiter, attempt };
        };
        let (svid, oh) = dispatch::parse_owner(owner)
            .map(|(_, svid, oh)| (svid, oh))
            .unwrap_or_else(|| (0, owner.as_bytes().to_vec()));
        let args = TestArgs {
            cookie: Vec::new(),
            exclusive: kind == LockKind::Exclusive,
            lock: Lock {
                caller_name: self.hostname.clone(),
                fh: file.to_vec(),
                oh,
                svid,
                offset: range.offset,
                len: range.length,
            },
        };
        if grant.msg {
            self.granted_msg.sent(waiter, attempt, to);
        }
        debug!(
            waiter = waiter.0,
            attempt,
            msg = grant.msg,
            "sending GRANTED"
        );
        Outgoing::Granted {
            to,
            callback,
            grant,
            args,
        }
    }
}

/// The empty reply to `ctx`'s call.
fn void(ctx: Box<CallCtx>) -> Step {
    Step::Send(Outgoing::Reply {
        ctx,
        reply: NlmReply::Void,
        status: "ok",
    })
}

#[cfg(test)]
mod tests;
