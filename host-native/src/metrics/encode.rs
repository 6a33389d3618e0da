//! Encoders for metrics whose values are read at scrape time (the collectors of `core_stats.rs`
//! and `process.rs`): constant counters and gauges written straight into the exposition.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// A family's samples: each one's labels (name, value) and its value.
pub(super) type Rows = Vec<(Vec<(&'static str, String)>, u64)>;

/// A counter family whose every label set is written, zeros too.
pub(super) fn counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &Rows,
) -> std::fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(*value).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// A counter without labels (no empty `{}`).
pub(super) fn plain_counter(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> std::fmt::Result {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

/// A gauge without labels.
pub(super) fn gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A gauge without labels, of a fractional value.
pub(super) fn float_gauge(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}
