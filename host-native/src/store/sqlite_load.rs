//! The start-up load of [`super::SqliteStore::begin_epoch`]: every row of `lock_record`, read with
//! SQLite's C API on the connection sqlx holds, inside `begin_epoch`'s transaction.
//!
//! sqlx-sqlite steps a statement on its worker thread and hands each row over on its own (a value
//! copy per column, a channel send and a task wake-up per row): 4.6 s for 1,000,000 records, most
//! of the time to serve after a restart. Here the task borrows the connection from the worker
//! ([`LockedSqliteHandle`]) and steps the statement itself, decoding each row straight into a
//! [`LockRecord`] with the same rules as the sqlx path ([`record_from_row`]).
//!
//! This is the crate's only `unsafe` code; every block says why it is sound.

use std::ffi::{CStr, c_int};
use std::ptr::{self, NonNull};

use brlock_core::LockRecord;
use libsqlite3_sys as ffi;
use sqlx::sqlite::LockedSqliteHandle;

use super::{StoreError, record_from_row};

/// The columns in the order `record_from_row` takes them (the `select!` list), by name for errors.
const COLUMNS: [&str; 6] = [
    "file",
    "client",
    "owner",
    "kind",
    "range_offset",
    "range_length",
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
    let db = handle.as_raw_handle();
    let statement = Statement::prepare(db, SELECT_ALL)?;
    let mut records = Vec::new();
    loop {
        // SAFETY: `statement` is a live statement of `db`, and the borrowed `handle` guarantees
        // that no other thread calls into `db` (or its statements) until this function returns.
        match unsafe { ffi::sqlite3_step(statement.0.as_ptr()) } {
            ffi::SQLITE_ROW => records.push(record_from_row(
                statement.bytes(0)?,
                statement.bytes(1)?,
                statement.bytes(2)?,
                statement.int64(3)?,
                statement.int64(4)?,
                statement.int64(5)?,
            )?),
            ffi::SQLITE_DONE => return Ok(records),
            code => return Err(error(db, code)),
        }
    }
}

/// A prepared statement, finalized when dropped (on every return path, errors included).
struct Statement(NonNull<ffi::sqlite3_stmt>);

impl Statement {
    fn prepare(db: NonNull<ffi::sqlite3>, sql: &CStr) -> Result<Statement, StoreError> {
        let mut stmt = ptr::null_mut();
        // SAFETY: `db` is an open connection no other thread is using (see `all_records`); `sql`
        // is NUL-terminated (length -1: read up to the NUL); `stmt` is a valid out-pointer.
        let code = unsafe {
            ffi::sqlite3_prepare_v2(db.as_ptr(), sql.as_ptr(), -1, &mut stmt, ptr::null_mut())
        };
        match NonNull::new(stmt) {
            Some(stmt) if code == ffi::SQLITE_OK => Ok(Statement(stmt)),
            // On an error SQLite leaves `stmt` null; a null statement with SQLITE_OK would mean
            // the SQL was empty, which `SELECT_ALL` is not.
            _ => Err(error(db, code)),
        }
    }

    /// Column `i` of the current row as bytes, decoded as sqlx's `Vec<u8>` is: BLOB or TEXT gives
    /// its bytes, NULL gives none (the schema forbids NULL), anything else is corrupt.
    fn bytes(&self, i: c_int) -> Result<Vec<u8>, StoreError> {
        let stmt = self.0.as_ptr();
        // SAFETY: `stmt` is live and positioned on a row (`sqlite3_step` returned SQLITE_ROW), and
        // `i` is one of its six columns. `sqlite3_column_blob` is called before
        // `sqlite3_column_bytes`, as SQLite's docs require, and the pointer/length pair it returns
        // stays valid until the next step, reset or finalize — the bytes are copied out before any.
        unsafe {
            match ffi::sqlite3_column_type(stmt, i) {
                ffi::SQLITE_BLOB | ffi::SQLITE_TEXT => {
                    let data = ffi::sqlite3_column_blob(stmt, i).cast::<u8>();
                    let len = usize::try_from(ffi::sqlite3_column_bytes(stmt, i)).unwrap_or(0);
                    if data.is_null() || len == 0 {
                        Ok(Vec::new())
                    } else {
                        Ok(std::slice::from_raw_parts(data, len).to_vec())
                    }
                }
                ffi::SQLITE_NULL => Ok(Vec::new()),
                other => Err(mismatch(i, "BLOB", other)),
            }
        }
    }

    /// Column `i` of the current row as an `i64`, decoded as sqlx's `i64` is: INTEGER gives its
    /// value, NULL gives 0 (the schema forbids NULL), anything else is corrupt.
    fn int64(&self, i: c_int) -> Result<i64, StoreError> {
        let stmt = self.0.as_ptr();
        // SAFETY: as in `bytes`: a live statement on a row, `i` in range.
        unsafe {
            match ffi::sqlite3_column_type(stmt, i) {
                ffi::SQLITE_INTEGER => Ok(ffi::sqlite3_column_int64(stmt, i)),
                ffi::SQLITE_NULL => Ok(0),
                other => Err(mismatch(i, "INTEGER", other)),
            }
        }
    }
}

impl Drop for Statement {
    fn drop(&mut self) {
        // SAFETY: the statement was prepared by `prepare` and is finalized exactly once, here,
        // while the borrow of the `LockedSqliteHandle` that `all_records` holds is still alive
        // (the `Statement` is a local of that function). A step error is reported again by
        // finalize; it was already returned, so the code is ignored.
        unsafe {
            ffi::sqlite3_finalize(self.0.as_ptr());
        }
    }
}

/// A failed prepare or step: SQLite's message for `db`'s last error.
fn error(db: NonNull<ffi::sqlite3>, code: c_int) -> StoreError {
    // SAFETY: `db` is open and used by this thread alone (see `all_records`). `sqlite3_errmsg`
    // returns a NUL-terminated string SQLite owns until the next call on `db`; it is copied at
    // once.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) };
    StoreError::Unavailable(format!(
        "reading lock records: {} (SQLite code {code})",
        message.to_string_lossy()
    ))
}

fn mismatch(column: c_int, expected: &str, found: c_int) -> StoreError {
    let found = match found {
        ffi::SQLITE_INTEGER => "INTEGER",
        ffi::SQLITE_FLOAT => "REAL",
        ffi::SQLITE_TEXT => "TEXT",
        ffi::SQLITE_BLOB => "BLOB",
        _ => "unknown",
    };
    let name = usize::try_from(column)
        .ok()
        .and_then(|c| COLUMNS.get(c))
        .unwrap_or(&"?");
    StoreError::Corrupt(format!(
        "a lock record's column {name} holds a value of type {found}, not {expected}"
    ))
}
