//! `--store postgres://…`: a PostgreSQL database that several instances may share (one serving at a
//! time: the one with the newest epoch; see the fencing notes in `store/mod.rs`).
//!
//! Transactions run at READ COMMITTED. `begin_epoch`'s `UPDATE` of the server row waits for any
//! write transaction holding that row `FOR SHARE`, and its `SELECT` then sees what they committed.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use brlock_core::{LockRecord, PersistOp, ShareRecord};
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Row};

use super::rows::{
    from_db, host_from_row, kind_to_db, mode_to_db, record_from_row, share_from_row, to_db,
};
use super::{HostWrite, Kept, RecordFilter, StoreError, Write, check_fence, migrations};

/// Group commit keeps one write transaction in flight; the others serve `records` and `epoch`.
const MAX_CONNECTIONS: u32 = 4;
/// The server ends a session of ours that sits inside a transaction without sending anything for
/// this long. brlockd never pauses inside one (each is a few statements sent back to back), but a
/// leader that is paused (SIGSTOP, a VM freeze) or cut off mid-transaction keeps its `FOR SHARE`
/// lock on the `server` row, and a standby taking over could not begin its epoch until the session
/// died — by TCP keepalive, hours later. With this, at most a second after the takeover.
const IDLE_IN_TRANSACTION_TIMEOUT_MS: &str = "1000";
/// How long a request waits for a connection before the store is Unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong connecting to the server `options` names, said with the server and the
/// setting to change.
fn connect_error(options: &PgConnectOptions, e: sqlx::Error) -> StoreError {
    let server = format!("{}:{}", options.get_host(), options.get_port());
    match &e {
        sqlx::Error::Io(io) => StoreError::Unavailable(format!(
            "cannot connect to PostgreSQL at {server}: {io} (is it running there? else change --store)"
        )),
        // 3D000 invalid_catalog_name: the database does not exist.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000") => {
            StoreError::Unavailable(format!(
                "PostgreSQL at {server} has no database {:?}: create it (createdb -h {} -p {} {0}) \
                 or change --store",
                options.get_database().unwrap_or_default(),
                options.get_host(),
                options.get_port(),
            ))
        }
        _ => StoreError::from(e),
    }
}

pub struct PostgresStore {
    pool: PgPool,
    /// For the lease's own connection (`store/lease.rs`), which never waits behind the pool.
    options: Box<PgConnectOptions>,
}

