//! A standby's judgement of when the leader's lease has certainly run out: only by how long the
//! lease row has stayed the same on this host's clock, plus a [`safety_margin`] (the `leader`
//! module doc gives the argument; a test below checks it on random runs).

use std::time::Duration;

use crate::store::lease::LeaseRow;

/// How much longer than the leader's lease a standby waits (module doc: ≥ 2ρ·lease; 10 %, at
/// least 50 ms).
pub fn safety_margin(lease: Duration) -> Duration {
    (lease / 10).max(Duration::from_millis(50))
}

/// A standby's view of the leader's lease: from which moment (on [`boot_now`](super::boot_now)'s
/// clock) a takeover is safe, judged only by how long the row has stayed the same on this clock.
#[derive(Debug, Default)]
pub struct ExpiryWatch {
    /// (term, renewals) as last seen, and when the first read showing them returned.
    seen: Option<((u64, u64), Duration)>,
}

impl ExpiryWatch {
    /// Takes in a read of the row whose answer arrived at `at`; returns the moment from which this
    /// standby may take the lease over.
    pub fn observe(&mut self, row: &LeaseRow, at: Duration) -> Duration {
        let key = (row.term, row.renewals);
        let since = match self.seen {
            Some((k, since)) if k == key => since,
            _ => {
                self.seen = Some((key, at));
                at
            }
        };
        if row.vacant() {
            return at;
        }
        since + row.lease + safety_margin(row.lease)
    }

