//! Leadership among the brlockd instances that share one PostgreSQL store: one leader serves, the
//! others are hot standbys that take over when the leader's lease runs out.
//!
//! - [`LeaseGate`]: the leader's promise, checked by every task right before it sends anything to a
//!   client (reply, GRANTED, `*_RES`). Open until the lease deadline on this host's clock.
//! - [`ExpiryWatch`]: a standby's judgement of when the leader's lease has certainly run out.
//! - [`Leadership`]: the standby loop (`acquire`), the renewal task, and the clean step-down.
//!
//! The SQL (compare-and-set on one row) is in `store/lease.rs`. Taking the lease over is followed by
//! beginning a new epoch (`startup`), which fences every write of the old leader as before: the lease
//! keeps an old leader from *answering*; the epoch keeps it from *writing*.
//!
//! # Why two leaders never both answer
//! Neither side compares wall-clock times, nor a time written by the other: each measures only
//! spans, on its own `CLOCK_BOOTTIME` ([`boot_now`]; unlike `CLOCK_MONOTONIC`, std's `Instant`, it
//! keeps counting while the host is suspended — a leader that slept through a suspend must know it
//! did). Let ρ bound how far either clock's rate is off real time (quartz: ±10⁻⁴; NTP slews by at
//! most 5·10⁻⁴).
//!
//! - **Leader.** It reads its clock at `s`, *then* sends a renewal; if the database answers that the
//!   renewal committed, the gate stays open until `s + lease` on its clock. The renewal committed at
//!   real time `C ≥ S` (S: the real time of `s`), so the leader answers nothing after real time
//!   `S + lease·(1+ρ)`. Counting from when the reply *arrived* would be wrong: a reply delayed by d
//!   would stretch the promise by d.
//! - **Standby.** It reads the row repeatedly; the first read that shows (term, renewals) at their
//!   current values *returned* at real time `O ≥ C` (the read saw the commit, so it ran after it).
//!   It takes over only if the row then stays unchanged for `lease + margin` on its clock, i.e.
//!   after real time `O + (lease+margin)·(1−ρ)`, and the takeover itself is a compare-and-set on
//!   the values it saw, so a renewal that lands meanwhile wins and restarts its wait.
//! - Takeover is after the leader's silence as long as `(lease+margin)(1−ρ) ≥ lease(1+ρ)`, i.e.
//!   `margin ≥ 2ρ·lease/(1−ρ)`: 0.3 % of the lease for ρ = 10⁻³. [`safety_margin`] is 10 % (at
//!   least 50 ms), which also covers the microseconds between a task's gate check and its `send(2)`.
//! - The standby waits the lease the *leader* wrote into the row, not its own setting.
//! - A leader paused (SIGSTOP, a VM freeze) between renewals wakes with its clock past the deadline:
//!   every send checks the clock at that moment and sends nothing. What stays is the gap between a
//!   check and its system call; a pause that lands exactly there, and outlasts the margin, is what no
//!   lease can exclude (the write path stays safe regardless: the epoch fences it).
//! - A standby that has just started has seen nothing yet and waits a whole lease + margin from its
//!   first read; a vacant row (nobody leads, or the leader stepped down cleanly) is taken at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::lease::{LeaseRow, PgLease};

/// Now on `CLOCK_BOOTTIME`: monotonic, and counting suspended time (see the module doc).
pub fn boot_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// How much longer than the leader's lease a standby waits (module doc: ≥ 2ρ·lease; 10 %, at
/// least 50 ms).
pub fn safety_margin(lease: Duration) -> Duration {
    (lease / 10).max(Duration::from_millis(50))
}

/// The default `--lease`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);

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

/// A standby's view of the leader's lease: from which moment (on [`boot_now`]'s clock) a takeover
/// is safe, judged only by how long the row has stayed the same on this clock.
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

/// What this instance is, for readiness checks and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The store needs no leadership (SQLite, memory): this instance serves.
    Sole,
    /// Waiting for the lease; `leader` is who holds it (empty: nobody yet), since `since`.
    Standby { leader: String, since: String },
    /// Holds the lease of `term` and serves (or is about to: restoring, binding).
    Leader { term: u64 },
    /// Lost or gave up the lease: answers nothing; the process is stopping.
    SteppedDown { reason: String },
}

