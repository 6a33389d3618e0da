//! The one seam where persistence goes: the core task hands each event's `Action::Persist` ops to a
//! [`PersistSink`] and holds back that event's replies and callbacks until the sink says the ops are
//! durable (the host contract in `brlock_core`). The SQLite/PostgreSQL store implements this trait.

use std::future::Future;
use std::pin::Pin;

use brlock_core::PersistOp;

/// One event's persist actions, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistBatch {
    /// `(epoch, seq, op)` exactly as the core emitted them.
    pub ops: Vec<(u64, u64, PersistOp)>,
}

/// Resolves once the batch (and every batch submitted before it) is durable, or with the reason it
/// never will be.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Where persist batches go. `submit` is called from the core task and must not block: queue the
/// batch (e.g. for a group-commit task) and return a future for its durability. Batches become durable
/// in submission order.
pub trait PersistSink: Send + 'static {
    fn submit(&mut self, batch: PersistBatch) -> Durable;
}

/// Keeps nothing: every batch is "durable" at once (`--store memory`; locks do not survive a restart).
#[derive(Debug, Default)]
pub struct MemorySink;

impl PersistSink for MemorySink {
    fn submit(&mut self, _batch: PersistBatch) -> Durable {
        Box::pin(std::future::ready(Ok(())))
    }
}
