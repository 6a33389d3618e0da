//! The start-up load of [`super::SqliteStore::begin_epoch`]: every row of `lock_record`, read with
//! SQLite's C API on the connection sqlx holds, inside `begin_epoch`'s transaction.
//!
//! sqlx-sqlite steps a statement on its worker thread and hands each row over on its own (a value
//! copy per column, a channel send and a task wake-up per row): 4.6 s for 1,000,000 records, most
//! of the time to serve after a restart. Here the task borrows the connection from the worker
//! ([`LockedSqliteHandle`]) and steps the statement itself, decoding each row straight into a
//! [`LockRecord`] with the same rules as the sqlx path ([`record_from_row`]).
//!
//! The `unsafe` is in `sqlite_ffi`.

use std::ffi::CStr;

use brlock_core::LockRecord;
use sqlx::sqlite::LockedSqliteHandle;

use super::sqlite_ffi::Db;
use super::{StoreError, record_from_row};

/// The columns in the order `record_from_row` takes them (the `select!` list), named for errors.
const COLUMNS: [&str; 6] = [
    "a lock record's column file",
    "a lock record's column client",
    "a lock record's column owner",
    "a lock record's column kind",
    "a lock record's column range_offset",
    "a lock record's column range_length",
];
const SELECT_ALL: &CStr = match CStr::from_bytes_with_nul(concat!(select!(""), "\0").as_bytes()) {
    Ok(sql) => sql,
    Err(_) => panic!("the SELECT has a NUL inside"),
};

/// Every record in `lock_record`, in the table's (primary key) order. Runs SQLite on the calling
/// thread; `handle` keeps sqlx's worker off the connection meanwhile. An error leaves the
/// transaction open for the caller to roll back.
pub(super) fn all_records(
    handle: &mut LockedSqliteHandle<'_>,
) -> Result<Vec<LockRecord>, StoreError> {
    let db = Db::new(handle, "reading lock records");
    let mut statement = db.prepare(SELECT_ALL)?;
    let mut records = Vec::new();
    while statement.step()? {
        records.push(record_from_row(
            statement.bytes(0, COLUMNS[0])?,
            statement.bytes(1, COLUMNS[1])?,
            statement.bytes(2, COLUMNS[2])?,
            statement.int64(3, COLUMNS[3])?,
            statement.int64(4, COLUMNS[4])?,
            statement.int64(5, COLUMNS[5])?,
        )?);
    }
    Ok(records)
}
