//! The process's own metrics (`process_*`), read from `/proc/self` at each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use super::encode::{float_gauge, gauge};

/// The process's own figures, read from `/proc/self` at each scrape under client_golang's names
/// (so the usual dashboards work). Nothing is written where `/proc` is missing.
#[derive(Debug)]
pub(super) struct ProcessStats;

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
