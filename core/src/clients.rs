//! Clients: connections per adapter with a limit, TTL-deferred release after a disconnect (a reconnect
//! in time cancels it), and FREE_ALL. Releasing a client takes its locks, waiters, shares and pending
//! reclaims, then wakes the waiters of other clients it was blocking.

use alloc::collections::BTreeSet;
use alloc::string::String;
use alloc::vec::Vec;

use crate::action::{Action, ReleaseReason, WaiterRemovedReason};
use crate::ids::ClientId;
use crate::range::Span;
use crate::state::{ClientKey, ClientState, Core, Timer, WaiterState};
use crate::time::Duration;

impl Core {
    pub(crate) fn client_connected(
        &mut self,
        client: &ClientId,
        adapter: String,
        ttl: Duration,
        out: &mut Vec<Action>,
    ) {
        let ck = self.clients.intern(client, ClientState::default);
        if self.clients.get(ck).connected {
            self.clients.get_mut(ck).ttl = ttl;
            return;
        }
        let limit = self.config.limits.connections_for(&adapter);
        let connected = self.connected.get(&adapter).copied().unwrap_or(0);
        if connected >= limit {
            self.stats.connections_refused += 1;
            out.push(Action::ConnectionRefused {
                client: client.clone(),
                adapter,
                limit,
            });
            self.tidy_client(ck);
            return;
        }
        *self.connected.entry(adapter.clone()).or_default() += 1;
        let state = self.clients.get_mut(ck);
        state.connected = true;
        state.adapter = Some(adapter);
        state.ttl = ttl;
        // A reconnect before the deadline keeps everything.
        if let Some(at) = state.disconnect_at.take() {
            self.timers.remove(&(at, Timer::Disconnect(ck)));
        }
    }

    pub(crate) fn client_disconnected(&mut self, client: &ClientId, out: &mut Vec<Action>) {
        let Some(ck) = self.clients.lookup(client) else {
            return;
        };
        let state = self.clients.get_mut(ck);
        if !state.connected {
            return;
        }
        state.connected = false;
        let ttl = state.ttl;
        if let Some(adapter) = state.adapter.as_ref()
            && let Some(count) = self.connected.get_mut(adapter)
        {
            *count -= 1;
            if *count == 0 {
                self.connected.remove(adapter);
            }
        }
        if ttl.is_zero() {
            self.release_client(ck, ReleaseReason::Disconnect, out);
        } else {
            let at = self.now + ttl;
            self.clients.get_mut(ck).disconnect_at = Some(at);
            self.timers.insert((at, Timer::Disconnect(ck)));
        }
    }

    pub(crate) fn disconnect_expired(&mut self, ck: ClientKey, out: &mut Vec<Action>) {
        let Some(state) = self.clients.try_get(ck) else {
            return;
        };
        if state.disconnect_at.is_none() {
            return;
        }
        self.clients.get_mut(ck).disconnect_at = None;
        self.release_client(ck, ReleaseReason::Disconnect, out);
    }

    /// NLM_FREE_ALL, or a reboot notification: everything of the client goes at once.
    pub(crate) fn free_all(&mut self, client: &ClientId, out: &mut Vec<Action>) {
        if let Some(ck) = self.clients.lookup(client) {
            self.release_client(ck, ReleaseReason::FreeAll, out);
        }
    }

    fn release_client(&mut self, ck: ClientKey, reason: ReleaseReason, out: &mut Vec<Action>) {
        let owners: Vec<_> = self.clients.get(ck).owners.iter().copied().collect();
        let mut touched = BTreeSet::new();
        // Its waiters go first, so waking afterwards cannot grant them.
        for &ok in &owners {
            // In waiter order, as they were queued.
            let mut waiters: Vec<_> = self
                .owners
                .get(ok)
                .rare()
                .waiters
                .iter()
                .map(|&(_, id)| id)
                .collect();
            waiters.sort();
            for id in waiters {
                touched.insert(self.waiters[&id].file);
                match self.waiters[&id].state {
                    WaiterState::Queued { .. } => {
                        self.remove_waiter(id, WaiterRemovedReason::ClientGone, out)
                    }
                    WaiterState::Granted { .. } => {
                        self.forget_waiter(id);
                    }
                }
            }
        }
        for &ok in &owners {
            let files: Vec<_> = self.owners.get(ok).files.iter().map(|(fk, _)| fk).collect();
            for fk in files {
                let plan = self.files.get(fk).locks.plan_release_owner(ok);
                self.release_plan(fk, &plan, reason, out);
                touched.insert(fk);
            }
            let shares = self.owners.get(ok).rare().shares.clone();
            self.shares_released(ok, &shares, out);
            touched.extend(shares);
            let unreclaimed: Vec<_> = self
                .owners
                .get(ok)
                .rare()
                .unreclaimed
                .iter()
                .copied()
                .collect();
            for fk in unreclaimed {
                self.forget_unreclaimed(fk, ok, Span::new(0, u64::MAX), out);
                touched.insert(fk);
            }
        }
        for &fk in &touched {
            self.wake(fk, out);
        }
        for &ok in &owners {
            self.tidy(None, Some(ok));
        }
        for &fk in &touched {
            self.tidy(Some(fk), None);
        }
        self.tidy_client(ck);
    }
}
