//! LOCK, UNLOCK, TEST and CANCEL, in the order the rules apply.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::ops::ControlFlow;

use crate::action::{Action, Holder, Outcome, ReleaseReason, WaiterRemovedReason};
use crate::event::LockKind;
use crate::ids::{ClientId, FileId, OwnerId, RequestId, WaiterId};
use crate::range::{Range, Span};
use crate::state::{Core, FileKey, WaiterState};
use crate::table::{HeldLock, OwnerKey};

pub(crate) struct LockRequest {
    pub request: RequestId,
    pub range: Range,
    pub kind: LockKind,
    pub wait: bool,
    pub reclaim: bool,
    pub cookie: Vec<u8>,
}

/// Why a request cannot be granted right now.
pub(crate) enum Obstacle {
    Held(HeldLock),
    Queued(HeldLock),
}

impl Core {
    pub(crate) fn lock(
        &mut self,
        client: &ClientId,
        owner: &OwnerId,
        file: &FileId,
        req: LockRequest,
        out: &mut Vec<Action>,
    ) {
        let Some(span) = req.range.span(self.config.max_offset) else {
            return self.reply(req.request, Outcome::TooBig, true, out);
        };
        if let Some(refusal) =
            self.grace_refuses_lock(client, owner, file, span, req.kind, req.reclaim)
        {
            return self.reply(req.request, refusal, true, out);
        }
        let fk = self.files.intern(file, Default::default);
        let (_, ok) = self.intern_owner(client, owner);
        self.lock_in(fk, ok, span, req, out);
        self.tidy(Some(fk), Some(ok));
    }

    fn lock_in(
        &mut self,
        fk: FileKey,
        ok: OwnerKey,
        span: Span,
        req: LockRequest,
        out: &mut Vec<Action>,
    ) {
        // A retransmitted blocking request keeps its place; one already granted is simply granted
        // (Linux lockd: a LOCK that finds its block granted answers "granted").
        if let Some(id) = self.find_waiter(fk, ok, span, Some(req.kind)) {
            let waiter = self.waiters.get_mut(&id).expect("indexed waiter exists");
            match waiter.state {
                WaiterState::Queued { .. } => {
                    waiter.request = req.request;
                    waiter.cookie = req.cookie;
                    return self.reply(req.request, Outcome::Blocked { waiter: id }, true, out);
                }
                WaiterState::Granted { .. } => {
                    self.forget_waiter(id);
                    self.stats.callbacks_delivered += 1;
                    return self.reply(req.request, Outcome::Granted, true, out);
                }
            }
        }

        let obstacle = self.obstacle(
            fk,
            ok,
            span,
            req.kind,
            req.wait || self.config.fair_nonblocking,
        );
        match obstacle {
            None => {
                let plan = self.plan_lock(fk, ok, span, req.kind);
                if let Some(limit) = self.limit_refuses(fk, ok, plan.delta()) {
                    return self.reply(req.request, Outcome::NoLocks { limit }, true, out);
                }
                self.apply_plan(fk, &plan, out);
                if req.reclaim {
                    self.reclaimed(fk, ok, span, out);
                }
                self.reply(req.request, Outcome::Granted, true, out);
                // A downgrade or a replaced lock can let queued requests through.
                self.wake(fk, out);
            }
            Some(obstacle) if !req.wait => {
                let holder = self.holder(obstacle);
                self.reply(req.request, Outcome::Denied { holder }, true, out);
            }
            Some(_) => {
                // Limits first: a request that could not queue anyway costs no search.
                if let Some(limit) = self.waiter_limit_refuses(fk, ok) {
                    return self.reply(req.request, Outcome::NoLocks { limit }, true, out);
                }
                let blockers = self.blockers(fk, ok, span, req.kind, None);
                if let Some(cycle) = self.find_cycle(ok, &blockers) {
                    let cycle = cycle.into_iter().map(|o| self.owner_ref(o)).collect();
                    return self.reply(req.request, Outcome::Deadlock { cycle }, true, out);
                }
                let waiter = self.enqueue(fk, ok, span, req.kind, req.request, req.cookie);
                self.reply(req.request, Outcome::Blocked { waiter }, true, out);
            }
        }
    }

