//! Deadlock detection over the wait-for graph of owners, before a request joins a queue.
//!
//! An owner waits for another when one of its queued requests is blocked by that owner: by a lock it
//! holds, or by its conflicting request queued earlier (FIFO order means the later one cannot overtake).
//! Owners of every protocol are nodes alike. The search is exact — no hop limit (Linux gives up after
//! 10 hops and lets longer cycles hang; FreeBSD's kern_lockf.c is exact too).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::action::OwnerRef;
use crate::state::{Core, WaiterState};
use crate::table::OwnerKey;

impl Core {
    /// If `requester` waiting for `blockers` would close a cycle, the cycle: `requester` first, each
    /// owner waiting for the next, the last waiting for `requester`. Depth-first in key order, so the
    /// same state always reports the same cycle.
    pub(crate) fn find_cycle(
        &self,
        requester: OwnerKey,
        blockers: &BTreeSet<OwnerKey>,
    ) -> Option<Vec<OwnerKey>> {
        // parent[x] = the owner that waits for x on the path from `requester`.
        let mut parent: BTreeMap<OwnerKey, OwnerKey> = BTreeMap::new();
        let mut stack: Vec<OwnerKey> = Vec::new();
        for &b in blockers.iter().rev() {
            if let alloc::collections::btree_map::Entry::Vacant(e) = parent.entry(b) {
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
            for next in self.waits_for(owner).into_iter().rev() {
                if let alloc::collections::btree_map::Entry::Vacant(e) = parent.entry(next) {
                    e.insert(owner);
                    stack.push(next);
                }
            }
        }
        None
    }

    /// The owners `owner` waits for, through all its queued waiters.
    pub(crate) fn waits_for(&self, owner: OwnerKey) -> BTreeSet<OwnerKey> {
        let mut out = BTreeSet::new();
        let Some(state) = self.owners.try_get(owner) else {
            return out;
        };
        for id in &state.waiters {
            let w = &self.waiters[id];
            if matches!(w.state, WaiterState::Queued { .. }) {
                out.extend(self.blockers(w.file, owner, w.span, w.kind, Some(*id)));
            }
        }
        out
    }

    pub(crate) fn owner_ref(&self, owner: OwnerKey) -> OwnerRef {
        let (ck, id) = self.owners.id(owner);
        OwnerRef {
            client: self.clients.id(*ck).clone(),
            owner: id.clone(),
        }
    }
}
