//! The client-reboot settings (NSM), resolved: who watches client reboots ([`NsmMode`]), where the
//! local statd is ([`StatdSetting`]), and how brlockd's own reboot notices are sent
//! ([`NoticeTiming`], `--notify-name`).

use std::net::SocketAddr;
use std::time::Duration;

use super::error::{ConfigError, invalid};
use super::server_config::parse_addr;

/// Where the local statd is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatdSetting {
    /// Ask rpcbind for NSM (100024 v1 udp); without an answer, run without statd.
    Discover,
    Disabled,
    At(SocketAddr),
}

impl StatdSetting {
    /// `--statd`: unset (ask rpcbind), `none`, or ADDR:PORT.
    pub(super) fn from_setting(value: Option<&str>) -> Result<Self, ConfigError> {
        Ok(match value {
            None => StatdSetting::Discover,
            Some("none") => StatdSetting::Disabled,
            Some(s) => StatdSetting::At(parse_addr("--statd", s)?),
        })
    }
}

/// `--nsm`: who watches client reboots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NsmMode {
    /// Decide at start: `Statd` if one is named or registered with rpcbind, else `Builtin`.
    Auto,
    Builtin,
    Statd,
    None,
}

impl NsmMode {
    /// `--nsm`: unset (decide at start), `builtin`, `statd` (refused with `--statd none`) or `none`.
    pub(super) fn from_setting(
        value: Option<&str>,
        statd: StatdSetting,
    ) -> Result<Self, ConfigError> {
        let mode = match value {
            None => NsmMode::Auto,
            Some("builtin") => NsmMode::Builtin,
            Some("statd") => NsmMode::Statd,
            Some("none") => NsmMode::None,
            Some(other) => {
                return Err(invalid(
                    "--nsm",
                    format!("{other:?} is not builtin, statd or none"),
                ));
            }
        };
        if mode == NsmMode::Statd && statd == StatdSetting::Disabled {
            return Err(invalid("--nsm", "statd, but --statd none"));
        }
        Ok(mode)
    }
}

/// How reboot notices are retried (nfs-utils sm-notify: 2 s doubling to 120 s, for 15 minutes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoticeTiming {
    pub first_wait: Duration,
    pub max_wait: Duration,
    pub give_up: Duration,
}

impl NoticeTiming {
    /// sm-notify's schedule from its first wait: each retry waits twice as long, up to 60 times
    /// the first.
    pub(super) fn new(first_wait: Duration, give_up: Duration) -> Self {
        NoticeTiming {
            first_wait,
            max_wait: first_wait.saturating_mul(60),
            give_up,
        }
    }
}

/// `--notify-name`, which must fit NSM's `mon_name`.
pub(super) fn notify_name(name: Option<String>) -> Result<Option<String>, ConfigError> {
    match name {
        Some(name) if name.is_empty() || name.len() > crate::nsm::MAX_NAME as usize => {
            Err(invalid(
                "--notify-name",
                format!("must be 1 to {} bytes", crate::nsm::MAX_NAME),
            ))
        }
        name => Ok(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsm_settings_resolve_or_name_the_setting() {
        let at = "127.0.0.1:662";
        assert_eq!(
            StatdSetting::from_setting(Some(at)).unwrap(),
            StatdSetting::At(at.parse().unwrap())
        );
        assert_eq!(
            StatdSetting::from_setting(None).unwrap(),
            StatdSetting::Discover
        );
        assert_eq!(
            NsmMode::from_setting(Some("statd"), StatdSetting::Discover).unwrap(),
            NsmMode::Statd
        );
        assert_eq!(
            NsmMode::from_setting(None, StatdSetting::Disabled).unwrap(),
            NsmMode::Auto
        );
        assert_eq!(
            NoticeTiming::new(Duration::from_secs(2), Duration::from_secs(900)).max_wait,
            Duration::from_secs(120)
        );
        for e in [
            StatdSetting::from_setting(Some("x")).unwrap_err(),
            NsmMode::from_setting(Some("none"), StatdSetting::Discover)
                .and(NsmMode::from_setting(Some("statd"), StatdSetting::Disabled))
                .unwrap_err(),
            notify_name(Some(String::new())).unwrap_err(),
            notify_name(Some("n".repeat(crate::nsm::MAX_NAME as usize + 1))).unwrap_err(),
        ] {
            assert!(matches!(e, ConfigError::Invalid { .. }), "{e}");
        }
        assert_eq!(
            notify_name(Some("nfs1".into())).unwrap().as_deref(),
            Some("nfs1")
        );
    }
}
