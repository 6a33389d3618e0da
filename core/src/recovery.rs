//! Recovery after a store failure: which state survives when the host's store lost a batch.
//!
//! The ordering contract lets the host acknowledge nothing a failed batch carried, so the store still
//! holds every acknowledged lock and share — and possibly some the core has since let go of (an
//! UNLOCK whose delete was in the failed batch was refused, so its owner still holds it). The host
//! then asks the core for a replacement built from what the store holds ([`Core::rebuild`]); every
//! rule about what else survives lives here, not in the host:
//!
//! - **Held locks and share reservations** are exactly the store's.
//! - **Grace** continues as it was: same deadline; a lock or share that was waiting for its reclaim
//!   still waits (if the store still has it), everything else is held as reclaimed or granted; the
//!   clients still to reclaim are those with something left waiting.
//! - **Queued waiters** (the store does not keep them) stay queued in their old order with their old
//!   ids, so callback cookies and the host's per-waiter state stay valid. A grant whose lock the store
//!   does not have (its batch failed, so its GRANTED was never sent) goes back to the queue at its old
//!   place; a grant the store has keeps its callback state. Then every queue is woken: what the store
//!   no longer blocks is granted through the usual persist and GRANTED path. A waiter that would close
//!   a cycle of waiting owners against a lock the store kept is removed (`Deadlock`); its client's
//!   next retry is answered as any deadlock is.
//! - **Connections, counters and numbering** (persist sequence, waiter ids) carry on unchanged.

use alloc::vec::Vec;

use crate::action::{Action, LockRecord, ShareRecord, WaiterRemovedReason};
use crate::grace::RestoreError;
use crate::range::Span;
use crate::state::{Core, FileKey, Grace, Timer, Waiter, WaiterState};
use crate::table::{HeldLock, OwnerKey};
use crate::time::Instant;

impl Core {
    /// A core holding exactly `records` and `shares` — what the store kept after a failed batch —
    /// with everything else this core knew carried over by the rules in this module's docs. The host
    /// swaps it in and carries out the returned actions (grants of waiters the store no longer blocks,
    /// waiters removed, a grace period that ended) as it would an event's.
    pub fn rebuild(
        &self,
        now: Instant,
        records: impl IntoIterator<Item = LockRecord>,
        shares: impl IntoIterator<Item = ShareRecord>,
    ) -> Result<(Core, Vec<Action>), RestoreError> {
        let mut core = Core::with_epoch(self.config.clone(), self.epoch);
        core.now = self.now.max(now);
        core.next_seq = self.next_seq;
        core.next_waiter = self.next_waiter;
        core.stats = self.stats.clone();
        let mut out = Vec::new();
        core.load_locks(records, &mut out)?;
        core.load_shares(shares);
        core.carry_connections(self);
        core.carry_grace(self);
        core.carry_waiters(self, &mut out);
        let queued: Vec<FileKey> = core
            .files
            .iter()
            .filter(|(_, _, f)| !f.queue.is_empty())
            .map(|(fk, _, _)| fk)
            .collect();
        for fk in queued {
            core.wake(fk, &mut out);
        }
        core.break_new_cycles(&mut out);
        core.end_grace_if_done(&mut out);
        Ok((core, out))
    }

    /// Clients connected through an adapter stay connected, with their pending disconnects.
    fn carry_connections(&mut self, old: &Core) {
        for (_, id, state) in old.clients.iter() {
            if state.adapter.is_none() && !state.connected && state.disconnect_at.is_none() {
                continue;
            }
            let ck = self.clients.intern(id, Default::default);
            let client = self.clients.get_mut(ck);
            client.adapter = state.adapter.clone();
            client.connected = state.connected;
            client.ttl = state.ttl;
            client.disconnect_at = state.disconnect_at;
            if let Some(at) = state.disconnect_at {
                self.timers.insert((at, Timer::Disconnect(ck)));
            }
        }
        self.connected = old.connected.clone();
    }

