//! The core task's driver (quinn's `ConnectionDriver` is the model): it owns the [`Core`] and moves
//! things between it and the rest — calls from the transports through the [`NlmFrontEnd`], the
//! core's actions through the [`PersistGate`] to the store and then to the clients, the core's one
//! timer, statd calls, and a rebuild from the store after a failed batch. The rules live in the
//! types it drives; the loop only moves things.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use brlock_core::{Action, ClientId, Core, Event, LockRecord, RequestId, ShareRecord};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use super::admin::{self, CoreView};
use super::callbacks::{self, StatdCall};
use super::client_hosts::{ClientHosts, tracked_by};
use super::events::EventTap;
use super::front_end::{NlmFrontEnd, Outgoing, Step};
use super::persist::{self, PersistBatch, PersistSink};
use super::persist_gate::{Hold, PersistGate, Released};
use super::shared::{CoreMsg, Shared};
use crate::metrics::StoreFailureLabels;
use crate::store::{ClientHost, StoreError};

/// How long to wait before asking a store that failed again.
const RECOVER_RETRY: Duration = Duration::from_millis(500);

/// What the core task starts from.
pub(crate) struct Start {
    pub core: Core,
    pub shared: Arc<Shared>,
    pub sink: Box<dyn PersistSink>,
    pub front_end: NlmFrontEnd,
    pub hosts: ClientHosts,
    /// The queue of SM_MON/SM_UNMON calls to the local statd, if there is one.
    pub statd: Option<mpsc::Sender<StatdCall>>,
    pub fatal: watch::Sender<Option<String>>,
}

/// The one task that owns the core.
pub(crate) struct CoreDriver {
    core: Core,
    /// The core's clock: milliseconds since this moment.
    start: Instant,
    shared: Arc<Shared>,
    sink: Box<dyn PersistSink>,
    front_end: NlmFrontEnd,
    hosts: ClientHosts,
    gate: PersistGate<Vec<Action>>,
    statd: Option<mpsc::Sender<StatdCall>>,
    /// Batches waiting to be durable, to the task that tells us when they are.
    durable: mpsc::Sender<persist::Submitted>,
    /// Rebuilding the core from the store: events are not handed to the core meanwhile.
    recovering: bool,
    /// Another instance took the store over (or what it holds is unreadable): nothing is served.
    fenced: Option<StoreError>,
    fatal: watch::Sender<Option<String>>,
    store_failures: u64,
    /// `GET /events` subscribers' feed (events.rs).
    tap: EventTap,
    /// Buffers reused from call to call.
    actions: Vec<Action>,
    steps: Vec<Step>,
}

impl CoreDriver {
    /// The driver, with the restored client hosts taken back and the restore's own `actions`
    /// (persist batches, reclaims' state) carried out.
    pub(crate) fn new(start: Start, restored_hosts: &[ClientHost], actions: Vec<Action>) -> Self {
        let capacity = start.shared.config.max_calls_in_flight + super::shared::CORE_QUEUE_INTERNAL;
        let durable = persist::watch_durable(
            start.shared.core_tx.clone(),
            start.shared.metrics.clone(),
            capacity,
        );
        let mut driver = CoreDriver {
            core: start.core,
            start: Instant::now(),
            shared: start.shared,
            sink: start.sink,
            front_end: start.front_end,
            hosts: start.hosts,
            gate: PersistGate::default(),
            statd: start.statd,
            durable,
            recovering: false,
            fenced: None,
            fatal: start.fatal,
            store_failures: 0,
            tap: EventTap::default(),
            actions: Vec::new(),
            steps: Vec::new(),
        };
        driver.hosts.restore(restored_hosts, Instant::now());
        driver.after_event(actions);
        driver
    }

    /// The core's clock: milliseconds since this driver started.
    fn now(&self) -> brlock_core::Instant {
        brlock_core::Instant::from_millis(self.start.elapsed().as_millis() as u64)
    }

