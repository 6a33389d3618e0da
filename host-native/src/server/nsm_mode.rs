//! Which NSM brlockd uses (`--nsm`, `--statd`), decided once at start: a live statd that rpcbind
//! names, the built-in one on the NLM port, or none.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::info;

use super::outbound::{self, Transport};
use crate::config::{NsmMode, ServerConfig, StatdSetting};
use crate::nlm::{NLM_PROGRAM, NlmVersion};

/// `--nsm` as resolved at start, with the reason for the log.
pub(crate) struct NsmResolved {
    pub builtin: bool,
    pub statd: Option<SocketAddr>,
    pub notices: bool,
    pub why: String,
}

pub(crate) async fn resolve_nsm(config: &ServerConfig) -> NsmResolved {
    let registered = || async {
        let rpcbind = config.rpcbind?;
        let port = outbound::getport(
            rpcbind,
            crate::nsm::NSM_PROGRAM,
            crate::nsm::NSM_VERSION,
            Transport::Udp,
            Duration::from_secs(1),
        )
        .await
        .ok()
        .filter(|&p| p != 0)?;
        let addr = SocketAddr::new(rpcbind.ip(), port);
        // A crashed brlockd with the built-in NSM leaves its mapping behind, and a live one answers
        // NLM on the same port: neither is a statd to use.
        let answers = |program: u32, version: u32| async move {
            outbound::call(
                Transport::Udp,
                addr,
                (program, version, 0),
                &[],
                Duration::from_secs(1),
                true,
            )
            .await
            .is_ok()
        };
        if !answers(crate::nsm::NSM_PROGRAM, crate::nsm::NSM_VERSION).await {
            info!(%addr, "rpcbind names an NSM that does not answer (a stale mapping): ignored");
            return None;
        }
        if answers(NLM_PROGRAM, NlmVersion::V4 as u32).await {
            info!(%addr, "the NSM rpcbind names is another brlockd's built-in one: ignored");
            return None;
        }
        Some(addr)
    };
    let statd_at = |addr: SocketAddr, why: String| NsmResolved {
        builtin: false,
        statd: Some(addr),
        notices: true,
        why,
    };
    let builtin = |why: String| NsmResolved {
        builtin: true,
        statd: None,
        notices: true,
        why,
    };
    match (config.nsm, config.statd) {
        (NsmMode::None, _) => NsmResolved {
            builtin: false,
            statd: None,
            notices: false,
            why: "--nsm none: client reboots go unnoticed and no reboot notices are sent".into(),
        },
        (NsmMode::Builtin, _) => builtin("--nsm builtin".into()),
        (NsmMode::Statd | NsmMode::Auto, StatdSetting::At(addr)) => {
            statd_at(addr, format!("--statd {addr}"))
        }
        (NsmMode::Statd, _) => match registered().await {
            Some(addr) => statd_at(addr, format!("--nsm statd; rpcbind knows statd at {addr}")),
            None => NsmResolved {
                builtin: false,
                statd: None,
                notices: true,
                why: "--nsm statd, but rpcbind knows no statd: client reboots go unnoticed".into(),
            },
        },
        (NsmMode::Auto, StatdSetting::Disabled) => builtin("--statd none: no statd to use".into()),
        (NsmMode::Auto, StatdSetting::Discover) => match registered().await {
            Some(addr) => statd_at(
                addr,
                format!("another statd is registered with rpcbind (at {addr})"),
            ),
            None if config.rpcbind.is_some() => {
                builtin("no live statd is registered with rpcbind".into())
            }
            None => builtin("--rpcbind none: no statd to find".into()),
        },
    }
}
