//! GRANTED_MSG callbacks waiting for the client's GRANTED_RES. The cookie in a GRANTED_RES names a
//! waiter only through `Core::waiter_of_cookie` (a keyed tag nobody can guess, issue 13 row 12); on
//! top of that only the address the GRANTED_MSG went to — the client's bound address — may confirm
//! or refuse the grant, so a host that saw a cookie on the wire still cannot answer for another.

use std::net::IpAddr;
use std::time::Instant;

use brlock_core::WaiterId;
use foldhash::{HashMap, HashMapExt};

/// One GRANTED_MSG that is out.
#[derive(Clone, Copy, Debug)]
struct Sent {
    attempt: u32,
    at: Instant,
    /// Where it went: the only address whose GRANTED_RES counts.
    to: IpAddr,
}

/// Why a GRANTED_RES was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unanswerable {
    /// No GRANTED_MSG for that waiter is out (answered already, expired, or never sent).
    NotOut,
    /// It came from another address than the one the GRANTED_MSG went to.
    WrongAddress { expected: IpAddr },
}

/// Every GRANTED_MSG that is out, by waiter. At most one entry per granted waiter, so it is bounded
/// by the core's waiter limits.
#[derive(Debug, Default)]
pub(crate) struct GrantReplies {
    out: HashMap<WaiterId, Sent>,
}

impl GrantReplies {
    pub(crate) fn new() -> Self {
        GrantReplies {
            out: HashMap::new(),
        }
    }

    /// GRANTED_MSG attempt `attempt` for `waiter` went to `to`.
    pub(crate) fn sent(&mut self, waiter: WaiterId, attempt: u32, to: IpAddr) {
        self.out.insert(
            waiter,
            Sent {
                attempt,
                at: Instant::now(),
                to,
            },
        );
    }

    /// A GRANTED_RES for `waiter` from `from`: when its GRANTED_MSG was sent, and it is no longer out.
    pub(crate) fn answered(
        &mut self,
        waiter: WaiterId,
        from: IpAddr,
    ) -> Result<Instant, Unanswerable> {
        let sent = self.out.get(&waiter).ok_or(Unanswerable::NotOut)?;
        if sent.to != from {
            return Err(Unanswerable::WrongAddress { expected: sent.to });
        }
        let at = sent.at;
        self.out.remove(&waiter);
        Ok(at)
    }

    /// Attempt `attempt`'s time is up: true (and it is no longer out) if no GRANTED_RES came and no
    /// later attempt replaced it.
    pub(crate) fn expired(&mut self, waiter: WaiterId, attempt: u32) -> bool {
        let current = self.out.get(&waiter).is_some_and(|s| s.attempt == attempt);
        if current {
            self.out.remove(&waiter);
        }
        current
    }

    /// The waiter is gone: nothing of it can be answered any more.
    pub(crate) fn forget(&mut self, waiter: WaiterId) {
        self.out.remove(&waiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

    #[test]
    fn only_the_address_it_went_to_can_answer_and_only_once() {
        let mut r = GrantReplies::new();
        let w = WaiterId(7);
        r.sent(w, 1, CLIENT);
        assert_eq!(
            r.answered(w, OTHER),
            Err(Unanswerable::WrongAddress { expected: CLIENT })
        );
        assert!(r.answered(w, CLIENT).is_ok());
        assert_eq!(r.answered(w, CLIENT), Err(Unanswerable::NotOut));
    }

    #[test]
    fn an_expiry_counts_only_for_the_attempt_that_is_out() {
        let mut r = GrantReplies::new();
        let w = WaiterId(1);
        r.sent(w, 1, CLIENT);
        r.sent(w, 2, CLIENT);
        assert!(!r.expired(w, 1));
        assert!(r.expired(w, 2));
        assert_eq!(r.answered(w, CLIENT), Err(Unanswerable::NotOut));
        r.sent(w, 3, CLIENT);
        r.forget(w);
        assert!(!r.expired(w, 3));
    }
}