impl Role {
    /// Whether clients should be sent here (`/readyz`).
    pub fn serves(&self) -> bool {
        matches!(self, Role::Sole | Role::Leader { .. })
    }
}

/// Lease settings of one instance.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// `--lease`: how long this instance, as leader, may serve without a renewal.
    pub lease: Duration,
    /// Who this is, for the other instances' logs (`pid …, host …, listen …`).
    pub holder: String,
}

impl LeaseSettings {
    /// Renew three times per lease: two renewals may fail before the lease runs out.
    fn renew_every(&self) -> Duration {
        self.lease / 3
    }

    /// A standby reads the row this often.
    fn poll_every(&self) -> Duration {
        (self.lease / 12).clamp(Duration::from_millis(20), Duration::from_millis(250))
    }
}

/// This instance's leadership: the gate its senders check, the task renewing the lease, and how it
/// ended.
pub struct Leadership {
    gate: Arc<LeaseGate>,
    term: u64,
    role: watch::Sender<Role>,
    lost: watch::Receiver<Option<String>>,
    stop: watch::Sender<bool>,
    renewer: JoinHandle<PgLease>,
}

impl Leadership {
    /// Waits as a standby until this instance holds the lease (logging who leads meanwhile), then
    /// starts renewing it. `role` is told every change. Returns only as leader, or with a store
    /// error that is not worth retrying (a corrupt row).
    pub async fn acquire(
        mut lease: PgLease,
        settings: LeaseSettings,
        metrics: Arc<Metrics>,
        role: watch::Sender<Role>,
    ) -> Result<Leadership, StoreError> {
        metrics.leader.set(0);
        lease.statement_timeout(settings.lease);
        let mut watch = ExpiryWatch::default();
        let mut announced: Option<(u64, String)> = None;
        let mut failures = 0u32;
        let query_timeout = settings.lease.max(Duration::from_secs(1));
        loop {
            let read = tokio::time::timeout(query_timeout, lease.observe()).await;
            let at = boot_now();
            let row = match read {
                Ok(Ok(row)) => {
                    failures = 0;
                    row
                }
                Ok(Err(e @ StoreError::Corrupt(_))) => return Err(e),
                Ok(Err(e)) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        warn!(error = %e, "standby: cannot read the leader lease; retrying");
                    }
                    tokio::time::sleep(settings.poll_every()).await;
                    continue;
                }
                Err(_) => {
                    lease.reset();
                    continue;
                }
            };
            let take_at = watch.observe(&row, at);
            metrics
                .lease_age_seconds
                .set(watch.unchanged_for(at).as_secs_f64());
            if at >= take_at {
                let sent = boot_now();
                match tokio::time::timeout(
                    query_timeout,
                    lease.take(&row, &settings.holder, settings.lease),
                )
                .await
                {
                    Ok(Ok(Some(term))) => {
                        let gate = Arc::new(LeaseGate::shut());
                        gate.renewed(sent, settings.lease);
                        if row.vacant() {
                            info!(term, "leader: the lease was free; took it (term {term})");
                        } else {
                            metrics.takeovers.inc();
                            warn!(term, previous = %row.holder,
                                "leader: took the lease over from {} (silent for {:.1} s)",
                                row.holder, watch.unchanged_for(at).as_secs_f64());
                        }
                        metrics.leader.set(1);
                        metrics.lease_age_seconds.set(0.0);
                        let _ = role.send(Role::Leader { term });
                        return Ok(Self::start_renewing(
                            lease, settings, metrics, role, gate, term, sent,
                        ));
                    }
                    // Renewed or taken meanwhile: keep watching.
                    Ok(Ok(None)) => {}
                    Ok(Err(e)) => warn!(error = %e, "standby: taking the lease failed; retrying"),
                    // It may have committed; then the row names us and we wait it out like any
                    // other holder's lease (safe, if a lease slower).
                    Err(_) => lease.reset(),
                }
                continue;
            }
            if announced.as_ref() != Some(&(row.term, row.holder.clone())) {
                info!(leader = %row.holder, since = %row.since, term = row.term,
                    "standby: waiting for the leader {}, since {}", row.holder, row.since);
                announced = Some((row.term, row.holder.clone()));
                let _ = role.send(Role::Standby {
                    leader: row.holder.clone(),
                    since: row.since.clone(),
                });
            }
            let wait = take_at
                .saturating_sub(boot_now())
                .min(settings.poll_every());
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn start_renewing(
        mut lease: PgLease,
        settings: LeaseSettings,
        metrics: Arc<Metrics>,
        role: watch::Sender<Role>,
        gate: Arc<LeaseGate>,
        term: u64,
        first_sent: Duration,
    ) -> Leadership {
        let (lost_tx, lost) = watch::channel(None);
        let (stop, mut stop_rx) = watch::channel(false);
        let task_gate = gate.clone();
        let task_role = role.clone();
        let renewer = tokio::spawn(async move {
            let gate = task_gate;
            let mut last_ok = first_sent;
            let mut next = first_sent + settings.renew_every();
            let reason = loop {
                let wait = next.saturating_sub(boot_now());
                tokio::select! {
                    _ = crate::server::stopped(&mut stop_rx) => return lease,
                    _ = tokio::time::sleep(wait) => {}
                }
                let sent = boot_now();
                let Some(deadline) = gate.deadline().filter(|&d| sent < d) else {
                    break format!(
                        "lost the lease: no renewal committed within the {:?} lease",
                        settings.lease
                    );
                };
                let renewal = lease.renew(term, settings.lease);
                let result = tokio::select! {
                    _ = crate::server::stopped(&mut stop_rx) => return lease,
                    r = tokio::time::timeout(deadline - sent, renewal) => r,
                };
                match result {
                    Ok(Ok(true)) => {
                        gate.renewed(sent, settings.lease);
                        last_ok = sent;
                        next = sent + settings.renew_every();
                        metrics.lease_age_seconds.set(0.0);
                    }
                    Ok(Ok(false)) => {
                        break "lost the lease: another instance took it over".to_string();
                    }
                    Ok(Err(e)) => {
                        warn!(error = %e, "leader: lease renewal failed; retrying");
                        next = boot_now() + (settings.lease / 10).max(Duration::from_millis(20));
                    }
                    Err(_) => {
                        lease.reset();
                        next = boot_now();
                    }
                }
                if last_ok != sent {
                    metrics
                        .lease_age_seconds
                        .set(boot_now().saturating_sub(last_ok).as_secs_f64());
                }
            };
            // Shut before anything else can run: no answer leaves from here on.
            gate.retire();
            metrics.leader.set(0);
            error!("{reason}; answering nothing more and stopping");
            let _ = task_role.send(Role::SteppedDown {
                reason: reason.clone(),
            });
            let _ = lost_tx.send(Some(reason));
            lease
        });
        Leadership {
            gate,
            term,
            role,
            lost,
            stop,
            renewer,
        }
    }

