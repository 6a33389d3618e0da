//! The durable lock store: where the core's `Action::Persist` writes go, and where a restart finds
//! the locks that were held.
//!
//! `--store` picks the backend: `sqlite://PATH` (the embedded default, `sqlite://./brlock.db`),
//! `postgres://…` / `postgresql://…` for a PostgreSQL shared by several instances, or `memory` for
//! throwaway use (nothing survives a restart).
//!
//! The host uses a store in three steps:
//! 1. [`Store::open`] connects and applies the embedded, versioned migrations
//!    (`host-native/migrations/{sqlite,postgres}`).
//! 2. [`Store::begin_epoch`] bumps the epoch in one transaction and returns the records of the earlier
//!    epochs, which go to `Core::restore` with the new epoch.
//! 3. [`Store::apply`] writes the `Persist` actions, in order, in one transaction per batch — usually
//!    through [`GroupCommit`], which gathers the writes of many requests into one transaction and
//!    says when each request's writes are durable.
//!
//! # Rows
//! One row per lock record; the key is (file, client, owner, offset) and a `Put` replaces the row
//! with that key (`LockRecord`'s contract). Files, clients and owners are stored as raw bytes
//! (BLOB / BYTEA). Offsets, lengths, epochs and sequence numbers are `u64`s stored as the same 64
//! bits in a signed 64-bit column (`to_db` / `from_db`): exact, compact and indexable, at the
//! price that SQL sees values ≥ 2^63 as negative — SQL here only compares them for equality.
//! A row the core could not have written (a kind other than 0 or 1) is [`StoreError::Corrupt`].
//! These conversions are in `rows.rs`; the embedded schema migrations in `migrations.rs`.
//!
//! # What a restart needs besides the locks
//! Share reservations (`share_record`, written by the core's `PutShare`/`DeleteShare` like lock
//! records), the client hosts to notify of a restart with their caller_name ↔ address bindings
//! (`client_host`, written by the server as [`HostWrite`]s in the same transactions as the lock
//! writes they go with), and brlockd's own NSM state number (`server.nsm_state`, odd, 2 more at
//! every `begin_epoch`, as statd's state file). [`Store::kept`] reads the last two back at start-up.
//!
//! # Fencing
//! Every write transaction first reads the single `server` row and goes on only if its epoch is the
//! one the writer passes (the epoch its `begin_epoch` returned); otherwise it fails with
//! [`StoreError::Fenced`] and writes nothing. PostgreSQL: the read is `FOR SHARE`, so a concurrent
//! `begin_epoch` (an `UPDATE` of that row) waits for in-flight writes to commit and then sees them,
//! and every write after it is fenced. SQLite: write transactions are `BEGIN IMMEDIATE`, so they run
//! one at a time. Either way two instances on one database can never both acknowledge conflicting
//! locks: the one started later has loaded everything the other committed, and the other cannot
//! commit anything more. A fenced process must stop serving.
//!
//! # Durability
//! `apply` returns `Ok` only once its transaction has committed durably: SQLite runs in WAL mode with
//! `synchronous = FULL` (a commit survives a process kill and a power loss; `NORMAL` would only
//! survive the former), PostgreSQL with `synchronous_commit = on`.

// First: its `select!` macro is used by the backends below.
#[macro_use]
mod rows;

mod group_commit;
pub mod instance_lock;
pub mod lease;
mod memory;
mod migrations;
mod postgres;
mod sqlite;
mod sqlite_ffi;
mod sqlite_load;
mod sqlite_write;

use std::fmt;

use std::net::IpAddr;

use brlock_core::{ClientId, FileId, LockRecord, OwnerId, PersistOp, ShareRecord};

pub use group_commit::{GroupCommit, GroupCommitOptions, GroupCommitStats, Ticket};
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// The `--store` default.
pub const DEFAULT_URL: &str = "sqlite://./brlock.db";

/// One `Action::Persist` for [`Store::apply`]: its sequence number and what to write. (Its epoch is
/// the one `apply` is called with.)
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Write {
    pub seq: u64,
    pub op: PersistOp,
}

