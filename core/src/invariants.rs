//! `check_invariants`: every index agrees with the lock table, every count with what it counts, and no
//! two owners hold conflicting locks. Property tests, the simulator and the fuzzer call it after every
//! step; it is compiled in tests and with the `invariants` feature.
#![cfg(any(test, feature = "invariants"))]

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use crate::state::{Core, Timer, WaiterState};
use crate::table::OwnerKey;

impl Core {
    /// Verifies the internal consistency of the core; the error names the first broken rule.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.files.check().map_err(String::from)?;
        self.clients.check().map_err(String::from)?;
        self.owners.check().map_err(String::from)?;

        let mut owner_counts: BTreeMap<(OwnerKey, u32), u64> = BTreeMap::new();
        let mut total = 0u64;
        for (fk, id, file) in self.files.iter() {
            file.locks.check().map_err(|e| format!("file {id}: {e}"))?;
            for lock in file.locks.iter() {
                if self.owners.try_get(lock.owner).is_none() {
                    return Err(format!("file {id}: lock of a dead owner"));
                }
                *owner_counts.entry((lock.owner, fk)).or_default() += 1;
                total += 1;
            }
            let naming = self.waiters.values().filter(|w| w.file == fk).count() as u64;
            if naming != file.waiters {
                return Err(format!(
                    "file {id}: waiter count {} but {naming} waiters name it",
                    file.waiters
                ));
            }
            for (wid, queued) in &file.queue {
                match self.waiters.get(wid) {
                    Some(w)
                        if w.file == fk
                            && matches!(w.state, WaiterState::Queued { .. })
                            && (w.owner, w.span, w.kind)
                                == (queued.owner, queued.span, queued.kind) => {}
                    _ => {
                        return Err(format!(
                            "file {id}: queue holds {wid:?}, not a waiter queued here"
                        ));
                    }
                }
            }
            for ok in file.shares.keys() {
                if !self
                    .owners
                    .try_get(*ok)
                    .is_some_and(|o| o.rare().shares.contains(&fk))
                {
                    return Err(format!(
                        "file {id}: share of an owner that does not list it"
                    ));
                }
            }
            let mut previous: Option<(OwnerKey, u64)> = None;
            for (&(ok, start), &end) in &file.unreclaimed {
                if !self
                    .owners
                    .try_get(ok)
                    .is_some_and(|o| o.rare().unreclaimed.contains(&fk))
                {
                    return Err(format!(
                        "file {id}: unreclaimed span of an owner that does not list it"
                    ));
                }
                if previous.is_some_and(|(pok, pend)| pok == ok && pend >= start) {
                    return Err(format!("file {id}: overlapping unreclaimed spans"));
                }
                previous = Some((ok, end));
                // Restored coverage not yet reclaimed is still held by its owner.
                let mut next = start;
                for lock in file.locks.owner_locks(ok) {
                    if lock.span.start <= next && lock.span.end >= next {
                        if lock.span.end >= end {
                            next = end;
                            break;
                        }
                        next = lock.span.end + 1;
                    }
                }
                if next != end {
                    return Err(format!(
                        "file {id}: unreclaimed span {start}..={end} not held"
                    ));
                }
            }
            if file.locks.is_empty()
                && file.waiters == 0
                && file.shares.is_empty()
                && file.unreclaimed.is_empty()
            {
                return Err(format!("file {id}: unused file kept"));
            }
        }
        if total != self.total_locks {
            return Err(format!(
                "total locks {} but the tables hold {total}",
                self.total_locks
            ));
        }

        let mut client_counts: BTreeMap<u32, u64> = BTreeMap::new();
        for (ok, (ck, id), owner) in self.owners.iter() {
            if owner.client != *ck
                || !self
                    .clients
                    .try_get(*ck)
                    .is_some_and(|c| c.owners.contains(&ok))
            {
                return Err(format!("owner {id}: client link broken"));
            }
            for (fk, count) in owner.files.iter() {
                if owner_counts.get(&(ok, fk)).copied().unwrap_or(0) != count || count == 0 {
                    return Err(format!("owner {id}: lock count for a file is wrong"));
                }
            }
            let listed: u64 = owner.files.iter().map(|(_, c)| c).sum();
            let held: u64 = owner_counts
                .range((ok, 0)..=(ok, u32::MAX))
                .map(|(_, c)| c)
                .sum();
            if listed != held {
                return Err(format!("owner {id}: lists {listed} locks, holds {held}"));
            }
            *client_counts.entry(*ck).or_default() += held;
            for (fk, wid) in &owner.rare().waiters {
                if self
                    .waiters
                    .get(wid)
                    .is_none_or(|w| w.owner != ok || w.file != *fk)
                {
                    return Err(format!("owner {id}: lists a waiter that is not its own"));
                }
            }
            for fk in &owner.rare().unreclaimed {
                let has = self.files.try_get(*fk).is_some_and(|f| {
                    f.unreclaimed
                        .range((ok, 0)..=(ok, u64::MAX))
                        .next()
                        .is_some()
                });
                if !has {
                    return Err(format!("owner {id}: lists a file with nothing to reclaim"));
                }
            }
            if owner.is_unused() {
                return Err(format!("owner {id}: unused owner kept"));
            }
        }

