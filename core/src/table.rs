//! The held locks of one file, with POSIX replacement semantics (Linux fs/locks.c posix_lock_inode):
//! a new lock replaces whatever its owner held over the range, splitting locks of the other kind and
//! merging same-kind locks that overlap or touch. One owner's locks are therefore disjoint and never
//! adjacent with the same kind.
//!
//! A file with a few locks keeps each kind's in a short vector sorted by (start, owner) and scans it.
//! Past `SMALL_MAX` it moves for good to three indexes, kept in step by `apply` and checked by `check`:
//! - `by_owner`, ordered by (owner, start): an owner's locks, for replacing, splitting and releasing;
//! - `shared` and `exclusive`: interval trees for "who overlaps this span?" in O(log n + k).
//!
//! Every change is first computed as a [`Plan`] that touches nothing, so limits can refuse it whole.

use alloc::collections::BTreeMap;
use core::ops::ControlFlow;

use smallvec::SmallVec;

use crate::event::LockKind;
use crate::interval::IntervalTree;
use crate::range::Span;
use crate::time::Instant;

/// The core's interned handle of an owner.
pub(crate) type OwnerKey = u32;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct HeldLock {
    pub owner: OwnerKey,
    pub span: Span,
    pub kind: LockKind,
}

/// A few held locks, inline: a plan nearly always touches one to three.
pub(crate) type Locks = SmallVec<[HeldLock; 4]>;

/// A change to one owner's locks in one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Records that go away (exactly as held).
    pub removed: Locks,
    /// Records that come in.
    pub added: Locks,
    /// Coverage the owner loses (for `Released` actions); empty for a lock, which only replaces.
    pub released: Locks,
}

impl Plan {
    /// Change in the number of held records.
    pub fn delta(&self) -> i64 {
        self.added.len() as i64 - self.removed.len() as i64
    }

    /// Removed records not re-added unchanged, and added records that are new: what the store must do.
    pub fn deleted(&self) -> impl Iterator<Item = &HeldLock> {
        self.removed.iter().filter(|r| {
            !self
                .added
                .iter()
                .any(|a| a.owner == r.owner && a.span.start == r.span.start)
        })
    }

    pub fn put(&self) -> impl Iterator<Item = &HeldLock> {
        self.added.iter().filter(|a| !self.removed.contains(a))
    }

    pub fn changes_anything(&self) -> bool {
        self.removed != self.added
    }
}

/// Files with at most this many held locks keep them in two short sorted vectors and scan them:
/// for a handful of locks a scan costs a fraction of any tree walk (Linux keeps one list per inode
/// for the same reason). Past it, a file moves to the indexed form for good.
const SMALL_MAX: usize = 16;

#[derive(Clone, Debug)]
pub(crate) struct LockTable {
    repr: Repr,
}

#[derive(Clone, Debug)]
enum Repr {
    /// Each kind's locks sorted by (start, owner).
    Small {
        exclusive: SmallVec<[Entry; 2]>,
        shared: SmallVec<[Entry; 2]>,
    },
    Indexed {
        /// (owner, start) → (end, kind, held since).
        by_owner: BTreeMap<(OwnerKey, u64), (u64, LockKind, Instant)>,
        shared: IntervalTree,
        exclusive: IntervalTree,
    },
}

/// One lock of a known kind in the small form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    start: u64,
    end: u64,
    owner: OwnerKey,
    since: Instant,
}

impl Entry {
    fn key(&self) -> (u64, OwnerKey) {
        (self.start, self.owner)
    }

    fn span(&self) -> Span {
        Span::new(self.start, self.end)
    }

    fn held(&self, kind: LockKind) -> HeldLock {
        HeldLock {
            owner: self.owner,
            span: self.span(),
            kind,
        }
    }
}

impl Default for LockTable {
    fn default() -> Self {
        Self {
            repr: Repr::Small {
                exclusive: SmallVec::new(),
                shared: SmallVec::new(),
            },
        }
    }
}

impl PartialEq for LockTable {
    fn eq(&self, other: &Self) -> bool {
        let with_since = |t: &'_ LockTable| {
            t.iter()
                .map(|l| (l, t.held_since(l.owner, l.span.start)))
                .collect::<alloc::vec::Vec<_>>()
        };
        with_since(self) == with_since(other)
    }
}

impl Eq for LockTable {}

