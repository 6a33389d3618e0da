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

/// `SELECT` of a record's columns, in the order `record_from_row` takes them, plus a condition.
macro_rules! select {
    ($condition:literal) => {
        concat!(
            "SELECT file, client, owner, kind, range_offset, range_length FROM lock_record ",
            $condition
        )
    };
}

mod group_commit;
pub mod instance_lock;
pub mod lease;
mod memory;
mod postgres;
mod sqlite;
mod sqlite_ffi;
mod sqlite_load;
mod sqlite_write;

use std::fmt;

use std::net::IpAddr;

use brlock_core::{
    ClientId, FileId, LockKind, LockRecord, OwnerId, PersistOp, Range, ShareMode, ShareRecord,
};

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

/// A `u64` as the signed 64-bit column holds it: the same bits.
pub(crate) fn to_db(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// The inverse of [`to_db`].
pub(crate) fn from_db(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

pub(crate) fn mode_to_db(mode: ShareMode) -> i16 {
    match mode {
        ShareMode::None => 0,
        ShareMode::Read => 1,
        ShareMode::Write => 2,
        ShareMode::Both => 3,
    }
}

pub(crate) fn mode_from_db(mode: i64, what: &str) -> Result<ShareMode, StoreError> {
    Ok(match mode {
        0 => ShareMode::None,
        1 => ShareMode::Read,
        2 => ShareMode::Write,
        3 => ShareMode::Both,
        m => {
            return Err(StoreError::Corrupt(format!(
                "{what} has share mode {m}, not 0 to 3"
            )));
        }
    })
}

/// Builds a share record from a row's columns.
pub(crate) fn share_from_row(
    file: Vec<u8>,
    client: Vec<u8>,
    owner: Vec<u8>,
    access: i64,
    deny: i64,
) -> Result<ShareRecord, StoreError> {
    let what = || {
        format!(
            "share record (file {}, client {}, owner {})",
            FileId::new(file.clone()),
            ClientId::new(client.clone()),
            OwnerId::new(owner.clone())
        )
    };
    let access = mode_from_db(access, &what())?;
    let deny = mode_from_db(deny, &what())?;
    Ok(ShareRecord {
        file: FileId::new(file),
        client: ClientId::new(client),
        owner: OwnerId::new(owner),
        access,
        deny,
    })
}

/// Builds a client host from a row's columns.
pub(crate) fn host_from_row(
    caller_name: Vec<u8>,
    address: &[u8],
    local_address: &[u8],
    monitored: bool,
    nsm_state: i64,
    statd_monitored: bool,
) -> Result<ClientHost, StoreError> {
    let ip = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "client host {:?}: address {:?} is not an IP address",
                    String::from_utf8_lossy(&caller_name),
                    String::from_utf8_lossy(bytes)
                ))
            })
    };
    Ok(ClientHost {
        address: ip(address)?,
        local_address: ip(local_address)?,
        nsm_state: monitored.then_some(nsm_state as u32),
        statd_monitored,
        caller_name,
    })
}

/// The next NSM state number after `current` (statd: odd while up, 2 more at every start). The
/// stores compute the same in SQL.
pub fn next_nsm_state(current: u32) -> u32 {
    (current | 1).wrapping_add(2)
}

pub(crate) fn kind_to_db(kind: LockKind) -> i16 {
    match kind {
        LockKind::Shared => 0,
        LockKind::Exclusive => 1,
    }
}

/// Builds a record from a row's columns, checking what the schema cannot.
pub(crate) fn record_from_row(
    file: Vec<u8>,
    client: Vec<u8>,
    owner: Vec<u8>,
    kind: i64,
    offset: i64,
    length: i64,
) -> Result<LockRecord, StoreError> {
    record_of(
        FileId::new(file),
        ClientId::new(client),
        OwnerId::new(owner),
        kind,
        offset,
        length,
    )
}