    /// The gate every sender checks.
    pub fn gate(&self) -> Arc<LeaseGate> {
        self.gate.clone()
    }

    pub fn term(&self) -> u64 {
        self.term
    }

    /// Resolves with the reason once the lease is lost (not renewed in time, or taken over).
    pub async fn lost(&self) -> String {
        let mut rx = self.lost.clone();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Whether the lease is still held (the gate is open now).
    pub fn holds(&self) -> bool {
        self.gate.is_open()
    }

    /// Stops renewing and gives the lease up, so that a standby takes over at once. Call once this
    /// instance serves nothing any more; the gate is shut first regardless.
    pub async fn step_down(self) {
        self.gate.retire();
        let _ = self.stop.send(true);
        let Ok(mut lease) = self.renewer.await else {
            return;
        };
        if self.lost.borrow().is_some() {
            return;
        }
        let _ = self.role.send(Role::SteppedDown {
            reason: "stopped".into(),
        });
        match tokio::time::timeout(Duration::from_secs(2), lease.release(self.term)).await {
            Ok(Ok(())) => info!(term = self.term, "leader: lease given up"),
            Ok(Err(e)) => {
                warn!(error = %e, "leader: could not give the lease up; a standby takes over when it runs out")
            }
            Err(_) => warn!(
                "leader: giving the lease up timed out; a standby takes over when it runs out"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn only_leaders_and_sole_instances_are_ready() {
        assert!(Role::Sole.serves());
        assert!(Role::Leader { term: 1 }.serves());
        assert!(
            !Role::Standby {
                leader: "a".into(),
                since: "t".into()
            }
            .serves()
        );
        assert!(!Role::SteppedDown { reason: "x".into() }.serves());
    }
}
