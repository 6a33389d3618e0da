//! The core's `Stats` as metrics: a collector that writes the figures the core task last gave,
//! plus the host-side refusals counted in the same families.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use brlock_core::{OutcomeCounts, Stats, WAIT_BUCKETS_MS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::encode::{Rows, counter, float_gauge, gauge, plain_counter};

/// The core's counters and gauges as of the last scrape.
#[derive(Debug, Default)]
pub(super) struct CoreStats {
    latest: Mutex<Stats>,
    /// New client hosts refused because `--max-client-hosts` was reached (a host-side limit, in
    /// the same family as the core's).
    client_hosts_refused: AtomicU64,
}

impl CoreStats {
    /// Keeps `stats` for the next encoding.
    pub(super) fn set_latest(&self, stats: Stats) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = stats;
    }

    /// One more new client host refused (`--max-client-hosts`).
    pub(super) fn client_host_refused(&self) {
        self.client_hosts_refused.fetch_add(1, Ordering::Relaxed);
    }
}

fn outcome_rows(counts: &OutcomeCounts) -> Rows {
    [
        ("granted", counts.granted),
        ("denied", counts.denied),
        ("blocked", counts.blocked),
        ("deadlock", counts.deadlock),
        ("no_locks", counts.no_locks),
        ("too_big", counts.too_big),
        ("denied_grace", counts.denied_grace),
        ("not_reclaimable", counts.not_reclaimable),
        ("share_denied", counts.share_denied),
    ]
    .into_iter()
    .map(|(o, v)| (vec![("outcome", o.to_string())], v))
    .collect()
}

fn labelled(label: &'static str, rows: &[(&str, u64)]) -> Rows {
    rows.iter()
        .map(|(l, v)| (vec![(label, l.to_string())], *v))
        .collect()
}

/// The core's wait-time buckets (inclusive upper bounds in ms, counted per bucket) as histogram
/// buckets in seconds; the encoder makes them cumulative and adds nothing.
fn wait_buckets(s: &Stats) -> Vec<(f64, u64)> {
    WAIT_BUCKETS_MS
        .iter()
        .map(|bound| bound.as_millis() as f64 / 1000.0)
        .chain(std::iter::once(f64::INFINITY))
        .zip(s.wait_ms_buckets.iter().copied())
        .collect()
}

