//! Leadership among the brlockd instances that share one PostgreSQL store: one leader serves, the
//! others are hot standbys that take over when the leader's lease runs out.
//!
//! - [`LeaseGate`] (`lease_gate.rs`): the leader's promise, checked by every task right before it
//!   sends anything to a client (reply, GRANTED, `*_RES`). Open until the lease deadline on this
//!   host's clock.
//! - [`ExpiryWatch`] (`expiry.rs`): a standby's judgement of when the leader's lease has certainly
//!   run out.
//! - [`Leadership`] (here): the standby loop (`acquire`), the renewal task, the clean step-down.
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

mod expiry;
mod lease_gate;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::metrics::Metrics;
use crate::store::StoreError;
use crate::store::lease::PgLease;

pub use expiry::{ExpiryWatch, safety_margin};
pub use lease_gate::{LeaseGate, boot_now};

/// The default `--lease`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);

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