        let mut client_waiters: BTreeMap<u32, u64> = BTreeMap::new();
        for w in self.waiters.values() {
            if let Some(owner) = self.owners.try_get(w.owner) {
                *client_waiters.entry(owner.client).or_default() += 1;
            }
        }
        let mut client_shares: BTreeMap<u32, u64> = BTreeMap::new();
        for (_, _, file) in self.files.iter() {
            for ok in file.shares.keys() {
                if let Some(owner) = self.owners.try_get(*ok) {
                    *client_shares.entry(owner.client).or_default() += 1;
                }
            }
        }
        if client_shares.values().sum::<u64>() != self.total_shares {
            return Err(format!("total shares {} miscounted", self.total_shares));
        }
        let mut connected: BTreeMap<String, u64> = BTreeMap::new();
        for (ck, id, client) in self.clients.iter() {
            if client.locks != client_counts.get(&ck).copied().unwrap_or(0) {
                return Err(format!("client {id}: lock count wrong"));
            }
            if client.waiters != client_waiters.get(&ck).copied().unwrap_or(0) {
                return Err(format!("client {id}: waiter count wrong"));
            }
            if client.shares != client_shares.get(&ck).copied().unwrap_or(0) {
                return Err(format!("client {id}: share count wrong"));
            }
            if client.connected {
                let adapter = client
                    .adapter
                    .clone()
                    .ok_or_else(|| format!("client {id}: connected without adapter"))?;
                *connected.entry(adapter).or_default() += 1;
            }
            if let Some(at) = client.disconnect_at
                && (client.connected || !self.timers.contains(&(at, Timer::Disconnect(ck))))
            {
                return Err(format!(
                    "client {id}: disconnect deadline without its timer"
                ));
            }
        }
        if connected != self.connected {
            return Err(String::from("connected clients per adapter miscounted"));
        }

        for (wid, w) in &self.waiters {
            if !self
                .owners
                .try_get(w.owner)
                .is_some_and(|o| o.rare().waiters.contains(&(w.file, *wid)))
            {
                return Err(format!("{wid:?}: owner does not list it"));
            }
            let Some(file) = self.files.try_get(w.file) else {
                return Err(format!("{wid:?}: names a dead file"));
            };
            match w.state {
                WaiterState::Queued { expires_at } => {
                    if !file.queue.contains_key(wid) {
                        return Err(format!("{wid:?}: queued but not in its file's queue"));
                    }
                    if expires_at
                        .is_some_and(|at| !self.timers.contains(&(at, Timer::WaiterExpiry(*wid))))
                    {
                        return Err(format!("{wid:?}: expiry without its timer"));
                    }
                }
                WaiterState::Granted {
                    retry_at, deadline, ..
                } => {
                    if retry_at
                        .is_some_and(|at| !self.timers.contains(&(at, Timer::CallbackRetry(*wid))))
                    {
                        return Err(format!("{wid:?}: retry without its timer"));
                    }
                    if deadline.is_some_and(|at| {
                        !self.timers.contains(&(at, Timer::CallbackDeadline(*wid)))
                    }) {
                        return Err(format!("{wid:?}: callback deadline without its timer"));
                    }
                }
            }
        }

        // The kept wait-for graph equals the one recomputed from the queues and tables.
        let pairs = self.recount_wait_pairs();
        let mut waited_on: BTreeMap<OwnerKey, u64> = BTreeMap::new();
        for (&(_, to), &count) in &pairs {
            *waited_on.entry(to).or_default() += count;
        }
        for (ok, (_, id), owner) in self.owners.iter() {
            let recounted: BTreeMap<OwnerKey, u64> = pairs
                .range((ok, 0)..=(ok, u32::MAX))
                .map(|(&(_, to), &count)| (to, count))
                .collect();
            if owner.rare().waits_for != recounted {
                return Err(format!(
                    "owner {id}: waits for {:?}, but its queued waiters wait for {recounted:?}",
                    owner.rare().waits_for
                ));
            }
            let expected = waited_on.get(&ok).copied().unwrap_or(0);
            if owner.rare().waited_on != expected {
                return Err(format!(
                    "owner {id}: waited on {} times, but {expected} pairs wait for it",
                    owner.rare().waited_on
                ));
            }
        }

