//! [`ServerConfig`]: the checked configuration of one server, resolved from [`Settings`] — the
//! addresses parsed, the profile's core configuration with the settings applied, every bound
//! checked.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use brlock_core::{CallbackPolicy, Profile};
use clap::Parser;
use ipnet::IpNet;

use super::error::{ConfigError, ParseOutcome, invalid};
use super::nsm::{self, NoticeTiming, NsmMode, StatdSetting};
use super::settings::{LogFormat, Settings, profile_named};
use super::time_setting::{MsSetting, TimeSetting};

/// The bounds on NLM TCP connections (`server/tcp.rs`, `server/connections.rs`, `server/flow.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub record_deadline: Duration,
    pub max_partial_record_bytes: usize,
    pub max_pipelined_calls: usize,
}

/// `value`, refused when zero.
fn at_least_1(setting: &'static str, value: usize) -> Result<usize, ConfigError> {
    match value {
        0 => Err(invalid(setting, "must be at least 1")),
        n => Ok(n),
    }
}

/// The resolved configuration of one server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub store: String,
    /// `--lease` (PostgreSQL stores: leadership among instances, `leader.rs`).
    pub lease: Duration,
    pub metrics: Option<SocketAddr>,
    /// `--web-root`: the visualiser's folder, served at `/` beside `/metrics` and `/events`.
    pub web_root: Option<PathBuf>,
    pub profile: Profile,
    /// The core's configuration: the profile with grace and limits applied.
    pub core: brlock_core::Config,
    pub allow: Vec<IpNet>,
    pub callback_timeout: Duration,
    pub portmap_port: u16,
    pub rpcbind: Option<SocketAddr>,
    pub statd: StatdSetting,
    pub nsm: NsmMode,
    /// `--notify-name`: the `mon_name` of reboot notices, if not each client's local address.
    pub notify_name: Option<String>,
    pub notice_timing: NoticeTiming,
    /// How long a monitored client host may hold nothing and stay quiet before SM_UNMON.
    pub unmonitor_idle: Duration,
    pub max_record_bytes: usize,
    pub drc_size: usize,
    /// `--max-client-hosts`: the bound of the client-host table (`server/client_hosts.rs`).
    pub max_client_hosts: usize,
    pub connection_limits: ConnectionLimits,
    /// `--max-calls-in-flight` (`server/flow.rs`).
    pub max_calls_in_flight: usize,
    /// `--max-outbound-calls` (`server/outbound_udp.rs`).
    pub max_outbound_calls: usize,
    pub hostname: String,
    pub log_format: LogFormat,
    /// The settings this configuration was made from, every key with a value (`/config` shows
    /// them; a field changed on this struct afterwards is not reflected there).
    pub settings: Settings,
}

/// A key of settings layered over [`Settings::defaults`], which sets every key that has a default.
fn given<T>(value: Option<T>) -> T {
    value.expect("Settings::defaults sets every key that has a default")
}

/// `value` in milliseconds, refused when zero.
fn positive_ms<const U: u64>(
    setting: &'static str,
    value: TimeSetting<U>,
) -> Result<u64, ConfigError> {
    match value.millis() {
        0 => Err(invalid(setting, "must be at least 1ms")),
        ms => Ok(ms),
    }
}

impl ServerConfig {
    /// brlockd's defaults: NLM on 127.0.0.1:4045, `sqlite://./brlock.db`, rpcbind at
    /// 127.0.0.1:111, the brlock profile.
    pub fn defaults() -> Self {
        Self::from_args(Settings::default()).expect("the defaults are valid")
    }

    /// A configuration for tests and embedding: everything default except `listen`, the memory
    /// store, no rpcbind, no statd, no metrics.
    pub fn for_tests() -> Self {
        let mut config = Self::from_args(Settings {
            listen: Some("127.0.0.1:0".into()),
            store: Some("memory".into()),
            rpcbind: Some("none".into()),
            statd: Some("none".into()),
            ..Settings::default()
        })
        .expect("the defaults are valid");
        config.hostname = "brlockd-test".into();
        config
    }

