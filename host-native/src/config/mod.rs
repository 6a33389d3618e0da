//! brlockd's settings. One struct, [`Settings`], is both the command line (clap) and the TOML file
//! (serde): every field is an `Option`, and the effective settings are three layers of it — the
//! flags over the file (`--config FILE`) over [`Settings::defaults`] (the profile's core values and
//! brlockd's own) — merged key by key through TOML tables, so no field is listed twice. The file's
//! keys are the flags' long names with `-` spelled `_` (`max_locks_per_file = 10`); `allow` is a list.
//! [`ServerConfig`] is the checked result the server runs with.
//!
//! Every time setting accepts units (`90s`, `500ms`, `5m`, `1h 30m`); a bare number keeps the unit
//! the setting always had: milliseconds for the `*_ms` settings, seconds for `grace` and
//! `notify_give_up_s`.
//!
//! Nothing listens on a wildcard address unless the configuration names one: the default is loopback.
//!
//! - `settings.rs`: [`Settings`], its defaults, layering and `--print-config` text.
//! - `limits.rs`: [`LimitSettings`], the core's limits as settings, each declared once.
//! - `time_setting.rs`: [`TimeSetting`], a span written with units.
//! - `server_config.rs`: [`ServerConfig`], the checked configuration.
//! - `nsm.rs`: the client-reboot settings ([`NsmMode`], [`StatdSetting`], [`NoticeTiming`]).
//! - `error.rs`: [`ConfigError`].

mod error;
mod limits;
mod nsm;
mod server_config;
mod settings;
mod time_setting;

pub use error::{ConfigError, ParseOutcome};
pub use limits::LimitSettings;
pub use nsm::{NoticeTiming, NsmMode, StatdSetting};
pub use server_config::{ConnectionLimits, ServerConfig, draw_cookie_key};
pub use settings::{DEFAULT_LISTEN, DEFAULT_RPCBIND, LogFormat, Settings};
pub use time_setting::{MsSetting, SecsSetting, TimeSetting};
