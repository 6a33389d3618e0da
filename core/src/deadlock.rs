//! Deadlock detection over the wait-for graph of owners: before a request joins a queue, and after a
//! grant that makes queued owners wait for someone new (`break_new_cycles`).
//!
//! An owner waits for another when one of its queued requests is blocked by that owner: by a lock it
//! holds, or by its conflicting request queued earlier (FIFO order means the later one cannot overtake).
//! Owners of every protocol are nodes alike. The search is exact — no hop limit (Linux gives up after
//! 10 hops and lets longer cycles hang; FreeBSD's kern_lockf.c is exact too).
//!
//! The graph is kept, not recomputed: each owner carries its out-edges with a count of the (queued
//! waiter, blocking lock or waiter) pairs behind each, updated by every queue and table change of a
//! file (a scan of that file's queue, or of the locks conflicting with one waiter). A search then reads
//! an owner's edges in one step and visits each owner at most once. Recomputing an owner's edges from
//! its waiters instead cost a search through 99 owners with 2,000 queued waiters each 5 s of CPU
//! (issue 13, row 6; `benches/deadlock.rs`).
//!
//! Counting pairs rather than owners makes every update local: adding or removing one held lock or one
//! queued waiter changes exactly the pairs it is part of, whatever else changes in the same event.

use alloc::collections::btree_map::Entry;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;
use core::ops::ControlFlow;

use crate::action::OwnerRef;
use crate::ids::WaiterId;
use crate::state::{Core, FileKey};
use crate::table::{HeldLock, OwnerKey};

/// Whether a queued request `waiting` is held up by `other` (a held lock or an earlier request).
fn blocks(waiting: &HeldLock, other: &HeldLock) -> bool {
    waiting.owner != other.owner
        && waiting.span.overlaps(other.span)
        && waiting.kind.conflicts_with(other.kind)
}

impl Core {
    /// If `requester` waiting for `blockers` would close a cycle, the cycle: `requester` first, each
    /// owner waiting for the next, the last waiting for `requester`. Depth-first in key order, so the
    /// same state always reports the same cycle.
    pub(crate) fn find_cycle(
        &self,
        requester: OwnerKey,
        blockers: &BTreeSet<OwnerKey>,
    ) -> Option<Vec<OwnerKey>> {
        // A cycle through the requester ends with an edge into it.
        if self
            .owners
            .try_get(requester)
            .is_none_or(|o| o.rare().waited_on == 0)
        {
            return None;
        }
        // parent[x] = the owner that waits for x on the path from `requester`.
        let mut parent: BTreeMap<OwnerKey, OwnerKey> = BTreeMap::new();
        let mut stack: Vec<OwnerKey> = Vec::new();
        for &b in blockers.iter().rev() {
            if let Entry::Vacant(e) = parent.entry(b) {
                e.insert(requester);
                stack.push(b);
            }
        }
        while let Some(owner) = stack.pop() {
            if owner == requester {
                let mut cycle = Vec::new();
                let mut at = parent[&requester];
                while at != requester {
                    cycle.push(at);
                    at = parent[&at];
                }
                cycle.push(requester);
                cycle.reverse();
                return Some(cycle);
            }
            let Some(state) = self.owners.try_get(owner) else {
                continue;
            };
            for &next in state.rare().waits_for.keys().rev() {
                if let Entry::Vacant(e) = parent.entry(next) {
                    e.insert(owner);
                    stack.push(next);
                }
            }
        }
        None
    }

    pub(crate) fn owner_ref(&self, owner: OwnerKey) -> OwnerRef {
        let (ck, id) = self.owners.id(owner);
        OwnerRef {
            client: self.clients.id(*ck).clone(),
            owner: id.clone(),
        }
    }

    // ---- Keeping the graph in step ----

