//! The start-up load of [`super::SqliteStore::begin_epoch`]: every row of `lock_record`, read with
//! SQLite's C API on the connection sqlx holds, inside `begin_epoch`'s transaction.
//!
//! sqlx-sqlite steps a statement on its worker thread and hands each row over on its own (a value
//! copy per column, a channel send and a task wake-up per row): 4.6 s for 1,000,000 records, most
//! of the time to serve after a restart. Here the task borrows the connection from the worker
//! ([`LockedSqliteHandle`]) and steps the statement itself, decoding each row straight into a
//! [`LockRecord`] with the same rules as the sqlx path ([`super::rows::record_from_row`]). Each
//! distinct file, client and owner becomes one shared id: a million records name far fewer of them,
//! and the core keeps the same ids, so the load makes one allocation per distinct value instead of
//! six per row.
//!
//! The `unsafe` is in `sqlite_ffi`.

use std::ffi::CStr;

use brlock_core::LockRecord;
use foldhash::{HashMap, HashMapExt};
use sqlx::sqlite::LockedSqliteHandle;

use super::StoreError;
use super::rows::record_of;
use super::sqlite_ffi::{Db, Statement};

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
    let (mut files, mut clients, mut owners) =
        (DistinctIds::new(), DistinctIds::new(), DistinctIds::new());
    let mut records = Vec::new();
    while statement.step()? {
        records.push(record_of(
            files.id(&statement, 0)?,
            clients.id(&statement, 1)?,
            owners.id(&statement, 2)?,
            statement.int64(3, COLUMNS[3])?,
            statement.int64(4, COLUMNS[4])?,
            statement.int64(5, COLUMNS[5])?,
        )?);
    }
    Ok(records)
}

/// One id per distinct value of a column.
struct DistinctIds<T> {
    ids: HashMap<Box<[u8]>, T>,
}

impl<T: Clone + for<'a> From<&'a [u8]>> DistinctIds<T> {
    fn new() -> Self {
        Self {
            ids: HashMap::new(),
        }
    }

    fn id(&mut self, statement: &Statement<'_>, column: usize) -> Result<T, StoreError> {
        let i = column as std::ffi::c_int;
        statement.with_bytes(i, COLUMNS[column], |bytes| {
            if let Some(id) = self.ids.get(bytes) {
                return id.clone();
            }
            let id = T::from(bytes);
            self.ids.insert(bytes.into(), id.clone());
            id
        })
    }
}