    /// Runs until told to shut down (and every held reply is out) or every sender is gone.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<CoreMsg>) {
        let mut stopping: Option<oneshot::Sender<()>> = None;
        // Half the idle time: a host is unmonitored between 1 and 1.5 idle times after it went quiet.
        let sweep_every = (self.shared.config.unmonitor_idle / 2).max(Duration::from_millis(1));
        let mut sweep = tokio::time::interval(sweep_every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while stopping.is_none() || !self.gate.is_empty() {
            let timer = self.core.poll_timeout().filter(|_| self.serving());
            // A moment past what the OS clock can name (a huge configured timeout) never comes.
            let wake = timer
                .and_then(|at| (self.start).checked_add(Duration::from_millis(at.as_millis())));
            let input = tokio::select! {
                msg = rx.recv() => msg.map(Input::Message),
                _ = sleep_until(wake), if wake.is_some() => Some(Input::Timer),
                _ = sweep.tick(), if !self.hosts.is_empty() && self.serving() => Some(Input::Sweep),
            };
            match input {
                None => break,
                Some(Input::Message(CoreMsg::Shutdown(done))) => stopping = Some(done),
                Some(Input::Message(msg)) => self.on_message(msg),
                Some(Input::Timer) => self.handle(Event::Tick),
                Some(Input::Sweep) => {
                    self.hosts.sweep(Instant::now(), tracked_by(&self.core));
                }
            }
            self.flush_host_writes();
            self.send_statd_calls();
        }
        if let Some(done) = stopping {
            let _ = done.send(());
        }
    }

    fn on_message(&mut self, msg: CoreMsg) {
        match msg {
            CoreMsg::Call { ctx, call } => {
                let mut steps = std::mem::take(&mut self.steps);
                let now = Instant::now();
                let hosts = &mut self.hosts;
                self.front_end
                    .on_call(ctx, call, hosts, &self.core, now, &mut steps);
                for step in steps.drain(..) {
                    match step {
                        Step::Send(out) => self.send(out),
                        Step::Decide(request, event) => self.decide(request, event),
                        Step::Event(event) => self.handle(event),
                    }
                }
                self.steps = steps;
                self.hosts.forget_fresh_if_idle(tracked_by(&self.core));
            }
            // The core these belong to is being replaced (its waiters are gone) or retired.
            CoreMsg::CallbackOutcome { waiter, .. } | CoreMsg::GrantedMsgExpired { waiter, .. }
                if !self.serving() =>
            {
                debug!(
                    waiter = waiter.0,
                    "callback outcome dropped: the core is being rebuilt"
                );
            }
            CoreMsg::CallbackOutcome {
                waiter,
                result,
                attempt,
            } => {
                debug!(waiter = waiter.0, attempt, ?result, "callback outcome");
                self.handle(Event::CallbackOutcome { waiter, result })
            }
            CoreMsg::GrantedMsgExpired { waiter, attempt } => {
                if let Some(event) = self.front_end.granted_msg_expired(waiter, attempt) {
                    self.handle(event);
                }
            }
            CoreMsg::Durable { batch, result } => {
                match result {
                    Ok(()) => self.gate.durable(batch),
                    Err(e) => self.persist_failed(batch, e),
                }
                self.release_held();
            }
            CoreMsg::Recovered(result) => self.recovered(result),
            CoreMsg::RetryRecover => self.start_recovery(),
            CoreMsg::ClientRebooted { peer, notice } => {
                for name in self.hosts.rebooted(peer, &notice) {
                    self.hosts.forget(&name);
                    self.handle(Event::FreeAll {
                        client: ClientId::new(name),
                    });
                }
            }
            CoreMsg::Inspect(ask) => ask(&self.view()),
            CoreMsg::Shutdown(_) => {}
        }
    }

    /// A request for the core, unless the core must not decide anything now.
    fn decide(&mut self, request: RequestId, event: Event) {
        if !self.serving() {
            // Rebuilding from the store, or fenced: refused.
            if let Some(out) = self.front_end.refuse(request) {
                self.send(out);
            }
        } else if !self.shared.gate.is_open() {
            // The leadership lease ran out: not a single answer from this core's memory.
            self.front_end.abandon(request);
        } else {
            self.handle(event);
        }
    }

