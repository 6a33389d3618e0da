//! The one seam where persistence goes: the core task hands each event's `Action::Persist` ops to a
//! [`PersistSink`] and holds back that event's replies and callbacks until the sink says the ops are
//! durable (the host contract in `brlock_core`). [`StorePersistSink`] puts them in the store through
//! group commit; [`MemorySink`] keeps nothing.
//!
//! # When a batch fails
//! The core has already applied what the failed batch would have written, so the core task brings
//! the core back in line with the store, the simplest way that is obviously correct: it stops
//! handing events to the core, answers every withheld reply from the failed batch on with
//! NLM4_FAILED (v1/v3: DENIED_NOLOCKS) and drops the withheld callbacks, waits until every batch
//! submitted so far has resolved, then calls [`PersistSink::recover`] (retrying while the store is
//! still down) and rebuilds the core from the lock records and share reservations the store holds,
//! with `Core::rebuild`, which decides which of the old core's waiters survive (`driver.rs`). The
//! store never takes a batch computed from the failed one: the sink fails every later batch until
//! `recover` (group commit's `halt_on_failure`). So the core and the store agree on every
//! acknowledged lock at all times.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use brlock_core::{LockRecord, PersistOp, ShareRecord};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::store::{
    GroupCommit, GroupCommitOptions, HostWrite, RecordFilter, Store, StoreError, Write,
};

use super::shared::CoreMsg;

/// One event's persist actions, in order, and the client-host changes that go with them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PersistBatch {
    /// `(epoch, seq, op)` exactly as the core emitted them.
    pub ops: Vec<(u64, u64, PersistOp)>,
    /// Bindings and monitoring the server changed while handling the event (a new host's binding
    /// is durable before its first lock is acknowledged).
    pub hosts: Vec<HostWrite>,
}

/// Resolves once the batch (and every batch submitted before it) is durable, or with the reason it
/// never will be. [`StoreError::Fenced`] means another instance owns the store: stop serving.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// Resolves with every lock record and share reservation the store holds, once later batches are
/// accepted again.
pub type Recovered =
    Pin<Box<dyn Future<Output = Result<(Vec<LockRecord>, Vec<ShareRecord>), StoreError>> + Send>>;

/// Where persist batches go. `submit` is called from the core task and must not block: queue the
/// batch (e.g. for a group-commit task) and return a future for its durability. Batches become durable
/// in submission order; after a failed batch every later one fails too, until `recover`.
pub trait PersistSink: Send + 'static {
    fn submit(&mut self, batch: PersistBatch) -> Durable;

    /// Called after a failure, once every submitted batch has resolved and before any new one:
    /// accept batches again and read back every record the store holds (the core is rebuilt from
    /// them). May be called again if it fails.
    fn recover(&mut self) -> Recovered;
}

/// Keeps nothing: every batch is "durable" at once (`--store memory`; locks do not survive a restart).
#[derive(Debug, Default)]
pub struct MemorySink;

impl PersistSink for MemorySink {
    fn submit(&mut self, _batch: PersistBatch) -> Durable {
        Box::pin(std::future::ready(Ok(())))
    }

    fn recover(&mut self) -> Recovered {
        // Never called: nothing here fails.
        Box::pin(std::future::ready(Err(StoreError::Unavailable(
            "the memory sink keeps no records".into(),
        ))))
    }
}

/// A [`Store`] behind group commit: the writes of every event that arrives while a transaction
/// commits go into the next one.
pub struct StorePersistSink {
    store: Arc<Store>,
    commits: GroupCommit,
}

impl StorePersistSink {
    /// Starts the committer (on the current runtime) for `epoch`, the one `begin_epoch` returned.
    /// `capacity` bounds the batches queued for the committer (see [`GroupCommitOptions::capacity`]).
    pub fn spawn(store: Arc<Store>, epoch: u64, capacity: usize) -> Self {
        let options = GroupCommitOptions {
            halt_on_failure: true,
            capacity,
            ..GroupCommitOptions::default()
        };
        let commits = GroupCommit::spawn(store.clone(), epoch, options);
        Self { store, commits }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }
}

impl PersistSink for StorePersistSink {
    fn submit(&mut self, batch: PersistBatch) -> Durable {
        let writes = batch
            .ops
            .into_iter()
            .map(|(_, seq, op)| Write { seq, op })
            .collect();
        Box::pin(self.commits.submit_now_with_hosts(writes, batch.hosts))
    }

    fn recover(&mut self) -> Recovered {
        self.commits.resume();
        let store = self.store.clone();
        Box::pin(async move {
            let locks = store.records(&RecordFilter::All).await?;
            let shares = store.kept().await?.shares;
            Ok((locks, shares))
        })
    }
}