    /// Parses `argv` (program name first); reads the TOML file it names, if any.
    pub fn parse_from<I, T>(argv: I) -> Result<Self, ParseOutcome>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = Settings::try_parse_from(argv).map_err(ParseOutcome::Clap)?;
        Self::from_args(args).map_err(ParseOutcome::Config)
    }

    /// Resolves flags over the file named by `args.config` over the defaults.
    pub fn from_args(args: Settings) -> Result<Self, ConfigError> {
        Self::from_settings(&Settings::effective(&args)?)
    }

    /// Checks and converts settings, usually the effective ones ([`Settings::effective`]); keys
    /// they leave out take their profile's defaults.
    pub fn from_settings(s: &Settings) -> Result<Self, ConfigError> {
        let profile = profile_named(s.profile.as_deref())?;
        let s = Settings::layered(&[&Settings::defaults(profile), s]);
        let settings = s.clone();
        let listen = parse_addr("--listen", &given(s.listen))?;
        let metrics = match s.metrics {
            Some(m) => Some(parse_addr("--metrics", &m)?),
            None => None,
        };
        let mut core = profile.config();
        core.cookie_key = draw_cookie_key().map_err(|e| {
            invalid(
                "callback cookie key",
                format!("the operating system gave no random bytes: {e}"),
            )
        })?;
        core.grace = given(s.grace).to_core();
        s.limits.apply_to(&mut core.limits);
        core.blocking_timeout = s.blocking_timeout_ms.map(MsSetting::to_core);
        let attempts = given(s.callback_attempts);
        if attempts == 0 {
            return Err(invalid("--callback-attempts", "must be at least 1"));
        }
        let interval = given(s.callback_retry_ms).to_core();
        let profile_default = Settings::defaults(profile);
        // The profile's own policy unless either setting differs from it (Ganesha's `Release`
        // stays `Release`).
        if Some(attempts) != profile_default.callback_attempts
            || Some(interval) != profile_default.callback_retry_ms.map(MsSetting::to_core)
        {
            core.callback = CallbackPolicy::Retry { interval, attempts };
        }
        let allow = given(s.allow)
            .iter()
            .map(|s| parse_cidr(s))
            .collect::<Result<Vec<_>, _>>()?;
        let callback_timeout_ms =
            positive_ms("--callback-timeout-ms", given(s.callback_timeout_ms))?;
        let rpcbind = match given(s.rpcbind).as_str() {
            "none" => None,
            s => Some(parse_addr("--rpcbind", s)?),
        };
        let statd = StatdSetting::from_setting(s.statd.as_deref())?;
        let nsm = NsmMode::from_setting(s.nsm.as_deref(), statd)?;
        let notify_name = nsm::notify_name(s.notify_name)?;
        let notice_timing = NoticeTiming::new(
            Duration::from_millis(positive_ms("--notify-retry-ms", given(s.notify_retry_ms))?),
            given(s.notify_give_up_s).0,
        );
        let unmonitor_idle_ms = positive_ms("--unmonitor-idle-ms", given(s.unmonitor_idle_ms))?;
        let lease = given(s.lease).0;
        if lease < Duration::from_millis(100) {
            return Err(invalid("--lease", "must be at least 100ms"));
        }
        let max_record_bytes = given(s.max_record_bytes);
        if max_record_bytes < 64 {
            return Err(invalid("--max-record-bytes", "must be at least 64"));
        }
        let connection_limits = ConnectionLimits {
            max_connections: at_least_1("--max-connections", given(s.max_connections))?,
            idle_timeout: Duration::from_millis(positive_ms(
                "--idle-timeout",
                given(s.idle_timeout),
            )?),
            record_deadline: Duration::from_millis(positive_ms(
                "--record-deadline",
                given(s.record_deadline),
            )?),
            max_partial_record_bytes: given(s.max_partial_record_bytes),
            max_pipelined_calls: at_least_1("--max-pipelined-calls", given(s.max_pipelined_calls))?,
        };
        Ok(ServerConfig {
            listen,
            store: given(s.store),
            lease,
            metrics,
            web_root: s.web_root.clone(),
            profile,
            core,
            allow,
            callback_timeout: Duration::from_millis(callback_timeout_ms),
            portmap_port: given(s.portmap_port),
            rpcbind,
            statd,
            nsm,
            notify_name,
            notice_timing,
            unmonitor_idle: Duration::from_millis(unmonitor_idle_ms),
            max_record_bytes,
            drc_size: given(s.drc_size),
            max_client_hosts: given(s.max_client_hosts),
            connection_limits,
            max_calls_in_flight: at_least_1("--max-calls-in-flight", given(s.max_calls_in_flight))?,
            max_outbound_calls: at_least_1("--max-outbound-calls", given(s.max_outbound_calls))?,
            hostname: given(s.hostname),
            log_format: given(s.log_format),
            settings,
        })
    }

    /// Whether calls from `ip` are served.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            // An IPv4 client reaching a dual-stack socket shows as ::ffff:a.b.c.d.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        self.allow.iter().any(|net| net.contains(&ip))
    }
}

