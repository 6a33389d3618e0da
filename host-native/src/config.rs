//! brlockd's settings. One struct, [`Settings`], is both the command line (clap) and the TOML file
//! (serde): every field is an `Option`, and the effective settings are three layers of it — the
//! flags over the file (`--config FILE`) over [`Settings::defaults`] (the profile's core values and
//! brlockd's own) — merged key by key through TOML tables, so no field is listed twice. The file's
//! keys are the flags' long names with `-` spelled `_` (`max_locks_per_file = 10`); `allow` is a list.
//!
//! Every time setting accepts units (`90s`, `500ms`, `5m`, `1h 30m`); a bare number keeps the unit
//! the setting always had: milliseconds for the `*_ms` settings, seconds for `grace` and
//! `notify_give_up_s`.
//!
//! Nothing listens on a wildcard address unless the configuration names one: the default is loopback.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use brlock_core::{CallbackPolicy, Duration as CoreDuration, Profile};
use clap::{CommandFactory, Parser, ValueEnum};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// NLM's conventional port (IANA "nlockmgr" is dynamic; 4045 is what Solaris and Linux pin).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4045";
pub const DEFAULT_RPCBIND: &str = "127.0.0.1:111";

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

/// `--log-format`: how log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's json format), for log shippers.
    Json,
}