#[cfg(feature = "serde")]
impl serde::Serialize for LockTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Each lock with the moment it is held since; collected first: postcard needs the length
        // up front.
        let locks: alloc::vec::Vec<(HeldLock, Instant)> = self
            .iter()
            .map(|l| {
                (
                    l,
                    self.held_since(l.owner, l.span.start).unwrap_or_default(),
                )
            })
            .collect();
        s.collect_seq(locks)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for LockTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let locks: alloc::vec::Vec<(HeldLock, Instant)> = serde::Deserialize::deserialize(d)?;
        let mut table = LockTable::default();
        let mut starts = alloc::collections::BTreeSet::new();
        for (lock, since) in locks {
            if !starts.insert((lock.owner, lock.span.start)) {
                return Err(serde::de::Error::custom(
                    "two locks of one owner start at the same offset",
                ));
            }
            let mut plan = Plan::default();
            plan.added.push(lock);
            // A lock that grows out of nothing is held since the moment it is applied at.
            table.apply(&plan, since);
        }
        Ok(table)
    }
}

impl LockTable {
    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Small { exclusive, shared } => exclusive.len() + shared.len(),
            Repr::Indexed { by_owner, .. } => by_owner.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `visit(span, owner)` for each lock of `kind` overlapping `span`, in (start, owner) order,
    /// until it breaks.
    fn overlapping<B>(
        &self,
        kind: LockKind,
        span: Span,
        mut visit: impl FnMut(Span, OwnerKey) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        match &self.repr {
            Repr::Small { exclusive, shared } => {
                let entries = match kind {
                    LockKind::Exclusive => exclusive,
                    LockKind::Shared => shared,
                };
                for e in entries.iter().take_while(|e| e.start <= span.end) {
                    if e.end >= span.start {
                        visit(e.span(), e.owner)?;
                    }
                }
                ControlFlow::Continue(())
            }
            Repr::Indexed {
                shared, exclusive, ..
            } => match kind {
                LockKind::Exclusive => exclusive.overlapping(span, visit),
                LockKind::Shared => shared.overlapping(span, visit),
            },
        }
    }

    /// Calls `visit` for each lock of another owner that conflicts with `kind` over `span`: exclusive
    /// locks first, then (for an exclusive request) shared ones, each in (start, owner) order.
    pub fn conflicts<B>(
        &self,
        owner: OwnerKey,
        span: Span,
        kind: LockKind,
        mut visit: impl FnMut(HeldLock) -> ControlFlow<B>,
    ) -> ControlFlow<B> {
        self.overlapping(LockKind::Exclusive, span, |s, o| {
            if o == owner {
                return ControlFlow::Continue(());
            }
            visit(HeldLock {
                owner: o,
                span: s,
                kind: LockKind::Exclusive,
            })
        })?;
        if kind == LockKind::Exclusive {
            self.overlapping(LockKind::Shared, span, |s, o| {
                if o == owner {
                    return ControlFlow::Continue(());
                }
                visit(HeldLock {
                    owner: o,
                    span: s,
                    kind: LockKind::Shared,
                })
            })?;
        }
        ControlFlow::Continue(())
    }

