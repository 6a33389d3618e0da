//! The held locks of one file, with POSIX replacement semantics (Linux fs/locks.c posix_lock_inode):
//! a new lock replaces whatever its owner held over the range, splitting locks of the other kind and
//! merging same-kind locks that overlap or touch. One owner's locks are therefore disjoint and never
//! adjacent with the same kind.
//!
//! Three indexes, kept in step by `apply` and checked by `check`:
//! - `by_owner`, ordered by (owner, start): an owner's locks, for replacing, splitting and releasing;
//! - `shared` and `exclusive`: interval trees for "who overlaps this span?" in O(log n + k).
//!
//! Every change is first computed as a [`Plan`] that touches nothing, so limits can refuse it whole.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::ControlFlow;

use crate::event::LockKind;
use crate::interval::IntervalTree;
use crate::range::Span;

/// The core's interned handle of an owner.
pub(crate) type OwnerKey = u32;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct HeldLock {
    pub owner: OwnerKey,
    pub span: Span,
    pub kind: LockKind,
}

/// A change to one owner's locks in one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Records that go away (exactly as held).
    pub removed: Vec<HeldLock>,
    /// Records that come in.
    pub added: Vec<HeldLock>,
    /// Coverage the owner loses (for `Released` actions); empty for a lock, which only replaces.
    pub released: Vec<HeldLock>,
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

/// Equal when they hold the same locks (the trees' shapes do not matter: every query walks them in
/// key order). The serde form is the list of locks; reading it back builds the indexes afresh.
#[derive(Clone, Debug, Default)]
pub(crate) struct LockTable {
    by_owner: BTreeMap<(OwnerKey, u64), (u64, LockKind)>,
    shared: IntervalTree,
    exclusive: IntervalTree,
}

impl PartialEq for LockTable {
    fn eq(&self, other: &Self) -> bool {
        self.by_owner == other.by_owner
    }
}

impl Eq for LockTable {}

#[cfg(feature = "serde")]
impl serde::Serialize for LockTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for LockTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let locks: Vec<HeldLock> = serde::Deserialize::deserialize(d)?;
        let mut table = LockTable::default();
        for lock in locks {
            if table.by_owner.contains_key(&(lock.owner, lock.span.start)) {
                return Err(serde::de::Error::custom(
                    "two locks of one owner start at the same offset",
                ));
            }
            table.apply(&Plan {
                added: alloc::vec![lock],
                ..Plan::default()
            });
        }
        Ok(table)
    }
}

impl LockTable {
    pub fn len(&self) -> usize {
        self.by_owner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_owner.is_empty()
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
        self.exclusive.overlapping(span, |s, o| {
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
            self.shared.overlapping(span, |s, o| {
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
        let first = |tree: &IntervalTree, kind| {
            let found = tree.overlapping(span, |s, o| {
                if o == owner {
                    ControlFlow::Continue(())
                } else {
                    ControlFlow::Break(HeldLock {
                        owner: o,
                        span: s,
                        kind,
                    })
                }
            });
            match found {
                ControlFlow::Break(lock) => Some(lock),
                ControlFlow::Continue(()) => None,
            }
        };
        let exclusive = first(&self.exclusive, LockKind::Exclusive);
        let shared = match kind {
            LockKind::Exclusive => first(&self.shared, LockKind::Shared),
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
    fn owner_near(&self, owner: OwnerKey, span: Span) -> Vec<HeldLock> {
        let upper = span.end.saturating_add(1);
        let mut near: Vec<HeldLock> = self
            .by_owner
            .range((owner, 0)..=(owner, upper))
            .rev()
            .map(|(&(o, start), &(end, kind))| HeldLock {
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
        let removed: Vec<HeldLock> = self.owner_locks(owner).collect();
        Plan {
            released: removed.clone(),
            removed,
            added: Vec::new(),
        }
    }

    /// Whether `owner` holds all of `span` with `kind` (one lock: same-kind neighbours are merged).
    pub fn owner_holds(&self, owner: OwnerKey, span: Span, kind: LockKind) -> bool {
        self.by_owner
            .range((owner, 0)..=(owner, span.start))
            .next_back()
            .is_some_and(|(_, &(end, k))| k == kind && end >= span.end)
    }

    pub fn owner_locks(&self, owner: OwnerKey) -> impl Iterator<Item = HeldLock> + '_ {
        self.by_owner
            .range((owner, 0)..=(owner, u64::MAX))
            .map(|(&(o, start), &(end, kind))| HeldLock {
                owner: o,
                span: Span::new(start, end),
                kind,
            })
    }

    pub fn apply(&mut self, plan: &Plan) {
        for lock in &plan.removed {
            let gone = self.by_owner.remove(&(lock.owner, lock.span.start));
            debug_assert_eq!(gone, Some((lock.span.end, lock.kind)));
            self.tree_mut(lock.kind)
                .remove((lock.span.start, lock.owner));
        }
        for lock in &plan.added {
            let before = self
                .by_owner
                .insert((lock.owner, lock.span.start), (lock.span.end, lock.kind));
            debug_assert!(before.is_none());
            self.tree_mut(lock.kind).insert(lock.span, lock.owner);
        }
    }

    /// Every lock, in (start, owner) order of each kind: exclusive ones, then shared ones.
    pub fn iter(&self) -> impl Iterator<Item = HeldLock> + '_ {
        let exclusive = self.exclusive.iter().map(|(span, owner)| HeldLock {
            owner,
            span,
            kind: LockKind::Exclusive,
        });
        let shared = self.shared.iter().map(|(span, owner)| HeldLock {
            owner,
            span,
            kind: LockKind::Shared,
        });
        exclusive.chain(shared)
    }

    fn tree_mut(&mut self, kind: LockKind) -> &mut IntervalTree {
        match kind {
            LockKind::Shared => &mut self.shared,
            LockKind::Exclusive => &mut self.exclusive,
        }
    }

    /// The indexes agree, one owner's locks are disjoint and merged, and no two owners conflict.
    #[cfg(any(test, feature = "invariants"))]
    pub fn check(&self) -> Result<(), &'static str> {
        let shared = self.shared.check()?;
        let exclusive = self.exclusive.check()?;
        if shared + exclusive != self.by_owner.len() {
            return Err("lock table: interval trees and owner index differ in size");
        }
        let mut previous: Option<HeldLock> = None;
        for (&(owner, start), &(end, kind)) in &self.by_owner {
            if start > end {
                return Err("lock table: lock with start > end");
            }
            let lock = HeldLock {
                owner,
                span: Span::new(start, end),
                kind,
            };
            if let Some(prev) = previous.filter(|p| p.owner == owner) {
                if prev.span.overlaps(lock.span) {
                    return Err("lock table: one owner's locks overlap");
                }
                if prev.kind == kind && prev.span.touches(lock.span) {
                    return Err("lock table: adjacent same-kind locks of one owner not merged");
                }
            }
            let tree = match kind {
                LockKind::Shared => &self.shared,
                LockKind::Exclusive => &self.exclusive,
            };
            let indexed = tree.overlapping(lock.span, |s, o| {
                if o == owner && s == lock.span {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            if indexed.is_continue() {
                return Err("lock table: a lock is missing from its interval tree");
            }
            if self.first_conflict(owner, lock.span, kind).is_some() {
                return Err("lock table: two owners hold conflicting locks");
            }
            previous = Some(lock);
        }
        Ok(())
    }
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