/// A fresh secret for callback cookies from the operating system's random source. It lives only in
/// memory (never in the settings, the store or `--print-config`): a restart forgets every grant
/// waiting for confirmation anyway.
pub fn draw_cookie_key() -> Result<brlock_core::CookieKey, getrandom::Error> {
    let mut key = [0u8; 16];
    getrandom::fill(&mut key)?;
    Ok(brlock_core::CookieKey::new(key))
}

pub(super) fn parse_addr(setting: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.parse::<SocketAddr>().map_err(|_| {
        invalid(
            setting,
            format!("{s:?} is not ADDR:PORT (e.g. 127.0.0.1:4045)"),
        )
    })
}

fn parse_cidr(s: &str) -> Result<IpNet, ConfigError> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    // A bare address allows that one host.
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V4(a)) => Ok(IpNet::from(
            ipnet::Ipv4Net::new(a, 32).expect("32 is valid"),
        )),
        Ok(IpAddr::V6(a)) => Ok(IpNet::from(
            ipnet::Ipv6Net::new(a, 128).expect("128 is valid"),
        )),
        Err(_) => Err(invalid(
            "--allow",
            format!("{s:?} is not a CIDR (e.g. 10.0.0.0/8)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_LISTEN;
    use brlock_core::Duration as CoreDuration;

    fn parse(args: &[&str]) -> Result<ServerConfig, ParseOutcome> {
        ServerConfig::parse_from(std::iter::once("brlockd").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_listen_on_loopback_and_allow_only_loopback() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:4045".parse().unwrap());
        assert_eq!(c.rpcbind, Some("127.0.0.1:111".parse().unwrap()));
        assert_eq!(c.statd, StatdSetting::Discover);
        assert!(c.allows("127.0.0.9".parse().unwrap()));
        assert!(c.allows("::1".parse().unwrap()));
        assert!(c.allows("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!c.allows("10.0.0.1".parse().unwrap()));
        assert_eq!(c.callback_timeout, Duration::from_millis(5000));
        assert_eq!(c.drc_size, 4096);
        assert_eq!(c.max_record_bytes, 1 << 20);
        assert_eq!(c.store, "sqlite://./brlock.db");
        assert_eq!(c.nsm, NsmMode::Auto);
        assert_eq!(c.notify_name, None);
        assert_eq!(
            c.notice_timing,
            NoticeTiming {
                first_wait: Duration::from_secs(2),
                max_wait: Duration::from_secs(120),
                give_up: Duration::from_secs(900),
            },
            "sm-notify's schedule"
        );
    }

    #[test]
    fn callback_flags_override_the_profiles_policy() {
        let c = parse(&[]).unwrap();
        assert_eq!(
            c.core.callback,
            CallbackPolicy::Retry {
                interval: CoreDuration::from_secs(2),
                attempts: 3
            }
        );
        assert_eq!(c.unmonitor_idle, Duration::from_secs(300));
        let c = parse(&["--callback-attempts", "3", "--callback-retry-ms", "200"]).unwrap();
        assert_eq!(
            c.core.callback,
            CallbackPolicy::Retry {
                interval: CoreDuration::from_millis(200),
                attempts: 3
            }
        );
        // Ganesha releases at the first failure; a retry interval alone keeps that.
        let c = parse(&["--profile", "ganesha", "--callback-retry-ms", "200"]).unwrap();
        assert_eq!(
            c.core.callback,
            CallbackPolicy::Retry {
                interval: CoreDuration::from_millis(200),
                attempts: 1
            }
        );
        let c = parse(&["--profile", "ganesha", "--callback-attempts", "4"]).unwrap();
        assert_eq!(
            c.core.callback,
            CallbackPolicy::Retry {
                interval: CoreDuration::from_secs(10),
                attempts: 4
            }
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_setting_named() {
        for (args, needle) in [
            (&["--profile", "nfs"][..], "--profile"),
            (&["--listen", "localhost"][..], "--listen"),
            (&["--allow", "10.0.0.0/99"][..], "--allow"),
            (&["--statd", "x"][..], "--statd"),
            (&["--nsm", "kernel"][..], "--nsm"),
            (&["--nsm", "statd", "--statd", "none"][..], "--nsm"),
            (&["--notify-retry-ms", "0"][..], "--notify-retry-ms"),
            (&["--notify-name", ""][..], "--notify-name"),
            (&["--callback-attempts", "0"][..], "--callback-attempts"),
            (&["--unmonitor-idle-ms", "0"][..], "--unmonitor-idle-ms"),
        ] {
            match parse(args) {
                Err(ParseOutcome::Config(e)) => {
                    assert!(e.to_string().contains(needle), "{e}")
                }
                other => panic!("{args:?}: {other:?}"),
            }
        }
        assert!(matches!(
            parse(&["--grace", "soon"]),
            Err(ParseOutcome::Clap(_))
        ));
    }

    #[test]
    fn time_settings_take_units_and_bare_numbers_keep_their_old_unit() {
        let c = parse(&[
            "--grace",
            "2m",
            "--callback-timeout-ms",
            "1.5s",
            "--notify-retry-ms",
            "250",
            "--notify-give-up-s",
            "30",
            "--unmonitor-idle-ms",
            "1h 30m",
            "--blocking-timeout-ms",
            "500ms",
        ])
        .unwrap();
        assert_eq!(c.core.grace, CoreDuration::from_secs(120));
        assert_eq!(c.callback_timeout, Duration::from_millis(1500));
        assert_eq!(c.notice_timing.first_wait, Duration::from_millis(250));
        assert_eq!(c.notice_timing.give_up, Duration::from_secs(30));
        assert_eq!(c.unmonitor_idle, Duration::from_secs(5400));
        assert_eq!(
            c.core.blocking_timeout,
            Some(CoreDuration::from_millis(500))
        );
        let c = parse(&["--grace", "90"]).unwrap();
        assert_eq!(
            c.core.grace,
            CoreDuration::from_secs(90),
            "a bare --grace is seconds"
        );
        let c = parse(&["--callback-retry-ms", "90"]).unwrap();
        assert!(matches!(
            c.core.callback,
            CallbackPolicy::Retry { interval, .. } if interval == CoreDuration::from_millis(90)
        ));
        match parse(&["--grace", "90 parsecs"]) {
            Err(ParseOutcome::Clap(e)) => {
                let text = e.to_string();
                assert!(text.contains("--grace") && text.contains("90s"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn settings_without_the_defaults_layer_take_the_profiles() {
        let c = ServerConfig::from_settings(&Settings {
            profile: Some("linux".into()),
            ..Settings::default()
        })
        .unwrap();
        assert_eq!(c.core, without_key(Profile::Linux.config(), &c.core));
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
    }

    #[test]
    fn defaults_come_from_the_profile() {
        for profile in Profile::ALL {
            let c = parse(&["--profile", profile.name()]).unwrap();
            assert_eq!(
                c.core,
                without_key(profile.config(), &c.core),
                "{}",
                profile.name()
            );
        }
    }

    /// `profile` with the cookie key `drawn` has: the only value of the core's configuration that
    /// does not come from the profile.
    fn without_key(
        profile: brlock_core::Config,
        drawn: &brlock_core::Config,
    ) -> brlock_core::Config {
        brlock_core::Config {
            cookie_key: drawn.cookie_key,
            ..profile
        }
    }

    #[test]
    fn every_configuration_draws_its_own_cookie_key() {
        let (a, b) = (ServerConfig::for_tests(), ServerConfig::for_tests());
        assert_ne!(a.core.cookie_key, b.core.cookie_key);
        assert_ne!(a.core.cookie_key, brlock_core::CookieKey::default());
        // Its Debug form (and so any log of the configuration) does not show it.
        let shown = format!("{:?}", a.core);
        assert!(!shown.contains(&format!("{:?}", a.core.cookie_key.as_bytes())));
    }
}