/// [`record_from_row`] with the ids already built (the SQLite loader shares one id per value).
pub(crate) fn record_of(
    file: FileId,
    client: ClientId,
    owner: OwnerId,
    kind: i64,
    offset: i64,
    length: i64,
) -> Result<LockRecord, StoreError> {
    let kind = match kind {
        0 => LockKind::Shared,
        1 => LockKind::Exclusive,
        k => {
            return Err(StoreError::Corrupt(format!(
                "lock record (file {file}, client {client}, owner {owner}, offset {}) has kind {k}, \
                 not 0 or 1",
                from_db(offset)
            )));
        }
    };
    Ok(LockRecord {
        file,
        client,
        owner,
        kind,
        range: Range::new(from_db(offset), from_db(length)),
    })
}

/// The fencing decision every write transaction makes once it has read the stored epoch.
pub(crate) fn check_fence(mine: u64, current: u64) -> Result<(), StoreError> {
    if mine == current {
        Ok(())
    } else {
        Err(StoreError::Fenced { mine, current })
    }
}

/// Embedded migrations. Files follow sqlx-cli's `<VERSION>_<DESCRIPTION>.sql` naming and checksums,
/// so `sqlx migrate info` agrees; a test checks this list matches the folders.
pub(crate) mod migrations {
    use std::borrow::Cow;

    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};

    pub(crate) type Embedded = &'static [(i64, &'static str, &'static str)];

    pub(crate) const SQLITE: Embedded = &[
        (
            1,
            "lock records",
            include_str!("../../migrations/sqlite/0001_lock_records.sql"),
        ),
        (
            2,
            "restart state",
            include_str!("../../migrations/sqlite/0002_restart_state.sql"),
        ),
    ];

    pub(crate) const POSTGRES: Embedded = &[
        (
            1,
            "lock records",
            include_str!("../../migrations/postgres/0001_lock_records.sql"),
        ),
        (
            2,
            "restart state",
            include_str!("../../migrations/postgres/0002_restart_state.sql"),
        ),
        (
            3,
            "hashed keys",
            include_str!("../../migrations/postgres/0003_hashed_keys.sql"),
        ),
        (
            4,
            "leader lease",
            include_str!("../../migrations/postgres/0004_leader_lease.sql"),
        ),
    ];

    pub(crate) fn migrator(embedded: Embedded) -> Migrator {
        Migrator::with_migrations(
            embedded
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        sql.into_sql_str(),
                        false,
                    )
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_round_trips_through_the_signed_column() {
        for v in [0, 1, i64::MAX as u64, 1 << 63, u64::MAX - 1, u64::MAX] {
            assert_eq!(from_db(to_db(v)), v);
        }
        assert_eq!(to_db(u64::MAX), -1);
    }

    #[test]
    fn a_row_with_an_unknown_kind_is_corrupt() {
        let row = |kind| record_from_row(b"f".to_vec(), b"c".to_vec(), b"o".to_vec(), kind, 0, 0);
        assert_eq!(row(0).unwrap().kind, LockKind::Shared);
        assert_eq!(row(1).unwrap().kind, LockKind::Exclusive);
        assert!(matches!(row(2), Err(StoreError::Corrupt(m)) if m.contains("kind 2")));
        assert!(matches!(row(-1), Err(StoreError::Corrupt(_))));
    }

    /// Adding a migration file without embedding it (or the reverse) would ship a binary whose schema
    /// differs from the repository's.
    #[test]
    fn embedded_migrations_match_the_migration_folders() {
        for (dir, embedded) in [
            ("sqlite", migrations::SQLITE),
            ("postgres", migrations::POSTGRES),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<(i64, String)> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let name = e.file_name().into_string().unwrap();
                    let version = name.split('_').next().unwrap().parse().unwrap();
                    (version, std::fs::read_to_string(e.path()).unwrap())
                })
                .collect();
            files.sort();
            let embedded: Vec<(i64, String)> = embedded
                .iter()
                .map(|&(v, _, sql)| (v, sql.to_owned()))
                .collect();
            assert_eq!(
                embedded, files,
                "migrations/{dir} and the embedded list differ"
            );
        }
    }

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
