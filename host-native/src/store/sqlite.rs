//! `--store sqlite://PATH`: the embedded store. One connection, WAL journal, `synchronous = FULL`.
//!
//! One connection is enough: SQLite runs one write transaction at a time anyway, and group commit
//! makes each of them carry many requests. Write transactions are `BEGIN IMMEDIATE` so that another
//! process on the same file (a second instance) waits for the write lock at the start instead of
//! failing half-way.
//!
//! `begin_epoch` reads its rows with SQLite's C API on the same connection, in the same transaction
//! (`sqlite_load`): start-up with a million records would otherwise wait seconds on sqlx's
//! row-by-row hand-over. `apply` likewise checks the fence and writes its batch with the C API in
//! its transaction (`sqlite_write`), with statements prepared once per batch: sqlx's per-statement
//! path cost tens of µs per written row.

use std::str::FromStr;
use std::time::Duration;

use brlock_core::LockRecord;
use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::rows::{from_db, host_from_row, record_from_row, share_from_row};
use super::{
    HostWrite, Kept, RecordFilter, StoreError, Write, migrations, sqlite_load, sqlite_write,
};

/// How long a transaction waits for another process's write lock before the store is Unavailable.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub(super) async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            // `records` gets rows from SQLite's worker thread in chunks this big. (Start-up does not:
            // `begin_epoch` reads its rows itself, see `sqlite_load`.)
            .row_buffer_size(4096);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        migrations::migrator(migrations::SQLITE)
            .run(&pool)
            .await
            .map_err(sqlx::Error::from)?;
        Ok(Self { pool })
    }

    pub(super) async fn begin_epoch(&self) -> Result<(u64, Vec<LockRecord>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let epoch: Option<i64> = sqlx::query_scalar(
            "UPDATE server SET epoch = epoch + 1, nsm_state = ((nsm_state | 1) + 2) % 4294967296 \
                 WHERE id = 1 RETURNING epoch",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let epoch = epoch.ok_or_else(|| StoreError::Corrupt("the server row is missing".into()))?;
        let records = {
            // Borrow the connection from sqlx's worker thread and read the rows on this one: see
            // `sqlite_load`. The handle is released before the commit below.
            let mut handle = tx.lock_handle().await?;
            off_the_runtime(|| sqlite_load::all_records(&mut handle))?
        };
        // Dropping `tx` on an error above rolls the epoch bump back.
        tx.commit().await?;
        Ok((from_db(epoch), records))
    }

    pub(super) async fn apply(
        &self,
        epoch: u64,
        batch: &[Write],
        hosts: &[HostWrite],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        {
            // The fencing check and the writes run on this thread with the C API, on the borrowed
            // connection: see `sqlite_write`. The handle is released before the commit below.
            let mut handle = tx.lock_handle().await?;
            off_the_runtime(|| sqlite_write::apply(&mut handle, epoch, batch, hosts))?;
        }
        // Dropping `tx` on an error above rolls it back.
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn records(
        &self,
        filter: &RecordFilter,
    ) -> Result<Vec<LockRecord>, StoreError> {
        let query = match filter {
            RecordFilter::All => sqlx::query(select!("")),
            RecordFilter::File(file) => {
                sqlx::query(select!("WHERE file = ?")).bind(file.as_bytes())
            }
            RecordFilter::Client(client) => {
                sqlx::query(select!("WHERE client = ?")).bind(client.as_bytes())
            }
            RecordFilter::Owner(client, owner) => {
                sqlx::query(select!("WHERE client = ? AND owner = ?"))
                    .bind(client.as_bytes())
                    .bind(owner.as_bytes())
            }
        };
        let mut records = Vec::new();
        let mut rows = query.fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            records.push(record(&row)?);
        }
        Ok(records)
    }

    pub(super) async fn kept(&self) -> Result<Kept, StoreError> {
        let nsm_state: Option<i64> =
            sqlx::query_scalar("SELECT nsm_state FROM server WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        let nsm_state =
            nsm_state.ok_or_else(|| StoreError::Corrupt("the server row is missing".into()))?;
        let mut shares = Vec::new();
        let mut rows = sqlx::query("SELECT file, client, owner, access, deny FROM share_record")
            .fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            shares.push(share_from_row(
                row.try_get(0)?,
                row.try_get(1)?,
                row.try_get(2)?,
                row.try_get(3)?,
                row.try_get(4)?,
            )?);
        }
        drop(rows);
        let mut hosts = Vec::new();
        let mut rows = sqlx::query(
            "SELECT caller_name, address, local_address, monitored, nsm_state, statd_monitored \
             FROM client_host",
        )
        .fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            let address: Vec<u8> = row.try_get(1)?;
            let local: Vec<u8> = row.try_get(2)?;
            hosts.push(host_from_row(
                row.try_get(0)?,
                &address,
                &local,
                row.try_get::<i64, _>(3)? != 0,
                row.try_get(4)?,
                row.try_get::<i64, _>(5)? != 0,
            )?);
        }
        Ok(Kept {
            nsm_state: nsm_state as u32,
            shares,
            hosts,
        })
    }

    pub(super) async fn epoch(&self) -> Result<u64, StoreError> {
        let epoch: Option<i64> = sqlx::query_scalar("SELECT epoch FROM server WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        epoch
            .map(from_db)
            .ok_or_else(|| StoreError::Corrupt("the server row is missing".into()))
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// Runs `f`, which blocks on SQLite, so that a multi-threaded runtime moves its other tasks to
/// other threads meanwhile. (A current-thread runtime, as in tests and benches, simply waits.)
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn record(row: &SqliteRow) -> Result<LockRecord, StoreError> {
    record_from_row(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
    )
}
