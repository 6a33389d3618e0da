//! Blocking requests: FIFO queues per file, grants when locks go away, and the GRANTED callback's life.

use alloc::vec::Vec;

use crate::action::{Action, ReleaseReason, WaiterRemovedReason};
use crate::config::CallbackPolicy;
use crate::event::{CallbackResult, LockKind};
use crate::ids::{RequestId, WaiterId};
use crate::range::Span;
use crate::state::{Core, FileKey, Timer, Waiter, WaiterState};
use crate::table::{HeldLock, OwnerKey};

impl Core {
    /// The owner's waiter (queued or granted-pending) on this file for exactly `span` (and `kind`, if
    /// given), oldest first.
    pub(crate) fn find_waiter(
        &self,
        fk: FileKey,
        ok: OwnerKey,
        span: Span,
        kind: Option<LockKind>,
    ) -> Option<WaiterId> {
        let owner = self.owners.try_get(ok)?;
        owner
            .rare()
            .waiters
            .range((fk, WaiterId(0))..=(fk, WaiterId(u64::MAX)))
            .map(|&(_, id)| id)
            .find(|id| {
                let w = &self.waiters[id];
                w.span == span && kind.is_none_or(|k| k == w.kind)
            })
    }

    pub(crate) fn enqueue(
        &mut self,
        fk: FileKey,
        ok: OwnerKey,
        span: Span,
        kind: LockKind,
        request: RequestId,
        cookie: Vec<u8>,
    ) -> WaiterId {
        let id = WaiterId(self.next_waiter);
        self.next_waiter += 1;
        let expires_at = self.config.blocking_timeout.map(|t| self.now + t);
        if let Some(at) = expires_at {
            self.timers.insert((at, Timer::WaiterExpiry(id)));
        }
        let waiter = Waiter {
            request,
            file: fk,
            owner: ok,
            span,
            kind,
            cookie,
            since: self.now,
            state: WaiterState::Queued { expires_at },
        };
        self.waiters.insert(id, waiter);
        self.queue_insert(
            fk,
            id,
            HeldLock {
                owner: ok,
                span,
                kind,
            },
        );
        self.files.get_mut(fk).waiters += 1;
        let owner = self.owners.get_mut(ok);
        owner.rare_mut().waiters.insert((fk, id));
        let ck = owner.client;
        self.clients.get_mut(ck).waiters += 1;
        id
    }

    /// Drops a waiter's bookkeeping (queue place, timers) without announcing anything.
    pub(crate) fn forget_waiter(&mut self, id: WaiterId) -> Option<Waiter> {
        let waiter = self.waiters.remove(&id)?;
        self.files.get_mut(waiter.file).waiters -= 1;
        match waiter.state {
            WaiterState::Queued { expires_at } => {
                self.queue_remove(waiter.file, id);
                if let Some(at) = expires_at {
                    self.timers.remove(&(at, Timer::WaiterExpiry(id)));
                }
            }
            WaiterState::Granted {
                retry_at, deadline, ..
            } => {
                if let Some(at) = retry_at {
                    self.timers.remove(&(at, Timer::CallbackRetry(id)));
                }
                if let Some(at) = deadline {
                    self.timers.remove(&(at, Timer::CallbackDeadline(id)));
                }
            }
        }
        let owner = self.owners.get_mut(waiter.owner);
        owner.rare_mut().waiters.remove(&(waiter.file, id));
        let ck = owner.client;
        self.clients.get_mut(ck).waiters -= 1;
        Some(waiter)
    }

    /// Removes a queued waiter and says why.
    pub(crate) fn remove_waiter(
        &mut self,
        id: WaiterId,
        reason: WaiterRemovedReason,
        out: &mut Vec<Action>,
    ) {
        let Some(waiter) = self.forget_waiter(id) else {
            return;
        };
        let owner = self.owner_ref(waiter.owner);
        self.stats.waiter_removed(reason);
        out.push(Action::WaiterRemoved {
            waiter: id,
            request: waiter.request,
            client: owner.client,
            owner: owner.owner,
            file: self.files.id(waiter.file).clone(),
            range: waiter.span.to_range(self.config.max_offset),
            kind: waiter.kind,
            reason,
        });
    }

    /// Grants queued waiters of a file in queue order: a waiter is granted when no held lock conflicts
    /// with it and no earlier, still queued waiter of another owner does. Compatible waiters behind a
    /// blocked one still proceed; conflicting ones never overtake it.
    pub(crate) fn wake(&mut self, fk: FileKey, out: &mut Vec<Action>) {
        loop {
            let Some(file) = self.files.try_get(fk) else {
                return;
            };
            if file.queue.is_empty() {
                return;
            }
            let queued: Vec<(WaiterId, HeldLock)> =
                file.queue.iter().map(|(&id, &q)| (id, q)).collect();
            let mut granted_any = false;
            for (
                id,
                HeldLock {
                    owner: ok,
                    span,
                    kind,
                },
            ) in queued
            {
                if self.is_blocked(fk, ok, span, kind, id) {
                    continue;
                }
                let plan = self.plan_lock(fk, ok, span, kind);
                // Over a limit now: it stays queued and is tried again after the next event.
                if self.limit_refuses(fk, ok, plan.delta()).is_some() {
                    self.limit_blocked.insert(fk);
                    continue;
                }
                self.grant_waiter(id, &plan, out);
                granted_any = true;
            }
            // A grant can downgrade its owner's lock and so unblock an earlier waiter: go round again.
            if !granted_any {
                return;
            }
        }
    }