    /// What stands in the way of granting now: a conflicting held lock, or (when `fair`) an earlier
    /// queued request of another owner that conflicts — no overtaking, so readers cannot starve a writer.
    pub(crate) fn obstacle(
        &self,
        fk: FileKey,
        ok: OwnerKey,
        span: Span,
        kind: LockKind,
        fair: bool,
    ) -> Option<Obstacle> {
        let file = self.files.get(fk);
        if let Some(held) = file.locks.first_conflict(ok, span, kind) {
            return Some(Obstacle::Held(held));
        }
        if !fair {
            return None;
        }
        file.queue.values().find_map(|&w| {
            (w.owner != ok && w.span.overlaps(span) && w.kind.conflicts_with(kind))
                .then_some(Obstacle::Queued(w))
        })
    }

    /// Owners a request of `ok` for `kind` over `span` would wait for: holders of conflicting locks and
    /// owners of conflicting waiters queued before it (`before`: its own place; None = at the end).
    pub(crate) fn blockers(
        &self,
        fk: FileKey,
        ok: OwnerKey,
        span: Span,
        kind: LockKind,
        before: Option<crate::ids::WaiterId>,
    ) -> BTreeSet<OwnerKey> {
        let file = self.files.get(fk);
        let mut owners = BTreeSet::new();
        let _ = file.locks.conflicts::<()>(ok, span, kind, |lock| {
            owners.insert(lock.owner);
            ControlFlow::Continue(())
        });
        let earlier = match before {
            Some(b) => file.queue.range(..b),
            None => file.queue.range(..),
        };
        for w in earlier.map(|(_, w)| w) {
            if w.owner != ok && w.span.overlaps(span) && w.kind.conflicts_with(kind) {
                owners.insert(w.owner);
            }
        }
        owners
    }

    /// Whether queued request `id` still has a blocker: `blockers` without collecting them, so waking
    /// a queue of n costs n short scans, each stopping at the first blocker.
    pub(crate) fn is_blocked(
        &self,
        fk: FileKey,
        ok: OwnerKey,
        span: Span,
        kind: LockKind,
        id: WaiterId,
    ) -> bool {
        let file = self.files.get(fk);
        file.locks
            .conflicts(ok, span, kind, |_| ControlFlow::Break(()))
            .is_break()
            || file
                .queue
                .range(..id)
                .any(|(_, w)| w.owner != ok && w.span.overlaps(span) && w.kind.conflicts_with(kind))
    }

    fn holder(&self, obstacle: Obstacle) -> Holder {
        let (lock, queued) = match obstacle {
            Obstacle::Held(lock) => (lock, false),
            Obstacle::Queued(lock) => (lock, true),
        };
        let owner = self.owner_ref(lock.owner);
        Holder {
            client: owner.client,
            owner: owner.owner,
            kind: lock.kind,
            range: lock.span.to_range(self.config.max_offset),
            queued,
        }
    }

    /// The checks UNLOCK, TEST and CANCEL share: the range must fit, and during grace the profile must
    /// allow the request. A refusal is answered here.
    fn admit(
        &mut self,
        request: RequestId,
        range: Range,
        allowed_in_grace: bool,
        out: &mut Vec<Action>,
    ) -> Option<Span> {
        let Some(span) = range.span(self.config.max_offset) else {
            self.reply(request, Outcome::TooBig, false, out);
            return None;
        };
        if self.in_grace() && !allowed_in_grace {
            self.reply(request, Outcome::DeniedGrace, false, out);
            return None;
        }
        Some(span)
    }

