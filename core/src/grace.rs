//! Restart, grace period and reclaim.
//!
//! After a restart the host rebuilds the core from the records its store kept ([`Core::restore`],
//! [`Core::restore_with_shares`]). Those locks and share reservations are held again at once, so
//! nothing can be granted over them, and each is marked unreclaimed. During the grace period only
//! reclaims (and, per profile, TEST/UNLOCK/CANCEL/UNSHARE) are answered; a reclaim is verified — its
//! owner must hold that range with that kind (that share with those modes) among the restored ones,
//! so no client can reclaim what it did not hold. Grace ends at its deadline, or early once no client
//! has anything left to reclaim; what nobody reclaimed is then released.
//!
//! A host that kept nothing ([`Core::open_grace`]: Linux lockd after a reboot) still opens the grace
//! period, since clients may have been told to reclaim; it cannot verify, so it runs to its deadline.
//!
//! Share reservations are persisted here rather than in `shares.rs`: the events that change them are
//! wrapped ([`Core::share_event`], [`Core::unshare_event`], [`Core::shares_released`]) and their
//! `PutShare`/`DeleteShare` go before the event's reply.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::action::{Action, LockRecord, Outcome, PersistOp, ReleaseReason, ShareRecord};
use crate::config::Config;
use crate::event::{LockKind, ShareMode};
use crate::ids::{ClientId, FileId, OwnerId, RequestId};
use crate::range::Span;
use crate::state::{ClientKey, Core, FileKey, Grace, Timer};
use crate::table::OwnerKey;
use crate::time::Instant;

