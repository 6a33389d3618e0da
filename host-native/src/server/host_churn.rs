//! Keeping the client-host table (caller_name → bound address, and statd monitoring) small under
//! hosts that come and go: a host that the request which bound it left holding nothing (a DENIED or
//! refused LOCK, a TEST) is forgotten at once instead of at the next idle sweep, and the table has a
//! bound, `--max-client-hosts`. A new host that finds it full first makes room by forgetting every
//! host that holds nothing (at most once per [`EVICTION_PAUSE`], so a flood cannot make each
//! request walk the table), else is refused with DENIED_NOLOCKS, like the core's own limits.
//!
//! What an entry costs: its caller_name (at most 1,024 bytes) twice — the binding and, for a
//! monitored host, the monitoring entry — plus ~120 bytes of map entry, addresses and times: at most
//! ~2.2 KB, so 22 MiB at the default bound of 10,000 hosts.

use std::time::{Duration, Instant};

use brlock_core::ClientId;
use tracing::{debug, info};

use super::CoreTask;

/// How long a full table waits between two attempts to make room.
pub(crate) const EVICTION_PAUSE: Duration = Duration::from_secs(1);

/// The host bound by the call being handled, and when room was last made.
#[derive(Debug, Default)]
pub(crate) struct HostChurn {
    fresh: Option<Vec<u8>>,
    last_eviction: Option<Instant>,
}

impl HostChurn {
    /// `name` was bound by the call being handled.
    pub(crate) fn bound(&mut self, name: &[u8]) {
        self.fresh = Some(name.to_vec());
    }

    /// The host the last call bound, if any (and forgets it was fresh).
    pub(crate) fn take_fresh(&mut self) -> Option<Vec<u8>> {
        self.fresh.take()
    }

    /// Whether it is time to try to make room again (and notes that it is being tried).
    pub(crate) fn may_evict(&mut self, now: Instant) -> bool {
        if self
            .last_eviction
            .is_some_and(|t| now.duration_since(t) < EVICTION_PAUSE)
        {
            return false;
        }
        self.last_eviction = Some(now);
        true
    }
}

impl CoreTask {
    /// Whether one more host may be bound; makes room if the table is full.
    pub(super) fn room_for_new_host(&mut self) -> bool {
        let max = self.shared.config.max_client_hosts;
        if self.callers.len() < max {
            return true;
        }
        if self.host_churn.may_evict(Instant::now()) {
            let idle: Vec<Vec<u8>> = self
                .callers
                .keys()
                .filter(|name| !self.core.knows_client(&ClientId::new(name.to_vec())))
                .cloned()
                .collect();
            info!(
                hosts = self.callers.len(),
                forgotten = idle.len(),
                "client-host table full (--max-client-hosts): forgetting the hosts that hold nothing"
            );
            for name in idle {
                self.forget_host(&name);
            }
        }
        self.callers.len() < max
    }

    /// After a call: the host it bound is forgotten again if the core holds nothing of it (the
    /// request was refused, denied, or only asked). Nothing of it needs to survive a restart, and
    /// a flood of fresh caller_names costs nothing after each request.
    pub(super) fn forget_fresh_host_if_idle(&mut self) {
        let Some(name) = self.host_churn.take_fresh() else {
            return;
        };
        if self.callers.contains_key(&name) && !self.core.knows_client(&ClientId::new(name.clone()))
        {
            debug!(host = %String::from_utf8_lossy(&name), "new host holds nothing: forgotten");
            self.forget_host(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_made_at_most_once_per_pause() {
        let mut churn = HostChurn::default();
        let t0 = Instant::now();
        assert!(churn.may_evict(t0));
        assert!(!churn.may_evict(t0 + EVICTION_PAUSE / 2));
        assert!(churn.may_evict(t0 + EVICTION_PAUSE));
    }

    #[test]
    fn the_fresh_host_is_taken_once() {
        let mut churn = HostChurn::default();
        churn.bound(b"h");
        assert_eq!(churn.take_fresh(), Some(b"h".to_vec()));
        assert_eq!(churn.take_fresh(), None);
    }
}
