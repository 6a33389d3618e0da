//! brlockd's configuration: command-line flags (clap) over an optional TOML file (`--config FILE`).
//! A flag given on the command line wins over the same key in the file; the file's keys are the flags'
//! long names with `-` spelled `_` (`max_locks_per_file = 10`), and `allow` is a list.
//!
//! Nothing listens on a wildcard address unless the configuration names one: the default is loopback.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use brlock_core::{CallbackPolicy, Profile};
use clap::Parser;
use ipnet::IpNet;
use serde::Deserialize;

/// NLM's conventional port (IANA "nlockmgr" is dynamic; 4045 is what Solaris and Linux pin).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4045";
pub const DEFAULT_RPCBIND: &str = "127.0.0.1:111";

/// The command line. Every flag is optional here so that the TOML file can supply it.
#[derive(Parser, Debug, Default, Clone)]
#[command(
    name = "brlockd",
    version,
    about = "brlock's NLM server (ONC RPC program 100021, versions 1, 3 and 4)",
    long_about = "brlock's NLM server: a byte-range lock manager speaking the Network Lock Manager \
protocol (ONC RPC program 100021, versions 1, 3 and 4) over TCP and UDP on one address.\n\n\
Flags override the same keys of the TOML file given with --config (keys are the long flag names \
with '_' for '-'). A bad flag or file is reported on stderr with exit code 2."
)]
pub struct Args {
    /// TOML file with any of the settings below; flags given here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// TCP and UDP address to serve NLM on [default: 127.0.0.1:4045]. Port 0 picks a free port
    /// (the same one for UDP). 0.0.0.0 or :: must be given explicitly.
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
    /// Where held locks are persisted [default: sqlite://./brlock.db]: `sqlite://PATH` (embedded),
    /// `postgres://USER@HOST:PORT/DB` (shared; a newer instance fences an older one), or `memory`
    /// (nothing survives a restart).
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics (port 0 picks a free port). Off unless given.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// Lock-manager semantics preset: brlock, linux, ganesha or dittofs [default: brlock].
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Grace period after a restart, in seconds [default: the profile's].
    #[arg(long, value_name = "SECONDS")]
    pub grace: Option<u64>,
    /// Source networks allowed to call (repeatable) [default: 127.0.0.0/8 and ::1/128]. Calls from
    /// elsewhere are answered AUTH_ERROR/AUTH_TOOWEAK.
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<String>,
    /// How long a GRANTED callback (including the portmapper lookup) may take [default: 5000].
    #[arg(long, value_name = "MS")]
    pub callback_timeout_ms: Option<u64>,
    /// GRANTED sends in all before a granted lock whose client cannot be reached is released
    /// (1: at the first failure) [default: the profile's].
    #[arg(long, value_name = "N")]
    pub callback_attempts: Option<u32>,
    /// Time between GRANTED sends to a client that could not be reached [default: the profile's,
    /// else 10000].
    #[arg(long, value_name = "MS")]
    pub callback_retry_ms: Option<u64>,
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
    /// (sm-notify: 2 s to 120 s) [default: 2000].
    #[arg(long, value_name = "MS")]
    pub notify_retry_ms: Option<u64>,
    /// Stop retrying a reboot notice this long after start (sm-notify -m) [default: 900].
    #[arg(long, value_name = "SECONDS")]
    pub notify_give_up_s: Option<u64>,
    /// A client host that has held nothing and sent no lock request for this long is forgotten and
    /// statd told to stop monitoring it (SM_UNMON) [default: 300000, Linux lockd's host expiry].
    #[arg(long, value_name = "MS")]
    pub unmonitor_idle_ms: Option<u64>,
    /// Held lock records per file [default: the profile's].
    #[arg(long, value_name = "N")]
    pub max_locks_per_file: Option<u64>,
    /// Held lock records per client host [default: the profile's].
    #[arg(long, value_name = "N")]
    pub max_locks_per_client: Option<u64>,
    /// Held lock records in the whole server [default: the profile's].
    #[arg(long, value_name = "N")]
    pub max_locks_total: Option<u64>,
    /// Queued blocking requests per file [default: the profile's].
    #[arg(long, value_name = "N")]
    pub max_waiters_per_file: Option<u64>,
    /// A blocked request not granted within this long is dropped [default: never].
    #[arg(long, value_name = "MS")]
    pub blocking_timeout_ms: Option<u64>,
    /// Largest RPC record accepted on TCP; a larger one closes that connection [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_record_bytes: Option<usize>,
    /// Entries of the duplicate request cache [default: 4096].
    #[arg(long, value_name = "N")]
    pub drc_size: Option<usize>,
    /// Host name sent as caller_name in GRANTED callbacks and as my_name to statd
    /// [default: the kernel's host name].
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
}

/// The same settings as they may appear in the TOML file.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    store: Option<String>,
    metrics: Option<String>,
    profile: Option<String>,
    grace: Option<u64>,
    allow: Option<Vec<String>>,
    callback_timeout_ms: Option<u64>,
    callback_attempts: Option<u32>,
    callback_retry_ms: Option<u64>,
    portmap_port: Option<u16>,
    rpcbind: Option<String>,
    statd: Option<String>,
    nsm: Option<String>,
    notify_name: Option<String>,
    notify_retry_ms: Option<u64>,
    notify_give_up_s: Option<u64>,
    unmonitor_idle_ms: Option<u64>,
    max_locks_per_file: Option<u64>,
    max_locks_per_client: Option<u64>,
    max_locks_total: Option<u64>,
    max_waiters_per_file: Option<u64>,
    blocking_timeout_ms: Option<u64>,
    max_record_bytes: Option<usize>,
    drc_size: Option<usize>,
    hostname: Option<String>,
}

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

