//! The two text formats a scrape can get: OpenMetrics 1.0 (prometheus-client's own) and
//! Prometheus' classic text format 0.0.4 made from it.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use brlock_core::Stats;

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
}