    /// Hands `event` to the core and its actions to the persist gate.
    fn handle(&mut self, event: Event) {
        if !self.serving() {
            debug!(
                ?event,
                "event dropped: the core is being rebuilt from the store, or fenced"
            );
            return;
        }
        let now = self.now();
        let mut out = std::mem::take(&mut self.actions);
        let watched = self.tap.watching().then(|| event.clone());
        self.core.handle(now, event, &mut out);
        if let Some(event) = watched {
            self.tap.publish(now, event, &out);
        }
        let actions = std::mem::take(&mut out);
        self.actions = out;
        self.after_event(actions);
    }

    /// Persist first; everything else once durable, and never ahead of an earlier event's actions.
    /// Client-host changes made since the last batch go with this one.
    fn after_event(&mut self, mut actions: Vec<Action>) {
        // The rows leave the actions (nothing else reads them), moved rather than copied.
        let ops: Vec<_> = actions
            .extract_if(.., |a| matches!(a, Action::Persist { .. }))
            .filter_map(|a| match a {
                Action::Persist { epoch, seq, op } => Some((epoch, seq, op)),
                _ => None,
            })
            .collect();
        let hosts = self.hosts.take_writes();
        let writes = !ops.is_empty() || !hosts.is_empty();
        let batch = match self.gate.hold(actions, writes) {
            Hold::Now(actions) => return self.execute(actions),
            Hold::Held(None) => return self.release_held(),
            Hold::Held(Some(batch)) => batch,
        };
        self.shared.metrics.store_writes.inc_by(ops.len() as u64);
        let mut durable = self.sink.submit(PersistBatch { ops, hosts });
        match durable
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(Ok(())) => self.gate.durable_now(batch),
            Poll::Ready(Err(e)) => self.persist_failed(batch, e),
            Poll::Pending => {
                let submitted = persist::Submitted {
                    batch,
                    at: Instant::now(),
                    durable,
                };
                if self.durable.try_send(submitted).is_err() {
                    // Past every bound that feeds it (see `watch_durable`): refuse and rebuild.
                    let full = "too many batches waiting to be durable";
                    self.persist_failed(batch, StoreError::Unavailable(full.into()));
                }
            }
        }
        self.release_held();
    }

    /// Carries out the held actions whose turn has come; once a failure has drained, rebuilds.
    fn release_held(&mut self) {
        while let Some(released) = self.gate.release() {
            match released {
                Released::Durable(actions) => self.execute(actions),
                Released::Failed(actions) => {
                    for action in actions {
                        if let Some(out) = self.front_end.on_failed_action(action) {
                            self.send(out);
                        }
                    }
                }
            }
        }
        if self.gate.is_empty() && self.gate.failing() && self.fenced.is_none() && !self.recovering
        {
            self.recovering = true;
            self.start_recovery();
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            if let Some(out) = self.front_end.on_action(action, &self.hosts) {
                self.send(out);
            }
        }
    }

    /// Sends what the front end produced; nothing here waits.
    fn send(&self, out: Outgoing) {
        match out {
            Outgoing::Reply { ctx, reply, status } => self.shared.reply_nlm(&ctx, &reply, status),
            Outgoing::Res { ctx, res, status } => self.shared.send_res(&ctx, res, status),
            Outgoing::Granted {
                to,
                callback,
                grant,
                args,
            } => {
                let send = callbacks::send_granted(self.shared.clone(), to, callback, grant, args);
                tokio::spawn(send);
            }
            Outgoing::Unreachable { waiter, attempt } => {
                // Through the queue like every outcome (the core task must not wait on its own queue).
                let tx = self.shared.core_tx.clone();
                let result = brlock_core::CallbackResult::Failed;
                tokio::spawn(async move {
                    let outcome = CoreMsg::CallbackOutcome {
                        waiter,
                        result,
                        attempt,
                    };
                    let _ = tx.send(outcome).await;
                });
            }
        }
    }

    /// Writes queued client-host changes now if no event carried them.
    fn flush_host_writes(&mut self) {
        if self.hosts.has_writes() && self.serving() {
            self.after_event(Vec::new());
        }
    }

    fn send_statd_calls(&mut self) {
        for call in self.hosts.take_statd_calls() {
            let Some(statd) = &self.statd else { continue };
            if let Err(e) = statd.try_send(call) {
                let (StatdCall::Mon(name) | StatdCall::Unmon(name)) = e.into_inner();
                warn!(host = %String::from_utf8_lossy(&name), "statd call dropped: the statd queue is full");
            }
        }
    }

    /// What the admin endpoints may read.
    fn view(&self) -> CoreView<'_> {
        let readiness = match (&self.fenced, self.gate.failing()) {
            (Some(_), _) => admin::Readiness::Fenced,
            (None, true) => admin::Readiness::Rebuilding,
            (None, false) => admin::Readiness::Serving,
        };
        CoreView {
            core: &self.core,
            now: self.now(),
            readiness,
            hosts: &self.hosts,
            tap: &self.tap,
        }
    }

    /// Whether events go to the core (not while it is rebuilt, nor once fenced).
    fn serving(&self) -> bool {
        !self.gate.failing() && self.fenced.is_none()
    }

    /// Batch `batch` will never be durable. From it on, withheld replies become failures; once every
    /// submitted batch has resolved the core is rebuilt from the store (`release_held`).
    fn persist_failed(&mut self, batch: u64, e: StoreError) {
        self.store_failures += 1;
        let kind = if matches!(e, StoreError::Fenced { .. }) {
            "fenced"
        } else {
            "error"
        };
        let labels = StoreFailureLabels { kind };
        self.shared
            .metrics
            .store_failures
            .get_or_create(&labels)
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
        } else if !self.gate.failing() {
            error!(batch, error = %e, store_failures = self.store_failures,
                "persist failed: refusing the requests that needed it (NLM4_FAILED / DENIED_NOLOCKS) \
                 and rebuilding the core from the store");
        }
        self.gate.failed(batch);
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

    fn recovered(&mut self, result: Result<(Vec<LockRecord>, Vec<ShareRecord>), StoreError>) {
        if self.fenced.is_some() {
            return;
        }
        match result {
            Ok((records, shares)) => self.rebuild(records, shares),
            Err(e @ StoreError::Fenced { .. }) => self.persist_failed(self.gate.next_batch(), e),
            Err(e) => {
                warn!(error = %e, "store still unavailable; asking again");
                let tx = self.shared.core_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RECOVER_RETRY).await;
                    let _ = tx.send(CoreMsg::RetryRecover).await;
                });
            }
        }
    }

    /// Swaps in the core's own rebuild from what the store holds (`Core::rebuild`: which locks,
    /// waiters, grace state and reclaims survive is the core's rule), and carries out its actions.
    /// Waiter ids survive, so per-waiter state in the front end stays valid.
    fn rebuild(&mut self, records: Vec<LockRecord>, shares: Vec<ShareRecord>) {
        let (count, share_count) = (records.len(), shares.len());
        let (core, actions) = match self.core.rebuild(self.now(), records, shares) {
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
        self.gate.rebuilt();
        self.recovering = false;
        // The host writes of the failed batches are lost with them: write every binding again.
        self.hosts.rewrite_all();
        self.after_event(actions);
        info!(
            locks = count,
            shares = share_count,
            store_failures = self.store_failures,
            "store answers again: core rebuilt from its {count} lock records and {share_count} shares; serving"
        );
    }
}

/// What wakes the driver.
enum Input {
    Message(CoreMsg),
    /// The moment the core's `poll_timeout` asked for.
    Timer,
    /// Time to sweep the client-host table (`ClientHosts::sweep`).
    Sweep,
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}
