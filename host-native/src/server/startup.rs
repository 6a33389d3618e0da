//! Start-up with a store: take the store's instance lock (SQLite), open it, bump the epoch (and
//! brlockd's NSM state number), load what the earlier epochs kept — lock records, share
//! reservations, client hosts — and rebuild the core from them with `Core::restore_with_shares`
//! (which enters the grace period). The caller binds every socket first (`Sockets::bind`), so a
//! second instance that cannot listen never touches the store.

use std::collections::BTreeSet;
use std::sync::Arc;

use brlock_core::{Action, Core, Instant, RestoreError};
use tracing::{info, warn};

use super::persist::{MemorySink, PersistSink, StorePersistSink};
use crate::config::ServerConfig;
use crate::leader::LeaseGate;
use crate::store::instance_lock::{self, InstanceLock, InstanceLockError};
use crate::store::{ClientHost, Store, StoreError};

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
    /// Restored lock records, share reservations, and the clients they belong to.
    pub locks: usize,
    pub shares: usize,
    pub clients: usize,
    /// brlockd's NSM state number for this run (odd; 2 more than the last run's).
    pub nsm_state: u32,
    /// The client hosts the store kept: their bindings are restored, and each is sent a reboot
    /// notice.
    pub hosts: Vec<ClientHost>,
    /// Held while serving (SQLite): no second instance starts on this store meanwhile.
    pub instance_lock: Option<InstanceLock>,
    /// Shut when this instance's leadership lease runs out (PostgreSQL); always open otherwise.
    pub gate: Arc<LeaseGate>,
}

impl Restored {
    /// A fresh core out of grace that persists nothing: for tests and embedding.
    pub fn fresh(config: &ServerConfig) -> Restored {
        Restored {
            core: Core::new(config.core.clone()),
            actions: Vec::new(),
            sink: Box::new(MemorySink),
            store: None,
            epoch: 0,
            locks: 0,
            shares: 0,
            clients: 0,
            nsm_state: memory_nsm_state(),
            hosts: Vec::new(),
            instance_lock: None,
            gate: Arc::new(LeaseGate::always_open()),
        }
    }
}

/// Whether instances on `url` share it and so decide by lease who serves (PostgreSQL); SQLite
/// keeps a second instance out altogether (its lock file), memory is not shared.
pub fn shared_store(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Without a store there is no state number to bump: an odd number from the clock, so that a
/// restart is told apart from the last run (statd compares numbers, not their order).
fn memory_nsm_state() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs() as u32)
        | 1
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot restore the stored locks: {0}")]
    Restore(RestoreError),
    #[error(transparent)]
    InUse(#[from] InstanceLockError),
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

/// Opens `config.store`, starts a new epoch and restores the core. `holder` (pid and address) goes
/// into the SQLite lock file for a second instance's error message. `memory` keeps nothing, but a
/// start still opens the grace period — clients may have been told to reclaim (by the host's statd,
/// or an operator's sm-notify) — and takes reclaims unverified, as Linux lockd does.
pub async fn restore(config: &ServerConfig, holder: &str) -> Result<Restored, StartError> {
    if config.store == "memory" {
        let mut core_config = config.core.clone();
        core_config.verify_reclaims = false;
        let (core, actions) = Core::open_grace(core_config, Instant::ZERO, 1);
        warn!(
            grace_s = config.core.grace.as_millis().div_ceil(1000),
            "store: memory — no lock survives a restart (use --store sqlite://PATH for \
             durability); grace period opened anyway, reclaims taken unverified"
        );
        return Ok(Restored {
            core,
            actions,
            ..Restored::fresh(config)
        });
    }
    let instance_lock = instance_lock::acquire(&config.store, holder)?;
    let store = Arc::new(Store::open(&config.store).await?);
    if let Some(lock) = &instance_lock {
        info!(lock_file = %lock.path().display(), "store: instance lock taken");
    }
    let mut restored = restore_opened(config, store).await?;
    restored.instance_lock = instance_lock;
    Ok(restored)
}

/// [`restore`] on a store already open (a standby that has just taken the lease over).
pub async fn restore_opened(
    config: &ServerConfig,
    store: Arc<Store>,
) -> Result<Restored, StartError> {
    let (epoch, records) = store.begin_epoch().await?;
    let kept = store.kept().await?;
    let locks = records.len();
    let shares = kept.shares.len();
    let clients = records
        .iter()
        .map(|r| &r.client)
        .chain(kept.shares.iter().map(|s| &s.client))
        .collect::<BTreeSet<_>>()
        .len();
    info!(
        backend = store.backend(),
        url = %redacted(&config.store),
        epoch,
        nsm_state = kept.nsm_state,
        "store: opened; epoch {epoch} begun (earlier instances on this store are fenced)"
    );
    let (core, actions) = Core::restore_with_shares(
        config.core.clone(),
        Instant::ZERO,
        epoch,
        records,
        kept.shares,
    )
    .map_err(StartError::Restore)?;
    match core.grace() {
        Some(grace) => info!(
            locks,
            shares,
            clients,
            hosts = kept.hosts.len(),
            "restored {locks} locks and {shares} shares of {clients} clients; grace period {} s",
            grace.remaining.as_millis().div_ceil(1000)
        ),
        None => info!(
            hosts = kept.hosts.len(),
            "restored {locks} locks of {clients} clients; nothing to reclaim, no grace period"
        ),
    }
    // The same sum that bounds the core task's queue: every queued batch is one of its events.
    let capacity = config.max_calls_in_flight + super::shared::CORE_QUEUE_INTERNAL;
    let sink = Box::new(StorePersistSink::spawn(store.clone(), epoch, capacity));
    Ok(Restored {
        core,
        actions,
        sink,
        store: Some(store),
        epoch,
        locks,
        shares,
        clients,
        nsm_state: kept.nsm_state,
        hosts: kept.hosts,
        instance_lock: None,
        gate: Arc::new(LeaseGate::always_open()),
    })
}

#[cfg(test)]
mod tests {
    use super::{redacted, shared_store};

    #[test]
    fn only_postgresql_stores_are_shared_by_lease() {
        assert!(shared_store("postgres://pg@db/brlock"));
        assert!(shared_store("postgresql://pg@db/brlock"));
        assert!(!shared_store("sqlite://./brlock.db"));
        assert!(!shared_store("memory"));
    }

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
