//! Restart, grace period and reclaim.
//!
//! After a restart the host rebuilds the core from the records its store kept ([`Core::restore`]).
//! Those locks are held again at once, so nothing can be granted over them, and each is marked
//! unreclaimed. During the grace period only reclaims (and, per profile, TEST/UNLOCK/CANCEL) are
//! answered; a reclaim is verified — its owner must hold that range with that kind among the restored
//! locks, so no client can reclaim what it did not hold. Grace ends at its deadline, or early once no
//! client has anything left to reclaim; what nobody reclaimed is then released.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::action::{Action, LockRecord, Outcome, PersistOp, ReleaseReason};
use crate::config::Config;
use crate::event::LockKind;
use crate::ids::{ClientId, FileId, Millis, OwnerId};
use crate::range::Span;
use crate::state::{ClientKey, Core, FileKey, Grace, Timer};
use crate::table::OwnerKey;

/// A persisted record the core cannot take back: the store is damaged or was written by another tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreError {
    /// Position of the record in the input.
    pub index: usize,
    pub record: LockRecord,
    pub reason: &'static str,
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.record;
        write!(
            f,
            "record {} (file {}, client {}, owner {}, {:?} {}): {}",
            self.index, r.file, r.client, r.owner, r.kind, r.range, self.reason
        )
    }
}

impl Core {
    /// Rebuilds the lock table from the records of earlier epochs and enters the grace period. `epoch`
    /// is the new epoch the host has already made durable. The returned actions (usually none) rewrite
    /// records that merge into fewer ones; with nothing to reclaim, grace ends at once (`GraceEnded`).
    pub fn restore(
        config: Config,
        now: Millis,
        epoch: u64,
        records: impl IntoIterator<Item = LockRecord>,
    ) -> Result<(Core, Vec<Action>), RestoreError> {
        let mut core = Core::with_epoch(config, epoch);
        core.now = now;
        let mut stored: Vec<LockRecord> = Vec::new();
        let mut merged_any = false;
        for (index, record) in records.into_iter().enumerate() {
            let error = |reason| RestoreError {
                index,
                record: record.clone(),
                reason,
            };
            let span = record
                .range
                .span(core.config.max_offset)
                .ok_or_else(|| error("range too big"))?;
            let fk = core.files.intern(&record.file, Default::default);
            let (_, ok) = core.intern_owner(&record.client, &record.owner);
            if core
                .files
                .get(fk)
                .locks
                .first_conflict(ok, span, record.kind)
                .is_some()
            {
                return Err(error("conflicts with another restored record"));
            }
            let plan = core.files.get(fk).locks.plan_lock(ok, span, record.kind);
            merged_any |= !plan.removed.is_empty();
            core.apply_counts(fk, &plan);
            stored.push(record);
        }
        let mut out = Vec::new();
        if merged_any {
            // The store holds `stored`; make it hold the merged table instead.
            let held: Vec<LockRecord> = core.records();
            let key = |r: &LockRecord| {
                (
                    r.file.clone(),
                    r.client.clone(),
                    r.owner.clone(),
                    r.range.offset,
                )
            };
            let held_keys: BTreeMap<_, &LockRecord> = held.iter().map(|r| (key(r), r)).collect();
            let stored_keys: BTreeMap<_, &LockRecord> =
                stored.iter().map(|r| (key(r), r)).collect();
            for (k, r) in &stored_keys {
                if !held_keys.contains_key(k) {
                    core.persist(PersistOp::Delete((*r).clone()), &mut out);
                }
            }
            for (k, r) in &held_keys {
                if stored_keys.get(k) != Some(r) {
                    core.persist(PersistOp::Put((*r).clone()), &mut out);
                }
            }
        }
        // Every restored lock waits for its reclaim.
        let mut pending = alloc::collections::BTreeSet::new();
        let mut marks = Vec::new();
        for (fk, _, file) in core.files.iter() {
            for lock in file.locks.iter() {
                marks.push((fk, lock.owner, lock.span));
            }
        }
        for (fk, ok, span) in marks {
            core.files
                .get_mut(fk)
                .unreclaimed
                .insert((ok, span.start), span.end);
            let owner = core.owners.get_mut(ok);
            owner.unreclaimed.insert(fk);
            pending.insert(owner.client);
        }
        let expected = pending.len() as u64;
        let ends_at = now.saturating_add(core.config.grace);
        core.grace = Some(Grace {
            ends_at,
            pending,
            expected,
        });
        core.timers.insert((ends_at, Timer::GraceEnd));
        core.end_grace_if_done(&mut out);
        Ok((core, out))
    }

    pub(crate) fn in_grace(&self) -> bool {
        self.grace.is_some()
    }

    /// Grace rules for LOCK: outside reclaims wait for grace to end; reclaims come only during grace
    /// (unless the profile takes late ones) and must match a restored lock.
    pub(crate) fn grace_refuses_lock(
        &self,
        client: &ClientId,
        owner: &OwnerId,
        file: &FileId,
        span: Span,
        kind: LockKind,
        reclaim: bool,
    ) -> Option<Outcome> {
        if self.grace_refuses(reclaim) {
            return Some(Outcome::DeniedGrace);
        }
        if reclaim && self.config.verify_reclaims {
            let held = match (self.files.lookup(file), self.lookup_owner(client, owner)) {
                (Some(fk), Some(ok)) => self.files.get(fk).locks.owner_holds(ok, span, kind),
                _ => false,
            };
            if !held {
                return Some(Outcome::NotReclaimable);
            }
        }
        None
    }