/// A batch handed to the sink whose durability the core task waits for.
pub(crate) struct Submitted {
    pub batch: u64,
    pub at: Instant,
    pub durable: Durable,
}

/// Starts the task that waits for submitted batches in submission order (the order they become
/// durable in) and tells the core task. Every batch that is already durable when the one before it
/// resolves goes into the same message, `Durable { batch: the last of them, result: Ok }`: one
/// group commit then wakes the core task once and its replies leave together, instead of a task
/// and a message per request. A failed batch is reported alone, with its error.
pub(crate) fn watch_durable(
    core_tx: mpsc::Sender<CoreMsg>,
    metrics: Arc<Metrics>,
    capacity: usize,
) -> mpsc::Sender<Submitted> {
    // One entry per event whose batch is not durable yet, and every such event is a call in flight
    // (`--max-calls-in-flight`) or an internal message of the core's bounded queue: `capacity` is
    // that sum, so the bound is never met in practice. The core task cannot wait for room; should it
    // ever find none, it treats the batch as failed (refuse, then rebuild from the store).
    let (tx, mut rx) = mpsc::channel::<Submitted>(capacity.max(1));
    tokio::spawn(async move {
        let mut next: Option<Submitted> = None;
        loop {
            let Some(mut current) = next.take() else {
                match rx.recv().await {
                    Some(s) => next = Some(s),
                    None => return,
                }
                continue;
            };
            let result = current.durable.as_mut().await;
            metrics
                .store_durable_seconds
                .observe(current.at.elapsed().as_secs_f64());
            if let Err(e) = result {
                let _ = core_tx
                    .send(CoreMsg::Durable {
                        batch: current.batch,
                        result: Err(e),
                    })
                    .await;
                continue;
            }
            let mut through = current.batch;
            let mut failed = None;
            while let Ok(mut s) = rx.try_recv() {
                match s
                    .durable
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                {
                    Poll::Ready(result) => {
                        metrics
                            .store_durable_seconds
                            .observe(s.at.elapsed().as_secs_f64());
                        match result {
                            Ok(()) => through = s.batch,
                            Err(e) => {
                                failed = Some((s.batch, e));
                                break;
                            }
                        }
                    }
                    // Not durable yet: awaited on the next round.
                    Poll::Pending => {
                        next = Some(s);
                        break;
                    }
                }
            }
            let _ = core_tx
                .send(CoreMsg::Durable {
                    batch: through,
                    result: Ok(()),
                })
                .await;
            if let Some((batch, e)) = failed {
                let _ = core_tx
                    .send(CoreMsg::Durable {
                        batch,
                        result: Err(e),
                    })
                    .await;
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submitted(
        batch: u64,
        durable: impl Future<Output = Result<(), StoreError>> + Send + 'static,
    ) -> Submitted {
        Submitted {
            batch,
            at: Instant::now(),
            durable: Box::pin(durable),
        }
    }

    async fn next(rx: &mut mpsc::Receiver<CoreMsg>) -> (u64, Result<(), StoreError>) {
        match tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await {
            Ok(Some(CoreMsg::Durable { batch, result })) => (batch, result),
            _ => panic!("no Durable message"),
        }
    }

    #[tokio::test]
    async fn batches_durable_together_are_one_message_and_a_failure_is_its_own() {
        let (core_tx, mut core_rx) = mpsc::channel(16);
        let watch = watch_durable(core_tx, Arc::new(Metrics::new()), 64);
        let (commit, committed) = tokio::sync::oneshot::channel::<()>();
        watch
            .send(submitted(0, async move {
                committed.await.ok();
                Ok(())
            }))
            .await
            .ok();
        watch
            .send(submitted(1, std::future::ready(Ok(()))))
            .await
            .ok();
        watch
            .send(submitted(2, std::future::ready(Ok(()))))
            .await
            .ok();
        let failure = || Err(StoreError::Unavailable("disk on fire".into()));
        watch
            .send(submitted(3, std::future::ready(failure())))
            .await
            .ok();
        watch
            .send(submitted(4, std::future::ready(failure())))
            .await
            .ok();
        // Nothing is said before batch 0 is durable, although 1 and 2 already are.
        tokio::task::yield_now().await;
        assert!(core_rx.try_recv().is_err());
        commit.send(()).unwrap();
        assert!(matches!(next(&mut core_rx).await, (2, Ok(()))));
        assert!(matches!(next(&mut core_rx).await, (3, Err(_))));
        assert!(matches!(next(&mut core_rx).await, (4, Err(_))));
        watch
            .send(submitted(5, std::future::ready(Ok(()))))
            .await
            .ok();
        assert!(matches!(next(&mut core_rx).await, (5, Ok(()))));
    }
}