    /// The old core's grace period, mapped onto this core's keys: what still waited for its reclaim
    /// and is still stored keeps waiting.
    fn carry_grace(&mut self, old: &Core) {
        let Some(grace) = &old.grace else {
            return;
        };
        // A client still has to reclaim exactly when something of its own still waits for it.
        let mut pending = alloc::collections::BTreeSet::new();
        for (_, file_id, file) in old.files.iter() {
            if file.unreclaimed.is_empty() {
                continue;
            }
            let Some(fk) = self.files.lookup(file_id) else {
                continue;
            };
            for (&(old_ok, start), &end) in &file.unreclaimed {
                let Some(ok) = self.same_owner(old, old_ok) else {
                    continue;
                };
                let stored = self
                    .files
                    .get(fk)
                    .locks
                    .owner_locks(ok)
                    .iter()
                    .any(|l| l.span == Span { start, end });
                if stored {
                    self.files.get_mut(fk).unreclaimed.insert((ok, start), end);
                    let owner = self.owners.get_mut(ok);
                    owner.rare_mut().unreclaimed.insert(fk);
                    pending.insert(owner.client);
                }
            }
        }
        let mut unreclaimed_shares = alloc::collections::BTreeSet::new();
        for &(old_ok, old_fk) in &grace.unreclaimed_shares {
            let (Some(ok), Some(fk)) = (
                self.same_owner(old, old_ok),
                self.files.lookup(old.files.id(old_fk)),
            ) else {
                continue;
            };
            if self.files.get(fk).shares.contains_key(&ok) {
                unreclaimed_shares.insert((ok, fk));
                pending.insert(self.owners.get(ok).client);
            }
        }
        self.grace = Some(Grace {
            ends_at: grace.ends_at,
            pending,
            expected: grace.expected,
            unreclaimed_shares,
        });
        self.timers.insert((grace.ends_at, Timer::GraceEnd));
    }

    /// This core's key for the old core's owner `old_ok`, if this core knows it.
    fn same_owner(&self, old: &Core, old_ok: OwnerKey) -> Option<OwnerKey> {
        let (old_ck, owner) = old.owners.id(old_ok);
        self.lookup_owner(old.clients.id(*old_ck), owner)
    }

    /// The old core's waiters in id (arrival) order; see the module docs for which stay granted, which
    /// queue again and which are removed.
    fn carry_waiters(&mut self, old: &Core, out: &mut Vec<Action>) {
        for (&id, waiter) in &old.waiters {
            let fk = self
                .files
                .intern(old.files.id(waiter.file), Default::default);
            let (old_ck, owner) = old.owners.id(waiter.owner);
            let (ck, ok) = self.intern_owner(old.clients.id(*old_ck), owner);
            let durable_grant = matches!(waiter.state, WaiterState::Granted { .. })
                && self
                    .files
                    .get(fk)
                    .locks
                    .owner_holds(ok, waiter.span, waiter.kind);
            let state = match waiter.state {
                WaiterState::Granted { .. } if durable_grant => waiter.state,
                WaiterState::Queued { expires_at } => WaiterState::Queued { expires_at },
                WaiterState::Granted { .. } => WaiterState::Queued {
                    expires_at: self.config.blocking_timeout.map(|t| self.now + t),
                },
            };
            let carried = Waiter {
                file: fk,
                owner: ok,
                state,
                ..waiter.clone()
            };
            if !durable_grant {
                let blockers = self.blockers(fk, ok, waiter.span, waiter.kind, None);
                if self.find_cycle(ok, &blockers).is_some() {
                    self.stats.waiter_removed(WaiterRemovedReason::Deadlock);
                    let owner = self.owner_ref(ok);
                    out.push(Action::WaiterRemoved {
                        waiter: id,
                        request: waiter.request,
                        client: owner.client,
                        owner: owner.owner,
                        file: self.files.id(fk).clone(),
                        range: waiter.span.to_range(self.config.max_offset),
                        kind: waiter.kind,
                        reason: WaiterRemovedReason::Deadlock,
                    });
                    self.tidy(Some(fk), Some(ok));
                    continue;
                }
            }
            match state {
                WaiterState::Queued { expires_at } => {
                    if let Some(at) = expires_at {
                        self.timers.insert((at, Timer::WaiterExpiry(id)));
                    }
                    self.queue_insert(
                        fk,
                        id,
                        HeldLock {
                            owner: ok,
                            span: waiter.span,
                            kind: waiter.kind,
                        },
                    );
                }
                WaiterState::Granted {
                    retry_at, deadline, ..
                } => {
                    if let Some(at) = retry_at {
                        self.timers.insert((at, Timer::CallbackRetry(id)));
                    }
                    if let Some(at) = deadline {
                        self.timers.insert((at, Timer::CallbackDeadline(id)));
                    }
                }
            }
            self.waiters.insert(id, carried);
            self.files.get_mut(fk).waiters += 1;
            self.owners.get_mut(ok).rare_mut().waiters.insert((fk, id));
            self.clients.get_mut(ck).waiters += 1;
        }
    }
}