/// A client host as the store keeps it: who must hear of a restart, and the binding its requests
/// are checked against.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct ClientHost {
    pub caller_name: Vec<u8>,
    /// Where its calls come from (its bound address).
    pub address: IpAddr,
    /// The address of ours its calls arrived at: what it mounted, and so the name its statd knows
    /// us by (the default `mon_name` of a reboot notice).
    pub local_address: IpAddr,
    /// The NSM state its latest monitored LOCK carried; `None` when it never sent one.
    pub nsm_state: Option<u32>,
    /// With `--nsm statd`: SM_MON for it went to the local statd.
    pub statd_monitored: bool,
}

/// A change to the stored client hosts, applied in order with a batch's lock writes.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HostWrite {
    Put(ClientHost),
    Delete(Vec<u8>),
}

/// What a restart reads back besides the lock records.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Kept {
    /// brlockd's NSM state number for this run (already bumped by `begin_epoch`).
    pub nsm_state: u32,
    /// Share reservations, sorted.
    pub shares: Vec<ShareRecord>,
    /// Client hosts, sorted by caller_name.
    pub hosts: Vec<ClientHost>,
}

/// Which records [`Store::records`] lists.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum RecordFilter {
    All,
    File(FileId),
    Client(ClientId),
    Owner(ClientId, OwnerId),
}

impl RecordFilter {
    fn matches(&self, record: &LockRecord) -> bool {
        match self {
            RecordFilter::All => true,
            RecordFilter::File(file) => record.file == *file,
            RecordFilter::Client(client) => record.client == *client,
            RecordFilter::Owner(client, owner) => {
                record.client == *client && record.owner == *owner
            }
        }
    }
}

#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum StoreError {
    /// `--store` is not a URL this build understands.
    #[error("bad store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// Another instance has started on this database since this one did (its epoch is `current`).
    /// Nothing was written; this process must stop serving.
    #[error("fenced: this instance writes as epoch {mine}, the store is at epoch {current}")]
    Fenced { mine: u64, current: u64 },
    /// The database did not answer or refused the transaction; nothing of it was written. Later
    /// calls may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database holds something brlock could not have written.
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::migrate::MigrateError;
        match e {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::RowNotFound => StoreError::Corrupt(e.to_string()),
            sqlx::Error::Migrate(m) => match *m {
                e @ (MigrateError::VersionMissing(_)
                | MigrateError::VersionMismatch(_)
                | MigrateError::Dirty(_)) => StoreError::Corrupt(format!("schema migrations: {e}")),
                e => StoreError::Unavailable(format!("schema migrations: {e}")),
            },
            // The server's own message, without the source line of PostgreSQL it came from.
            sqlx::Error::Database(db) => {
                StoreError::Unavailable(format!("the database refused: {}", db.message()))
            }
            e => StoreError::Unavailable(e.to_string()),
        }
    }
}

/// A store, whichever the backend. Cheap to share behind an `Arc`; every method takes `&self`.
pub enum Store {
    Memory(MemoryStore),
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Store({})", self.backend())
    }
}

