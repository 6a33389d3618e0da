//! Group commit: the writes of many requests in one transaction.
//!
//! The server loop handles one event at a time. For each event it hands the event's `Persist`
//! writes to [`GroupCommit::submit`] — which queues them and returns at once with a [`Ticket`] — and
//! holds back the replies and callbacks that follow them until the ticket resolves. Meanwhile it goes
//! on with the next events. A committer task takes everything waiting in the queue (up to
//! [`GroupCommitOptions::max_writes`]), applies it in submission order in one transaction, and
//! resolves every ticket of that transaction once it has committed — so one fsync serves every
//! request that arrived while the previous transaction was committing.
//!
//! ```text
//! let (epoch, records) = store.begin_epoch().await?;
//! let (core, actions) = Core::restore(config, now, epoch, records)?;
//! let commits = GroupCommit::spawn(store.clone(), epoch, GroupCommitOptions::default());
//! // per event:
//! let writes = /* its Action::Persist { seq, op, .. } as Write { seq, op } */;
//! let ticket = commits.submit(writes).await;
//! // later (e.g. in a task per event): send the replies once the writes are durable
//! match ticket.await {
//!     Ok(()) => send(replies),
//!     Err(StoreError::Fenced { .. }) => shut down: another instance owns the store,
//!     Err(_) => answer NLM4_FAILED / NLM4_DENIED_NOLOCKS,
//! }
//! ```
//!
//! Guarantees:
//! - Writes reach the store in submission order; a ticket resolves only after every write submitted
//!   before it has been committed or has failed, so tickets resolve in submission order. A ticket
//!   with no writes is an ordering barrier and costs no transaction.
//! - A failed transaction of several submissions is tried again one submission per transaction, in
//!   order, so that one request the store cannot take fails alone and the requests before it in the
//!   batch still commit (issue 13, row 10); the rest of the batch then fails as after any failure.
//!   A failed transaction fails every ticket in it with the same error and writes none of it; the
//!   committer goes on with the next submissions, so the server serves again as soon as the store
//!   answers. (The core still believes in the failed writes: the server decides how to bring the two
//!   back together.)
//! - [`StoreError::Fenced`] is final: every later ticket fails with it without touching the store.
//! - Failures are logged (`tracing`) and counted ([`GroupCommit::stats`]).
//! - With [`GroupCommitOptions::halt_on_failure`], a failed transaction also fails every later
//!   submission, without touching the store, until [`GroupCommit::resume`]: writes computed by a
//!   core that believed in the failed ones never reach the store, so the server can rebuild its core
//!   from what the store holds (brlockd does; see `server/persist.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{HostWrite, Store, StoreError, Write};

#[derive(Clone, Copy, Debug)]
pub struct GroupCommitOptions {
    /// A transaction takes no more writes than this from the queue, so that one transaction cannot
    /// grow without bound under load. A single submission larger than this is never split.
    pub max_writes: usize,
    /// Submissions that may wait for the committer before `submit` itself waits (backpressure;
    /// [`GroupCommit::submit_now`] never waits).
    pub queue: usize,
    /// The most submissions ever queued, `submit_now` included: past it a submission fails at once
    /// (`StoreError::Unavailable`) instead of growing the queue. brlockd sizes it above what its
    /// own bounds can feed (`--max-calls-in-flight` plus internal messages), so it is a backstop.
    pub capacity: usize,
    /// After a failed transaction (other than fencing, which is final anyway), fail every later
    /// submission until [`GroupCommit::resume`].
    pub halt_on_failure: bool,
}

impl Default for GroupCommitOptions {
    fn default() -> Self {
        Self {
            max_writes: 4096,
            queue: 16384,
            capacity: 65536,
            halt_on_failure: false,
        }
    }
}

/// What the committer has done so far.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct GroupCommitStats {
    /// Transactions committed.
    pub transactions: u64,
    /// Writes in those transactions.
    pub writes: u64,
    /// Submissions resolved (including barriers and failed ones).
    pub submissions: u64,
    /// Transactions that failed (each failure is also logged).
    pub failures: u64,
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    writes: AtomicU64,
    submissions: AtomicU64,
    failures: AtomicU64,
}

struct Submission {
    writes: Vec<Write>,
    hosts: Vec<HostWrite>,
    done: oneshot::Sender<Result<(), StoreError>>,
    /// Held while queued: `submit`'s backpressure.
    _permit: Option<OwnedSemaphorePermit>,
}