/// Every setting, as a flag and as a key of the TOML file. `None` is "not given here".
#[derive(Parser, Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(
    name = "brlockd",
    version,
    about = "brlock's NLM server (ONC RPC program 100021, versions 1, 3 and 4)",
    long_about = "brlock's NLM server: a byte-range lock manager speaking the Network Lock Manager \
protocol (ONC RPC program 100021, versions 1, 3 and 4) over TCP and UDP on one address.\n\n\
Flags override the same keys of the TOML file given with --config (keys are the long flag names \
with '_' for '-'; examples/brlockd.toml lists them all). Time settings accept units (90s, 500ms, \
5m); a bare number is in the setting's old unit (ms for *-ms, seconds for --grace and \
--notify-give-up-s). A bad flag or file is reported on stderr with exit code 2."
)]
pub struct Settings {
    /// TOML file with any of the settings below; flags given here override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Print the effective settings (defaults, then the file, then the flags) as TOML and exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,
    /// TCP and UDP address to serve NLM on [default: 127.0.0.1:4045]. Port 0 picks a free port
    /// (the same one for UDP). 0.0.0.0 or :: must be given explicitly.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Where held locks are persisted [default: sqlite://./brlock.db]: `sqlite://PATH` (embedded),
    /// `postgres://USER@HOST:PORT/DB` (shared: one instance leads, the others are hot standbys
    /// that take over when its lease runs out), or `memory` (nothing survives a restart).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// With a PostgreSQL store: how long the leader may serve without renewing its lease (it renews
    /// three times per lease); a standby takes over this long (plus 10 %) after the last renewal it
    /// saw (a bare number is seconds) [default: 3s].
    #[arg(long, value_name = "DURATION")]
    pub lease: Option<SecsSetting>,
    /// Serve HTTP on ADDR:PORT: Prometheus metrics at /metrics and the admin endpoints (/locks,
    /// /waiters, /wait-for, /clients, /readyz, …; no authentication) (port 0 picks a free port)
    /// [default: off].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Folder with the built visualiser (host-wasm/build.sh's dist/), served on the metrics
    /// listener at `/`; its live mode follows this server through `/events` [default: off].
    #[arg(long, value_name = "DIR")]
    pub web_root: Option<PathBuf>,
    /// Lock-manager semantics preset: brlock, linux, ganesha or dittofs [default: brlock].
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Grace period after a restart (`90s`; a bare number is seconds) [default: the profile's:
    /// 90s, linux 50s].
    #[arg(long, value_name = "DURATION")]
    pub grace: Option<SecsSetting>,
    /// Source networks allowed to call (repeatable) [default: 127.0.0.0/8 and ::1/128]. Calls from
    /// elsewhere are answered AUTH_ERROR/AUTH_TOOWEAK.
    #[arg(long, value_name = "CIDR")]
    pub allow: Option<Vec<String>>,
    /// How long a GRANTED callback (including the portmapper lookup) may take (a bare number is
    /// ms) [default: 5s].
    #[arg(long, value_name = "DURATION")]
    pub callback_timeout_ms: Option<MsSetting>,
    /// GRANTED sends in all before a granted lock whose client cannot be reached is released
    /// (1: at the first failure) [default: the profile's: brlock 3, linux 6, ganesha and dittofs 1].
    #[arg(long, value_name = "N")]
    pub callback_attempts: Option<u32>,
    /// Time between GRANTED sends to a client that could not be reached (a bare number is ms)
    /// [default: the profile's: brlock 2s, linux 10s].
    #[arg(long, value_name = "DURATION")]
    pub callback_retry_ms: Option<MsSetting>,
    /// Port of the portmapper on each client host, asked (GETPORT) where the client's NLM service
    /// listens before a GRANTED or *_RES callback [default: 111].
    #[arg(long, value_name = "PORT")]
    pub portmap_port: Option<u16>,
    /// rpcbind/portmapper to register NLM v1, v3, v4 (tcp and udp) with, or `none`
    /// [default: 127.0.0.1:111]. Serving goes on without it.
    #[arg(long, value_name = "ADDR:PORT|none")]
    pub rpcbind: Option<String>,
    /// Local rpc.statd for SM_MON/SM_UNMON with `--nsm statd`, or `none` [default: ask rpcbind for
    /// program 100024].
    #[arg(long, value_name = "ADDR:PORT|none")]
    pub statd: Option<String>,
    /// Who watches client reboots: `builtin` (brlockd serves NSM 100024 v1 itself on its NLM port
    /// and registers it with rpcbind: no rpc.statd needed), `statd` (SM_MON/SM_UNMON to the local
    /// rpc.statd, which relays reboots as NLM procedure 16), or `none` (client reboots go unnoticed
    /// and no reboot notices are sent) [default: statd when --statd names one or rpcbind knows one,
    /// else builtin].
    #[arg(long, value_name = "builtin|statd|none")]
    pub nsm: Option<String>,
    /// The name brlockd's reboot notices (SM_NOTIFY) give as `mon_name` [default: the address of
    /// this host that each client's calls arrived at: what it mounted, so what its statd monitors].
    #[arg(long, value_name = "NAME")]
    pub notify_name: Option<String>,
    /// First wait for a reboot notice's answer; each retry waits twice as long, up to 60 times this
    /// (sm-notify: 2 s to 120 s) (a bare number is ms) [default: 2s].
    #[arg(long, value_name = "DURATION")]
    pub notify_retry_ms: Option<MsSetting>,
    /// Stop retrying a reboot notice this long after start (sm-notify -m) (a bare number is
    /// seconds) [default: 15m].
    #[arg(long, value_name = "DURATION")]
    pub notify_give_up_s: Option<SecsSetting>,
    /// A client host that has held nothing and sent no lock request for this long is forgotten and
    /// statd told to stop monitoring it (SM_UNMON) (a bare number is ms) [default: 5m, Linux
    /// lockd's host expiry].
    #[arg(long, value_name = "DURATION")]
    pub unmonitor_idle_ms: Option<MsSetting>,
    /// Held lock records per file [default: the profile's: 1000].
    #[arg(long, value_name = "N")]
    pub max_locks_per_file: Option<u64>,
    /// Held lock records per client host [default: the profile's: 10000].
    #[arg(long, value_name = "N")]
    pub max_locks_per_client: Option<u64>,
    /// Held lock records in the whole server [default: the profile's: 100000].
    #[arg(long, value_name = "N")]
    pub max_locks_total: Option<u64>,
    /// Queued blocking requests per file [default: the profile's: 100].
    #[arg(long, value_name = "N")]
    pub max_waiters_per_file: Option<u64>,
    /// The share of one file's queue one client host may hold, in percent [default: the
    /// profile's: 25].
    #[arg(long, value_name = "PERCENT")]
    pub max_queue_percent_per_client: Option<u64>,
    /// Waiters (queued, or granted with the GRANTED callback pending) per client host
    /// [default: the profile's].
    #[arg(long, value_name = "N")]
    pub max_waiters_per_client: Option<u64>,
    /// Waiters in the whole server [default: the profile's].
    #[arg(long, value_name = "N")]
    pub max_waiters_total: Option<u64>,
    /// Share reservations per file [default: the profile's].
    #[arg(long, value_name = "N")]
    pub max_shares_per_file: Option<u64>,
    /// Share reservations per client host [default: the profile's].
    #[arg(long, value_name = "N")]
    pub max_shares_per_client: Option<u64>,
    /// Share reservations in the whole server [default: the profile's].
    #[arg(long, value_name = "N")]
    pub max_shares_total: Option<u64>,
    /// A blocked request not granted within this long is dropped (a bare number is ms)
    /// [default: never].
    #[arg(long, value_name = "DURATION")]
    pub blocking_timeout_ms: Option<MsSetting>,
    /// Largest RPC record accepted on TCP; a larger one closes that connection [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_record_bytes: Option<usize>,
    /// Entries of the duplicate request cache [default: 4096].
    #[arg(long, value_name = "N")]
    pub drc_size: Option<usize>,
    /// Open NLM TCP connections; a new one beyond it closes the longest-idle one (Linux:
    /// nlm_max_connections) [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// A TCP connection with nothing read or written this long is closed (a bare number is
    /// seconds) [default: 6m, as Linux's sunrpc].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<SecsSetting>,
    /// A TCP record must arrive whole within this long of its first byte (a bare number is
    /// seconds) [default: 30s].
    #[arg(long, value_name = "DURATION")]
    pub record_deadline: Option<SecsSetting>,
    /// Bytes held in unfinished TCP records over all connections; the connection that would pass it
    /// is closed [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub max_partial_record_bytes: Option<usize>,
    /// Calls one TCP connection may have read whose replies are not written yet; then it is not
    /// read until its client reads them [default: 64].
    #[arg(long, value_name = "N")]
    pub max_pipelined_calls: Option<usize>,
    /// NLM calls in the core's hands at once; a TCP connection waits for room, a UDP call is
    /// dropped [default: 8192].
    #[arg(long, value_name = "N")]
    pub max_calls_in_flight: Option<usize>,
    /// Outbound calls (GRANTED callbacks, *_RES, portmap and statd calls) in flight at once; more
    /// are dropped (a GRANTED counts as failed and is resent) [default: 256].
    #[arg(long, value_name = "N")]
    pub max_outbound_calls: Option<usize>,
    /// Client hosts (caller_names) known at once; a new host beyond it is refused with
    /// DENIED_NOLOCKS once the hosts that hold nothing are forgotten [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_client_hosts: Option<usize>,
    /// Host name sent as caller_name in GRANTED callbacks and as my_name to statd
    /// [default: the kernel's host name].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Log lines on stderr as `text` or `json` (one object per line) [default: text]. Which lines:
    /// RUST_LOG (default `info`; `debug` adds a line per request).
    #[arg(long, value_name = "text|json")]
    pub log_format: Option<LogFormat>,
}

/// The name brlockd's own flags are known by in the settings (clap's ids are the field names).
const FLAG_ONLY: [&str; 2] = ["config", "print_config"];

impl Settings {
    /// Every key with the value it has when neither the file nor a flag gives one: `profile`'s core
    /// values (grace, limits, callback policy, blocking timeout) and brlockd's own defaults. Keys
    /// left `None` mean "off" or "decided at start" (metrics, statd, nsm, notify_name,
    /// blocking_timeout_ms).
    pub fn defaults(profile: Profile) -> Settings {
        let core = profile.config();
        let (retry, attempts) = match core.callback {
            CallbackPolicy::Retry { interval, attempts } => (interval, attempts),
            // A profile that releases at once is the retry policy with one attempt.
            CallbackPolicy::Release => (CoreDuration::from_secs(10), 1),
        };
        Settings {
            listen: Some(DEFAULT_LISTEN.into()),
            store: Some(crate::store::DEFAULT_URL.into()),
            lease: Some(TimeSetting(crate::leader::DEFAULT_LEASE)),
            profile: Some(profile.name().into()),
            grace: Some(SecsSetting::from_core(core.grace)),
            allow: Some(vec!["127.0.0.0/8".into(), "::1/128".into()]),
            callback_timeout_ms: Some(MsSetting::from_millis(5000)),
            callback_attempts: Some(attempts),
            callback_retry_ms: Some(MsSetting::from_core(retry)),
            portmap_port: Some(111),
            rpcbind: Some(DEFAULT_RPCBIND.into()),
            notify_retry_ms: Some(MsSetting::from_millis(2000)),
            notify_give_up_s: Some(SecsSetting::from_millis(900_000)),
            unmonitor_idle_ms: Some(MsSetting::from_millis(300_000)),
            max_locks_per_file: Some(core.limits.locks_per_file),
            max_locks_per_client: Some(core.limits.locks_per_client),
            max_locks_total: Some(core.limits.locks_total),
            max_waiters_per_file: Some(core.limits.waiters_per_file),
            max_queue_percent_per_client: Some(core.limits.client_queue_percent),
            max_waiters_per_client: Some(core.limits.waiters_per_client),
            max_waiters_total: Some(core.limits.waiters_total),
            max_shares_per_file: Some(core.limits.shares_per_file),
            max_shares_per_client: Some(core.limits.shares_per_client),
            max_shares_total: Some(core.limits.shares_total),
            blocking_timeout_ms: core.blocking_timeout.map(MsSetting::from_core),
            max_record_bytes: Some(crate::rpc::DEFAULT_MAX_RECORD),
            drc_size: Some(4096),
            max_client_hosts: Some(10_000),
            max_connections: Some(1024),
            idle_timeout: Some(SecsSetting::from_millis(360_000)),
            record_deadline: Some(SecsSetting::from_millis(30_000)),
            max_partial_record_bytes: Some(64 << 20),
            max_pipelined_calls: Some(64),
            max_calls_in_flight: Some(8192),
            max_outbound_calls: Some(256),
            hostname: Some(system_hostname()),
            log_format: Some(LogFormat::Text),
            ..Settings::default()
        }
    }