    /// The conflicting lock that starts first (ties: lower owner key), if any.
    pub fn first_conflict(&self, owner: OwnerKey, span: Span, kind: LockKind) -> Option<HeldLock> {
        let first = |of: LockKind| {
            let found = self.overlapping(of, span, |s, o| {
                if o == owner {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(HeldLock {
                        owner: o,
                        span: s,
                        kind: of,
                    })
                }
            });
            match found {
                ControlFlow::Break(lock) => Some(lock),
                ControlFlow::Continue(()) => None,
            }
        };
        let exclusive = first(LockKind::Exclusive);
        let shared = match kind {
            LockKind::Exclusive => first(LockKind::Shared),
            LockKind::Shared => None,
        };
        match (exclusive, shared) {
            (Some(a), Some(b)) => Some(if (b.span.start, b.owner) < (a.span.start, a.owner) {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        }
    }

    /// `owner`'s locks that overlap or touch `span`, in start order.
    fn owner_near(&self, owner: OwnerKey, span: Span) -> Locks {
        match &self.repr {
            Repr::Small { exclusive, shared } => {
                small_owner_locks(exclusive, shared, owner, |e| e.span().touches(span))
            }
            Repr::Indexed { by_owner, .. } => {
                let upper = span.end.saturating_add(1);
                let mut near: Locks = by_owner
                    .range((owner, 0)..=(owner, upper))
                    .rev()
                    .map(|(&(o, start), &(end, kind, _))| HeldLock {
                        owner: o,
                        span: Span::new(start, end),
                        kind,
                    })
                    // One owner's locks are disjoint and sorted, so ends fall as we walk back.
                    .take_while(|lock| lock.span.touches(span))
                    .collect();
                near.reverse();
                near
            }
        }
    }

    /// What granting `kind` over `span` to `owner` would change.
    pub fn plan_lock(&self, owner: OwnerKey, span: Span, kind: LockKind) -> Plan {
        let mut plan = Plan::default();
        let mut merged = span;
        for lock in self.owner_near(owner, span) {
            if lock.kind == kind {
                // Same kind, overlapping or adjacent: absorbed into one lock.
                merged = Span::new(
                    merged.start.min(lock.span.start),
                    merged.end.max(lock.span.end),
                );
                plan.removed.push(lock);
            } else if lock.span.overlaps(span) {
                // Other kind: the part under the new lock is replaced, the rest stays.
                plan.removed.push(lock);
                plan.added.extend(outside(lock, span));
            }
        }
        plan.added.push(HeldLock {
            owner,
            span: merged,
            kind,
        });
        plan.added.sort();
        plan
    }

    /// What unlocking `span` for `owner` would change.
    pub fn plan_unlock(&self, owner: OwnerKey, span: Span) -> Plan {
        let mut plan = Plan::default();
        for lock in self.owner_near(owner, span) {
            if let Some(lost) = lock.span.intersection(span) {
                plan.removed.push(lock);
                plan.added.extend(outside(lock, span));
                plan.released.push(HeldLock { span: lost, ..lock });
            }
        }
        plan
    }

    /// What releasing everything `owner` holds here would change.
    pub fn plan_release_owner(&self, owner: OwnerKey) -> Plan {
        let removed = self.owner_locks(owner);
        Plan {
            released: removed.clone(),
            removed,
            added: Locks::new(),
        }
    }

    /// Whether `owner` holds all of `span` with `kind` (one lock: same-kind neighbours are merged).
    pub fn owner_holds(&self, owner: OwnerKey, span: Span, kind: LockKind) -> bool {
        match &self.repr {
            // One owner's locks are disjoint: the one covering span.start, if any, decides.
            Repr::Small { exclusive, shared } => {
                let covers =
                    |e: &&Entry| e.owner == owner && e.start <= span.start && span.start <= e.end;
                let mine = match kind {
                    LockKind::Exclusive => exclusive,
                    LockKind::Shared => shared,
                };
                mine.iter().find(covers).is_some_and(|e| e.end >= span.end)
            }
            Repr::Indexed { by_owner, .. } => by_owner
                .range((owner, 0)..=(owner, span.start))
                .next_back()
                .is_some_and(|(_, &(end, k, _))| k == kind && end >= span.end),
        }
    }

    /// `owner`'s locks here, in start order.
    pub fn owner_locks(&self, owner: OwnerKey) -> Locks {
        match &self.repr {
            Repr::Small { exclusive, shared } => {
                small_owner_locks(exclusive, shared, owner, |_| true)
            }
            Repr::Indexed { by_owner, .. } => by_owner
                .range((owner, 0)..=(owner, u64::MAX))
                .map(|(&(o, start), &(end, kind, _))| HeldLock {
                    owner: o,
                    span: Span::new(start, end),
                    kind,
                })
                .collect(),
        }
    }

    /// Applies `plan` at `now`. A new record is held since the earliest of the removed records of
    /// its kind it grows out of or absorbs (a split or merged lock keeps its age), else since `now`.
    pub fn apply(&mut self, plan: &Plan, now: Instant) {
        let mut gone: SmallVec<[(HeldLock, Instant); 4]> = SmallVec::new();
        match &mut self.repr {
            Repr::Small { exclusive, shared } => {
                for lock in &plan.removed {
                    let entries = match lock.kind {
                        LockKind::Exclusive => &mut *exclusive,
                        LockKind::Shared => &mut *shared,
                    };
                    let key = (lock.span.start, lock.owner);
                    if let Ok(i) = entries.binary_search_by_key(&key, Entry::key) {
                        debug_assert_eq!(entries[i].end, lock.span.end);
                        gone.push((*lock, entries.remove(i).since));
                    } else {
                        debug_assert!(false, "removing a lock the table does not hold");
                    }
                }
                for lock in &plan.added {
                    let entries = match lock.kind {
                        LockKind::Exclusive => &mut *exclusive,
                        LockKind::Shared => &mut *shared,
                    };
                    let entry = Entry {
                        start: lock.span.start,
                        end: lock.span.end,
                        owner: lock.owner,
                        since: held_since(lock, &gone, now),
                    };
                    match entries.binary_search_by_key(&entry.key(), Entry::key) {
                        Ok(_) => debug_assert!(false, "adding a lock the table holds"),
                        Err(i) => entries.insert(i, entry),
                    }
                }
                if exclusive.len() + shared.len() > SMALL_MAX {
                    self.index();
                }
            }
            Repr::Indexed {
                by_owner,
                shared,
                exclusive,
            } => {
                for lock in &plan.removed {
                    let removed = by_owner.remove(&(lock.owner, lock.span.start));
                    debug_assert_eq!(
                        removed.map(|(e, k, _)| (e, k)),
                        Some((lock.span.end, lock.kind))
                    );
                    if let Some((_, _, since)) = removed {
                        gone.push((*lock, since));
                    }
                    let tree = match lock.kind {
                        LockKind::Shared => &mut *shared,
                        LockKind::Exclusive => &mut *exclusive,
                    };
                    tree.remove((lock.span.start, lock.owner));
                }
                for lock in &plan.added {
                    let since = held_since(lock, &gone, now);
                    let before = by_owner.insert(
                        (lock.owner, lock.span.start),
                        (lock.span.end, lock.kind, since),
                    );
                    debug_assert!(before.is_none());
                    let tree = match lock.kind {
                        LockKind::Shared => &mut *shared,
                        LockKind::Exclusive => &mut *exclusive,
                    };
                    tree.insert(lock.span, lock.owner);
                }
            }
        }
    }

    /// Since when `owner`'s record starting at `start` has been held (see [`LockTable::apply`]).
    pub fn held_since(&self, owner: OwnerKey, start: u64) -> Option<Instant> {
        match &self.repr {
            Repr::Small { exclusive, shared } => exclusive
                .iter()
                .chain(shared.iter())
                .find(|e| e.owner == owner && e.start == start)
                .map(|e| e.since),
            Repr::Indexed { by_owner, .. } => {
                by_owner.get(&(owner, start)).map(|&(_, _, since)| since)
            }
        }
    }

    /// Moves a table that outgrew the small form to the indexed one.
    fn index(&mut self) {
        let mut by_owner = BTreeMap::new();
        let (mut shared, mut exclusive) = (IntervalTree::default(), IntervalTree::default());
        for lock in self.iter() {
            let since = self
                .held_since(lock.owner, lock.span.start)
                .unwrap_or_default();
            by_owner.insert(
                (lock.owner, lock.span.start),
                (lock.span.end, lock.kind, since),
            );
            match lock.kind {
                LockKind::Shared => shared.insert(lock.span, lock.owner),
                LockKind::Exclusive => exclusive.insert(lock.span, lock.owner),
            }
        }
        self.repr = Repr::Indexed {
            by_owner,
            shared,
            exclusive,
        };
    }

    /// Every lock, in (start, owner) order of each kind: exclusive ones, then shared ones.
    pub fn iter(&self) -> impl Iterator<Item = HeldLock> + '_ {
        let (small, indexed) = match &self.repr {
            Repr::Small { exclusive, shared } => (Some((exclusive, shared)), None),
            Repr::Indexed {
                shared, exclusive, ..
            } => (None, Some((exclusive, shared))),
        };
        let small = small.into_iter().flat_map(|(exclusive, shared)| {
            exclusive
                .iter()
                .map(|e| e.held(LockKind::Exclusive))
                .chain(shared.iter().map(|e| e.held(LockKind::Shared)))
        });
        let indexed = indexed.into_iter().flat_map(|(exclusive, shared)| {
            let exclusive = exclusive.iter().map(|(span, owner)| HeldLock {
                owner,
                span,
                kind: LockKind::Exclusive,
            });
            let shared = shared.iter().map(|(span, owner)| HeldLock {
                owner,
                span,
                kind: LockKind::Shared,
            });
            exclusive.chain(shared)
        });
        small.chain(indexed)
    }

    /// The indexes agree, one owner's locks are disjoint and merged, and no two owners conflict.
    #[cfg(any(test, feature = "invariants"))]
    pub fn check(&self) -> Result<(), &'static str> {
        let mut all: alloc::vec::Vec<HeldLock> = self.iter().collect();
        match &self.repr {
            Repr::Small { exclusive, shared } => {
                for entries in [exclusive, shared] {
                    if entries.windows(2).any(|w| w[0].key() >= w[1].key()) {
                        return Err("lock table: small form out of order");
                    }
                }
                if all.len() > SMALL_MAX {
                    return Err("lock table: small form over its size");
                }
            }
            Repr::Indexed {
                by_owner,
                shared,
                exclusive,
            } => {
                if shared.check()? + exclusive.check()? != by_owner.len() {
                    return Err("lock table: interval trees and owner index differ in size");
                }
                let indexed: alloc::vec::Vec<HeldLock> = by_owner
                    .iter()
                    .map(|(&(owner, start), &(end, kind, _))| HeldLock {
                        owner,
                        span: Span { start, end },
                        kind,
                    })
                    .collect();
                let mut walked = all.clone();
                walked.sort_by_key(|l| (l.owner, l.span.start));
                if walked != indexed {
                    return Err("lock table: interval trees and owner index differ");
                }
            }
        }
        all.sort_by_key(|l| (l.owner, l.span.start));
        let mut previous: Option<HeldLock> = None;
        for lock in all {
            if lock.span.start > lock.span.end {
                return Err("lock table: lock with start > end");
            }
            if let Some(prev) = previous.filter(|p| p.owner == lock.owner) {
                if prev.span.overlaps(lock.span) {
                    return Err("lock table: one owner's locks overlap");
                }
                if prev.kind == lock.kind && prev.span.touches(lock.span) {
                    return Err("lock table: adjacent same-kind locks of one owner not merged");
                }
            }
            if self
                .first_conflict(lock.owner, lock.span, lock.kind)
                .is_some()
            {
                return Err("lock table: two owners hold conflicting locks");
            }
            if self.owner_locks(lock.owner).iter().all(|l| *l != lock)
                || !self.owner_holds(lock.owner, lock.span, lock.kind)
            {
                return Err("lock table: a lock is missing from its owner's view");
            }
            previous = Some(lock);
        }
        Ok(())
    }
}

