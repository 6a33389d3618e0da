//! Prometheus metrics for brlockd: the core's `Stats` (read from the core task at each scrape) plus
//! what only the host sees (RPC requests by procedure and status, their latency, open connections,
//! callback latency, the store's writes, commit latency and failures), served as text at
//! `GET /metrics` by a minimal HTTP/1.1 responder.

use foldhash::{HashMap, HashMapExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brlock_core::{OutcomeCounts, Stats, WAIT_BUCKETS_MS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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

/// All of brlockd's metrics. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RpcLabels, Counter>,
    pub request_seconds: Family<RpcLabels, Histogram>,
    pub open_connections: Gauge,
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
        let core = Arc::new(CoreStats::default());
        registry.register_collector(Box::new(core.clone()));
        Self {
            registry,
            requests,
            request_seconds,
            open_connections,
            callback_seconds,
            store_writes,
            store_durable_seconds,
            store_failures,
            store_rebuilds,
            reboot_notices,
            core,
            request_cache: Mutex::default(),
        }
    }

    pub fn observe_request(&self, procedure: &str, status: &str, elapsed: Duration) {
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
        count.inc();
        seconds.observe(elapsed.as_secs_f64());
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

    /// The text exposition, with the core's stats as of `stats`.
    pub fn render(&self, stats: Stats) -> String {
        *self.core.latest.lock().unwrap_or_else(|e| e.into_inner()) = stats;
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The core's counters and gauges as of the last scrape.
#[derive(Debug, Default)]
struct CoreStats {
    latest: Mutex<Stats>,
}

fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Vec<(&str, String)>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, ConstCounter::new(0u64).metric_type())?;
    for (labels, value) in rows {
        ConstCounter::new(*value).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn outcome_rows(counts: &OutcomeCounts) -> Vec<(Vec<(&'static str, String)>, u64)> {
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

fn labelled(label: &'static str, rows: &[(&str, u64)]) -> Vec<(Vec<(&'static str, String)>, u64)> {
    rows.iter()
        .map(|(l, v)| (vec![(label, l.to_string())], *v))
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
        counter(
            e,
            "brlock_waits_granted",
            "Queued requests granted",
            &[(vec![], s.waits_granted)],
        )?;
        counter(
            e,
            "brlock_wait_seconds_sum_ms",
            "Total time granted waiters waited, in milliseconds",
            &[(vec![], s.wait_ms_total)],
        )?;
        let mut buckets: Vec<(&str, u64)> = Vec::new();
        let names: Vec<String> = WAIT_BUCKETS_MS
            .iter()
            .map(|b| b.to_string())
            .chain(std::iter::once("+Inf".to_string()))
            .collect();
        for (name, v) in names.iter().zip(s.wait_ms_buckets.iter()) {
            buckets.push((name, *v));
        }
        counter(
            e,
            "brlock_waits_by_bucket",
            "Granted waiters by wait time bucket (upper bound in ms, not cumulative)",
            &labelled("le_ms", &buckets),
        )?;
        counter(
            e,
            "brlock_callbacks_sent",
            "GRANTED callbacks sent",
            &[(vec![], s.callbacks_sent)],
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
                ],
            ),
        )?;
        counter(
            e,
            "brlock_connections_refused",
            "Connections refused over an adapter's limit",
            &[(vec![], s.connections_refused)],
        )?;
        counter(
            e,
            "brlock_reclaims",
            "Locks reclaimed after a restart",
            &[(vec![], s.reclaims)],
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
        gauge(
            e,
            "brlock_grace_remaining_seconds",
            "Seconds of grace period left",
            (s.grace_remaining_ms / 1000) as i64,
        )?;
        Ok(())
    }
}

/// Fetches fresh core stats for a scrape (`None` when the core task is gone).
pub type StatsSource =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Option<Stats>> + Send>> + Send + Sync>;

/// Serves `GET /metrics` until the listener's task is aborted. Any other path is 404; one request
/// per connection.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stats: StatsSource) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            let read_head = async {
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                true
            };
            if !matches!(
                tokio::time::timeout(Duration::from_secs(5), read_head).await,
                Ok(true)
            ) {
                return;
            }
            let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
            let mut parts = line.split(|&b| b == b' ');
            let (method, path) = (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            );
            let path = path.split(|&b| b == b'?').next().unwrap_or_default();
            let (status, ctype, body) = if method == b"GET" && path == b"/metrics" {
                let body = metrics.render(stats().await.unwrap_or_default());
                ("200 OK", "text/plain; version=0.0.4; charset=utf-8", body)
            } else {
                ("404 Not Found", "text/plain", "not found\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
