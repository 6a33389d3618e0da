//! Read-only views for hosts, metrics and the visualiser. Orders are by content, never by hash.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::action::{LockRecord, OwnerRef};
use crate::config::Config;
use crate::event::{LockKind, ShareMode};
use crate::ids::{ClientId, FileId, OwnerId, RequestId, WaiterId};
use crate::range::Range;
use crate::state::{Core, WaiterState};
use crate::stats::Stats;
use crate::time::{Duration, Instant};

/// One held lock record of a file ([`Core::held_locks`]).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HeldLockView {
    /// The holder's client.
    pub client: ClientId,
    /// The holder.
    pub owner: OwnerId,
    /// Shared or exclusive.
    pub kind: LockKind,
    /// The record's bytes (after merging); length 0 when it reaches `max_offset`.
    pub range: Range,
    /// A restored lock its owner has not reclaimed yet.
    pub unreclaimed: bool,
    /// The moment (the host's clock, as passed to `handle`) since which the owner has held this
    /// record's bytes: a record split or merged from older ones keeps the earliest of their moments;
    /// a restored one counts from the restore.
    pub since: Instant,
}

/// A blocking request: queued ([`Core::waiters`]) or granted with its callback unconfirmed
/// ([`Core::pending_callbacks`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WaiterView {
    /// The core's id for it, as `Outcome::Blocked` announced it.
    pub waiter: WaiterId,
    /// The LOCK request that queued it (its latest retransmission).
    pub request: RequestId,
    /// The waiting owner's client.
    pub client: ClientId,
    /// The waiting owner.
    pub owner: OwnerId,
    /// The kind it asked for.
    pub kind: LockKind,
    /// The range it asked for.
    pub range: Range,
    /// When it queued (the `now` of its LOCK).
    pub since: Instant,
    /// The request's opaque cookie, which its `SendGranted` will carry.
    pub cookie: Vec<u8>,
}

/// One edge of the wait-for graph: `waiter`'s owner `from` waits for `to`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WaitEdge {
    /// The queued request that waits.
    pub waiter: WaiterId,
    /// The file it waits in.
    pub file: FileId,
    /// The waiter's owner.
    pub from: OwnerRef,
    /// An owner it waits for: the holder of a conflicting lock, or of an earlier conflicting waiter.
    pub to: OwnerRef,
}

/// One share reservation of a file ([`Core::shares`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ShareView {
    /// The owner's client.
    pub client: ClientId,
    /// The owner holding the reservation.
    pub owner: OwnerId,
    /// What it uses.
    pub access: ShareMode,
    /// What it denies to others.
    pub deny: ShareMode,
}

/// The grace period, while it lasts ([`Core::grace`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct GraceView {
    /// When it ends at the latest (the restart's `now` plus [`Config::grace`]).
    pub ends_at: Instant,
    /// From the latest `now` the core has seen to `ends_at` (zero once due).
    pub remaining: Duration,
    /// How many clients had locks or shares restored (0 after [`Core::open_grace`], which restores
    /// nothing).
    pub expected: u64,
    /// Clients that still have restored locks or shares to reclaim and have not sent
    /// `ReclaimComplete`, in name order; when the last one is done, grace ends early.
    pub pending: Vec<ClientId>,
}

impl Core {
    /// The configuration the core was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The server epoch the core was built in; every [`Action::Persist`](crate::Action::Persist)
    /// carries it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The latest `now` the core has seen.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Whether the core still tracks `client`: it holds, waits for or reserves something, has locks
    /// to reclaim, or is connected (or within its disconnect TTL). Hosts drop their own per-client
    /// state (e.g. brlockd's statd monitoring) once this turns false.
    pub fn knows_client(&self, client: &ClientId) -> bool {
        self.clients.lookup(client).is_some()
    }

    /// Files that have locks, waiters or shares, in name order.
    pub fn files(&self) -> Vec<FileId> {
        let mut files: Vec<FileId> = self.files.iter().map(|(_, id, _)| id.clone()).collect();
        files.sort();
        files
    }

    /// Held locks of a file in range order (start, end, then client and owner).
    pub fn held_locks(&self, file: &FileId) -> Vec<HeldLockView> {
        let Some(fk) = self.files.lookup(file) else {
            return Vec::new();
        };
        let state = self.files.get(fk);
        let mut locks: Vec<(u64, u64, HeldLockView)> = state
            .locks
            .iter()
            .map(|lock| {
                let owner = self.owner_ref(lock.owner);
                let unreclaimed = state
                    .unreclaimed
                    .range((lock.owner, 0)..=(lock.owner, lock.span.end))
                    .any(|(&(_, start), &end)| start <= lock.span.end && end >= lock.span.start);
                let view = HeldLockView {
                    client: owner.client,
                    owner: owner.owner,
                    kind: lock.kind,
                    range: lock.span.to_range(self.config.max_offset),
                    unreclaimed,
                    since: state
                        .locks
                        .held_since(lock.owner, lock.span.start)
                        .unwrap_or(self.now),
                };
                (lock.span.start, lock.span.end, view)
            })
            .collect();
        locks.sort();
        locks.into_iter().map(|(_, _, view)| view).collect()
    }

