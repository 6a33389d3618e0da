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

use foldhash::{HashMap, HashMapExt};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brlock_core::{OutcomeCounts, Stats, WAIT_BUCKETS_MS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::MetricEncoder;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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
        self.core
            .client_hosts_refused
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The OpenMetrics exposition, with the core's stats as of `stats`.
    pub fn render(&self, stats: Stats) -> String {
        *self.core.latest.lock().unwrap_or_else(|e| e.into_inner()) = stats;
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

pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus' classic text format (0.0.4) from prometheus-client's OpenMetrics: a counter family's
/// HELP and TYPE name it with its `_total` (the classic parser, and so `promtool check metrics`,
/// matches them to the sample names), and the OpenMetrics-only lines (`# UNIT`, `# EOF`) go.
pub fn to_classic_text(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    let mut help: Option<&str> = None;
    for line in open.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').map_or("", |(_, text)| text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), kind),
                "unknown" => (name.to_string(), "untyped"),
                _ => (name.to_string(), kind),
            };
            if let Some(text) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The core's counters and gauges as of the last scrape.
#[derive(Debug, Default)]
struct CoreStats {
    latest: Mutex<Stats>,
    /// New client hosts refused because `--max-client-hosts` was reached (a host-side limit, in
    /// the same family as the core's).
    client_hosts_refused: std::sync::atomic::AtomicU64,
}

type Rows = Vec<(Vec<(&'static str, String)>, u64)>;

/// A counter family whose every label set is written, zeros too.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, rows: &Rows) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(*value).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// A counter without labels (no empty `{}`).
fn plain_counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn float_gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
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
        .map(|&ms| ms as f64 / 1000.0)
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
            s.wait_ms_total as f64 / 1000.0,
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
                        self.client_hosts_refused
                            .load(std::sync::atomic::Ordering::Relaxed),
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
            s.grace_remaining_ms as f64 / 1000.0,
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

/// The process's own figures, read from `/proc/self` at each scrape under client_golang's names
/// (so the usual dashboards work). Nothing is written where `/proc` is missing.
#[derive(Debug)]
struct ProcessStats;

/// Clock ticks per second in `/proc/*/stat`: USER_HZ, which the kernel's ABI fixes at 100 whatever
/// its own HZ (Prometheus' procfs assumes the same), so no `sysconf(_SC_CLK_TCK)` is needed.
const USER_HZ: f64 = 100.0;

/// One reading of `/proc/self`.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    pub max_fds: Option<u64>,
    /// Since the Unix epoch.
    pub start_time_seconds: f64,
}

impl ProcessSample {
    /// Reads `/proc/self/{stat,status,fd,limits}` and `/proc/stat`; `None` without them.
    pub fn read() -> Option<ProcessSample> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let mut sample = Self::parse(&stat, &status, &boot, USER_HZ)?;
        sample.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        sample.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| parse_max_open_files(&l));
        Some(sample)
    }

    /// The parts that come from text: `stat` is `/proc/self/stat`, `status` `/proc/self/status`,
    /// `boot` `/proc/stat`; `ticks` the clock ticks per second (`_SC_CLK_TCK`).
    fn parse(stat: &str, status: &str, boot: &str, ticks: f64) -> Option<ProcessSample> {
        // The command name (field 2) is in parentheses and may hold spaces: count after it.
        let fields: Vec<&str> = stat
            .get(stat.rfind(')')? + 1..)?
            .split_whitespace()
            .collect();
        // fields[0] is field 3 (state); utime is 14, stime 15, starttime 22.
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let cpu_ticks = field(14)? + field(15)?;
        let started_ticks = field(22)?;
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
                .map(|kb| kb * 1024)
        };
        let btime = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(ProcessSample {
            cpu_seconds: cpu_ticks as f64 / ticks,
            resident_bytes: kb("VmRSS:")?,
            virtual_bytes: kb("VmSize:")?,
            open_fds: 0,
            max_fds: None,
            start_time_seconds: btime as f64 + started_ticks as f64 / ticks,
        })
    }
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn parse_max_open_files(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Collector for ProcessStats {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = ProcessSample::read() else {
            return Ok(());
        };
        let e = &mut e;
        ConstCounter::new(p.cpu_seconds).encode(e.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            MetricType::Counter,
        )?)?;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            p.resident_bytes as i64,
        )?;
        gauge(
            e,
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            p.virtual_bytes as i64,
        )?;
        gauge(
            e,
            "process_open_fds",
            "Number of open file descriptors",
            p.open_fds as i64,
        )?;
        if let Some(max) = p.max_fds {
            gauge(
                e,
                "process_max_fds",
                "Maximum number of open file descriptors (soft limit)",
                max as i64,
            )?;
        }
        float_gauge(
            e,
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            p.start_time_seconds,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered() -> String {
        let m = Metrics::new();
        let stats = Stats {
            waits_granted: 3,
            wait_ms_total: 1_250,
            grace_remaining_ms: 1_500,
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

    #[test]
    fn classic_text_names_counters_with_total_and_drops_eof() {
        let m = Metrics::new();
        let (open, open_type) = m.render_for(
            Stats::default(),
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        );
        assert_eq!(open_type, OPENMETRICS_CONTENT_TYPE);
        assert!(open.ends_with("# EOF\n"));
        assert!(open.contains("# TYPE brlock_reclaims counter\n"), "{open}");
        let (text, text_type) = m.render_for(Stats::default(), "*/*");
        assert_eq!(text_type, TEXT_CONTENT_TYPE);
        assert!(!text.contains("# EOF"));
        assert!(text.contains(
            "# HELP brlock_reclaims_total Locks reclaimed after a restart\n# TYPE brlock_reclaims_total counter\nbrlock_reclaims_total 0\n"
        ), "{text}");
        assert!(text.contains("# TYPE brlock_held_locks gauge\n"), "{text}");
    }

    #[test]
    fn process_sample_parses_proc_text() {
        let stat = "4242 (brl ockd) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 3 0 12345 123456789 2048 18446744073709551615";
        let status = "Name:\tbrlockd\nVmSize:\t  120000 kB\nVmRSS:\t    8000 kB\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        let p = ProcessSample::parse(stat, status, boot, 100.0).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.resident_bytes, 8000 * 1024);
        assert_eq!(p.virtual_bytes, 120000 * 1024);
        assert_eq!(p.start_time_seconds, 1_700_000_123.45);
        assert_eq!(
            parse_max_open_files(
                "Limit  Soft Limit  Hard Limit  Units\nMax open files            1024                 524288               files\n"
            ),
            Some(1024)
        );
        let live = ProcessSample::read().expect("/proc/self on Linux");
        assert!(live.open_fds > 0 && live.resident_bytes > 0);
    }
}