impl PostgresStore {
    pub(super) async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl {
                url: url.to_owned(),
                reason: e.to_string(),
            })?
            // The pid tells the sessions of instances on one host apart (pg_stat_activity).
            .application_name(&format!("brlockd {}", std::process::id()))
            // The server's default, made explicit: `apply` promises a durable commit.
            .options([
                ("synchronous_commit", "on"),
                (
                    "idle_in_transaction_session_timeout",
                    IDLE_IN_TRANSACTION_TIMEOUT_MS,
                ),
            ]);
        // One connection of its own first: a server that is down or a database that is missing is
        // reported at once with its cause, where the pool would retry until ACQUIRE_TIMEOUT and
        // then say only that it timed out.
        let probe = options
            .connect()
            .await
            .map_err(|e| connect_error(&options, e))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await?;
        // sqlx takes an advisory lock while migrating, so instances starting together are safe.
        migrations::migrator(migrations::POSTGRES)
            .run(&pool)
            .await
            .map_err(sqlx::Error::from)?;
        Ok(Self {
            pool,
            options: Box::new(options),
        })
    }

    /// The leadership lease on this database, on a connection of its own.
    pub fn lease(&self) -> super::lease::PgLease {
        super::lease::PgLease::new((*self.options).clone())
    }

    pub(super) async fn begin_epoch(&self) -> Result<(u64, Vec<LockRecord>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let epoch: Option<i64> = sqlx::query_scalar(
            "UPDATE server SET epoch = epoch + 1, nsm_state = ((nsm_state | 1) + 2) % 4294967296 \
                 WHERE id = 1 RETURNING epoch",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let epoch = epoch.ok_or_else(|| StoreError::Corrupt("the server row is missing".into()))?;
        let mut records = Vec::new();
        {
            let mut rows = sqlx::query(select!("")).fetch(&mut *tx);
            while let Some(row) = rows.try_next().await? {
                records.push(record(&row)?);
            }
        }
        tx.commit().await?;
        Ok((from_db(epoch), records))
    }

    pub(super) async fn apply(
        &self,
        epoch: u64,
        batch: &[Write],
        hosts: &[HostWrite],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // FOR SHARE: a concurrent epoch bump waits until this transaction is over.
        let current: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM server WHERE id = 1 FOR SHARE")
                .fetch_optional(&mut *tx)
                .await?;
        let current =
            current.ok_or_else(|| StoreError::Corrupt("the server row is missing".into()))?;
        // Dropping `tx` on an error rolls it back.
        check_fence(epoch, from_db(current))?;
        // Shares and hosts are rare next to locks: a statement each, in order.
        for write in batch {
            match &write.op {
                PersistOp::PutShare(r) => {
                    sqlx::query(
                        "INSERT INTO share_record (file, client, owner, access, deny, epoch, seq) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (share_key) DO UPDATE SET access = excluded.access, \
                         deny = excluded.deny, epoch = excluded.epoch, seq = excluded.seq",
                    )
                    .bind(r.file.as_bytes())
                    .bind(r.client.as_bytes())
                    .bind(r.owner.as_bytes())
                    .bind(mode_to_db(r.access))
                    .bind(mode_to_db(r.deny))
                    .bind(to_db(epoch))
                    .bind(to_db(write.seq))
                    .execute(&mut *tx)
                    .await?;
                }
                PersistOp::DeleteShare(r) => {
                    delete_share(&mut tx, r).await?;
                }
                PersistOp::Put(_) | PersistOp::Delete(_) => {}
            }
        }
        for write in hosts {
            match write {
                HostWrite::Put(h) => {
                    sqlx::query(
                        "INSERT INTO client_host (caller_name, address, local_address, monitored, \
                         nsm_state, statd_monitored) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (caller_name) DO UPDATE SET address = excluded.address, \
                         local_address = excluded.local_address, monitored = excluded.monitored, \
                         nsm_state = excluded.nsm_state, statd_monitored = excluded.statd_monitored",
                    )
                    .bind(&h.caller_name)
                    .bind(h.address.to_string().into_bytes())
                    .bind(h.local_address.to_string().into_bytes())
                    .bind(h.nsm_state.is_some())
                    .bind(i64::from(h.nsm_state.unwrap_or(0)))
                    .bind(h.statd_monitored)
                    .execute(&mut *tx)
                    .await?;
                }
                HostWrite::Delete(name) => {
                    sqlx::query("DELETE FROM client_host WHERE caller_name = $1")
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        // One transaction's effect is, per key, that of its last write: two statements carry it
        // instead of a round trip per write.
        let (puts, deletes) = net_effect(batch);
        if !deletes.is_empty() {
            let mut cols = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for r in deletes {
                cols.0.push(r.file.as_bytes());
                cols.1.push(r.client.as_bytes());
                cols.2.push(r.owner.as_bytes());
                cols.3.push(to_db(r.range.offset));
            }
            sqlx::query(
                "DELETE FROM lock_record USING \
                 UNNEST($1::bytea[], $2::bytea[], $3::bytea[], $4::int8[]) \
                 AS d(file, client, owner, range_offset) \
                 WHERE lock_record.record_key = sha256(int4send(length(d.file)) || d.file \
                 || int4send(length(d.client)) || d.client || int4send(length(d.owner)) \
                 || d.owner || int8send(d.range_offset))",
            )
            .bind(cols.0)
            .bind(cols.1)
            .bind(cols.2)
            .bind(cols.3)
            .execute(&mut *tx)
            .await?;
        }
        if !puts.is_empty() {
            let mut cols = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for (seq, r) in puts {
                cols.0.push(r.file.as_bytes());
                cols.1.push(r.client.as_bytes());
                cols.2.push(r.owner.as_bytes());
                cols.3.push(to_db(r.range.offset));
                cols.4.push(to_db(r.range.length));
                cols.5.push(kind_to_db(r.kind));
                cols.6.push(to_db(seq));
            }
            sqlx::query(
                "INSERT INTO lock_record \
                 (file, client, owner, range_offset, range_length, kind, epoch, seq) \
                 SELECT file, client, owner, range_offset, range_length, kind, $8, seq FROM \
                 UNNEST($1::bytea[], $2::bytea[], $3::bytea[], $4::int8[], $5::int8[], \
                 $6::int2[], $7::int8[]) \
                 AS p(file, client, owner, range_offset, range_length, kind, seq) \
                 ON CONFLICT (record_key) DO UPDATE SET \
                 range_length = excluded.range_length, kind = excluded.kind, \
                 epoch = excluded.epoch, seq = excluded.seq",
            )
            .bind(cols.0)
            .bind(cols.1)
            .bind(cols.2)
            .bind(cols.3)
            .bind(cols.4)
            .bind(cols.5)
            .bind(cols.6)
            .bind(to_db(epoch))
            .execute(&mut *tx)
            .await?;
        }
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
                sqlx::query(select!("WHERE file = $1")).bind(file.as_bytes())
            }
            RecordFilter::Client(client) => {
                sqlx::query(select!("WHERE client = $1")).bind(client.as_bytes())
            }
            RecordFilter::Owner(client, owner) => sqlx::query(select!(
                "WHERE owner_key = sha256(int4send(length($1)) || $1 || $2) \
                     AND client = $1 AND owner = $2"
            ))
            .bind(client.as_bytes())
            .bind(owner.as_bytes()),
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
                i64::from(row.try_get::<i16, _>(3)?),
                i64::from(row.try_get::<i16, _>(4)?),
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
                row.try_get(3)?,
                row.try_get(4)?,
                row.try_get(5)?,
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

async fn delete_share(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    r: &ShareRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM share_record WHERE share_key = sha256(int4send(length($1)) || $1 \
         || int4send(length($2)) || $2 || $3)",
    )
    .bind(r.file.as_bytes())
    .bind(r.client.as_bytes())
    .bind(r.owner.as_bytes())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A record's store key: (file, client, owner, offset).
type Key<'a> = (&'a [u8], &'a [u8], &'a [u8], u64);

fn key(r: &LockRecord) -> Key<'_> {
    (
        r.file.as_bytes(),
        r.client.as_bytes(),
        r.owner.as_bytes(),
        r.range.offset,
    )
}

/// What `batch` leaves behind, key by key: the records its last write per key puts (with that
/// write's sequence number) and the records whose last write deletes them. Applying these instead of
/// the writes in order gives the same rows, since keys do not interact.
fn net_effect(batch: &[Write]) -> (Vec<(u64, &LockRecord)>, Vec<&LockRecord>) {
    let mut last: HashMap<Key<'_>, &Write> = HashMap::with_capacity(batch.len());
    for write in batch {
        if let PersistOp::Put(r) | PersistOp::Delete(r) = &write.op {
            last.insert(key(r), write);
        }
    }
    let (mut puts, mut deletes) = (Vec::new(), Vec::new());
    for write in last.into_values() {
        match &write.op {
            PersistOp::Put(r) => puts.push((write.seq, r)),
            PersistOp::Delete(r) => deletes.push(r),
            PersistOp::PutShare(_) | PersistOp::DeleteShare(_) => {}
        }
    }
    // A fixed row order: two concurrent transactions touching the same keys wait, never deadlock.
    let key = |r: &LockRecord| {
        (
            r.file.clone(),
            r.client.clone(),
            r.owner.clone(),
            r.range.offset,
        )
    };
    puts.sort_unstable_by_key(|(_, r)| key(r));
    deletes.sort_unstable_by_key(|r| key(r));
    (puts, deletes)
}

fn record(row: &PgRow) -> Result<LockRecord, StoreError> {
    record_from_row(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        i64::from(row.try_get::<i16, _>(3)?),
        row.try_get(4)?,
        row.try_get(5)?,
    )
}
