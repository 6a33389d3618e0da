//! One live instance per SQLite store: an exclusive `flock` on `PATH.lock` beside the database,
//! held for as long as the process serves. A second brlockd on the same file fails to take it and
//! refuses to start — before it has touched the database, so it cannot fence the running one — with
//! an error naming the holder (the file says its pid and address). The kernel drops the lock when
//! the holder exits, however it exits, so a crash leaves nothing to clean up.
//!
//! PostgreSQL stores have no lock file: instances on other machines share them, and the epoch
//! fences an older instance.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum InstanceLockError {
    #[error("another brlockd is serving this store ({holder}; lock file {path})")]
    Held { path: PathBuf, holder: String },
    #[error(
        "the directory {dir} does not exist: create it (brlockd does not), or change --store \
         (the SQLite file and its lock file {path} go there)"
    )]
    NoDirectory { dir: PathBuf, path: PathBuf },
    #[error("cannot open the lock file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The lock file of the store `url` names: `PATH.lock` for `sqlite://PATH`; `None` for other stores
/// (and for SQLite's in-memory databases).
pub fn lock_path(url: &str) -> Option<PathBuf> {
    if !url.starts_with("sqlite:") {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let db = options.get_filename();
    let name = db.to_str()?;
    if name.is_empty() || name == ":memory:" {
        return None;
    }
    let mut lock = db.as_os_str().to_owned();
    lock.push(".lock");
    Some(PathBuf::from(lock))
}

/// Takes the lock for the store `url`, writing `holder` (e.g. "pid 42, listening on 127.0.0.1:4045")
/// into the file. `Ok(None)` for stores that need none.
pub fn acquire(url: &str, holder: &str) -> Result<Option<InstanceLock>, InstanceLockError> {
    let Some(path) = lock_path(url) else {
        return Ok(None);
    };
    let dir = match path.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => Path::new("/"),
    };
    if !dir.is_dir() {
        return Err(InstanceLockError::NoDirectory {
            dir: dir.to_path_buf(),
            path,
        });
    }
    let io = |error| InstanceLockError::Io {
        path: path.clone(),
        error,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim() {
                "" => "its pid and address are not written yet".to_owned(),
                t => t.to_owned(),
            };
            return Err(InstanceLockError::Held { path, holder });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{holder}").map_err(io)?;
    Ok(Some(InstanceLock { _file: file, path }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_an_sqlite_database_only() {
        assert_eq!(
            lock_path("sqlite://./brlock.db"),
            Some(PathBuf::from("./brlock.db.lock"))
        );
        assert_eq!(
            lock_path("sqlite:///var/lib/brlock/locks.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/brlock/locks.db.lock"))
        );
        assert_eq!(lock_path("postgres://pg@localhost/db"), None);
        assert_eq!(lock_path("memory"), None);
    }

    #[test]
    fn a_second_holder_is_refused_with_the_first_named_and_may_take_it_once_released() {
        let dir = std::env::temp_dir().join(format!("brlock-instance-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("s.db").display());
        let first = acquire(&url, "pid 1, listening on 127.0.0.1:4045")
            .unwrap()
            .unwrap();
        match acquire(&url, "pid 2") {
            Err(InstanceLockError::Held { holder, .. }) => {
                assert_eq!(holder, "pid 1, listening on 127.0.0.1:4045")
            }
            other => panic!("second lock: {other:?}"),
        }
        drop(first);
        let again = acquire(&url, "pid 3").unwrap().unwrap();
        assert_eq!(
            std::fs::read_to_string(again.path()).unwrap(),
            "pid 3\n",
            "the new holder replaces the old text"
        );
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