    /// How long the row has looked the same, as of `now`.
    pub fn unchanged_for(&self, now: Duration) -> Duration {
        self.seen
            .map_or(Duration::ZERO, |(_, since)| now.saturating_sub(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leader::LeaseGate;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn row(term: u64, renewals: u64, holder: &str, lease_ms: u64) -> LeaseRow {
        LeaseRow {
            term,
            renewals,
            holder: holder.into(),
            lease: ms(lease_ms),
            since: String::new(),
        }
    }

    #[test]
    fn a_standby_waits_lease_plus_margin_from_the_first_read_of_the_last_change() {
        let mut w = ExpiryWatch::default();
        // First read at 10 s: whatever happened before, the standby only knows from now.
        assert_eq!(w.observe(&row(5, 7, "a", 3_000), ms(10_000)), ms(13_300));
        // The same values later do not move the moment.
        assert_eq!(w.observe(&row(5, 7, "a", 3_000), ms(12_000)), ms(13_300));
        // A renewal restarts the wait from the read that shows it.
        assert_eq!(w.observe(&row(5, 8, "a", 3_000), ms(12_500)), ms(15_800));
        assert_eq!(w.unchanged_for(ms(13_000)), ms(500));
        // A takeover by someone else (new term) restarts it too.
        assert_eq!(w.observe(&row(6, 0, "b", 3_000), ms(14_000)), ms(17_300));
    }

    #[test]
    fn a_standby_waits_the_leaders_lease_not_its_own() {
        let mut w = ExpiryWatch::default();
        assert_eq!(w.observe(&row(1, 0, "a", 10_000), ms(0)), ms(11_000));
    }

    #[test]
    fn a_vacant_lease_is_taken_at_once() {
        let mut w = ExpiryWatch::default();
        assert_eq!(w.observe(&row(0, 0, "", 0), ms(500)), ms(500));
        assert_eq!(w.observe(&row(3, 9, "", 3_000), ms(900)), ms(900));
    }

    #[test]
    fn the_margin_covers_clock_rate_differences() {
        // Module doc: (lease + margin)(1 − ρ) ≥ lease(1 + ρ) with ρ = 10⁻³, for every lease.
        for lease_ms in [100u64, 1_000, 3_000, 60_000, 3_600_000] {
            let lease = lease_ms as f64;
            let margin = safety_margin(ms(lease_ms)).as_millis() as f64;
            let rho = 1e-3;
            assert!(
                (lease + margin) * (1.0 - rho) >= lease * (1.0 + rho),
                "{lease_ms}"
            );
        }
    }

    /// The module doc's argument, checked on random runs: a leader renews at random moments with
    /// random database delays and then falls silent; a standby polls at random moments; both
    /// clocks run up to 10⁻³ fast or slow and start at random offsets. The standby's takeover (on
    /// real time) always comes after the last instant the leader's gate was open — and would not,
    /// in some run, if the leader counted its lease from when the answer to a renewal arrived.
    #[test]
    fn a_takeover_never_overlaps_the_old_leaders_gate() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n.max(1)
        };
        const RHO_PPM: u64 = 1_000;
        let mut overlaps_if_counted_from_the_answer = 0;
        for case in 0..10_000 {
            let lease_ms = 100 + rand(5_000);
            let lease = ms(lease_ms);
            // Each host's clock: offset + real × (1 + drift), drift within ±ρ; all in ns.
            let clock = |offset: u64, drift_ppm: i64| {
                move |real_ns: u64| -> Duration {
                    let skew = real_ns as i128 * drift_ppm as i128 / 1_000_000;
                    Duration::from_nanos((offset as i128 + real_ns as i128 + skew) as u64)
                }
            };
            let drift = |r: u64| r as i64 - RHO_PPM as i64;
            let leader_clock = clock(rand(1 << 40), drift(rand(2 * RHO_PPM + 1)));
            let standby_clock = clock(rand(1 << 40), drift(rand(2 * RHO_PPM + 1)));
            let ns = |ms: u64| ms * 1_000_000;
            // The leader: renewals sent at real `sent`, committed some time later, answered later
            // still (an answer that never arrives leaves the gate as it was); it falls silent
            // after a few.
            let mut renewals_sent = Vec::new();
            let mut t = ns(rand(1_000));
            for _ in 0..1 + rand(8) {
                let commit = t + ns(rand(lease_ms / 2));
                let answered = commit + ns(rand(lease_ms / 2));
                renewals_sent.push((t, commit, (rand(4) != 0).then_some(answered)));
                t += ns(1 + rand(lease_ms / 3));
            }
            let commits: Vec<u64> = renewals_sent.iter().map(|&(_, c, _)| c).collect();
            // The standby: reads every 0–2 ms (so that nothing but the margin stands between the
            // two); a read's snapshot is between its send and its return and shows the renewals
            // committed by then.
            let mut watch = ExpiryWatch::default();
            let mut now = ns(rand(1_000));
            let takeover = loop {
                let returned = now + rand(2_000_000);
                let snapshot = now + (returned - now) / 2;
                let renewals = commits.iter().filter(|&&c| c <= snapshot).count() as u64;
                let row = LeaseRow {
                    term: 1,
                    renewals,
                    holder: "leader".into(),
                    lease,
                    since: String::new(),
                };
                let take_at = watch.observe(&row, standby_clock(returned));
                let still_same = commits.iter().filter(|&&c| c <= returned).count() as u64;
                if standby_clock(returned) >= take_at && still_same == renewals {
                    break returned;
                }
                // Far from the moment it may take over and from the next commit, skip ahead (on
                // real time, conservatively) instead of reading every 2 ms.
                let standby_now = standby_clock(returned);
                let next_commit = commits.iter().copied().filter(|&c| c > returned).min();
                let skip = (take_at.saturating_sub(standby_now).as_nanos() as u64 / 100 * 99)
                    .saturating_sub(ns(5))
                    .min(next_commit.map_or(u64::MAX, |c| (c - returned).saturating_sub(ns(5))));
                now = returned + skip + rand(2_000_000);
            };
            // The leader's gate, from the renewals that committed before the takeover (a later
            // one finds the term changed and fails) and whose answer arrived; and the gate a
            // leader counting from the answer's arrival would have had.
            let (gate, from_answer) = (LeaseGate::shut(), LeaseGate::shut());
            for &(sent, commit, answered) in &renewals_sent {
                if let (true, Some(answered)) = (commit <= takeover, answered) {
                    gate.renewed(leader_clock(sent), lease);
                    from_answer.renewed(leader_clock(answered), lease);
                }
            }
            // The last real instant a gate is open (binary search on real time).
            let open_until = |gate: &LeaseGate| {
                gate.deadline()?;
                let (mut lo, mut hi) = (0u64, ns(1 << 20));
                while lo + 1 < hi {
                    let mid = (lo + hi) / 2;
                    if gate.is_open_at(leader_clock(mid)) {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                Some(lo)
            };
            let gate_open_until_real = open_until(&gate).unwrap_or(0);
            if open_until(&from_answer).is_some_and(|until| until >= takeover) {
                overlaps_if_counted_from_the_answer += 1;
            }
            assert!(
                takeover > gate_open_until_real,
                "case {case}: lease {lease_ms} ms, took over at {takeover} ns, the gate was open \
                 until {gate_open_until_real} ns"
            );
        }
        assert!(
            overlaps_if_counted_from_the_answer > 0,
            "the runs are too tame to tell a lease counted from the sending from one counted from \
             the answer"
        );
    }
}