enum Msg {
    Submit(Submission),
    /// Ends a halt (see [`GroupCommitOptions::halt_on_failure`]).
    Resume,
}

/// The handle to a committer task. Dropping it lets the task finish what is queued and stop.
pub struct GroupCommit {
    queue: mpsc::Sender<Msg>,
    permits: Arc<Semaphore>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

/// Resolves once the submission's writes are durable (`Ok`) or cannot be (`Err`).
#[must_use = "a reply may go out only once its ticket resolves"]
pub struct Ticket(TicketState);

enum TicketState {
    Waiting(oneshot::Receiver<Result<(), StoreError>>),
    Failed(Option<StoreError>),
}

impl Future for Ticket {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            TicketState::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or_else(|_| Err(stopped()))),
            TicketState::Failed(e) => Poll::Ready(Err(e.take().unwrap_or_else(stopped))),
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the group commit task has stopped".into())
}

impl GroupCommit {
    /// Starts the committer on the current tokio runtime. `epoch` is the one `begin_epoch` returned:
    /// every transaction is fenced on it.
    pub fn spawn(store: Arc<Store>, epoch: u64, options: GroupCommitOptions) -> GroupCommit {
        let (queue, rx) = mpsc::channel(options.capacity.max(options.queue).max(1) + 1);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(
            store,
            epoch,
            options.max_writes.max(1),
            options.halt_on_failure,
            rx,
            counters.clone(),
        ));
        GroupCommit {
            queue,
            permits: Arc::new(Semaphore::new(options.queue.max(1))),
            counters,
            task,
        }
    }

    /// Queues `writes` (one event's persists, in order) behind everything submitted before. Waits
    /// only when the queue is full.
    pub async fn submit(&self, writes: Vec<Write>) -> Ticket {
        let permit = self.permits.clone().acquire_owned().await.ok();
        self.enqueue(writes, Vec::new(), permit)
    }

    /// `submit` without waiting, for a caller that cannot wait (brlockd's core task, whose own input
    /// is the backpressure): the queue may grow past [`GroupCommitOptions::queue`], up to
    /// [`GroupCommitOptions::capacity`], past which the ticket fails at once.
    pub fn submit_now(&self, writes: Vec<Write>) -> Ticket {
        self.submit_now_with_hosts(writes, Vec::new())
    }

    /// `submit_now` with client-host changes that commit in the same transaction as `writes`.
    pub fn submit_now_with_hosts(&self, writes: Vec<Write>, hosts: Vec<HostWrite>) -> Ticket {
        let permit = self.permits.clone().try_acquire_owned().ok();
        self.enqueue(writes, hosts, permit)
    }

    fn enqueue(
        &self,
        writes: Vec<Write>,
        hosts: Vec<HostWrite>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Ticket {
        let (done, rx) = oneshot::channel();
        let submission = Submission {
            writes,
            hosts,
            done,
            _permit: permit,
        };
        match self.queue.try_send(Msg::Submit(submission)) {
            Ok(()) => Ticket(TicketState::Waiting(rx)),
            Err(mpsc::error::TrySendError::Full(_)) => {
                Ticket(TicketState::Failed(Some(StoreError::Unavailable(
                    "the store's commit queue is full (GroupCommitOptions::capacity)".into(),
                ))))
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Ticket(TicketState::Failed(None)),
        }
    }

    /// Ends a halt after a failure: submissions queued after this call are committed again. Those
    /// queued before it fail. Does nothing when not halted.
    pub fn resume(&self) {
        // The queue has a slot kept for this (capacity + 1), and a caller resumes once what it
        // submitted has resolved; should it still be full, the resume waits its turn.
        if let Err(mpsc::error::TrySendError::Full(msg)) = self.queue.try_send(Msg::Resume) {
            let queue = self.queue.clone();
            tokio::spawn(async move {
                let _ = queue.send(msg).await;
            });
        }
    }

    /// `submit` and wait for the ticket.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.submit(writes).await.await
    }

    pub fn stats(&self) -> GroupCommitStats {
        let c = &self.counters;
        GroupCommitStats {
            transactions: c.transactions.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            submissions: c.submissions.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        }
    }

    /// Commits what is queued, resolves every ticket, and stops the committer.
    pub async fn shutdown(self) {
        drop(self.queue);
        // The task only ends by running out of submissions; a panic in it has been reported already.
        let _ = self.task.await;
    }
}