        // Exact deadlock detection: no owner waits, through any chain, for itself.
        if let Some(cycle) = find_any_cycle(&pairs) {
            let names: Vec<String> = cycle
                .iter()
                .map(|&ok| format!("{}", self.owners.id(ok).1))
                .collect();
            return Err(format!("wait-for cycle: {}", names.join(" -> ")));
        }

        for &(at, timer) in &self.timers {
            let live = match timer {
                Timer::GraceEnd => self.grace.as_ref().is_some_and(|g| g.ends_at == at),
                Timer::Disconnect(ck) => self
                    .clients
                    .try_get(ck)
                    .is_some_and(|c| c.disconnect_at == Some(at)),
                Timer::CallbackRetry(wid) => self.waiters.get(&wid).is_some_and(|w| {
                    matches!(w.state, WaiterState::Granted { retry_at, .. } if retry_at == Some(at))
                }),
                Timer::CallbackDeadline(wid) => self.waiters.get(&wid).is_some_and(|w| {
                    matches!(w.state, WaiterState::Granted { deadline, .. } if deadline == Some(at))
                }),
                Timer::WaiterExpiry(wid) => self.waiters.get(&wid).is_some_and(|w| {
                    w.state
                        == WaiterState::Queued {
                            expires_at: Some(at),
                        }
                }),
            };
            if !live {
                return Err(format!("stale timer {timer:?} at {}", at.as_millis()));
            }
        }

        if let Some(grace) = &self.grace {
            let mut reclaiming: BTreeSet<u32> = self
                .owners
                .iter()
                .filter(|(_, _, o)| !o.rare().unreclaimed.is_empty())
                .map(|(_, _, o)| o.client)
                .collect();
            for &(ok, fk) in &grace.unreclaimed_shares {
                let held = self
                    .owners
                    .try_get(ok)
                    .is_some_and(|o| o.rare().shares.contains(&fk))
                    && self
                        .files
                        .try_get(fk)
                        .is_some_and(|f| f.shares.contains_key(&ok));
                if !held {
                    return Err(format!("grace: unreclaimed share ({ok}, {fk}) not held"));
                }
                reclaiming.insert(self.owners.get(ok).client);
            }
            if reclaiming != grace.pending {
                return Err(String::from(
                    "grace: pending clients differ from clients with locks or shares to reclaim",
                ));
            }
            if !self.timers.contains(&(grace.ends_at, Timer::GraceEnd)) {
                return Err(String::from("grace without its timer"));
            }
        } else if self.files.iter().any(|(_, _, f)| !f.unreclaimed.is_empty()) {
            return Err(String::from("unreclaimed locks outside grace"));
        }
        Ok(())
    }
}

/// Some cycle of the graph given as (from, to) pairs, if there is one (iterative three-colour DFS).
fn find_any_cycle(pairs: &BTreeMap<(OwnerKey, OwnerKey), u64>) -> Option<Vec<OwnerKey>> {
    let mut edges: BTreeMap<OwnerKey, Vec<OwnerKey>> = BTreeMap::new();
    for &(from, to) in pairs.keys() {
        edges.entry(from).or_default().push(to);
    }
    // 1 = on the current path, 2 = done.
    let mut colour: BTreeMap<OwnerKey, u8> = BTreeMap::new();
    for &start in edges.keys() {
        if colour.contains_key(&start) {
            continue;
        }
        let mut path: Vec<(OwnerKey, usize)> = vec![(start, 0)];
        colour.insert(start, 1);
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let out = edges.get(&node).map_or(&[][..], Vec::as_slice);
            if let Some(&to) = out.get(*next) {
                *next += 1;
                match colour.get(&to) {
                    Some(1) => {
                        let at = path.iter().position(|&(n, _)| n == to).unwrap_or(0);
                        return Some(path[at..].iter().map(|&(n, _)| n).collect());
                    }
                    Some(_) => {}
                    None => {
                        colour.insert(to, 1);
                        path.push((to, 0));
                    }
                }
            } else {
                colour.insert(node, 2);
                path.pop();
            }
        }
    }
    None
}