/// The resolved configuration of one server.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub store: String,
    pub metrics: Option<SocketAddr>,
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
    pub hostname: String,
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

impl ServerConfig {
    /// brlockd's defaults: NLM on 127.0.0.1:4045, `sqlite://./brlock.db`, rpcbind at
    /// 127.0.0.1:111, the brlock profile.
    pub fn defaults() -> Self {
        Self::from_args(Args::default()).expect("the defaults are valid")
    }

    /// A configuration for tests and embedding: everything default except `listen`, the memory
    /// store, no rpcbind, no statd, no metrics.
    pub fn for_tests() -> Self {
        let mut config = Self::from_args(Args {
            listen: Some("127.0.0.1:0".into()),
            store: Some("memory".into()),
            rpcbind: Some("none".into()),
            statd: Some("none".into()),
            ..Args::default()
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
        let args = Args::try_parse_from(argv).map_err(ParseOutcome::Clap)?;
        Self::from_args(args).map_err(ParseOutcome::Config)
    }

    /// Resolves flags over the file named by `args.config` over the defaults.
    pub fn from_args(args: Args) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.clone(),
                    error,
                })?;
                toml::from_str::<FileSettings>(&text).map_err(|e| ConfigError::Parse {
                    path: path.clone(),
                    error: e.to_string(),
                })?
            }
            None => FileSettings::default(),
        };
        let listen = args.listen.or(file.listen);
        let listen = parse_addr("--listen", listen.as_deref().unwrap_or(DEFAULT_LISTEN))?;
        let metrics = match args.metrics.or(file.metrics) {
            Some(m) => Some(parse_addr("--metrics", &m)?),
            None => None,
        };
        let profile_name = args
            .profile
            .or(file.profile)
            .unwrap_or_else(|| "brlock".into());
        let profile = Profile::from_name(&profile_name).ok_or_else(|| {
            invalid(
                "--profile",
                format!("unknown profile {profile_name:?} (brlock, linux, ganesha, dittofs)"),
            )
        })?;
        let mut core = profile.config();
        if let Some(secs) = args.grace.or(file.grace) {
            core.grace = secs
                .checked_mul(1000)
                .ok_or_else(|| invalid("--grace", "too large"))?;
        }
        let limits = &mut core.limits;
        for (value, slot) in [
            (
                args.max_locks_per_file.or(file.max_locks_per_file),
                &mut limits.locks_per_file,
            ),
            (
                args.max_locks_per_client.or(file.max_locks_per_client),
                &mut limits.locks_per_client,
            ),
            (
                args.max_locks_total.or(file.max_locks_total),
                &mut limits.locks_total,
            ),
            (
                args.max_waiters_per_file.or(file.max_waiters_per_file),
                &mut limits.waiters_per_file,
            ),
        ] {
            if let Some(v) = value {
                *slot = v;
            }
        }
        if let Some(ms) = args.blocking_timeout_ms.or(file.blocking_timeout_ms) {
            core.blocking_timeout = Some(ms);
        }
        let attempts = args.callback_attempts.or(file.callback_attempts);
        let retry_ms = args.callback_retry_ms.or(file.callback_retry_ms);
        if attempts.is_some() || retry_ms.is_some() {
            // A profile that releases at once is the retry policy with one attempt.
            let (profile_interval, profile_attempts) = match core.callback {
                CallbackPolicy::Retry { interval, attempts } => (interval, attempts),
                CallbackPolicy::Release => (10_000, 1),
            };
            let attempts = attempts.unwrap_or(profile_attempts);
            if attempts == 0 {
                return Err(invalid("--callback-attempts", "must be at least 1"));
            }
            core.callback = CallbackPolicy::Retry {
                interval: retry_ms.unwrap_or(profile_interval),
                attempts,
            };
        }
        let allow_strings = if !args.allow.is_empty() {
            args.allow
        } else {
            file.allow
                .unwrap_or_else(|| vec!["127.0.0.0/8".into(), "::1/128".into()])
        };
        let allow = allow_strings
            .iter()
            .map(|s| parse_cidr(s))
            .collect::<Result<Vec<_>, _>>()?;
        let callback_timeout_ms = args
            .callback_timeout_ms
            .or(file.callback_timeout_ms)
            .unwrap_or(5000);
        if callback_timeout_ms == 0 {
            return Err(invalid("--callback-timeout-ms", "must be at least 1"));
        }
        let rpcbind = match args
            .rpcbind
            .or(file.rpcbind)
            .as_deref()
            .unwrap_or(DEFAULT_RPCBIND)
        {
            "none" => None,
            s => Some(parse_addr("--rpcbind", s)?),
        };
        let statd = match args.statd.or(file.statd).as_deref() {
            None => StatdSetting::Discover,
            Some("none") => StatdSetting::Disabled,
            Some(s) => StatdSetting::At(parse_addr("--statd", s)?),
        };
        let nsm = match args.nsm.or(file.nsm).as_deref() {
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
        let notify_name = args.notify_name.or(file.notify_name);
        if let Some(name) = &notify_name
            && (name.is_empty() || name.len() > crate::nsm::MAX_NAME as usize)
        {
            return Err(invalid(
                "--notify-name",
                format!("must be 1 to {} bytes", crate::nsm::MAX_NAME),
            ));
        }
        let retry_ms = args
            .notify_retry_ms
            .or(file.notify_retry_ms)
            .unwrap_or(2000);
        if retry_ms == 0 {
            return Err(invalid("--notify-retry-ms", "must be at least 1"));
        }
        let give_up_s = args
            .notify_give_up_s
            .or(file.notify_give_up_s)
            .unwrap_or(900);
        let notice_timing = NoticeTiming {
            first_wait: Duration::from_millis(retry_ms),
            max_wait: Duration::from_millis(retry_ms.saturating_mul(60)),
            give_up: Duration::from_secs(give_up_s),
        };
        let unmonitor_idle_ms = args
            .unmonitor_idle_ms
            .or(file.unmonitor_idle_ms)
            .unwrap_or(300_000);
        if unmonitor_idle_ms == 0 {
            return Err(invalid("--unmonitor-idle-ms", "must be at least 1"));
        }
        let max_record_bytes = args
            .max_record_bytes
            .or(file.max_record_bytes)
            .unwrap_or(crate::rpc::DEFAULT_MAX_RECORD);
        if max_record_bytes < 64 {
            return Err(invalid("--max-record-bytes", "must be at least 64"));
        }
        let drc_size = args.drc_size.or(file.drc_size).unwrap_or(4096);
        let hostname = args
            .hostname
            .or(file.hostname)
            .unwrap_or_else(system_hostname);
        Ok(ServerConfig {
            listen,
            store: args
                .store
                .or(file.store)
                .unwrap_or_else(|| crate::store::DEFAULT_URL.into()),
            metrics,
            profile,
            core,
            allow,
            callback_timeout: Duration::from_millis(callback_timeout_ms),
            portmap_port: args.portmap_port.or(file.portmap_port).unwrap_or(111),
            rpcbind,
            statd,
            nsm,
            notify_name,
            notice_timing,
            unmonitor_idle: Duration::from_millis(unmonitor_idle_ms),
            max_record_bytes,
            drc_size,
            hostname,
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
        assert_eq!(c.core.grace, 7000);
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
                interval: 2_000,
                attempts: 3
            }
        );
        assert_eq!(c.unmonitor_idle, Duration::from_secs(300));
        let c = parse(&["--callback-attempts", "3", "--callback-retry-ms", "200"]).unwrap();
        assert_eq!(
            c.core.callback,
            CallbackPolicy::Retry {
                interval: 200,
                attempts: 3
            }
        );
        // Ganesha releases at the first failure; a retry interval alone keeps that.
        let c = parse(&["--profile", "ganesha", "--callback-retry-ms", "200"]).unwrap();
        assert_eq!(
            c.core.callback,
            CallbackPolicy::Retry {
                interval: 200,
                attempts: 1
            }
        );
        let c = parse(&["--profile", "ganesha", "--callback-attempts", "4"]).unwrap();
        assert_eq!(
            c.core.callback,
            CallbackPolicy::Retry {
                interval: 10_000,
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
    fn unknown_file_keys_are_errors() {
        let path = std::env::temp_dir().join(format!("brlockd-bad-{}.toml", std::process::id()));
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
        assert!(matches!(
            parse(&["--config", path.to_str().unwrap()]),
            Err(ParseOutcome::Config(ConfigError::Parse { .. }))
        ));
    }
}