    fn grant_waiter(&mut self, id: WaiterId, plan: &crate::table::Plan, out: &mut Vec<Action>) {
        let w = &self.waiters[&id];
        let (fk, since) = (w.file, w.since);
        if let WaiterState::Queued {
            expires_at: Some(at),
        } = w.state
        {
            self.timers.remove(&(at, Timer::WaiterExpiry(id)));
        }
        self.queue_remove(fk, id);
        let deadline = self.config.callback_deadline.map(|d| self.now + d);
        if let Some(at) = deadline {
            self.timers.insert((at, Timer::CallbackDeadline(id)));
        }
        self.waiters.get_mut(&id).expect("waiter exists").state = WaiterState::Granted {
            attempt: 1,
            retry_at: None,
            deadline,
        };
        self.apply_plan(fk, plan, out);
        self.stats.wait_granted(self.now - since);
        self.send_granted(id, out);
    }

    fn send_granted(&mut self, id: WaiterId, out: &mut Vec<Action>) {
        let w = &self.waiters[&id];
        let WaiterState::Granted { attempt, .. } = w.state else {
            return;
        };
        let owner = self.owner_ref(w.owner);
        self.stats.callbacks_sent += 1;
        out.push(Action::SendGranted {
            waiter: id,
            request: w.request,
            client: owner.client,
            owner: owner.owner,
            file: self.files.id(w.file).clone(),
            range: w.span.to_range(self.config.max_offset),
            kind: w.kind,
            cookie: w.cookie.clone(),
            attempt,
            callback_cookie: self.config.cookie_key.cookie(id),
        });
    }

    /// The granted waiter whose callback `cookie` names (a client's NLM_GRANTED_RES carries it back),
    /// if the cookie is one this core made and that grant still waits for its confirmation. A guessed
    /// or altered cookie names nothing.
    pub fn waiter_of_cookie(&self, cookie: &[u8]) -> Option<WaiterId> {
        let id = self.config.cookie_key.waiter(cookie)?;
        self.waiters
            .get(&id)
            .is_some_and(|w| matches!(w.state, WaiterState::Granted { .. }))
            .then_some(id)
    }

    /// The host reports how a GRANTED callback ended. Reports for waiters the core no longer tracks (the
    /// owner unlocked or cancelled meanwhile) or with no send outstanding are stale and ignored.
    pub(crate) fn callback_outcome(
        &mut self,
        id: WaiterId,
        result: CallbackResult,
        out: &mut Vec<Action>,
    ) {
        let Some(w) = self.waiters.get(&id) else {
            return;
        };
        let WaiterState::Granted {
            attempt,
            retry_at: None,
            deadline,
        } = w.state
        else {
            return;
        };
        self.stats.callback(result);
        match (result, self.config.callback) {
            (CallbackResult::Delivered, _) => {
                // The owner may have let go of the lock meanwhile: then nothing else keeps it.
                if let Some(w) = self.forget_waiter(id) {
                    self.tidy(Some(w.file), Some(w.owner));
                }
            }
            (CallbackResult::Failed, CallbackPolicy::Retry { interval, attempts })
                if attempt < attempts =>
            {
                let at = self.now + interval;
                self.waiters.get_mut(&id).expect("waiter exists").state = WaiterState::Granted {
                    attempt,
                    retry_at: Some(at),
                    deadline,
                };
                self.timers.insert((at, Timer::CallbackRetry(id)));
            }
            (CallbackResult::Failed | CallbackResult::Refused, _) => self.undo_grant(id, out),
        }
    }

    pub(crate) fn resend_granted(&mut self, id: WaiterId, out: &mut Vec<Action>) {
        let Some(w) = self.waiters.get_mut(&id) else {
            return;
        };
        let WaiterState::Granted {
            attempt,
            retry_at: Some(_),
            deadline,
        } = w.state
        else {
            return;
        };
        w.state = WaiterState::Granted {
            attempt: attempt + 1,
            retry_at: None,
            deadline,
        };
        self.send_granted(id, out);
    }

    /// No client confirmed the grant in time (`Config::callback_deadline`), whatever send is out: the
    /// range goes back to the waiters behind it.
    pub(crate) fn callback_deadline_passed(&mut self, id: WaiterId, out: &mut Vec<Action>) {
        if !self
            .waiters
            .get(&id)
            .is_some_and(|w| matches!(w.state, WaiterState::Granted { .. }))
        {
            return;
        }
        self.stats.callbacks_unconfirmed += 1;
        self.undo_grant(id, out);
    }

    /// The client never took the lock: release it and let the next waiters in.
    fn undo_grant(&mut self, id: WaiterId, out: &mut Vec<Action>) {
        let Some(w) = self.forget_waiter(id) else {
            return;
        };
        let plan = self.files.get(w.file).locks.plan_unlock(w.owner, w.span);
        self.release_plan(w.file, &plan, ReleaseReason::CallbackFailed, out);
        self.wake(w.file, out);
        self.tidy(Some(w.file), Some(w.owner));
    }

    pub(crate) fn expire_waiter(&mut self, id: WaiterId, out: &mut Vec<Action>) {
        let Some(w) = self.waiters.get(&id) else {
            return;
        };
        let (fk, ok) = (w.file, w.owner);
        self.remove_waiter(id, WaiterRemovedReason::Expired, out);
        // Waiters that queued behind it for fairness may now go.
        self.wake(fk, out);
        self.tidy(Some(fk), Some(ok));
    }
}
