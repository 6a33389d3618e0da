//! SQLite's C API on the connection sqlx holds, for the two paths where sqlx-sqlite's per-row and
//! per-statement overhead is most of the cost: the start-up load (`sqlite_load`) and the batch
//! writes of `apply` (`sqlite_write`).
//!
//! Both borrow the connection from sqlx's worker thread with `lock_handle()` inside a sqlx
//! transaction and wrap it in a [`Db`]; the [`Statement`]s prepared from it cannot outlive it. This
//! is the crate's only `unsafe` code; every block says why it is sound.

use std::ffi::{CStr, c_int};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use libsqlite3_sys as ffi;
use sqlx::sqlite::LockedSqliteHandle;

use super::StoreError;

/// The connection of a borrowed [`LockedSqliteHandle`]. While it exists, the handle stays borrowed,
/// so sqlx's worker thread makes no call into the connection; `NonNull` makes it neither `Send` nor
/// `Sync`, so only this thread does.
pub(super) struct Db<'h> {
    raw: NonNull<ffi::sqlite3>,
    /// What the caller is doing, for error messages ("reading lock records").
    what: &'static str,
    _handle: PhantomData<&'h mut ()>,
}

impl<'h> Db<'h> {
    pub(super) fn new(handle: &'h mut LockedSqliteHandle<'_>, what: &'static str) -> Db<'h> {
        Db {
            raw: handle.as_raw_handle(),
            what,
            _handle: PhantomData,
        }
    }

    /// Prepares `sql` (one statement, not empty); finalized when the [`Statement`] drops.
    pub(super) fn prepare(&self, sql: &CStr) -> Result<Statement<'_>, StoreError> {
        let mut stmt = ptr::null_mut();
        // SAFETY: `self.raw` is an open connection no other thread is using (see `Db`); `sql` is
        // NUL-terminated (length -1: read up to the NUL); `stmt` is a valid out-pointer.
        let code = unsafe {
            ffi::sqlite3_prepare_v2(
                self.raw.as_ptr(),
                sql.as_ptr(),
                -1,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        match NonNull::new(stmt) {
            Some(stmt) if code == ffi::SQLITE_OK => Ok(Statement { stmt, db: self }),
            // On an error SQLite leaves `stmt` null; a null statement with SQLITE_OK would mean the
            // SQL was empty, which no caller's is.
            _ => Err(self.error(code)),
        }
    }

    /// A failed prepare, bind or step: SQLite's message for the connection's last error.
    fn error(&self, code: c_int) -> StoreError {
        // SAFETY: the connection is open and used by this thread alone (see `Db`).
        // `sqlite3_errmsg` returns a NUL-terminated string SQLite owns until the next call on the
        // connection; it is copied at once.
        let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.raw.as_ptr())) };
        StoreError::Unavailable(format!(
            "{}: {} (SQLite code {code})",
            self.what,
            message.to_string_lossy()
        ))
    }
}

/// A prepared statement of a [`Db`], finalized when dropped (on every return path, errors
/// included), which the borrow makes happen while the handle is still borrowed.
pub(super) struct Statement<'db> {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: &'db Db<'db>,
}

