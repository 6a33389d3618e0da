//! Start-up with a durable store: open it, bump the epoch, load the previous epoch's records and
//! rebuild the core from them with `Core::restore` (which enters the grace period).

use std::collections::BTreeSet;
use std::sync::Arc;

use brlock_core::{Action, Core, RestoreError};
use tracing::{info, warn};

use super::persist::{MemorySink, PersistSink, StorePersistSink};
use crate::config::ServerConfig;
use crate::store::{Store, StoreError};

/// A core rebuilt from the store, ready for [`super::Server::start_restored`].
pub struct Restored {
    pub core: Core,
    /// The restore's own actions (rewrites of records that merged; `GraceEnded` when nothing is
    /// left to reclaim): the server carries them out first.
    pub actions: Vec<Action>,
    pub sink: Box<dyn PersistSink>,
    /// The store, when it is a durable one.
    pub store: Option<Arc<Store>>,
    pub epoch: u64,
    /// Restored lock records and the clients they belong to.
    pub locks: usize,
    pub clients: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot restore the stored locks: {0}")]
    Restore(RestoreError),
}

/// `config.store` without a password, for logs.
pub fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, rest)), Some(_)) => match rest.split_once('@') {
            Some((user, host)) => match user.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => url.to_owned(),
            },
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// Opens `config.store`, starts a new epoch and restores the core. `memory` keeps nothing: a fresh
/// core, no grace period, and a warning.
pub async fn restore(config: &ServerConfig) -> Result<Restored, StartError> {
    if config.store == "memory" {
        warn!(
            "store: memory — no lock survives a restart (use --store sqlite://PATH for durability)"
        );
        return Ok(Restored {
            core: Core::new(config.core.clone()),
            actions: Vec::new(),
            sink: Box::new(MemorySink),
            store: None,
            epoch: 0,
            locks: 0,
            clients: 0,
        });
    }
    let store = Arc::new(Store::open(&config.store).await?);
    let (epoch, records) = store.begin_epoch().await?;
    let locks = records.len();
    let clients = records
        .iter()
        .map(|r| &r.client)
        .collect::<BTreeSet<_>>()
        .len();
    info!(
        backend = store.backend(),
        url = %redacted(&config.store),
        epoch,
        "store: opened; epoch {epoch} begun (earlier instances on this store are fenced)"
    );
    let (core, actions) =
        Core::restore(config.core.clone(), 0, epoch, records).map_err(StartError::Restore)?;
    match core.grace() {
        Some(grace) => info!(
            locks,
            clients,
            "restored {locks} locks of {clients} clients; grace period {} s",
            grace.remaining.div_ceil(1000)
        ),
        None => info!(
            "restored {locks} locks of {clients} clients; nothing to reclaim, no grace period"
        ),
    }
    let sink = Box::new(StorePersistSink::spawn(store.clone(), epoch));
    Ok(Restored {
        core,
        actions,
        sink,
        store: Some(store),
        epoch,
        locks,
        clients,
    })
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_stay_out_of_the_log() {
        assert_eq!(
            redacted("postgres://brlock:secret@db:5432/locks"),
            "postgres://brlock:***@db:5432/locks"
        );
        assert_eq!(redacted("sqlite://./brlock.db"), "sqlite://./brlock.db");
        assert_eq!(redacted("postgres://pg@h/d"), "postgres://pg@h/d");
    }
}