    /// Queued waiters of a file, in queue order.
    pub fn waiters(&self, file: &FileId) -> Vec<WaiterView> {
        let Some(fk) = self.files.lookup(file) else {
            return Vec::new();
        };
        self.files
            .get(fk)
            .queue
            .keys()
            .map(|id| self.waiter_view(*id))
            .collect()
    }

    /// Granted waiters whose GRANTED callback is not yet confirmed, in waiter order.
    pub fn pending_callbacks(&self) -> Vec<WaiterView> {
        self.waiters
            .iter()
            .filter(|(_, w)| matches!(w.state, WaiterState::Granted { .. }))
            .map(|(id, _)| self.waiter_view(*id))
            .collect()
    }

    fn waiter_view(&self, id: WaiterId) -> WaiterView {
        let w = &self.waiters[&id];
        let owner = self.owner_ref(w.owner);
        WaiterView {
            waiter: id,
            request: w.request,
            client: owner.client,
            owner: owner.owner,
            kind: w.kind,
            range: w.span.to_range(self.config.max_offset),
            since: w.since,
            cookie: w.cookie.clone(),
        }
    }

    /// Share reservations of a file, by client and owner.
    pub fn shares(&self, file: &FileId) -> Vec<ShareView> {
        let Some(fk) = self.files.lookup(file) else {
            return Vec::new();
        };
        let mut shares: Vec<ShareView> = self
            .files
            .get(fk)
            .shares
            .iter()
            .map(|(&ok, &(access, deny))| {
                let owner = self.owner_ref(ok);
                ShareView {
                    client: owner.client,
                    owner: owner.owner,
                    access,
                    deny,
                }
            })
            .collect();
        shares.sort_by(|a, b| (&a.client, &a.owner).cmp(&(&b.client, &b.owner)));
        shares
    }

    /// The wait-for graph: for each queued waiter (in waiter order), the owners it waits for.
    pub fn wait_for_graph(&self) -> Vec<WaitEdge> {
        let mut edges = Vec::new();
        for (&id, w) in &self.waiters {
            if !matches!(w.state, WaiterState::Queued { .. }) {
                continue;
            }
            let from = self.owner_ref(w.owner);
            let mut blockers: Vec<OwnerRef> = self
                .blockers(w.file, w.owner, w.span, w.kind, Some(id))
                .into_iter()
                .map(|o| self.owner_ref(o))
                .collect();
            blockers.sort();
            for to in blockers {
                edges.push(WaitEdge {
                    waiter: id,
                    file: self.files.id(w.file).clone(),
                    from: from.clone(),
                    to,
                });
            }
        }
        edges
    }

    /// The grace period, or None when the core is not in one.
    pub fn grace(&self) -> Option<GraceView> {
        let grace = self.grace.as_ref()?;
        let mut pending: Vec<ClientId> = grace
            .pending
            .iter()
            .map(|&ck| self.clients.id(ck).clone())
            .collect();
        pending.sort();
        Some(GraceView {
            ends_at: grace.ends_at,
            remaining: grace.ends_at - self.now,
            expected: grace.expected,
            pending,
        })
    }

    /// Every held lock as the store would keep it, sorted.
    pub fn records(&self) -> Vec<LockRecord> {
        let mut records: Vec<LockRecord> = self
            .files
            .iter()
            .flat_map(|(fk, _, file)| file.locks.iter().map(move |lock| (fk, lock)))
            .map(|(fk, lock)| self.record(fk, lock))
            .collect();
        records.sort();
        records
    }

    /// The counters, with the gauges filled in from the current state.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats.clone();
        stats.held_locks = self.total_locks;
        stats.waiters = self
            .files
            .iter()
            .map(|(_, _, f)| f.queue.len() as u64)
            .sum();
        stats.pending_callbacks = self.waiters.len() as u64 - stats.waiters;
        stats.files = self.files.len() as u64;
        stats.owners = self.owners.len() as u64;
        stats.clients = self.clients.len() as u64;
        let per_adapter: BTreeMap<_, _> = self
            .connected
            .iter()
            .map(|(a, &n)| (a.clone(), n))
            .collect();
        stats.clients_per_adapter = per_adapter.into_iter().collect();
        stats.in_grace = self.grace.is_some();
        stats.grace_remaining_ms = self
            .grace
            .as_ref()
            .map_or(Duration::ZERO, |g| g.ends_at - self.now);
        stats
    }
}
