//! [`ConfigError`]: why settings were not turned into a configuration.

use std::path::PathBuf;

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

pub(super) fn invalid(setting: &'static str, error: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        setting,
        error: error.to_string(),
    }
}

/// Why the command line was not turned into a configuration.
#[derive(Debug)]
pub enum ParseOutcome {
    /// Bad flags, or `--help`/`--version` (clap prints those itself: call `exit()`).
    Clap(clap::Error),
    Config(ConfigError),
}
