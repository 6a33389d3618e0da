//! The batch write of [`super::SqliteStore::apply`]: the fencing check and every write of the
//! batch, with SQLite's C API on the connection sqlx holds, inside `apply`'s transaction.
//!
//! Through sqlx-sqlite each statement is a round trip to its worker thread (a command sent over a
//! channel, a task wake-up, the statement cache looked up, the arguments copied): tens of µs per
//! written row, most of brlockd's CPU under durable load (tests/BENCH.md). Here the task borrows the connection
//! ([`sqlite_ffi::Db`]), prepares the two write statements once per batch and only re-binds and
//! steps them per row. The SQL is the same as the sqlx path's was; the `unsafe` is in
//! `sqlite_ffi`.

use std::ffi::CStr;

use brlock_core::{LockRecord, PersistOp, ShareRecord};
use sqlx::sqlite::LockedSqliteHandle;

use super::rows::{from_db, kind_to_db, mode_to_db, to_db};
use super::sqlite_ffi::{Db, Statement};
use super::{HostWrite, StoreError, Write, check_fence};

const SELECT_EPOCH: &CStr = c"SELECT epoch FROM server WHERE id = 1";
const PUT: &CStr = c"INSERT INTO lock_record \
    (file, client, owner, range_offset, range_length, kind, epoch, seq) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
    ON CONFLICT (file, client, owner, range_offset) DO UPDATE SET \
    range_length = excluded.range_length, kind = excluded.kind, \
    epoch = excluded.epoch, seq = excluded.seq";
const DELETE: &CStr = c"DELETE FROM lock_record \
    WHERE file = ?1 AND client = ?2 AND owner = ?3 AND range_offset = ?4";
const PUT_SHARE: &CStr =
    c"INSERT INTO share_record (file, client, owner, access, deny, epoch, seq) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
    ON CONFLICT (file, client, owner) DO UPDATE SET \
    access = excluded.access, deny = excluded.deny, epoch = excluded.epoch, seq = excluded.seq";
const DELETE_SHARE: &CStr =
    c"DELETE FROM share_record WHERE file = ?1 AND client = ?2 AND owner = ?3";
const PUT_HOST: &CStr = c"INSERT INTO client_host \
    (caller_name, address, local_address, monitored, nsm_state, statd_monitored) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
    ON CONFLICT (caller_name) DO UPDATE SET address = excluded.address, \
    local_address = excluded.local_address, monitored = excluded.monitored, \
    nsm_state = excluded.nsm_state, statd_monitored = excluded.statd_monitored";
const DELETE_HOST: &CStr = c"DELETE FROM client_host WHERE caller_name = ?1";

/// Checks that the store is at `epoch` (else [`StoreError::Fenced`]) and applies `batch` and then
/// `hosts`, each in order.
/// Runs SQLite on the calling thread; `handle` keeps sqlx's worker off the connection meanwhile. An
/// error leaves the transaction open for the caller to roll back.
pub(super) fn apply(
    handle: &mut LockedSqliteHandle<'_>,
    epoch: u64,
    batch: &[Write],
    hosts: &[HostWrite],
) -> Result<(), StoreError> {
    let db = Db::new(handle, "writing lock records");
    let current = {
        let mut select = db.prepare(SELECT_EPOCH)?;
        if !select.step()? {
            return Err(StoreError::Corrupt("the server row is missing".into()));
        }
        select.int64(0, "the server row's epoch")?
    };
    check_fence(epoch, from_db(current))?;
    apply_hosts(&db, hosts)?;
    if batch.is_empty() {
        return Ok(());
    }
    let mut put = db.prepare(PUT)?;
    let mut delete = db.prepare(DELETE)?;
    // Shares are rare next to locks: their statements are prepared when a batch has one.
    let (mut put_share, mut delete_share) = (None, None);
    for write in batch {
        match &write.op {
            PersistOp::Put(r) => {
                bind_key(&mut put, r)?;
                put.bind_int64(5, to_db(r.range.length))?;
                put.bind_int64(6, kind_to_db(r.kind).into())?;
                put.bind_int64(7, to_db(epoch))?;
                put.bind_int64(8, to_db(write.seq))?;
                put.step()?;
                put.reset();
            }
            PersistOp::Delete(r) => {
                bind_key(&mut delete, r)?;
                delete.step()?;
                delete.reset();
            }
            PersistOp::PutShare(r) => {
                let put = match &mut put_share {
                    Some(s) => s,
                    None => put_share.insert(db.prepare(PUT_SHARE)?),
                };
                bind_share_key(put, r)?;
                put.bind_int64(4, mode_to_db(r.access).into())?;
                put.bind_int64(5, mode_to_db(r.deny).into())?;
                put.bind_int64(6, to_db(epoch))?;
                put.bind_int64(7, to_db(write.seq))?;
                put.step()?;
                put.reset();
            }
            PersistOp::DeleteShare(r) => {
                let delete = match &mut delete_share {
                    Some(s) => s,
                    None => delete_share.insert(db.prepare(DELETE_SHARE)?),
                };
                bind_share_key(delete, r)?;
                delete.step()?;
                delete.reset();
            }
        }
    }
    Ok(())
}

fn apply_hosts(db: &Db<'_>, hosts: &[HostWrite]) -> Result<(), StoreError> {
    if hosts.is_empty() {
        return Ok(());
    }
    let mut put = db.prepare(PUT_HOST)?;
    let mut delete = db.prepare(DELETE_HOST)?;
    for write in hosts {
        match write {
            HostWrite::Put(h) => {
                put.bind_blob(1, &h.caller_name)?;
                put.bind_blob(2, h.address.to_string().as_bytes())?;
                put.bind_blob(3, h.local_address.to_string().as_bytes())?;
                put.bind_int64(4, i64::from(h.nsm_state.is_some()))?;
                put.bind_int64(5, i64::from(h.nsm_state.unwrap_or(0)))?;
                put.bind_int64(6, i64::from(h.statd_monitored))?;
                put.step()?;
                put.reset();
            }
            HostWrite::Delete(name) => {
                delete.bind_blob(1, name)?;
                delete.step()?;
                delete.reset();
            }
        }
    }
    Ok(())
}

/// Binds parameters 1–3, a share's store key (file, client, owner).
fn bind_share_key(statement: &mut Statement<'_>, r: &ShareRecord) -> Result<(), StoreError> {
    statement.bind_blob(1, r.file.as_bytes())?;
    statement.bind_blob(2, r.client.as_bytes())?;
    statement.bind_blob(3, r.owner.as_bytes())
}

/// Binds parameters 1–4, the store key (file, client, owner, offset).
fn bind_key(statement: &mut Statement<'_>, r: &LockRecord) -> Result<(), StoreError> {
    statement.bind_blob(1, r.file.as_bytes())?;
    statement.bind_blob(2, r.client.as_bytes())?;
    statement.bind_blob(3, r.owner.as_bytes())?;
    statement.bind_int64(4, to_db(r.range.offset))
}
