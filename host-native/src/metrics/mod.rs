//! Prometheus metrics for brlockd: the core's `Stats` (read from the core task at each scrape) plus
//! what only the host sees (RPC requests by procedure and status, their latency, open connections,
//! callback latency, the store's writes, commit latency and failures), the build and the process
//! (`/proc/self`), served at `GET /metrics` by brlockd's HTTP listener (`crate::http`).
//! docs/metrics.md lists every metric.
//!
//! prometheus-client encodes OpenMetrics 1.0; a scraper that asks for it (`Accept:
//! application/openmetrics-text`, as Prometheus does) gets it, anyone else the classic text format
//! 0.0.4 made from it ([`to_classic_text`]), each with its own content type. Every label set whose
//! values are known in advance exists from the start, at 0.
//!
//! - `mod.rs`: [`Metrics`], the registry and the host's own families (updated as things happen).
//! - `core_stats.rs`: the core's `Stats` as a collector (`brlock_lock_replies`, `brlock_held_locks`, …).
//! - `process.rs`: `process_*` from `/proc/self`.
//! - `exposition.rs`: OpenMetrics or the classic text format, by the scraper's `Accept`.
//! - `encode.rs`: writing a value read at scrape time as a counter or gauge.

mod core_stats;
mod encode;
mod exposition;
mod process;

use foldhash::{HashMap, HashMapExt};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brlock_core::Stats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use core_stats::CoreStats;
pub use exposition::{OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE, to_classic_text};
pub use process::ProcessSample;
use process::ProcessStats;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub procedure: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallbackLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreFailureLabels {
    /// `fenced` (another instance took the store over) or `error` (the store did not answer).
    pub kind: &'static str,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ]
    .into_iter()
}

/// Why brlockd closed a TCP connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    pub reason: &'static str,
}

/// All of brlockd's metrics. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RpcLabels, Counter>,
    pub request_seconds: Family<RpcLabels, Histogram>,
    pub open_connections: Gauge,
    /// UDP calls dropped because the calls in flight or the core's queue were full (issue 13).
    pub udp_dropped: Counter,
    /// TCP connections closed by a bound (`--max-connections`, `--idle-timeout`, ...), by reason.
    pub connections_closed: Family<ClosedLabels, Counter>,
    pub callback_seconds: Family<CallbackLabels, Histogram>,
    /// Persist writes handed to the store (none with `--store memory`).
    pub store_writes: Counter,
    /// From handing an event's writes to group commit to their transaction committing.
    pub store_durable_seconds: Histogram,
    pub store_failures: Family<StoreFailureLabels, Counter>,
    /// Times the core was rebuilt from the store after a failure.
    pub store_rebuilds: Counter,
    /// Reboot notices (SM_NOTIFY) sent after a start, by result.
    pub reboot_notices: Family<CallbackLabels, Counter>,
    /// 1 while this instance serves, 0 while it is a standby (or has stepped down).
    pub leader: Gauge,
    /// Times this instance took the PostgreSQL lease over from another (`leader.rs`).
    pub takeovers: Counter,
    /// Leader: 0 after each successful renewal, else the time since the last one was sent (updated
    /// at every failed attempt); standby: the time the leader's lease row has looked the same.
    pub lease_age_seconds: Gauge<f64, AtomicU64>,
    core: Arc<CoreStats>,
    /// procedure → status → handles into `requests` and `request_seconds` (see `observe_request`).
    request_cache: Mutex<RequestCache>,
}