impl Statement<'_> {
    /// Runs the statement to its next row: `true` on a row, `false` when done.
    pub(super) fn step(&mut self) -> Result<bool, StoreError> {
        // SAFETY: `self.stmt` is a live statement of `self.db`, which only this thread uses.
        match unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) } {
            ffi::SQLITE_ROW => Ok(true),
            ffi::SQLITE_DONE => Ok(false),
            code => Err(self.db.error(code)),
        }
    }

    /// Makes the statement ready to run again (bindings stay as they are). Called after a step
    /// that succeeded, so its return code (the last step's) is `SQLITE_OK`.
    pub(super) fn reset(&mut self) {
        // SAFETY: as in `step`.
        unsafe {
            ffi::sqlite3_reset(self.stmt.as_ptr());
        }
    }

    /// Binds parameter `i` (1-based) to a BLOB holding `value`, as sqlx binds a `&[u8]`: SQLite
    /// copies the bytes, and an empty slice is an empty BLOB (not NULL).
    pub(super) fn bind_blob(&mut self, i: c_int, value: &[u8]) -> Result<(), StoreError> {
        let stmt = self.stmt.as_ptr();
        let code = if value.is_empty() {
            // SAFETY: `stmt` is live and not running (never stepped, or reset since); only this
            // thread uses its connection.
            unsafe { ffi::sqlite3_bind_zeroblob(stmt, i, 0) }
        } else {
            // SAFETY: as above; `value` is valid for `value.len()` bytes for the call, and
            // SQLITE_TRANSIENT makes SQLite copy them before it returns.
            unsafe {
                ffi::sqlite3_bind_blob64(
                    stmt,
                    i,
                    value.as_ptr().cast(),
                    value.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                )
            }
        };
        self.bound(code)
    }

    /// Binds parameter `i` (1-based) to an INTEGER.
    pub(super) fn bind_int64(&mut self, i: c_int, value: i64) -> Result<(), StoreError> {
        // SAFETY: as in `bind_blob`.
        let code = unsafe { ffi::sqlite3_bind_int64(self.stmt.as_ptr(), i, value) };
        self.bound(code)
    }

    fn bound(&self, code: c_int) -> Result<(), StoreError> {
        if code == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.db.error(code))
        }
    }

    /// Column `i` of the current row as bytes, decoded as sqlx's `Vec<u8>` is: BLOB or TEXT gives
    /// its bytes, NULL gives none (the schema forbids NULL), anything else is corrupt. `name` names
    /// the column in that error ("a lock record's column file"). The bytes are lent to `read`,
    /// which cannot keep them: SQLite owns them until the next step.
    pub(super) fn with_bytes<R>(
        &self,
        i: c_int,
        name: &str,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, StoreError> {
        let stmt = self.stmt.as_ptr();
        // SAFETY: `stmt` is live and positioned on a row (`step` returned `true`; callers read
        // columns only then), and `i` is one of its columns. `sqlite3_column_blob` is called
        // before `sqlite3_column_bytes`, as SQLite's docs require, and the pointer/length pair it
        // returns stays valid until the next step, reset or finalize — all of which need
        // `&mut self`, which cannot happen while `read` borrows the slice (the slice does not
        // outlive this call).
        unsafe {
            match ffi::sqlite3_column_type(stmt, i) {
                ffi::SQLITE_BLOB | ffi::SQLITE_TEXT => {
                    let data = ffi::sqlite3_column_blob(stmt, i).cast::<u8>();
                    let len = usize::try_from(ffi::sqlite3_column_bytes(stmt, i)).unwrap_or(0);
                    if data.is_null() || len == 0 {
                        Ok(read(&[]))
                    } else {
                        Ok(read(std::slice::from_raw_parts(data, len)))
                    }
                }
                ffi::SQLITE_NULL => Ok(read(&[])),
                other => Err(mismatch(name, "BLOB", other)),
            }
        }
    }

    /// Column `i` of the current row as an `i64`, decoded as sqlx's `i64` is: INTEGER gives its
    /// value, NULL gives 0 (the schema forbids NULL), anything else is corrupt.
    pub(super) fn int64(&self, i: c_int, name: &str) -> Result<i64, StoreError> {
        let stmt = self.stmt.as_ptr();
        // SAFETY: as in `bytes`: a live statement on a row, `i` in range.
        unsafe {
            match ffi::sqlite3_column_type(stmt, i) {
                ffi::SQLITE_INTEGER => Ok(ffi::sqlite3_column_int64(stmt, i)),
                ffi::SQLITE_NULL => Ok(0),
                other => Err(mismatch(name, "INTEGER", other)),
            }
        }
    }
}

impl Drop for Statement<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement was prepared by `Db::prepare` and is finalized exactly once, here,
        // while the `Db` it borrows — and so the `LockedSqliteHandle` — is still alive. A step error
        // is reported again by finalize; it was already returned, so the code is ignored.
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

fn mismatch(name: &str, expected: &str, found: c_int) -> StoreError {
    let found = match found {
        ffi::SQLITE_INTEGER => "INTEGER",
        ffi::SQLITE_FLOAT => "REAL",
        ffi::SQLITE_TEXT => "TEXT",
        ffi::SQLITE_BLOB => "BLOB",
        _ => "unknown",
    };
    StoreError::Corrupt(format!(
        "{name} holds a value of type {found}, not {expected}"
    ))
}
