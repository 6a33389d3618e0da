//! [`Settings`]: every setting of brlockd in one struct that is both the command line (clap) and
//! the TOML file (serde), and its layering: the flags over the file over [`Settings::defaults`],
//! merged key by key through TOML tables.

use std::path::PathBuf;

use brlock_core::{CallbackPolicy, Duration as CoreDuration, Profile};
use clap::{CommandFactory, Parser, ValueEnum};
use serde::{Deserialize, Serialize};

use super::error::{ConfigError, invalid};
use super::limits::LimitSettings;
use super::time_setting::{MsSetting, SecsSetting, TimeSetting};

/// NLM's conventional port (IANA "nlockmgr" is dynamic; 4045 is what Solaris and Linux pin).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4045";
pub const DEFAULT_RPCBIND: &str = "127.0.0.1:111";

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
    /// The core's limits (`max_locks_per_file`, …; config/limits.rs).
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: LimitSettings,
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

/// The flags that are keys of the file too: all but `--config`, `--print-config`, `--help` and
/// `--version` (clap's ids are the field names, so the keys).
pub(super) fn file_keys(command: &clap::Command) -> impl Iterator<Item = &clap::Arg> {
    const FLAG_ONLY: [&str; 4] = ["config", "print_config", "help", "version"];
    command
        .get_arguments()
        .filter(|arg| !FLAG_ONLY.contains(&arg.get_id().as_str()))
}

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
            limits: LimitSettings::of(&core.limits),
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
        // Keys are checked here, not only by serde: with the limits flattened in, serde's error
        // for an unknown key no longer lists the known ones.
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let command = Settings::command();
        if let Some(key) = table
            .keys()
            .find(|key| !file_keys(&command).any(|arg| arg.get_id() == key.as_str()))
        {
            let known: Vec<String> = file_keys(&command)
                .map(|arg| format!("`{}`", arg.get_id()))
                .collect();
            return Err(format!(
                "unknown key `{key}`, expected one of {}",
                known.join(", ")
            ));
        }
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
        let profile = profile_named(flags.profile.as_deref().or(file.profile.as_deref()))?;
        let mut merged = Self::layered(&[&Self::defaults(profile), &file, flags]);
        merged.config = flags.config.clone();
        merged.print_config = flags.print_config;
        Ok(merged)
    }

    /// Each layer's keys over the previous ones'.
    pub(super) fn layered(layers: &[&Settings]) -> Settings {
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
        for arg in file_keys(&command) {
            let key = arg.get_id().as_str();
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

/// The profile called `name` (`None`: brlock's own).
pub(super) fn profile_named(name: Option<&str>) -> Result<Profile, ConfigError> {
    let name = name.unwrap_or("brlock");
    Profile::from_name(name).ok_or_else(|| {
        invalid(
            "--profile",
            format!("unknown profile {name:?} (brlock, linux, ganesha, dittofs)"),
        )
    })
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
    use crate::config::{ParseOutcome, ServerConfig};

    fn parse(args: &[&str]) -> Result<ServerConfig, ParseOutcome> {
        ServerConfig::parse_from(std::iter::once("brlockd").chain(args.iter().copied()))
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
        for arg in file_keys(&Settings::command()) {
            let key = arg.get_id().as_str();
            assert!(
                table.contains_key(key) || given.contains_key(key),
                "examples/brlockd.toml does not mention {key}"
            );
        }
        // A commented-out line shows the default, where there is one.
        let defaults = toml::Table::try_from(Settings::defaults(Profile::Brlock)).unwrap();
        for (key, value) in &table {
            if let Some(default) = defaults.get(key)
                && key != "hostname"
            {
                assert_eq!(value, default, "examples/brlockd.toml: {key}");
            }
        }
    }

    /// A flag's help that names its default names the one `Settings::defaults` gives (the brlock
    /// profile's, where it depends on the profile).
    #[test]
    fn help_names_the_real_defaults() {
        let defaults = toml::Table::try_from(Settings::defaults(Profile::Brlock)).unwrap();
        let mut checked = 0;
        for arg in file_keys(&Settings::command()) {
            let key = arg.get_id().as_str();
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
            let Some((_, said)) = help.rsplit_once("[default: ") else {
                panic!("--{key}: the help names no default: {help}")
            };
            let said = said.strip_prefix("the profile's: ").unwrap_or(said);
            let said = said.split([',', ']']).next().unwrap_or_default();
            let said = said.strip_prefix("brlock ").unwrap_or(said);
            let real = match defaults.get(key) {
                Some(toml::Value::String(s)) => s.clone(),
                Some(toml::Value::Integer(n)) => n.to_string(),
                // No default (off, or decided at start), or one a list or the host's name.
                _ => continue,
            };
            if key == "hostname" {
                continue;
            }
            // A span as humantime writes it ("90s" is "1m 30s"); anything else as it is.
            let span = |s: &str| match s.parse::<MsSetting>() {
                Ok(t) if !s.bytes().all(|b| b.is_ascii_digit()) => t.to_string(),
                _ => s.to_string(),
            };
            assert_eq!(span(said), span(&real), "--{key}: {help}");
            checked += 1;
        }
        assert!(checked > 30, "only {checked} defaults checked");
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let path = std::env::temp_dir().join(format!("brlockd-bad-{}.toml", std::process::id()));
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
        match parse(&["--config", path.to_str().unwrap()]) {
            Err(ParseOutcome::Config(ConfigError::Parse { error, .. })) => {
                assert!(
                    error.contains("`lisen`") && error.contains("`listen`"),
                    "{error}"
                )
            }
            other => panic!("{other:?}"),
        }
        for text in ["max_locks_per_file = \"x\"\n", "max_locks_total = -3\n"] {
            let e = Settings::from_toml(text).unwrap_err();
            assert!(e.contains("expected u64"), "{text}: {e}");
        }
    }
}