async fn run(
    store: Arc<Store>,
    epoch: u64,
    max_writes: usize,
    halt_on_failure: bool,
    mut rx: mpsc::Receiver<Msg>,
    counters: Arc<Counters>,
) {
    let mut fenced: Option<StoreError> = None;
    let mut halted: Option<StoreError> = None;
    let mut batch: Vec<Write> = Vec::new();
    let mut hosts: Vec<HostWrite> = Vec::new();
    let mut waiters: Vec<Taken> = Vec::new();
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(s) => s,
            None => match rx.recv().await {
                Some(Msg::Submit(s)) => s,
                Some(Msg::Resume) => {
                    halted = None;
                    continue;
                }
                None => return,
            },
        };
        if let Some(e) = &halted {
            counters.submissions.fetch_add(1, Ordering::Relaxed);
            let _ = first.done.send(Err(e.clone()));
            continue;
        }
        take(first, &mut batch, &mut hosts, &mut waiters);
        // Everything already waiting joins this transaction, up to `max_writes`. (A `Resume` here
        // finds nothing halted: it was sent after an earlier halt's submissions had all failed.)
        while batch.len() < max_writes {
            match rx.try_recv() {
                Ok(Msg::Submit(s))
                    if !batch.is_empty() && batch.len() + s.writes.len() > max_writes =>
                {
                    next = Some(s);
                    break;
                }
                Ok(Msg::Submit(s)) => take(s, &mut batch, &mut hosts, &mut waiters),
                Ok(Msg::Resume) => {}
                Err(_) => break,
            }
        }
        let result = if let Some(e) = &fenced {
            Err(e.clone())
        } else if batch.is_empty() && hosts.is_empty() {
            Ok(())
        } else {
            let mut result = store.apply_with_hosts(epoch, &batch, &hosts).await;
            if matches!(&result, Err(e) if !matches!(e, StoreError::Fenced { .. }))
                && waiters.len() > 1
            {
                // Which request could the store not take? Each alone, in order, up to the first
                // that fails; the ones before it are durable and answered so.
                let mut failed = None;
                for t in &mut waiters {
                    let alone = store
                        .apply_with_hosts(epoch, &batch[t.writes.clone()], &hosts[t.hosts.clone()])
                        .await;
                    match alone {
                        Ok(()) => {
                            counters.transactions.fetch_add(1, Ordering::Relaxed);
                            counters
                                .writes
                                .fetch_add(t.writes.len() as u64, Ordering::Relaxed);
                            counters.submissions.fetch_add(1, Ordering::Relaxed);
                            if let Some(done) = t.done.take() {
                                let _ = done.send(Ok(()));
                            }
                        }
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                result = Err(failed.unwrap_or_else(|| {
                    StoreError::Unavailable("the batch failed as a whole only".into())
                }));
            }
            match &result {
                Ok(()) => {
                    counters.transactions.fetch_add(1, Ordering::Relaxed);
                    counters
                        .writes
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    counters.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                        error = %e,
                        writes = batch.len(),
                        requests = waiters.len(),
                        backend = store.backend(),
                        "store transaction failed"
                    );
                    if matches!(e, StoreError::Fenced { .. }) {
                        fenced = Some(e.clone());
                    } else if halt_on_failure {
                        halted = Some(StoreError::Unavailable(format!(
                            "not attempted: an earlier transaction failed ({e})"
                        )));
                    }
                }
            }
            result
        };
        for t in waiters.drain(..) {
            // Those answered one by one above are not counted again.
            if let Some(done) = t.done {
                counters.submissions.fetch_add(1, Ordering::Relaxed);
                // A submitter that stopped waiting does not care about the answer.
                let _ = done.send(result.clone());
            }
        }
        batch.clear();
        hosts.clear();
    }
}

/// One submission in the transaction being built: who waits, and which of its writes are its own.
struct Taken {
    /// Taken once the submission is answered.
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
    writes: std::ops::Range<usize>,
    hosts: std::ops::Range<usize>,
}

fn take(
    s: Submission,
    batch: &mut Vec<Write>,
    hosts: &mut Vec<HostWrite>,
    waiters: &mut Vec<Taken>,
) {
    let (w, h) = (batch.len(), hosts.len());
    batch.extend(s.writes);
    hosts.extend(s.hosts);
    waiters.push(Taken {
        done: Some(s.done),
        writes: w..batch.len(),
        hosts: h..hosts.len(),
    });
}
