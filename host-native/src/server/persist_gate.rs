//! The persist gate: an event's actions are carried out only once the batch of rows it wrote, and
//! every earlier batch, is durable, so no client hears of a lock that a crash could forget, and
//! replies leave in the order the core decided them. Sans-io: it numbers batches and holds actions;
//! the driver submits the batches to the store and reports back.
//!
//! After a batch fails, that batch's and every later batch's actions come out as
//! [`Released::Failed`] (their requests are refused, their callbacks not sent) until
//! [`PersistGate::rebuilt`] says the core was rebuilt from what the store kept.

use std::collections::VecDeque;

/// One event's actions, held until their batch (and every earlier one) has resolved.
#[derive(Debug)]
struct Held<T> {
    batch: u64,
    actions: T,
    ready: bool,
}

/// What [`PersistGate::hold`] did with an event's actions.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Hold<T> {
    /// Nothing to write and nothing ahead of them: carry them out now.
    Now(T),
    /// Held. `Some(batch)`: their rows go in `batch`, which the driver submits and reports on
    /// with [`PersistGate::durable`] or [`PersistGate::failed`]. `None`: nothing to write, they
    /// wait only for earlier batches.
    Held(Option<u64>),
}

/// Held actions whose turn has come.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Released<T> {
    /// Their batch and every earlier one are durable: carry them out.
    Durable(T),
    /// Their batch or an earlier one failed: refuse what they answer, send nothing else.
    Failed(T),
}

/// Which held actions wait for which batch. The queue is bounded by what feeds it: one entry per
/// event, and events by `--max-calls-in-flight` plus the core queue's internal room.
#[derive(Debug)]
pub(crate) struct PersistGate<T> {
    next_batch: u64,
    held: VecDeque<Held<T>>,
    /// The first batch that failed, until the core is rebuilt.
    failed_from: Option<u64>,
}

impl<T> Default for PersistGate<T> {
    fn default() -> Self {
        PersistGate {
            next_batch: 0,
            held: VecDeque::new(),
            failed_from: None,
        }
    }
}

impl<T> PersistGate<T> {
    /// Takes one event's actions; `writes`: whether they come with rows (or host changes) to
    /// persist.
    pub(crate) fn hold(&mut self, actions: T, writes: bool) -> Hold<T> {
        if !writes && self.held.is_empty() {
            return Hold::Now(actions);
        }
        let batch = self.next_batch;
        self.next_batch += 1;
        self.held.push_back(Held {
            batch,
            actions,
            ready: !writes,
        });
        Hold::Held(writes.then_some(batch))
    }

    /// Batches become durable in order: every one up to `batch` is.
    pub(crate) fn durable(&mut self, batch: u64) {
        for held in self.held.iter_mut().take_while(|h| h.batch <= batch) {
            held.ready = true;
        }
    }

    /// `batch` alone is durable: the store took it without a wait (earlier batches may still be
    /// out).
    pub(crate) fn durable_now(&mut self, batch: u64) {
        self.mark_ready(batch);
    }

    /// `batch` will never be durable: from it on, held actions come out failed.
    pub(crate) fn failed(&mut self, batch: u64) {
        self.failed_from = Some(self.failed_from.map_or(batch, |f| f.min(batch)));
        self.mark_ready(batch);
    }

    fn mark_ready(&mut self, batch: u64) {
        // `held` is in batch order, and thousands deep under pipelined load.
        if let Ok(i) = self.held.binary_search_by_key(&batch, |h| h.batch) {
            self.held[i].ready = true;
        }
    }

    /// The next held actions whose turn has come, oldest first.
    pub(crate) fn release(&mut self) -> Option<Released<T>> {
        if !self.held.front().is_some_and(|h| h.ready) {
            return None;
        }
        let held = self.held.pop_front()?;
        Some(if self.failed_from.is_some_and(|f| held.batch >= f) {
            Released::Failed(held.actions)
        } else {
            Released::Durable(held.actions)
        })
    }