    /// Parses a TOML file's text (the same parser brlockd uses for `--config`).
    pub fn from_toml(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The effective settings: these flags over the file they name over the defaults of the
    /// profile they (or the file) choose.
    pub fn effective(flags: &Settings) -> Result<Settings, ConfigError> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.clone(),
                    error,
                })?;
                Self::from_toml(&text).map_err(|error| ConfigError::Parse {
                    path: path.clone(),
                    error,
                })?
            }
            None => Settings::default(),
        };
        let name = flags
            .profile
            .as_deref()
            .or(file.profile.as_deref())
            .unwrap_or("brlock");
        let profile = Profile::from_name(name).ok_or_else(|| {
            invalid(
                "--profile",
                format!("unknown profile {name:?} (brlock, linux, ganesha, dittofs)"),
            )
        })?;
        let mut merged = Self::layered(&[&Self::defaults(profile), &file, flags]);
        merged.config = flags.config.clone();
        merged.print_config = flags.print_config;
        Ok(merged)
    }

    /// Each layer's keys over the previous ones'.
    fn layered(layers: &[&Settings]) -> Settings {
        let mut table = toml::Table::new();
        for layer in layers {
            table.extend(toml::Table::try_from(layer).expect("settings are plain TOML values"));
        }
        table
            .try_into()
            .expect("keys of Settings read back as Settings")
    }

    /// The settings as a TOML file (`--print-config`): every key that has a value, then the keys
    /// without one as comments saying what their absence means.
    pub fn to_toml(&self) -> String {
        let table = toml::Table::try_from(self).expect("settings are plain TOML values");
        let mut out = String::from(
            "# brlockd's effective settings: the defaults, then the --config file, then the flags.\n",
        );
        out.push_str(&toml::to_string(&table).expect("a table serialises"));
        let command = Settings::command();
        for arg in command.get_arguments() {
            let key = arg.get_id().as_str();
            if FLAG_ONLY.contains(&key) || key == "help" || key == "version" {
                continue;
            }
            if !table.contains_key(key) {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let default = help
                    .rfind("[default: ")
                    .map(|i| help[i..].trim_end_matches('.').to_string())
                    .unwrap_or_default();
                out.push_str(&format!("# {key}: not set {default}\n"));
            }
        }
        out
    }
}

