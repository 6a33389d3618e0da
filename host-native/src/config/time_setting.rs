//! [`TimeSetting`]: a span of time as a setting, written with units (`90s`, `500ms`, `5m`,
//! `1h 30m`) or as a bare number in the unit the setting always had.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use brlock_core::Duration as CoreDuration;
use serde::{Deserialize, Serialize};

/// A span of time as a setting: humantime's units (`90s`, `500ms`, `5m`, `1h 30m`), or a bare
/// number counted in `UNIT_MS` milliseconds — the unit the setting had before units were accepted.
/// Kept to the millisecond (the core's clock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeSetting<const UNIT_MS: u64>(pub Duration);

/// A time setting whose bare numbers are milliseconds (`--callback-timeout-ms 500`).
pub type MsSetting = TimeSetting<1>;
/// A time setting whose bare numbers are seconds (`--grace 90`).
pub type SecsSetting = TimeSetting<1000>;

impl<const UNIT_MS: u64> TimeSetting<UNIT_MS> {
    const UNIT: &'static str = if UNIT_MS == 1 {
        "milliseconds"
    } else {
        "seconds"
    };

    pub fn from_millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    /// Whole milliseconds (saturating: `1000000y` is "never" enough).
    pub fn millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// The span as the core counts it (whole milliseconds, saturating like [`Self::millis`]).
    pub fn to_core(self) -> CoreDuration {
        CoreDuration::from_millis(self.millis())
    }

    /// A core span as a setting.
    pub fn from_core(span: CoreDuration) -> Self {
        Self::from_millis(span.as_millis())
    }

    fn bare(n: u64) -> Result<Self, String> {
        n.checked_mul(UNIT_MS)
            .map(Self::from_millis)
            .ok_or_else(|| format!("{n} {} is too long", Self::UNIT))
    }
}

impl<const UNIT_MS: u64> FromStr for TimeSetting<UNIT_MS> {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            let n = s
                .parse::<u64>()
                .map_err(|_| format!("{s} {} is too long", Self::UNIT))?;
            return Self::bare(n);
        }
        humantime::parse_duration(s).map(Self).map_err(|e| {
            format!(
                "{s:?} is not a duration ({e}): write e.g. 90s, 500ms, 5m, or a bare number of {}",
                Self::UNIT
            )
        })
    }
}

impl<const UNIT_MS: u64> fmt::Display for TimeSetting<UNIT_MS> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(
            f,
            "{}",
            humantime::format_duration(Duration::from_millis(self.millis()))
        )
    }
}

impl<const UNIT_MS: u64> Serialize for TimeSetting<UNIT_MS> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, const UNIT_MS: u64> Deserialize<'de> for TimeSetting<UNIT_MS> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<const U: u64>;
        impl<const U: u64> serde::de::Visitor<'_> for Visitor<U> {
            type Value = TimeSetting<U>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a duration such as \"90s\" or \"500ms\", or a number of {}",
                    TimeSetting::<U>::UNIT
                )
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
                TimeSetting::bare(n).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
                let n = u64::try_from(n).map_err(|_| E::custom("a duration cannot be negative"))?;
                TimeSetting::bare(n).map_err(E::custom)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
                s.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor::<UNIT_MS>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn bare_numbers_keep_the_settings_unit_and_units_are_exact() {
        assert_eq!("90".parse::<SecsSetting>().unwrap().millis(), 90_000);
        assert_eq!("90".parse::<MsSetting>().unwrap().millis(), 90);
        assert_eq!("1h 30m".parse::<MsSetting>().unwrap().millis(), 5_400_000);
        assert_eq!(" 500ms ".parse::<SecsSetting>().unwrap().millis(), 500);
        let e = u64::MAX.to_string().parse::<SecsSetting>().unwrap_err();
        assert!(e.contains("too long") && e.contains("seconds"), "{e}");
        let e = "soon".parse::<MsSetting>().unwrap_err();
        assert!(e.contains("milliseconds") && e.contains("90s"), "{e}");
    }

    #[test]
    fn display_reads_back_as_the_same_span() {
        for ms in [0, 1, 1_500, 90_000, 5_400_000] {
            let shown = MsSetting::from_millis(ms).to_string();
            assert_eq!(shown.parse::<MsSetting>().unwrap().millis(), ms, "{shown}");
        }
        assert_eq!(SecsSetting::from_millis(0).to_string(), "0s");
        assert_eq!(MsSetting::from_millis(1_500).to_string(), "1s 500ms");
    }

    #[test]
    fn file_time_settings_take_numbers_or_strings() {
        let s = Settings::from_toml(
            "grace = \"1m\"\nnotify_retry_ms = 300\nblocking_timeout_ms = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(s.grace, Some(SecsSetting::from_millis(60_000)));
        assert_eq!(s.notify_retry_ms, Some(MsSetting::from_millis(300)));
        assert_eq!(s.blocking_timeout_ms, Some(MsSetting::from_millis(2000)));
        let e = Settings::from_toml("grace = -1\n").unwrap_err();
        assert!(e.contains("negative"), "{e}");
        let e = Settings::from_toml("grace = \"soon\"\n").unwrap_err();
        assert!(e.contains("grace") && e.contains("90s"), "{e}");
    }
}