    /// Puts a request into its file's queue (behind every earlier one) and adds its edges.
    pub(crate) fn queue_insert(&mut self, fk: FileKey, id: WaiterId, request: HeldLock) {
        let pairs = self.queue_pairs(fk, id, &request);
        self.files.get_mut(fk).queue.insert(id, request);
        for (from, to) in pairs {
            self.add_edge(from, to, 1);
        }
    }

    /// Takes a request out of its file's queue and removes its edges.
    pub(crate) fn queue_remove(&mut self, fk: FileKey, id: WaiterId) -> Option<HeldLock> {
        let request = self.files.get_mut(fk).queue.remove(&id)?;
        for (from, to) in self.queue_pairs(fk, id, &request) {
            self.add_edge(from, to, -1);
        }
        Some(request)
    }

    /// The wait-for pairs queued request `id` is part of (itself not in the queue): it waits for the
    /// holders of conflicting locks and the owners of earlier conflicting requests; the owners of later
    /// conflicting requests wait for it.
    fn queue_pairs(
        &self,
        fk: FileKey,
        id: WaiterId,
        request: &HeldLock,
    ) -> Vec<(OwnerKey, OwnerKey)> {
        let file = self.files.get(fk);
        let mut pairs = Vec::new();
        let _ = file
            .locks
            .conflicts::<()>(request.owner, request.span, request.kind, |lock| {
                pairs.push((request.owner, lock.owner));
                ControlFlow::Continue(())
            });
        for (&other, queued) in &file.queue {
            if other != id && blocks(request, queued) {
                if other < id {
                    pairs.push((request.owner, queued.owner));
                } else {
                    pairs.push((queued.owner, request.owner));
                }
            }
        }
        pairs
    }

    /// A held lock of `fk` came (`sign` 1) or went (-1): every queued request it blocks gains or loses
    /// that pair.
    pub(crate) fn held_changed(&mut self, fk: FileKey, lock: &HeldLock, sign: i64) {
        let file = self.files.get(fk);
        if file.queue.is_empty() {
            return;
        }
        let waiting: Vec<OwnerKey> = file
            .queue
            .values()
            .filter(|queued| blocks(queued, lock))
            .map(|queued| queued.owner)
            .collect();
        for from in waiting {
            if sign > 0
                && !self
                    .owners
                    .get(from)
                    .rare()
                    .waits_for
                    .contains_key(&lock.owner)
            {
                self.new_waits.push((from, lock.owner));
            }
            self.add_edge(from, lock.owner, sign);
        }
    }

    /// A lock granted without queueing (a non-blocking LOCK, a woken waiter, a lock the store kept)
    /// can make a queued owner wait for one that, through others, already waits for it: a cycle no
    /// request's own check saw. For each wait-for edge the event created that closes a cycle, the
    /// earliest queued waiter behind that edge leaves its queue (`WaiterRemoved`, reason `Deadlock`)
    /// until the cycle is gone — FreeBSD's kern_lockf fails the pending lock the same way (EDEADLK).
    /// The client's next retry of that LOCK is answered DEADLCK by the usual check.
    pub(crate) fn break_new_cycles(&mut self, out: &mut Vec<crate::action::Action>) {
        // Bounded: every round removes a waiter or finds nothing to do.
        while !self.new_waits.is_empty() {
            for (from, to) in core::mem::take(&mut self.new_waits) {
                loop {
                    if !self
                        .owners
                        .try_get(from)
                        .is_some_and(|o| o.rare().waits_for.contains_key(&to))
                    {
                        break;
                    }
                    if self.find_cycle(from, &BTreeSet::from([to])).is_none() {
                        break;
                    }
                    let Some((fk, id)) = self.queued_behind(from, to) else {
                        debug_assert!(false, "an edge with no waiter behind it");
                        break;
                    };
                    self.remove_waiter(id, crate::action::WaiterRemovedReason::Deadlock, out);
                    // Requests queued behind it for fairness may go now.
                    self.wake(fk, out);
                    self.tidy(Some(fk), Some(from));
                }
            }
        }
    }