impl Collector for CoreStats {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let e = &mut e;
        {
            let mut m = e.encode_descriptor(
                "brlock_build_info",
                "Always 1; the version label is brlockd's",
                None,
                MetricType::Gauge,
            )?;
            let labels = [("version", env!("CARGO_PKG_VERSION"))];
            ConstGauge::new(1i64).encode(m.encode_family(&labels)?)?;
        }
        counter(
            e,
            "brlock_lock_replies",
            "Replies to LOCK requests by outcome",
            &outcome_rows(&s.lock_replies),
        )?;
        counter(
            e,
            "brlock_other_replies",
            "Replies to TEST, UNLOCK, CANCEL, SHARE, UNSHARE by outcome",
            &outcome_rows(&s.other_replies),
        )?;
        encode_histogram(
            e.encode_descriptor(
                "brlock_wait_duration_seconds",
                "How long granted waiters waited in their queue, from the blocked LOCK to the grant",
                None,
                MetricType::Histogram,
            )?,
            s.wait_ms_total.as_millis() as f64 / 1000.0,
            s.waits_granted,
            &wait_buckets(&s),
        )?;
        plain_counter(
            e,
            "brlock_callbacks_sent",
            "GRANTED callbacks sent (retries included)",
            s.callbacks_sent,
        )?;
        counter(
            e,
            "brlock_callbacks",
            "GRANTED callback results",
            &labelled(
                "result",
                &[
                    ("delivered", s.callbacks_delivered),
                    ("failed", s.callbacks_failed),
                    ("refused", s.callbacks_refused),
                ],
            ),
        )?;
        counter(
            e,
            "brlock_released_locks",
            "Held locks released, by reason",
            &labelled(
                "reason",
                &[
                    ("explicit", s.released_explicit),
                    ("disconnect", s.released_disconnect),
                    ("free_all", s.released_free_all),
                    ("grace_expired", s.released_grace_expired),
                    ("callback_failed", s.released_callback_failed),
                ],
            ),
        )?;
        counter(
            e,
            "brlock_waiters_removed",
            "Waiters removed without a grant, by reason",
            &labelled(
                "reason",
                &[
                    ("cancelled", s.waiters_cancelled),
                    ("unlocked", s.waiters_unlocked),
                    ("expired", s.waiters_expired),
                    ("client_gone", s.waiters_client_gone),
                    ("deadlock", s.waiters_deadlocked),
                ],
            ),
        )?;
        counter(
            e,
            "brlock_limit_refusals",
            "Requests refused by a configured limit",
            &labelled(
                "limit",
                &[
                    ("per_file", s.limit_per_file),
                    ("per_client", s.limit_per_client),
                    ("total", s.limit_total),
                    ("queue_length", s.limit_queue_length),
                    ("queue_share", s.limit_queue_share),
                    ("waiters_per_client", s.limit_waiters_per_client),
                    ("waiters_total", s.limit_waiters_total),
                    ("shares_per_file", s.limit_shares_per_file),
                    ("shares_per_client", s.limit_shares_per_client),
                    ("shares_total", s.limit_shares_total),
                    (
                        "client_hosts",
                        self.client_hosts_refused.load(Ordering::Relaxed),
                    ),
                ],
            ),
        )?;
        plain_counter(
            e,
            "brlock_connections_refused",
            "Connections refused over an adapter's limit",
            s.connections_refused,
        )?;
        plain_counter(
            e,
            "brlock_reclaims",
            "Locks reclaimed after a restart",
            s.reclaims,
        )?;
        gauge(
            e,
            "brlock_held_locks",
            "Held lock records",
            s.held_locks as i64,
        )?;
        gauge(
            e,
            "brlock_waiters",
            "Queued blocking requests",
            s.waiters as i64,
        )?;
        gauge(
            e,
            "brlock_pending_callbacks",
            "Granted waiters whose callback is outstanding",
            s.pending_callbacks as i64,
        )?;
        gauge(
            e,
            "brlock_files",
            "Files with locks, waiters or shares",
            s.files as i64,
        )?;
        gauge(e, "brlock_owners", "Known lock owners", s.owners as i64)?;
        gauge(e, "brlock_clients", "Known clients", s.clients as i64)?;
        gauge(
            e,
            "brlock_in_grace",
            "1 while the grace period lasts",
            s.in_grace as i64,
        )?;
        float_gauge(
            e,
            "brlock_grace_remaining_seconds",
            "Seconds of grace period left (0 outside it)",
            s.grace_remaining_ms.as_millis() as f64 / 1000.0,
        )?;
        Ok(())
    }
}

fn encode_histogram(
    mut m: MetricEncoder<'_>,
    sum: f64,
    count: u64,
    buckets: &[(f64, u64)],
) -> std::fmt::Result {
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, buckets, None)
}

#[cfg(test)]
mod tests {
    use crate::metrics::Metrics;
    use brlock_core::Stats;

    fn rendered() -> String {
        let m = Metrics::new();
        let stats = Stats {
            waits_granted: 3,
            wait_ms_total: brlock_core::Duration::from_millis(1_250),
            grace_remaining_ms: brlock_core::Duration::from_millis(1_500),
            ..Stats::default()
        };
        let mut stats = stats;
        stats.wait_ms_buckets[1] = 2; // two waits of at most 10 ms
        stats.wait_ms_buckets[4] = 1; // one of at most 5 s
        m.render(stats)
    }

    #[test]
    fn wait_histogram_is_cumulative_in_seconds() {
        let text = rendered();
        for line in [
            "brlock_wait_duration_seconds_sum 1.25",
            "brlock_wait_duration_seconds_count 3",
            "brlock_wait_duration_seconds_bucket{le=\"0.0\"} 0",
            "brlock_wait_duration_seconds_bucket{le=\"0.01\"} 2",
            "brlock_wait_duration_seconds_bucket{le=\"1.0\"} 2",
            "brlock_wait_duration_seconds_bucket{le=\"5.0\"} 3",
            "brlock_wait_duration_seconds_bucket{le=\"+Inf\"} 3",
            "brlock_grace_remaining_seconds 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }
}