/// The age a new record inherits from the records a plan removed: the earliest of those of its
/// owner and kind it absorbs or is a piece of; `now` when it is new coverage only.
fn held_since(lock: &HeldLock, gone: &[(HeldLock, Instant)], now: Instant) -> Instant {
    gone.iter()
        .filter(|(old, _)| {
            old.owner == lock.owner && old.kind == lock.kind && old.span.overlaps(lock.span)
        })
        .map(|&(_, since)| since)
        .min()
        .unwrap_or(now)
}

/// `owner`'s locks in the small form that `keep` accepts, in start order.
fn small_owner_locks(
    exclusive: &[Entry],
    shared: &[Entry],
    owner: OwnerKey,
    keep: impl Fn(&Entry) -> bool,
) -> Locks {
    let mut locks = Locks::new();
    let of_kind = |entries: &[Entry], kind, locks: &mut Locks| {
        for e in entries.iter().filter(|e| e.owner == owner && keep(e)) {
            locks.push(e.held(kind));
        }
    };
    of_kind(exclusive, LockKind::Exclusive, &mut locks);
    let exclusive_count = locks.len();
    of_kind(shared, LockKind::Shared, &mut locks);
    // Each kind's part is in start order already; merge only when the owner holds both kinds.
    if exclusive_count > 0 && locks.len() > exclusive_count {
        locks.sort_unstable_by_key(|l| l.span.start);
    }
    locks
}

/// The parts of `lock` outside `span`: none, one or two pieces.
fn outside(lock: HeldLock, span: Span) -> impl Iterator<Item = HeldLock> {
    let before = (lock.span.start < span.start).then(|| HeldLock {
        span: Span::new(lock.span.start, span.start - 1),
        ..lock
    });
    let after = (lock.span.end > span.end).then(|| HeldLock {
        span: Span::new(span.end + 1, lock.span.end),
        ..lock
    });
    before.into_iter().chain(after)
}
