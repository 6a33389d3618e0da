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

use brlock_core::{LockRecord, PersistOp};
use sqlx::sqlite::LockedSqliteHandle;

use super::sqlite_ffi::{Db, Statement};
use super::{StoreError, Write, check_fence, from_db, kind_to_db, to_db};

const SELECT_EPOCH: &CStr = c"SELECT epoch FROM server WHERE id = 1";
const PUT: &CStr = c"INSERT INTO lock_record \
    (file, client, owner, range_offset, range_length, kind, epoch, seq) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
    ON CONFLICT (file, client, owner, range_offset) DO UPDATE SET \
    range_length = excluded.range_length, kind = excluded.kind, \
    epoch = excluded.epoch, seq = excluded.seq";
const DELETE: &CStr = c"DELETE FROM lock_record \
    WHERE file = ?1 AND client = ?2 AND owner = ?3 AND range_offset = ?4";

/// Checks that the store is at `epoch` (else [`StoreError::Fenced`]) and applies `batch` in order.
/// Runs SQLite on the calling thread; `handle` keeps sqlx's worker off the connection meanwhile. An
/// error leaves the transaction open for the caller to roll back.
pub(super) fn apply(
    handle: &mut LockedSqliteHandle<'_>,
    epoch: u64,
    batch: &[Write],
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
    if batch.is_empty() {
        return Ok(());
    }
    let mut put = db.prepare(PUT)?;
    let mut delete = db.prepare(DELETE)?;
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
        }
    }
    Ok(())
}

/// Binds parameters 1–4, the store key (file, client, owner, offset).
fn bind_key(statement: &mut Statement<'_>, r: &LockRecord) -> Result<(), StoreError> {
    statement.bind_blob(1, r.file.as_bytes())?;
    statement.bind_blob(2, r.client.as_bytes())?;
    statement.bind_blob(3, r.owner.as_bytes())?;
    statement.bind_int64(4, to_db(r.range.offset))
}
