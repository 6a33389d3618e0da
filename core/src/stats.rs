//! Counters a host exports (brlockd turns each into a Prometheus metric). Counters only grow; the gauges
//! (held locks, waiters, clients, grace) are read from the state when `Core::stats` is called.

use alloc::string::String;
use alloc::vec::Vec;

use crate::action::{Limit, Outcome, ReleaseReason, WaiterRemovedReason};
use crate::event::CallbackResult;
use crate::time::Duration;

/// Upper bounds (inclusive) of the wait-time histogram buckets; a last bucket counts the rest.
pub const WAIT_BUCKETS_MS: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_millis(10),
    Duration::from_millis(100),
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
];

/// Replies counted by [`Outcome`] variant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OutcomeCounts {
    /// `Outcome::Granted`.
    pub granted: u64,
    /// `Outcome::Denied`.
    pub denied: u64,
    /// `Outcome::Blocked` (a retransmitted blocking LOCK counts again).
    pub blocked: u64,
    /// `Outcome::Deadlock`.
    pub deadlock: u64,
    /// `Outcome::NoLocks`; which limit is counted in the `limit_*` counters of [`Stats`].
    pub no_locks: u64,
    /// `Outcome::TooBig`.
    pub too_big: u64,
    /// `Outcome::DeniedGrace`.
    pub denied_grace: u64,
    /// `Outcome::NotReclaimable`.
    pub not_reclaimable: u64,
    /// `Outcome::ShareDenied`.
    pub share_denied: u64,
}

impl OutcomeCounts {
    pub(crate) fn count(&mut self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Granted => &mut self.granted,
            Outcome::Denied { .. } => &mut self.denied,
            Outcome::Blocked { .. } => &mut self.blocked,
            Outcome::Deadlock { .. } => &mut self.deadlock,
            Outcome::NoLocks { .. } => &mut self.no_locks,
            Outcome::TooBig => &mut self.too_big,
            Outcome::DeniedGrace => &mut self.denied_grace,
            Outcome::NotReclaimable => &mut self.not_reclaimable,
            Outcome::ShareDenied { .. } => &mut self.share_denied,
        };
        *counter += 1;
    }
}

/// What [`Core::stats`](crate::Core::stats) reports. Counters grow from 0 over a core's life (a
/// restored core starts again at 0); the gauges at the end describe the state when it was called.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Stats {
    /// Replies to lock requests (LOCK, including reclaims), by outcome.
    pub lock_replies: OutcomeCounts,
    /// Replies to every other request (unlock, test, cancel, share, unshare), by outcome.
    pub other_replies: OutcomeCounts,
    /// Waiters granted from a queue.
    pub waits_granted: u64,
    /// How long those waiters waited, summed (queued until granted).
    pub wait_ms_total: Duration,
    /// Counts per bucket of [`WAIT_BUCKETS_MS`], plus one for longer waits.
    pub wait_ms_buckets: [u64; WAIT_BUCKETS_MS.len() + 1],
    /// `SendGranted` actions, resends included.
    pub callbacks_sent: u64,
    /// Grants confirmed: `CallbackResult::Delivered`, or a retransmitted LOCK that found its grant.
    pub callbacks_delivered: u64,
    /// `CallbackResult::Failed` reports (stale ones are not counted).
    pub callbacks_failed: u64,
    /// `CallbackResult::Refused` reports (stale ones are not counted).
    pub callbacks_refused: u64,
    /// Grants undone because no client confirmed them by `Config::callback_deadline`.
    pub callbacks_unconfirmed: u64,
    /// `Released` pieces with [`ReleaseReason::Explicit`].
    pub released_explicit: u64,
    /// `Released` pieces with [`ReleaseReason::Disconnect`].
    pub released_disconnect: u64,
    /// `Released` pieces with [`ReleaseReason::FreeAll`].
    pub released_free_all: u64,
    /// `Released` pieces with [`ReleaseReason::GraceExpired`].
    pub released_grace_expired: u64,
    /// `Released` pieces with [`ReleaseReason::CallbackFailed`].
    pub released_callback_failed: u64,
    /// `WaiterRemoved` with [`WaiterRemovedReason::Cancelled`].
    pub waiters_cancelled: u64,
    /// `WaiterRemoved` with [`WaiterRemovedReason::Unlocked`].
    pub waiters_unlocked: u64,
    /// `WaiterRemoved` with [`WaiterRemovedReason::Expired`].
    pub waiters_expired: u64,
    /// `WaiterRemoved` with [`WaiterRemovedReason::ClientGone`].
    pub waiters_client_gone: u64,
    /// `WaiterRemoved` with [`WaiterRemovedReason::Deadlock`]: a cycle of waiting owners closed by a
    /// grant, broken at that waiter.
    pub waiters_deadlocked: u64,
    /// Requests refused `NoLocks` by [`Limit::PerFile`].
    pub limit_per_file: u64,
    /// Requests refused `NoLocks` by [`Limit::PerClient`].
    pub limit_per_client: u64,
    /// Requests refused `NoLocks` by [`Limit::Total`].
    pub limit_total: u64,
    /// Requests refused `NoLocks` by [`Limit::QueueLength`].
    pub limit_queue_length: u64,
    /// Requests refused `NoLocks` by [`Limit::QueueShare`].
    pub limit_queue_share: u64,
    /// Requests refused `NoLocks` by [`Limit::WaitersPerClient`].
    pub limit_waiters_per_client: u64,
    /// Requests refused `NoLocks` by [`Limit::WaitersTotal`].
    pub limit_waiters_total: u64,
    /// Requests refused `NoLocks` by [`Limit::SharesPerFile`].
    pub limit_shares_per_file: u64,
    /// Requests refused `NoLocks` by [`Limit::SharesPerClient`].
    pub limit_shares_per_client: u64,
    /// Requests refused `NoLocks` by [`Limit::SharesTotal`].
    pub limit_shares_total: u64,
    /// `ConnectionRefused` actions.
    pub connections_refused: u64,
    /// Lock reclaims granted.
    pub reclaims: u64,
    // Gauges, filled in by `Core::stats`.
    /// Held lock records now (after merging).
    pub held_locks: u64,
    /// Queued waiters now.
    pub waiters: u64,
    /// Granted waiters whose callback is not confirmed yet.
    pub pending_callbacks: u64,
    /// Files the core tracks (with locks, waiters, shares or locks to reclaim).
    pub files: u64,
    /// Owners the core tracks.
    pub owners: u64,
    /// Clients the core tracks (see [`Core::knows_client`](crate::Core::knows_client)).
    pub clients: u64,
    /// Connected clients per adapter, by adapter name.
    pub clients_per_adapter: Vec<(String, u64)>,
    /// Whether the grace period is on.
    pub in_grace: bool,
    /// How long it has left (zero outside grace).
    pub grace_remaining_ms: Duration,
}

