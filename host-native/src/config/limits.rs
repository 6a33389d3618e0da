//! [`LimitSettings`]: the core's counting limits ([`brlock_core::Limits`]) as flags and file keys.
//!
//! Each limit is written once below, as its flag and the field of `Limits` it sets; the defaults
//! (the profile's `Limits`) and the conversion to the core's `Limits` both follow from that one
//! line, so a new core limit needs its field in the core and its line here. The flags keep their
//! own names (`max_locks_per_file` sets `locks_per_file`): they are brlockd's interface, older
//! than the core's names.

use brlock_core::Limits;
use serde::{Deserialize, Serialize};

/// Declares [`LimitSettings`] from `flag => field` lines: the struct (clap flags and serde keys,
/// every one an `Option<u64>`) and its conversions from and to [`Limits`].
macro_rules! limit_settings {
    ($($(#[$attr:meta])* $flag:ident => $field:ident,)+) => {
        /// The core's limits, each a flag and a key of the TOML file. `None` is "not given here".
        #[derive(clap::Args, Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
        pub struct LimitSettings {
            $(
                $(#[$attr])*
                pub $flag: Option<u64>,
            )+
        }

        impl LimitSettings {
            /// Every limit, at its value in `limits`.
            pub fn of(limits: &Limits) -> Self {
                Self {
                    $($flag: Some(limits.$field),)+
                }
            }

            /// `limits` with every limit given here in place of its own.
            pub fn apply_to(&self, limits: &mut Limits) {
                $(
                    if let Some(n) = self.$flag {
                        limits.$field = n;
                    }
                )+
            }

            /// (key, field of `Limits`) of every limit, in declaration order.
            #[cfg(test)]
            const KEYS: &[(&str, &str)] = &[$((stringify!($flag), stringify!($field)),)+];
        }
    };
}

limit_settings! {
    /// Held lock records per file [default: the profile's: 1000].
    #[arg(long, value_name = "N")]
    max_locks_per_file => locks_per_file,
    /// Held lock records per client host [default: the profile's: 10000].
    #[arg(long, value_name = "N")]
    max_locks_per_client => locks_per_client,
    /// Held lock records in the whole server [default: the profile's: 100000].
    #[arg(long, value_name = "N")]
    max_locks_total => locks_total,
    /// Queued blocking requests per file [default: the profile's: 100].
    #[arg(long, value_name = "N")]
    max_waiters_per_file => waiters_per_file,
    /// The share of one file's queue one client host may hold, in percent [default: the
    /// profile's: 25].
    #[arg(long, value_name = "PERCENT")]
    max_queue_percent_per_client => client_queue_percent,
    /// Waiters (queued, or granted with the GRANTED callback pending) per client host
    /// [default: the profile's: 1000].
    #[arg(long, value_name = "N")]
    max_waiters_per_client => waiters_per_client,
    /// Waiters in the whole server [default: the profile's: 10000].
    #[arg(long, value_name = "N")]
    max_waiters_total => waiters_total,
    /// Share reservations per file [default: the profile's: 1000].
    #[arg(long, value_name = "N")]
    max_shares_per_file => shares_per_file,
    /// Share reservations per client host [default: the profile's: 1000].
    #[arg(long, value_name = "N")]
    max_shares_per_client => shares_per_client,
    /// Share reservations in the whole server [default: the profile's: 10000].
    #[arg(long, value_name = "N")]
    max_shares_total => shares_total,
}

/// Fields of [`Limits`] that are not brlockd settings: the core's per-adapter connection count is
/// for hosts that report connections to it; brlockd bounds its own (`--max-connections`).
#[cfg(test)]
const NOT_SETTINGS: [&str; 2] = ["connections_per_adapter", "connections_by_adapter"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerConfig;

    /// The core's limits by field name, as its own serde writes them.
    fn by_field(limits: &Limits) -> toml::Table {
        toml::Table::try_from(limits).unwrap()
    }

    #[test]
    fn every_core_limit_has_a_setting() {
        let keys: Vec<&str> = LimitSettings::KEYS.iter().map(|(_, f)| *f).collect();
        for field in by_field(&Limits::default()).keys() {
            assert!(
                keys.contains(&field.as_str()) || NOT_SETTINGS.contains(&field.as_str()),
                "brlock_core::Limits::{field} has no flag in config/limits.rs"
            );
        }
    }

    /// Each flag sets its own field of the core's limits and no other.
    #[test]
    fn each_flag_sets_its_field() {
        let defaults = ServerConfig::for_tests().core.limits;
        for (key, field) in LimitSettings::KEYS {
            let flag = format!("--{}", key.replace('_', "-"));
            let c = ServerConfig::parse_from(["brlockd", &flag, "7"]).unwrap();
            let mut expected = by_field(&defaults);
            expected.insert(field.to_string(), toml::Value::Integer(7));
            assert_eq!(by_field(&c.core.limits), expected, "{flag}");
        }
    }

    #[test]
    fn of_and_apply_to_round_trip() {
        let mut limits = Limits::default();
        LimitSettings::of(&Limits::unlimited()).apply_to(&mut limits);
        let expected = Limits {
            connections_per_adapter: limits.connections_per_adapter,
            connections_by_adapter: limits.connections_by_adapter.clone(),
            ..Limits::unlimited()
        };
        assert_eq!(limits, expected);
        LimitSettings::default().apply_to(&mut limits);
        assert_eq!(limits, expected, "nothing given changes nothing");
    }
}