type RequestCache = HashMap<String, HashMap<String, (Counter, Histogram)>>;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "brlock_rpc_requests",
            "RPC calls answered, by procedure and status",
            requests.clone(),
        );
        let request_seconds = Family::<RpcLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "brlock_rpc_request_duration_seconds",
            "Time from receiving a call to sending its reply",
            request_seconds.clone(),
        );
        let open_connections = Gauge::default();
        registry.register(
            "brlock_open_connections",
            "Open TCP connections",
            open_connections.clone(),
        );
        let udp_dropped = Counter::default();
        registry.register(
            "brlock_udp_dropped",
            "UDP calls dropped because --max-calls-in-flight or the core's queue was full",
            udp_dropped.clone(),
        );
        let connections_closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "brlock_connections_closed",
            "TCP connections closed by brlockd, by reason",
            connections_closed.clone(),
        );
        let callback_seconds = Family::<CallbackLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        registry.register(
            "brlock_callback_duration_seconds",
            "Time a GRANTED callback took, by result",
            callback_seconds.clone(),
        );
        let store_writes = Counter::default();
        registry.register(
            "brlock_store_writes",
            "Lock record writes (puts and deletes) handed to the store",
            store_writes.clone(),
        );
        let store_durable_seconds = Histogram::new(latency_buckets());
        registry.register(
            "brlock_store_durable_duration_seconds",
            "Time from handing an event's writes to the store to their commit",
            store_durable_seconds.clone(),
        );
        let store_failures = Family::<StoreFailureLabels, Counter>::default();
        registry.register(
            "brlock_store_failures",
            "Events whose writes could not be made durable (their replies were refused), by kind",
            store_failures.clone(),
        );
        let store_rebuilds = Counter::default();
        registry.register(
            "brlock_store_rebuilds",
            "Times the core was rebuilt from the store after a store failure",
            store_rebuilds.clone(),
        );
        let reboot_notices = Family::<CallbackLabels, Counter>::default();
        registry.register(
            "brlock_reboot_notices",
            "Reboot notices (SM_NOTIFY) to client hosts after a start, by result (delivered, gave_up)",
            reboot_notices.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "brlock_leader",
            "1 while this instance serves, 0 while it is a standby waiting for the PostgreSQL lease",
            leader.clone(),
        );
        let takeovers = Counter::default();
        registry.register(
            "brlock_takeovers",
            "Times this instance took the leadership lease over from another instance",
            takeovers.clone(),
        );
        let lease_age_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "brlock_lease_age_seconds",
            "Leader: 0 while renewals succeed, else the time since the last successful one was \
             sent; standby: the time the leader's lease has not changed",
            lease_age_seconds.clone(),
        );
        let core = Arc::new(CoreStats::default());
        registry.register_collector(Box::new(core.clone()));
        registry.register_collector(Box::new(ProcessStats));
        for kind in ["fenced", "error"] {
            drop(store_failures.get_or_create(&StoreFailureLabels { kind }));
        }
        for result in ["delivered", "gave_up"] {
            drop(reboot_notices.get_or_create(&CallbackLabels {
                result: result.into(),
            }));
        }
        for result in ["delivered", "failed", "refused"] {
            drop(callback_seconds.get_or_create(&CallbackLabels {
                result: result.into(),
            }));
        }
        Self {
            registry,
            requests,
            request_seconds,
            open_connections,
            udp_dropped,
            connections_closed,
            callback_seconds,
            store_writes,
            store_durable_seconds,
            store_failures,
            store_rebuilds,
            reboot_notices,
            leader,
            takeovers,
            lease_age_seconds,
            core,
            request_cache: Mutex::default(),
        }
    }

    /// Creates the series of `procedure` answered with `status` at 0, so that it exists before the
    /// first such call (the server does this for every procedure's usual answer at start).
    pub fn touch_request(&self, procedure: &str, status: &str) {
        self.request_handles(procedure, status, |_, _| {});
    }

    pub fn observe_request(&self, procedure: &str, status: &str, elapsed: Duration) {
        self.request_handles(procedure, status, |count, seconds| {
            count.inc();
            seconds.observe(elapsed.as_secs_f64());
        });
    }

    fn request_handles(&self, procedure: &str, status: &str, f: impl FnOnce(&Counter, &Histogram)) {
        // Fast path: the (counter, histogram) pair of a label set already seen, found by `&str`
        // without building the two label `String`s and hashing them into both families. The
        // cached handles share their values with the families' entries (they are `Arc`s).
        let mut cache = self.request_cache.lock().unwrap_or_else(|e| e.into_inner());
        if !cache.contains_key(procedure) {
            cache.insert(procedure.to_string(), HashMap::new());
        }
        let by_status = cache.get_mut(procedure).expect("just inserted");
        if !by_status.contains_key(status) {
            let labels = RpcLabels {
                procedure: procedure.to_string(),
                status: status.to_string(),
            };
            let pair = (
                self.requests.get_or_create(&labels).clone(),
                self.request_seconds.get_or_create(&labels).clone(),
            );
            by_status.insert(status.to_string(), pair);
        }
        let (count, seconds) = &by_status[status];
        f(count, seconds);
    }

    pub fn observe_reboot_notice(&self, result: &str) {
        self.reboot_notices
            .get_or_create(&CallbackLabels {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn observe_callback(&self, result: &str, elapsed: Duration) {
        self.callback_seconds
            .get_or_create(&CallbackLabels {
                result: result.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A new client host was refused: `--max-client-hosts` reached
    /// (`brlock_limit_refusals_total{limit="client_hosts"}`).
    pub fn client_host_refused(&self) {
        self.core.client_host_refused();
    }

    /// The OpenMetrics exposition, with the core's stats as of `stats`.
    pub fn render(&self, stats: Stats) -> String {
        self.core.set_latest(stats);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The body and content type for a scrape whose `Accept` header is `accept`.
    pub fn render_for(&self, stats: Stats, accept: &str) -> (String, &'static str) {
        let open = self.render(stats);
        if accept.contains("application/openmetrics-text") {
            (open, OPENMETRICS_CONTENT_TYPE)
        } else {
            (to_classic_text(&open), TEXT_CONTENT_TYPE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_label_sets_exist_at_zero_and_no_empty_label_sets() {
        let m = Metrics::new();
        m.touch_request("lock", "granted");
        let text = m.render(Stats::default());
        for line in [
            "brlock_store_failures_total{kind=\"fenced\"} 0",
            "brlock_reboot_notices_total{result=\"gave_up\"} 0",
            "brlock_callback_duration_seconds_count{result=\"refused\"} 0",
            "brlock_rpc_requests_total{procedure=\"lock\",status=\"granted\"} 0",
            "brlock_limit_refusals_total{limit=\"total\"} 0",
            "brlock_reclaims_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("{}"), "{text}");
        assert!(
            text.contains(&format!(
                "brlock_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }

    /// docs/metrics.md's tables name exactly the families a scrape shows (classic text names).
    #[test]
    fn docs_list_every_metric_and_no_other() {
        let doc = include_str!("../../../docs/metrics.md");
        let documented: std::collections::BTreeSet<&str> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `")?.split_once('`').map(|(name, _)| name))
            .collect();
        let m = Metrics::new();
        // Families whose label sets come with use show once they have one.
        m.touch_request("lock", "granted");
        m.connections_closed
            .get_or_create(&ClosedLabels { reason: "idle" })
            .inc();
        let (text, _) = m.render_for(Stats::default(), "*/*");
        let shown: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("# TYPE ")?
                    .split_once(' ')
                    .map(|(name, _)| name)
            })
            .collect();
        assert_eq!(documented, shown);
    }
}
