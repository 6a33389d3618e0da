//! The leader's promise: every task checks the [`LeaseGate`] right before it sends anything to a
//! client, on this host's `CLOCK_BOOTTIME` ([`boot_now`]); why that clock, and why the deadline
//! counts from when a renewal was *sent*, is in the `leader` module doc.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Now on `CLOCK_BOOTTIME`: monotonic, and counting suspended time (see the module doc).
pub fn boot_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Whether this instance may send anything to a client now: open until its lease deadline, shut for
/// good once it has lost or given up the lease. Shared by every task that sends (an atomic read and a
/// clock read per check).
#[derive(Debug)]
pub struct LeaseGate {
    /// Nanoseconds on [`boot_now`]'s clock before which sending is allowed. `RETIRED` (0): shut
    /// for good; `u64::MAX`: no lease (a store only one instance can use).
    deadline_ns: AtomicU64,
}

const RETIRED: u64 = 0;
/// Shut, but a renewal may still open it (before the first lease is taken).
const NOT_YET: u64 = 1;

impl LeaseGate {
    /// For stores without leadership (SQLite, memory): always open.
    pub fn always_open() -> Self {
        LeaseGate {
            deadline_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// Shut until the first [`LeaseGate::renewed`].
    pub fn shut() -> Self {
        LeaseGate {
            deadline_ns: AtomicU64::new(NOT_YET),
        }
    }

    /// Whether sending is allowed at this moment (reads the clock).
    pub fn is_open(&self) -> bool {
        let deadline = self.deadline_ns.load(Ordering::Acquire);
        // No clock read when there is no lease: the common single-instance case costs one load.
        deadline == u64::MAX || self.is_open_at(boot_now())
    }

    /// Whether sending is allowed at `now` (on [`boot_now`]'s clock).
    pub fn is_open_at(&self, now: Duration) -> bool {
        let deadline = self.deadline_ns.load(Ordering::Acquire);
        deadline > NOT_YET && nanos(now) < deadline
    }

    /// A renewal sent at `sent_at` has committed: sending is allowed until `sent_at + lease`.
    /// Never moves the deadline back, and never reopens a retired gate.
    pub fn renewed(&self, sent_at: Duration, lease: Duration) {
        let until = nanos(sent_at + lease).max(NOT_YET + 1);
        let _ = self
            .deadline_ns
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current != RETIRED && current != u64::MAX && until > current).then_some(until)
            });
    }

    /// Shuts the gate for good: the lease is lost or given up.
    pub fn retire(&self) {
        self.deadline_ns.store(RETIRED, Ordering::Release);
    }

    /// The moment the gate shuts (`None`: never, or already retired).
    pub fn deadline(&self) -> Option<Duration> {
        match self.deadline_ns.load(Ordering::Acquire) {
            RETIRED | u64::MAX => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_gate_shuts_at_sent_plus_lease() {
        let gate = LeaseGate::shut();
        assert!(!gate.is_open_at(ms(0)), "shut before the first lease");
        // The renewal was sent at 1 s; its reply may come much later: the deadline counts from 1 s.
        gate.renewed(ms(1_000), ms(3_000));
        assert!(gate.is_open_at(ms(3_999)));
        assert!(
            !gate.is_open_at(ms(4_000)),
            "not one instant past sent + lease"
        );
        assert!(
            !gate.is_open_at(ms(60_000)),
            "a leader that wakes late answers nothing"
        );
    }

    #[test]
    fn a_late_reply_to_an_earlier_renewal_never_shortens_the_lease() {
        let gate = LeaseGate::shut();
        gate.renewed(ms(2_000), ms(3_000));
        gate.renewed(ms(1_000), ms(3_000));
        assert_eq!(gate.deadline(), Some(ms(5_000)));
    }

    #[test]
    fn a_retired_gate_never_reopens() {
        let gate = LeaseGate::shut();
        gate.renewed(ms(0), ms(3_000));
        gate.retire();
        assert!(!gate.is_open_at(ms(1)));
        gate.renewed(ms(10), ms(3_000));
        assert!(
            !gate.is_open_at(ms(11)),
            "a renewal racing the loss must not reopen it"
        );
        assert_eq!(gate.deadline(), None);
    }

    #[test]
    fn without_a_lease_the_gate_is_always_open() {
        let gate = LeaseGate::always_open();
        assert!(gate.is_open());
        gate.renewed(ms(0), ms(1));
        assert!(gate.is_open_at(Duration::from_secs(1 << 40)));
        gate.retire();
        assert!(!gate.is_open(), "shutting down shuts it too");
    }

    #[test]
    fn the_gate_reads_a_clock_that_moves() {
        let long = LeaseGate::shut();
        long.renewed(boot_now(), Duration::from_secs(600));
        assert!(long.is_open());
        let short = LeaseGate::shut();
        short.renewed(boot_now(), ms(1));
        std::thread::sleep(ms(5));
        assert!(!short.is_open());
    }
}