    /// The earliest queued waiter of `from` held up by `to` (a lock of `to`, or an earlier request).
    fn queued_behind(&self, from: OwnerKey, to: OwnerKey) -> Option<(FileKey, WaiterId)> {
        let state = self.owners.try_get(from)?;
        let mut found: Option<(FileKey, WaiterId)> = None;
        for &(fk, id) in &state.rare().waiters {
            let file = self.files.get(fk);
            let Some(mine) = file.queue.get(&id) else {
                continue; // granted, its callback pending
            };
            let by_lock = file
                .locks
                .conflicts(from, mine.span, mine.kind, |l| {
                    if l.owner == to {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .is_break();
            let by_request = file
                .queue
                .range(..id)
                .any(|(_, earlier)| earlier.owner == to && blocks(mine, earlier));
            if (by_lock || by_request) && found.is_none_or(|(_, f)| id < f) {
                found = Some((fk, id));
            }
        }
        found
    }

    fn add_edge(&mut self, from: OwnerKey, to: OwnerKey, sign: i64) {
        let edges = &mut self.owners.get_mut(from).rare_mut().waits_for;
        match edges.entry(to) {
            Entry::Occupied(mut e) => {
                *e.get_mut() = e.get().saturating_add_signed(sign);
                if *e.get() == 0 {
                    e.remove();
                }
            }
            Entry::Vacant(e) => {
                debug_assert!(sign > 0, "removing a wait-for pair that was never added");
                e.insert(sign as u64);
            }
        }
        let to = self.owners.get_mut(to).rare_mut();
        to.waited_on = to.waited_on.saturating_add_signed(sign);
    }

    /// The wait-for pair counts recomputed from the queues and tables, (from, to) → count: what the
    /// kept counts must equal.
    #[cfg(any(test, feature = "invariants"))]
    pub(crate) fn recount_wait_pairs(&self) -> BTreeMap<(OwnerKey, OwnerKey), u64> {
        let mut counts = BTreeMap::new();
        for (_, _, file) in self.files.iter() {
            for (i, queued) in file.queue.values().enumerate() {
                for lock in file.locks.iter() {
                    if blocks(queued, &lock) {
                        *counts.entry((queued.owner, lock.owner)).or_default() += 1;
                    }
                }
                for earlier in file.queue.values().take(i) {
                    if blocks(queued, earlier) {
                        *counts.entry((queued.owner, earlier.owner)).or_default() += 1;
                    }
                }
            }
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    //! The kept graph against the search it replaced, which recomputed each owner's edges from its
    //! queued waiters: on random states both must report the same cycle (or none) for every request.
    use super::*;
    use crate::action::{Action, Outcome};
    use crate::config::{Config, Limits};
    use crate::event::{Event, LockKind};
    use crate::ids::{ClientId, FileId, OwnerId, RequestId};
    use crate::range::Range;
    use crate::state::WaiterState;
    use crate::time::Instant;
    use alloc::format;

    impl Core {
        /// The old search, verbatim but for the edges: recomputed per owner from its queued waiters.
        fn find_cycle_by_recomputing(
            &self,
            requester: OwnerKey,
            blockers: &BTreeSet<OwnerKey>,
        ) -> Option<Vec<OwnerKey>> {
            let mut parent: BTreeMap<OwnerKey, OwnerKey> = BTreeMap::new();
            let mut stack: Vec<OwnerKey> = Vec::new();
            for &b in blockers.iter().rev() {
                if let Entry::Vacant(e) = parent.entry(b) {
                    e.insert(requester);
                    stack.push(b);
                }
            }
            while let Some(owner) = stack.pop() {
                if owner == requester {
                    let mut cycle = Vec::new();
                    let mut at = parent[&requester];
                    while at != requester {
                        cycle.push(at);
                        at = parent[&at];
                    }
                    cycle.push(requester);
                    cycle.reverse();
                    return Some(cycle);
                }
                let mut next_owners = BTreeSet::new();
                if let Some(state) = self.owners.try_get(owner) {
                    for &(_, id) in &state.rare().waiters {
                        let w = &self.waiters[&id];
                        if matches!(w.state, WaiterState::Queued { .. }) {
                            next_owners.extend(self.blockers(
                                w.file,
                                owner,
                                w.span,
                                w.kind,
                                Some(id),
                            ));
                        }
                    }
                }
                for next in next_owners.into_iter().rev() {
                    if let Entry::Vacant(e) = parent.entry(next) {
                        e.insert(owner);
                        stack.push(next);
                    }
                }
            }
            None
        }
    }

    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) % n
        }
    }

    /// Random blocking and non-blocking locks, unlocks and cancels of 10 owners over 4 files; before
    /// each blocking request, both searches are asked about it and must give the same answer, and the
    /// kept counts must equal the recomputed ones after every event.
    fn run(seed: u64, steps: u64) -> Result<u64, alloc::string::String> {
        let mut core = Core::new(Config {
            limits: Limits::unlimited(),
            ..Config::brlock()
        });
        let mut rng = Rng(seed);
        let mut deadlocks = 0;
        for step in 0..steps {
            let owner = OwnerId::new(format!("o{}", rng.below(10)));
            let client = ClientId::new(format!("c{}", rng.below(3)));
            let file = FileId::new(format!("f{}", rng.below(4)));
            let range = Range::new(rng.below(40), 1 + rng.below(15));
            let kind = if rng.below(2) == 0 {
                LockKind::Shared
            } else {
                LockKind::Exclusive
            };
            let request = RequestId(step);
            let op = rng.below(10);
            let actions = if op < 6 {
                let wait = op < 4;
                if wait
                    && let (Some(fk), Some(ok)) =
                        (core.files.lookup(&file), core.lookup_owner(&client, &owner))
                {
                    let span = range.span(u64::MAX).expect("small range");
                    let blockers = core.blockers(fk, ok, span, kind, None);
                    let kept = core.find_cycle(ok, &blockers);
                    let old = core.find_cycle_by_recomputing(ok, &blockers);
                    if kept != old {
                        return Err(format!(
                            "seed {seed} step {step}: kept graph {kept:?}, recomputed {old:?}"
                        ));
                    }
                }
                let lock = Event::Lock {
                    request,
                    client,
                    owner,
                    file,
                    range,
                    kind,
                    wait,
                    reclaim: false,
                    cookie: Vec::new(),
                };
                core.step(Instant::ZERO, lock)
            } else if op < 9 {
                let unlock = Event::Unlock {
                    request,
                    client,
                    owner,
                    file,
                    range,
                };
                core.step(Instant::ZERO, unlock)
            } else {
                let cancel = Event::Cancel {
                    request,
                    client,
                    owner,
                    file,
                    range,
                    kind,
                };
                core.step(Instant::ZERO, cancel)
            };
            for action in actions {
                match action {
                    Action::Reply {
                        outcome: Outcome::Deadlock { .. },
                        ..
                    } => deadlocks += 1,
                    // Confirmed at once, so granted waiters do not linger as pending callbacks.
                    Action::SendGranted { waiter, .. } => {
                        let delivered = Event::CallbackOutcome {
                            waiter,
                            result: crate::event::CallbackResult::Delivered,
                        };
                        core.step(Instant::ZERO, delivered);
                    }
                    _ => {}
                }
            }
            core.check_invariants()
                .map_err(|e| format!("seed {seed} step {step}: {e}"))?;
        }
        Ok(deadlocks)
    }

    #[test]
    fn the_kept_graph_finds_the_cycles_the_recomputing_search_found() {
        let mut deadlocks = 0;
        for seed in 0..50 {
            deadlocks += run(seed, 300).unwrap_or_else(|e| panic!("{e}"));
        }
        std::eprintln!("{deadlocks} deadlocks in 50 runs");
        // The scenarios must reach the interesting case often, or the comparison proves little.
        assert!(deadlocks > 500, "only {deadlocks} deadlocks in 50 runs");
    }
}