    pub(crate) fn unlock(
        &mut self,
        request: RequestId,
        client: &ClientId,
        owner: &OwnerId,
        file: &FileId,
        range: Range,
        out: &mut Vec<Action>,
    ) {
        let allowed = self.config.unlock_in_grace;
        let Some(span) = self.admit(request, range, allowed, out) else {
            return;
        };
        // Unlocking what is not held succeeds.
        let (Some(fk), Some(ok)) = (self.files.lookup(file), self.lookup_owner(client, owner))
        else {
            return self.reply(request, Outcome::Granted, false, out);
        };
        let plan = self.files.get(fk).locks.plan_unlock(ok, span);
        // Splitting a lock adds a record; unbounded splitting is refused like any growth (Linux: ENOLCK).
        if let Some(limit) = self.limit_refuses(fk, ok, plan.delta()) {
            return self.reply(request, Outcome::NoLocks { limit }, false, out);
        }
        // Linux lockd's nlmsvc_unlock also cancels the owner's blocked request for the same range; a
        // grant whose callback is still pending goes with the lock it granted.
        let owned: Vec<WaiterId> = self
            .owners
            .get(ok)
            .rare()
            .waiters
            .range((fk, WaiterId(0))..=(fk, WaiterId(u64::MAX)))
            .map(|&(_, id)| id)
            .collect();
        for id in owned {
            let w = &self.waiters[&id];
            match w.state {
                WaiterState::Queued { .. } if w.span == span => {
                    self.remove_waiter(id, WaiterRemovedReason::Unlocked, out)
                }
                WaiterState::Granted { .. } if w.span.overlaps(span) => {
                    self.forget_waiter(id);
                }
                _ => {}
            }
        }
        self.release_plan(fk, &plan, ReleaseReason::Explicit, out);
        self.forget_unreclaimed(fk, ok, span, out);
        self.reply(request, Outcome::Granted, false, out);
        self.wake(fk, out);
        self.tidy(Some(fk), Some(ok));
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn test(
        &mut self,
        request: RequestId,
        client: &ClientId,
        owner: &OwnerId,
        file: &FileId,
        range: Range,
        kind: LockKind,
        out: &mut Vec<Action>,
    ) {
        let allowed = self.config.test_in_grace;
        let Some(span) = self.admit(request, range, allowed, out) else {
            return;
        };
        let Some(fk) = self.files.lookup(file) else {
            return self.reply(request, Outcome::Granted, false, out);
        };
        // An owner the core has never seen holds nothing, so every lock here is another owner's.
        let ok = self.lookup_owner(client, owner).unwrap_or(u32::MAX);
        // TEST answers like a non-blocking LOCK would: against held locks (and queued ones when fair).
        let outcome = match self.obstacle(fk, ok, span, kind, self.config.fair_nonblocking) {
            None => Outcome::Granted,
            Some(obstacle) => Outcome::Denied {
                holder: self.holder(obstacle),
            },
        };
        self.reply(request, outcome, false, out);
    }

    /// Cancelling what is not queued is answered "granted", as Linux lockd's nlmsvc_cancel_blocked does:
    /// the client's aim — not to be waiting — is met either way.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn cancel(
        &mut self,
        request: RequestId,
        client: &ClientId,
        owner: &OwnerId,
        file: &FileId,
        range: Range,
        kind: LockKind,
        out: &mut Vec<Action>,
    ) {
        let allowed = self.config.cancel_in_grace;
        let Some(span) = self.admit(request, range, allowed, out) else {
            return;
        };
        let (Some(fk), Some(ok)) = (self.files.lookup(file), self.lookup_owner(client, owner))
        else {
            return self.reply(request, Outcome::Granted, false, out);
        };
        if let Some(id) = self.find_waiter(fk, ok, span, Some(kind)) {
            match self.waiters[&id].state {
                WaiterState::Queued { .. } => {
                    self.remove_waiter(id, WaiterRemovedReason::Cancelled, out)
                }
                // Granted but not yet confirmed: the client withdrew, so the grant is undone (Linux).
                WaiterState::Granted { .. } => {
                    self.forget_waiter(id);
                    let plan = self.files.get(fk).locks.plan_unlock(ok, span);
                    self.release_plan(fk, &plan, ReleaseReason::Explicit, out);
                }
            }
        }
        self.reply(request, Outcome::Granted, false, out);
        self.wake(fk, out);
        self.tidy(Some(fk), Some(ok));
    }

    /// Applies a plan that removes coverage, announcing each released piece.
    pub(crate) fn release_plan(
        &mut self,
        fk: FileKey,
        plan: &crate::table::Plan,
        reason: ReleaseReason,
        out: &mut Vec<Action>,
    ) {
        self.apply_plan(fk, plan, out);
        for lock in &plan.released {
            let record = self.record(fk, *lock);
            self.stats.released(reason);
            out.push(Action::Released {
                client: record.client,
                owner: record.owner,
                file: record.file,
                range: record.range,
                kind: record.kind,
                reason,
            });
        }
    }
}