/// The old name of [`Settings`] (the command line alone, before the file shared its struct).
pub type Args = Settings;

/// Where the local statd is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatdSetting {
    /// Ask rpcbind for NSM (100024 v1 udp); without an answer, run without statd.
    Discover,
    Disabled,
    At(SocketAddr),
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

/// How reboot notices are retried (nfs-utils sm-notify: 2 s doubling to 120 s, for 15 minutes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoticeTiming {
    pub first_wait: Duration,
    pub max_wait: Duration,
    pub give_up: Duration,
}

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
    /// `--max-client-hosts`: the bound of the client-host table (`server/host_churn.rs`).
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

/// A configuration that cannot be used; brlockd prints it and exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("config file {path}: {error}")]
    Parse { path: PathBuf, error: String },
    #[error("{setting}: {error}")]
    Invalid {
        setting: &'static str,
        error: String,
    },
}

fn invalid(setting: &'static str, error: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        setting,
        error: error.to_string(),
    }
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
        let name = s.profile.as_deref().unwrap_or("brlock");
        let profile = Profile::from_name(name).ok_or_else(|| {
            invalid(
                "--profile",
                format!("unknown profile {name:?} (brlock, linux, ganesha, dittofs)"),
            )
        })?;
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
        let limits = &mut core.limits;
        limits.locks_per_file = given(s.max_locks_per_file);
        limits.locks_per_client = given(s.max_locks_per_client);
        limits.locks_total = given(s.max_locks_total);
        limits.waiters_per_file = given(s.max_waiters_per_file);
        limits.client_queue_percent = given(s.max_queue_percent_per_client);
        limits.waiters_per_client = given(s.max_waiters_per_client);
        limits.waiters_total = given(s.max_waiters_total);
        limits.shares_per_file = given(s.max_shares_per_file);
        limits.shares_per_client = given(s.max_shares_per_client);
        limits.shares_total = given(s.max_shares_total);
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
        let statd = match s.statd.as_deref() {
            None => StatdSetting::Discover,
            Some("none") => StatdSetting::Disabled,
            Some(s) => StatdSetting::At(parse_addr("--statd", s)?),
        };
        let nsm = match s.nsm.as_deref() {
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
        if nsm == NsmMode::Statd && statd == StatdSetting::Disabled {
            return Err(invalid("--nsm", "statd, but --statd none"));
        }
        let notify_name = s.notify_name;
        if let Some(name) = &notify_name
            && (name.is_empty() || name.len() > crate::nsm::MAX_NAME as usize)
        {
            return Err(invalid(
                "--notify-name",
                format!("must be 1 to {} bytes", crate::nsm::MAX_NAME),
            ));
        }
        let retry_ms = positive_ms("--notify-retry-ms", given(s.notify_retry_ms))?;
        let notice_timing = NoticeTiming {
            first_wait: Duration::from_millis(retry_ms),
            max_wait: Duration::from_millis(retry_ms.saturating_mul(60)),
            give_up: given(s.notify_give_up_s).0,
        };
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

/// Why the command line was not turned into a configuration.
#[derive(Debug)]
pub enum ParseOutcome {
    /// Bad flags, or `--help`/`--version` (clap prints those itself: call `exit()`).
    Clap(clap::Error),
    Config(ConfigError),
}

fn parse_addr(setting: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
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

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn flags_override_the_file() {
        let dir = std::env::temp_dir().join(format!("brlockd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("brlockd.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:5000\"\nprofile = \"linux\"\ngrace = 7\nallow = [\"10.0.0.0/8\"]\nmax_locks_per_file = 3\n",
        )
        .unwrap();
        let c = parse(&[
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--rpcbind",
            "none",
        ])
        .unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.profile, Profile::Linux);
        assert_eq!(c.core.grace, CoreDuration::from_secs(7));
        assert_eq!(c.core.limits.locks_per_file, 3);
        assert!(c.allows("10.1.2.3".parse().unwrap()));
        assert!(!c.allows("127.0.0.1".parse().unwrap()));
        assert_eq!(c.rpcbind, None);
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

    #[test]
    fn print_config_reads_back_as_the_same_configuration() {
        let flags = Settings::try_parse_from([
            "brlockd",
            "--profile",
            "ganesha",
            "--grace",
            "45s",
            "--max-locks-per-file",
            "7",
            "--metrics",
            "127.0.0.1:9100",
            "--log-format",
            "json",
        ])
        .unwrap();
        let effective = Settings::effective(&flags).unwrap();
        let text = effective.to_toml();
        assert!(text.contains("grace = \"45s\""), "{text}");
        assert!(text.contains("profile = \"ganesha\""), "{text}");
        assert!(text.contains("log_format = \"json\""), "{text}");
        assert!(
            text.contains("# statd: not set [default: ask rpcbind"),
            "{text}"
        );
        let read_back = Settings::from_toml(&text).unwrap();
        assert_eq!(read_back, effective);
        let a = ServerConfig::from_settings(&effective).unwrap();
        let b = ServerConfig::from_settings(&read_back).unwrap();
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(
            a.core.callback,
            CallbackPolicy::Release,
            "ganesha's own policy"
        );
        assert_eq!(a.core.limits.locks_per_file, 7);
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

    /// The example configuration names every setting (commented or not) and parses with
    /// brlockd's own parser, uncommented too.
    #[test]
    fn example_config_lists_every_setting_and_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/brlockd.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let settings = Settings::from_toml(&text).unwrap();
        ServerConfig::from_args(Settings {
            config: Some(path.into()),
            ..Settings::default()
        })
        .unwrap();
        // Every commented-out `# key = value` line is a valid setting too.
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')))
            .map(|l| format!("{l}\n"))
            .collect();
        let all =
            Settings::from_toml(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        let table = toml::Table::try_from(&all).unwrap();
        let given = toml::Table::try_from(&settings).unwrap();
        for arg in Settings::command().get_arguments() {
            let key = arg.get_id().as_str();
            if FLAG_ONLY.contains(&key) || key == "help" || key == "version" {
                continue;
            }
            assert!(
                table.contains_key(key) || given.contains_key(key),
                "examples/brlockd.toml does not mention {key}"
            );
        }
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let path = std::env::temp_dir().join(format!("brlockd-bad-{}.toml", std::process::id()));
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
        assert!(matches!(
            parse(&["--config", path.to_str().unwrap()]),
            Err(ParseOutcome::Config(ConfigError::Parse { .. }))
        ));
    }
}