/// A persisted record the core cannot take back: the store is damaged or was written by another tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreError {
    /// Position of the record in the input.
    pub index: usize,
    /// The record refused, as the store gave it.
    pub record: LockRecord,
    /// Why, for people: e.g. "range too big" (past `max_offset`), "conflicts with another restored
    /// record".
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
        now: Instant,
        epoch: u64,
        records: impl IntoIterator<Item = LockRecord>,
    ) -> Result<(Core, Vec<Action>), RestoreError> {
        Self::restore_with_shares(config, now, epoch, records, Vec::new())
    }

    /// [`Core::restore`] with the share reservations the store kept too: they are held again and wait
    /// for their reclaim like the locks. (Shares do not conflict with locks, and a store the core
    /// wrote holds no two conflicting shares.)
    pub fn restore_with_shares(
        config: Config,
        now: Instant,
        epoch: u64,
        records: impl IntoIterator<Item = LockRecord>,
        shares: impl IntoIterator<Item = ShareRecord>,
    ) -> Result<(Core, Vec<Action>), RestoreError> {
        let mut core = Core::with_epoch(config, epoch);
        core.now = now;
        let mut out = Vec::new();
        core.load_locks(records, &mut out)?;
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
            owner.rare_mut().unreclaimed.insert(fk);
            pending.insert(owner.client);
        }
        let mut unreclaimed_shares = alloc::collections::BTreeSet::new();
        for (ck, ok, fk) in core.load_shares(shares) {
            unreclaimed_shares.insert((ok, fk));
            pending.insert(ck);
        }
        let expected = pending.len() as u64;
        let ends_at = now + core.config.grace;
        core.grace = Some(Grace {
            ends_at,
            pending,
            expected,
            unreclaimed_shares,
        });
        core.timers.insert((ends_at, Timer::GraceEnd));
        core.end_grace_if_done(&mut out);
        Ok((core, out))
    }

    /// Takes `records` into the (empty) table as held locks, checking that no two conflict; where
    /// records merge into fewer, `out` gets the persists that make the store hold the merged table.
    pub(crate) fn load_locks(
        &mut self,
        records: impl IntoIterator<Item = LockRecord>,
        out: &mut Vec<Action>,
    ) -> Result<(), RestoreError> {
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
                .span(self.config.max_offset)
                .ok_or_else(|| error("range too big"))?;
            let fk = self.files.intern(&record.file, Default::default);
            let (_, ok) = self.intern_owner(&record.client, &record.owner);
            if self
                .files
                .get(fk)
                .locks
                .first_conflict(ok, span, record.kind)
                .is_some()
            {
                return Err(error("conflicts with another restored record"));
            }
            let plan = self.files.get(fk).locks.plan_lock(ok, span, record.kind);
            merged_any |= !plan.removed.is_empty();
            self.apply_counts(fk, &plan);
            stored.push(record);
        }
        if merged_any {
            // The store holds `stored`; make it hold the merged table instead.
            let held: Vec<LockRecord> = self.records();
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
                    self.persist(PersistOp::Delete((*r).clone()), out);
                }
            }
            for (k, r) in &held_keys {
                if stored_keys.get(k) != Some(r) {
                    self.persist(PersistOp::Put((*r).clone()), out);
                }
            }
        }
        Ok(())
    }

    /// Takes `shares` into the table as held reservations (counted against the share limits like
    /// granted ones) and says which (client, owner, file) each one is.
    pub(crate) fn load_shares(
        &mut self,
        shares: impl IntoIterator<Item = ShareRecord>,
    ) -> Vec<(ClientKey, OwnerKey, FileKey)> {
        let mut loaded = Vec::new();
        for share in shares {
            let fk = self.files.intern(&share.file, Default::default);
            let (ck, ok) = self.intern_owner(&share.client, &share.owner);
            let new = self
                .files
                .get_mut(fk)
                .shares
                .insert(ok, (share.access, share.deny))
                .is_none();
            self.owners.get_mut(ok).rare_mut().shares.insert(fk);
            if new {
                self.clients.get_mut(ck).shares += 1;
                self.total_shares += 1;
            }
            loaded.push((ck, ok, fk));
        }
        loaded
    }

    /// A core that kept nothing across the restart (`--store memory`) but opens the grace period all
    /// the same: clients told to reclaim (by another instance's notices, or the host's statd) find
    /// their reclaims taken — unverified when `config.verify_reclaims` is off, as Linux lockd does —
    /// and new requests wait. With nothing to wait for, grace runs to its deadline (a zero grace ends
    /// at once).
    pub fn open_grace(config: Config, now: Instant, epoch: u64) -> (Core, Vec<Action>) {
        let mut core = Core::with_epoch(config, epoch);
        core.now = now;
        let ends_at = now + core.config.grace;
        core.grace = Some(Grace {
            ends_at,
            pending: Default::default(),
            expected: 0,
            unreclaimed_shares: Default::default(),
        });
        let mut out = Vec::new();
        if core.config.grace.is_zero() {
            core.end_grace(&mut out);
        } else {
            core.timers.insert((ends_at, Timer::GraceEnd));
        }
        (core, out)
    }

    /// Every held share reservation as the store keeps it, sorted.
    pub fn share_records(&self) -> Vec<ShareRecord> {
        let mut shares: Vec<ShareRecord> = Vec::new();
        for (fk, _, file) in self.files.iter() {
            for (&ok, &(access, deny)) in &file.shares {
                shares.push(self.share_record(fk, ok, (access, deny)));
            }
        }
        shares.sort();
        shares
    }

    fn share_record(
        &self,
        fk: FileKey,
        ok: OwnerKey,
        (access, deny): (ShareMode, ShareMode),
    ) -> ShareRecord {
        let (ck, owner) = self.owners.id(ok);
        ShareRecord {
            file: self.files.id(fk).clone(),
            client: self.clients.id(*ck).clone(),
            owner: owner.clone(),
            access,
            deny,
        }
    }

    fn share_of(
        &self,
        client: &ClientId,
        owner: &OwnerId,
        file: &FileId,
    ) -> Option<(ShareMode, ShareMode)> {
        let fk = self.files.lookup(file)?;
        let ok = self.lookup_owner(client, owner)?;
        self.files.get(fk).shares.get(&ok).copied()
    }

    /// NLM_SHARE with what a restart needs around `share` (shares.rs): a reclaim must name a restored
    /// share of this owner with the same modes (verified reclaim, as for locks); a granted reclaim
    /// is no longer waited for; and a change is persisted before the reply.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn share_event(
        &mut self,
        request: RequestId,
        client: &ClientId,
        owner: &OwnerId,
        file: &FileId,
        modes: (ShareMode, ShareMode),
        reclaim: bool,
        out: &mut Vec<Action>,
    ) {
        let before = self.share_of(client, owner, file);
        if reclaim
            && self.config.verify_reclaims
            && !self.grace_refuses(true)
            && before != Some(modes)
        {
            return self.reply(request, Outcome::NotReclaimable, false, out);
        }
        let start = out.len();
        self.share(request, client, owner, file, modes, reclaim, out);
        self.persist_share_change(start, client, owner, file, before, out);
        if reclaim
            && let (Some(fk), Some(ok)) =
                (self.files.lookup(file), self.lookup_owner(client, owner))
        {
            self.forget_unreclaimed_share(ok, fk, out);
        }
    }

    /// NLM_UNSHARE around `unshare` (shares.rs): the removal is persisted before the reply, and a
    /// restored share given up is no longer waited for.
    pub(crate) fn unshare_event(
        &mut self,
        request: RequestId,
        client: &ClientId,
        owner: &OwnerId,
        file: &FileId,
        out: &mut Vec<Action>,
    ) {
        let before = self.share_of(client, owner, file);
        let keys = (self.lookup_owner(client, owner), self.files.lookup(file));
        let start = out.len();
        self.unshare(request, client, owner, file, out);
        self.persist_share_change(start, client, owner, file, before, out);
        let gone = before.is_some() && self.share_of(client, owner, file).is_none();
        if let ((Some(ok), Some(fk)), true) = (keys, gone) {
            let waited_for = self
                .grace
                .as_mut()
                .is_some_and(|g| g.unreclaimed_shares.remove(&(ok, fk)));
            if waited_for
                && let Some(ck) = self.clients.lookup(client)
                && !self.client_has_unreclaimed(ck)
            {
                self.client_done_reclaiming(ck, out);
                self.tidy_client(ck);
            }
        }
    }

    /// Puts the persist action for a change of `owner`'s share of `file` (from `before` to what it is
    /// now) at `at`, ahead of the reply the change came with.
    fn persist_share_change(
        &mut self,
        at: usize,
        client: &ClientId,
        owner: &OwnerId,
        file: &FileId,
        before: Option<(ShareMode, ShareMode)>,
        out: &mut Vec<Action>,
    ) {
        let after = self.share_of(client, owner, file);
        if after == before {
            return;
        }
        let (access, deny) = after.or(before).expect("one of them is a share");
        let record = ShareRecord {
            file: file.clone(),
            client: client.clone(),
            owner: owner.clone(),
            access,
            deny,
        };
        let op = if after.is_some() {
            PersistOp::PutShare(record)
        } else {
            PersistOp::DeleteShare(record)
        };
        let mut persist = Vec::with_capacity(1);
        self.persist(op, &mut persist);
        let at = at.min(out.len());
        out.splice(at..at, persist);
    }

    /// `ok`'s shares of `files` were dropped with its client (FREE_ALL, TTL): persist that, and stop
    /// waiting for their reclaim (each removal keeps the share counts of the limits in step).
    pub(crate) fn shares_released(
        &mut self,
        ok: OwnerKey,
        files: &alloc::collections::BTreeSet<FileKey>,
        out: &mut Vec<Action>,
    ) {
        for &fk in files {
            if let Some(&modes) = self.files.get(fk).shares.get(&ok) {
                let record = self.share_record(fk, ok, modes);
                self.drop_share(fk, ok);
                self.persist(PersistOp::DeleteShare(record), out);
            }
            self.forget_unreclaimed_share(ok, fk, out);
        }
    }

    fn forget_unreclaimed_share(&mut self, ok: OwnerKey, fk: FileKey, out: &mut Vec<Action>) {
        let Some(grace) = self.grace.as_mut() else {
            return;
        };
        if !grace.unreclaimed_shares.remove(&(ok, fk)) {
            return;
        }
        let ck = self.owners.get(ok).client;
        if !self.client_has_unreclaimed(ck) {
            self.client_done_reclaiming(ck, out);
        }
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
        if !owner.rare().unreclaimed.contains(&fk) {
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
            owner.rare_mut().unreclaimed.remove(&fk);
            let ck = owner.client;
            if !self.client_has_unreclaimed(ck) {
                self.client_done_reclaiming(ck, out);
            }
        }
    }

    fn client_has_unreclaimed(&self, ck: ClientKey) -> bool {
        let Some(client) = self.clients.try_get(ck) else {
            return false;
        };
        let shares = self
            .grace
            .as_ref()
            .map(|g| &g.unreclaimed_shares)
            .filter(|s| !s.is_empty());
        client.owners.iter().any(|&ok| {
            !self.owners.get(ok).rare().unreclaimed.is_empty()
                || shares.is_some_and(|s| {
                    s.range((ok, FileKey::MIN)..=(ok, FileKey::MAX))
                        .next()
                        .is_some()
                })
        })
    }

    fn client_done_reclaiming(&mut self, ck: ClientKey, out: &mut Vec<Action>) {
        if let Some(grace) = self.grace.as_mut() {
            grace.pending.remove(&ck);
        }
        self.end_grace_if_done(out);
    }

    pub(crate) fn end_grace_if_done(&mut self, out: &mut Vec<Action>) {
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
        let shares = self.take_unreclaimed_shares(ck);
        self.release_unreclaimed(Some(ck), shares, out);
        self.client_done_reclaiming(ck, out);
        self.tidy_client(ck);
    }

    /// Takes the restored shares of `ck` nobody reclaimed out of the grace period's list.
    fn take_unreclaimed_shares(&mut self, ck: ClientKey) -> Vec<(OwnerKey, FileKey)> {
        let Some(grace) = self.grace.as_mut() else {
            return Vec::new();
        };
        let owners = &self.owners;
        let mine: Vec<_> = grace
            .unreclaimed_shares
            .iter()
            .copied()
            .filter(|&(ok, _)| owners.get(ok).client == ck)
            .collect();
        for key in &mine {
            grace.unreclaimed_shares.remove(key);
        }
        mine
    }

    /// Releases restored locks nobody reclaimed (of one client, or of all) and the restored `shares`
    /// nobody reclaimed; returns how many pieces.
    fn release_unreclaimed(
        &mut self,
        only: Option<ClientKey>,
        shares: Vec<(OwnerKey, FileKey)>,
        out: &mut Vec<Action>,
    ) -> u64 {
        let mut pieces: Vec<(FileKey, OwnerKey, Span)> = Vec::new();
        for (fk, _, file) in self.files.iter() {
            for (&(ok, start), &end) in &file.unreclaimed {
                if only.is_none_or(|ck| self.owners.get(ok).client == ck) {
                    pieces.push((fk, ok, Span::new(start, end)));
                }
            }
        }
        let mut touched = alloc::collections::BTreeSet::new();
        for &(ok, fk) in &shares {
            if let Some(&modes) = self.files.get(fk).shares.get(&ok) {
                let record = self.share_record(fk, ok, modes);
                self.drop_share(fk, ok);
                self.persist(PersistOp::DeleteShare(record), out);
            }
            touched.insert((fk, ok));
        }
        for &(fk, ok, span) in &pieces {
            let plan = self.files.get(fk).locks.plan_unlock(ok, span);
            self.release_plan(fk, &plan, ReleaseReason::GraceExpired, out);
            let file = self.files.get_mut(fk);
            file.unreclaimed.remove(&(ok, span.start));
            self.owners.get_mut(ok).rare_mut().unreclaimed.remove(&fk);
            touched.insert((fk, ok));
        }
        for &(fk, ok) in &touched {
            self.wake(fk, out);
            self.tidy(Some(fk), Some(ok));
        }
        (pieces.len() + shares.len()) as u64
    }

    pub(crate) fn end_grace(&mut self, out: &mut Vec<Action>) {
        let Some(grace) = self.grace.take() else {
            return;
        };
        self.timers.remove(&(grace.ends_at, Timer::GraceEnd));
        let shares = grace.unreclaimed_shares.iter().copied().collect();
        let released = self.release_unreclaimed(None, shares, out);
        out.push(Action::GraceEnded { released });
        for ck in grace.pending {
            self.tidy_client(ck);
        }
    }
}