impl Stats {
    pub(crate) fn wait_granted(&mut self, waited: Duration) {
        self.waits_granted += 1;
        self.wait_ms_total += waited;
        let bucket = WAIT_BUCKETS_MS
            .iter()
            .position(|&bound| waited <= bound)
            .unwrap_or(WAIT_BUCKETS_MS.len());
        self.wait_ms_buckets[bucket] += 1;
    }

    pub(crate) fn callback(&mut self, result: CallbackResult) {
        match result {
            CallbackResult::Delivered => self.callbacks_delivered += 1,
            CallbackResult::Failed => self.callbacks_failed += 1,
            CallbackResult::Refused => self.callbacks_refused += 1,
        }
    }

    pub(crate) fn released(&mut self, reason: ReleaseReason) {
        match reason {
            ReleaseReason::Explicit => self.released_explicit += 1,
            ReleaseReason::Disconnect => self.released_disconnect += 1,
            ReleaseReason::FreeAll => self.released_free_all += 1,
            ReleaseReason::GraceExpired => self.released_grace_expired += 1,
            ReleaseReason::CallbackFailed => self.released_callback_failed += 1,
        }
    }

    pub(crate) fn waiter_removed(&mut self, reason: WaiterRemovedReason) {
        match reason {
            WaiterRemovedReason::Cancelled => self.waiters_cancelled += 1,
            WaiterRemovedReason::Unlocked => self.waiters_unlocked += 1,
            WaiterRemovedReason::Expired => self.waiters_expired += 1,
            WaiterRemovedReason::ClientGone => self.waiters_client_gone += 1,
            WaiterRemovedReason::Deadlock => self.waiters_deadlocked += 1,
        }
    }

    pub(crate) fn limit_hit(&mut self, limit: Limit) {
        match limit {
            Limit::PerFile => self.limit_per_file += 1,
            Limit::PerClient => self.limit_per_client += 1,
            Limit::Total => self.limit_total += 1,
            Limit::QueueLength => self.limit_queue_length += 1,
            Limit::QueueShare => self.limit_queue_share += 1,
            Limit::WaitersPerClient => self.limit_waiters_per_client += 1,
            Limit::WaitersTotal => self.limit_waiters_total += 1,
            Limit::SharesPerFile => self.limit_shares_per_file += 1,
            Limit::SharesPerClient => self.limit_shares_per_client += 1,
            Limit::SharesTotal => self.limit_shares_total += 1,
        }
    }
}
