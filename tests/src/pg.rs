//! A PostgreSQL database of a test's own: created with `psql` on `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`, which must be up) and dropped on drop, so tests
//! that run at the same time never share one.

use std::hash::{BuildHasher, RandomState};
use std::process::Command;
use std::time::Instant;

/// `prefix_<random>`: a name no other test process picks.
pub fn unique(prefix: &str) -> String {
    let n = RandomState::new().hash_one((std::process::id(), Instant::now()));
    format!("{prefix}_{:012x}", n & 0xffff_ffff_ffff)
}

/// A database of its own, dropped on drop.
pub struct PgDb {
    admin: String,
    name: String,
}

impl PgDb {
    pub fn new() -> Self {
        let admin = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = unique("brlock_e2e");
        let db = PgDb { admin, name };
        db.psql(&format!("CREATE DATABASE {}", db.name));
        db
    }

    /// Runs `sql` on the admin database; panics with psql's message when it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_on(&self.admin, sql)
    }

    /// Runs `sql` on this database (its tables); its output, unaligned.
    pub fn query(&self, sql: &str) -> String {
        self.psql_on(&self.url(), sql)
    }

    fn psql_on(&self, url: &str, sql: &str) -> String {
        let out = Command::new("psql")
            .args([url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        assert!(
            out.status.success(),
            "psql {sql:?} on {url} failed: {}\nIs PostgreSQL up? Start it with \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The URL of this database.
    pub fn url(&self) -> String {
        let (base, _) = self
            .admin
            .rsplit_once('/')
            .expect("DATABASE_URL has a database");
        format!("{base}/{}", self.name)
    }

    /// Cuts every session brlockd process `pid` has open on this database (its application_name is
    /// `brlockd PID`) with `pg_terminate_backend`; returns how many were cut.
    pub fn terminate_sessions_of(&self, pid: u32) -> usize {
        let out = self.psql(&format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND application_name = 'brlockd {pid}') AS cut",
            self.name
        ));
        out.trim().parse().unwrap_or(0)
    }
}

impl Default for PgDb {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        self.psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}