    /// During grace only reclaims; after it, no reclaims unless late ones are allowed.
    pub(crate) fn grace_refuses(&self, reclaim: bool) -> bool {
        match (self.in_grace(), reclaim) {
            (true, false) => true,
            (false, true) => !self.config.late_reclaim,
            _ => false,
        }
    }

    pub(crate) fn reclaimed(
        &mut self,
        fk: FileKey,
        ok: OwnerKey,
        span: Span,
        out: &mut Vec<Action>,
    ) {
        self.stats.reclaims += 1;
        self.forget_unreclaimed(fk, ok, span, out);
    }

    /// `owner` no longer needs to reclaim `span` of `file` (reclaimed, unlocked, or released).
    pub(crate) fn forget_unreclaimed(
        &mut self,
        fk: FileKey,
        ok: OwnerKey,
        span: Span,
        out: &mut Vec<Action>,
    ) {
        let Some(owner) = self.owners.try_get(ok) else {
            return;
        };
        if !owner.unreclaimed.contains(&fk) {
            return;
        }
        let file = self.files.get_mut(fk);
        let hit: Vec<(u64, u64)> = file
            .unreclaimed
            .range((ok, 0)..=(ok, span.end))
            .rev()
            .map(|(&(_, start), &end)| (start, end))
            .take_while(|&(_, end)| end >= span.start)
            .collect();
        for (start, end) in hit {
            file.unreclaimed.remove(&(ok, start));
            if start < span.start {
                file.unreclaimed.insert((ok, start), span.start - 1);
            }
            if end > span.end {
                file.unreclaimed.insert((ok, span.end + 1), end);
            }
        }
        let left = file
            .unreclaimed
            .range((ok, 0)..=(ok, u64::MAX))
            .next()
            .is_some();
        if !left {
            let owner = self.owners.get_mut(ok);
            owner.unreclaimed.remove(&fk);
            let ck = owner.client;
            if !self.client_has_unreclaimed(ck) {
                self.client_done_reclaiming(ck, out);
            }
        }
    }

    fn client_has_unreclaimed(&self, ck: ClientKey) -> bool {
        self.clients
            .get(ck)
            .owners
            .iter()
            .any(|&ok| !self.owners.get(ok).unreclaimed.is_empty())
    }

    fn client_done_reclaiming(&mut self, ck: ClientKey, out: &mut Vec<Action>) {
        if let Some(grace) = self.grace.as_mut() {
            grace.pending.remove(&ck);
        }
        self.end_grace_if_done(out);
    }

    fn end_grace_if_done(&mut self, out: &mut Vec<Action>) {
        if self.grace.as_ref().is_some_and(|g| g.pending.is_empty()) {
            self.end_grace(out);
        }
    }

    /// The client says it reclaimed all it wants: what it left unreclaimed goes now.
    pub(crate) fn reclaim_complete(&mut self, client: &ClientId, out: &mut Vec<Action>) {
        let Some(ck) = self.clients.lookup(client) else {
            return;
        };
        if !self.grace.as_ref().is_some_and(|g| g.pending.contains(&ck)) {
            return;
        }
        self.release_unreclaimed(Some(ck), out);
        self.client_done_reclaiming(ck, out);
        self.tidy_client(ck);
    }

    /// Releases restored locks nobody reclaimed (of one client, or of all); returns how many pieces.
    fn release_unreclaimed(&mut self, only: Option<ClientKey>, out: &mut Vec<Action>) -> u64 {
        let mut pieces: Vec<(FileKey, OwnerKey, Span)> = Vec::new();
        for (fk, _, file) in self.files.iter() {
            for (&(ok, start), &end) in &file.unreclaimed {
                if only.is_none_or(|ck| self.owners.get(ok).client == ck) {
                    pieces.push((fk, ok, Span::new(start, end)));
                }
            }
        }
        let mut touched = alloc::collections::BTreeSet::new();
        for &(fk, ok, span) in &pieces {
            let plan = self.files.get(fk).locks.plan_unlock(ok, span);
            self.release_plan(fk, &plan, ReleaseReason::GraceExpired, out);
            let file = self.files.get_mut(fk);
            file.unreclaimed.remove(&(ok, span.start));
            self.owners.get_mut(ok).unreclaimed.remove(&fk);
            touched.insert((fk, ok));
        }
        for &(fk, ok) in &touched {
            self.wake(fk, out);
            self.tidy(Some(fk), Some(ok));
        }
        pieces.len() as u64
    }

    pub(crate) fn end_grace(&mut self, out: &mut Vec<Action>) {
        let Some(grace) = self.grace.take() else {
            return;
        };
        self.timers.remove(&(grace.ends_at, Timer::GraceEnd));
        let released = self.release_unreclaimed(None, out);
        out.push(Action::GraceEnded { released });
        for ck in grace.pending {
            self.tidy_client(ck);
        }
    }
}