    /// A batch failed and the core has not been rebuilt since.
    pub(crate) fn failing(&self) -> bool {
        self.failed_from.is_some()
    }

    /// Nothing is held: every submitted batch has resolved and its actions are out.
    pub(crate) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The number the next batch will get (a failure found outside a batch is charged to it).
    pub(crate) fn next_batch(&self) -> u64 {
        self.next_batch
    }

    /// The core was rebuilt from the store: batches succeed again.
    pub(crate) fn rebuilt(&mut self) {
        self.failed_from = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(gate: &mut PersistGate<&'static str>) -> Vec<Released<&'static str>> {
        std::iter::from_fn(|| gate.release()).collect()
    }

    #[test]
    fn actions_without_writes_and_nothing_ahead_go_at_once() {
        let mut gate = PersistGate::default();
        assert_eq!(gate.hold("test reply", false), Hold::Now("test reply"));
        assert!(gate.is_empty());
    }

    #[test]
    fn a_reply_waits_for_its_batch_and_later_replies_wait_behind_it() {
        let mut gate = PersistGate::default();
        assert_eq!(gate.hold("lock granted", true), Hold::Held(Some(0)));
        // A TEST after it writes nothing but must not overtake the LOCK's reply.
        assert_eq!(gate.hold("test denied", false), Hold::Held(None));
        assert_eq!(gate.hold("unlock", true), Hold::Held(Some(2)));
        assert!(drain(&mut gate).is_empty());
        gate.durable(0);
        assert_eq!(
            drain(&mut gate),
            [
                Released::Durable("lock granted"),
                Released::Durable("test denied")
            ]
        );
        gate.durable(2);
        assert_eq!(drain(&mut gate), [Released::Durable("unlock")]);
        assert!(gate.is_empty());
    }

    #[test]
    fn durable_covers_every_earlier_batch() {
        let mut gate = PersistGate::default();
        gate.hold("a", true);
        gate.hold("b", true);
        gate.hold("c", true);
        gate.durable(1);
        assert_eq!(
            drain(&mut gate),
            [Released::Durable("a"), Released::Durable("b")]
        );
        assert!(!gate.is_empty());
    }

    #[test]
    fn a_failed_batch_fails_itself_and_every_later_one_until_rebuilt() {
        let mut gate = PersistGate::default();
        gate.hold("a", true);
        gate.hold("b", true);
        gate.hold("c", true);
        gate.failed(1);
        assert!(gate.failing());
        // "b" resolved, but "a" is still out: nothing overtakes it.
        assert!(drain(&mut gate).is_empty());
        gate.durable(0);
        assert_eq!(
            drain(&mut gate),
            [Released::Durable("a"), Released::Failed("b")]
        );
        // "c" was submitted before the failure was known and then made durable: still failed,
        // its event came after a lost one.
        gate.durable(2);
        assert_eq!(drain(&mut gate), [Released::Failed("c")]);
        assert!(gate.is_empty() && gate.failing());
        gate.rebuilt();
        assert!(!gate.failing());
        assert_eq!(gate.hold("d", true), Hold::Held(Some(3)));
        gate.durable(3);
        assert_eq!(drain(&mut gate), [Released::Durable("d")]);
    }

    #[test]
    fn a_batch_written_at_once_still_waits_for_earlier_ones() {
        let mut gate = PersistGate::default();
        gate.hold("a", true);
        gate.hold("b", true);
        gate.durable_now(1);
        assert!(drain(&mut gate).is_empty());
        gate.durable(0);
        assert_eq!(
            drain(&mut gate),
            [Released::Durable("a"), Released::Durable("b")]
        );
    }

    #[test]
    fn the_earliest_failure_counts() {
        let mut gate = PersistGate::default();
        gate.hold("a", true);
        gate.hold("b", true);
        gate.failed(1);
        gate.failed(0);
        assert_eq!(
            drain(&mut gate),
            [Released::Failed("a"), Released::Failed("b")]
        );
    }
}