impl Store {
    /// Opens (creating it if need be) the store `url` names and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        if url == "memory" {
            return Ok(Store::Memory(MemoryStore::new()));
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(invalid(
                "expected memory, sqlite://PATH, postgres://… or postgresql://…",
            ));
        };
        match scheme {
            "sqlite" if rest.is_empty() => Err(invalid("sqlite:// needs a file path")),
            "sqlite" => Ok(Store::Sqlite(SqliteStore::open(url).await?)),
            "postgres" | "postgresql" => Ok(Store::Postgres(PostgresStore::open(url).await?)),
            _ => Err(invalid(
                "unknown scheme (expected memory, sqlite://, postgres:// or postgresql://)",
            )),
        }
    }

    /// The leadership lease among the instances sharing this store (PostgreSQL only: a SQLite
    /// store keeps a second instance out, memory is not shared).
    pub fn lease(&self) -> Option<lease::PgLease> {
        match self {
            Store::Postgres(s) => Some(s.lease()),
            Store::Memory(_) | Store::Sqlite(_) => None,
        }
    }

    /// `"memory"`, `"sqlite"` or `"postgres"`, for logs and metrics labels.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// Starts a new epoch: in one transaction, bumps the stored epoch and reads every record (all of
    /// earlier epochs). From now on only writes with the returned epoch are accepted — any other
    /// instance on this database is fenced. Records come sorted (`LockRecord`'s order), so the
    /// restored core does not depend on the backend.
    pub async fn begin_epoch(&self) -> Result<(u64, Vec<LockRecord>), StoreError> {
        let (epoch, mut records) = match self {
            Store::Memory(s) => s.begin_epoch(),
            Store::Sqlite(s) => s.begin_epoch().await?,
            Store::Postgres(s) => s.begin_epoch().await?,
        };
        records.sort_unstable();
        Ok((epoch, records))
    }

    /// Applies `batch` in order in one transaction, if the store is still at `epoch`. `Ok` means the
    /// transaction has committed durably; on `Err` nothing of `batch` was written.
    pub async fn apply(&self, epoch: u64, batch: &[Write]) -> Result<(), StoreError> {
        self.apply_with_hosts(epoch, batch, &[]).await
    }

    /// [`Store::apply`] with client-host changes in the same transaction (`hosts` in order).
    pub async fn apply_with_hosts(
        &self,
        epoch: u64,
        batch: &[Write],
        hosts: &[HostWrite],
    ) -> Result<(), StoreError> {
        match self {
            Store::Memory(s) => s.apply(epoch, batch, hosts),
            Store::Sqlite(s) => s.apply(epoch, batch, hosts).await,
            Store::Postgres(s) => s.apply(epoch, batch, hosts).await,
        }
    }

    /// The NSM state number, share reservations and client hosts the store keeps (see the module
    /// doc), sorted. Read at start-up, after `begin_epoch`.
    pub async fn kept(&self) -> Result<Kept, StoreError> {
        let mut kept = match self {
            Store::Memory(s) => s.kept()?,
            Store::Sqlite(s) => s.kept().await?,
            Store::Postgres(s) => s.kept().await?,
        };
        kept.shares.sort_unstable();
        kept.hosts.sort_unstable();
        Ok(kept)
    }

    /// The stored records `filter` selects, sorted. For tools and tests; the server keeps its locks in
    /// the core.
    pub async fn records(&self, filter: &RecordFilter) -> Result<Vec<LockRecord>, StoreError> {
        let mut records = match self {
            Store::Memory(s) => s.records(filter)?,
            Store::Sqlite(s) => s.records(filter).await?,
            Store::Postgres(s) => s.records(filter).await?,
        };
        records.sort_unstable();
        Ok(records)
    }

    /// The stored epoch (0 before the first `begin_epoch`).
    pub async fn epoch(&self) -> Result<u64, StoreError> {
        match self {
            Store::Memory(s) => Ok(s.epoch()),
            Store::Sqlite(s) => s.epoch().await,
            Store::Postgres(s) => s.epoch().await,
        }
    }

    /// Closes the connections, waiting for them to shut down cleanly. Committed writes are durable
    /// whether or not the store is closed.
    pub async fn close(&self) {
        match self {
            Store::Memory(_) => {}
            Store::Sqlite(s) => s.close().await,
            Store::Postgres(s) => s.close().await,
        }
    }
}

/// The next NSM state number after `current` (statd: odd while up, 2 more at every start). The
/// stores compute the same in SQL.
pub fn next_nsm_state(current: u32) -> u32 {
    (current | 1).wrapping_add(2)
}

/// The fencing decision every write transaction makes once it has read the stored epoch.
pub(crate) fn check_fence(mine: u64, current: u64) -> Result<(), StoreError> {
    if mine == current {
        Ok(())
    } else {
        Err(StoreError::Fenced { mine, current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_urls_are_refused_with_the_reason() {
        for url in [
            "",
            "brlock.db",
            "mysql://localhost/x",
            "sqlite://",
            "redis://x",
        ] {
            let err = Store::open(url).await.unwrap_err();
            assert!(
                matches!(&err, StoreError::InvalidUrl { url: u, .. } if u == url),
                "{url:?}: {err}"
            );
        }
    }
}
