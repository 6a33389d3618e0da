//! Embedded migrations. Files follow sqlx-cli's `<VERSION>_<DESCRIPTION>.sql` naming and checksums,
//! so `sqlx migrate info` agrees; a test checks this list matches the folders.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

pub(crate) type Embedded = &'static [(i64, &'static str, &'static str)];

pub(crate) const SQLITE: Embedded = &[
    (
        1,
        "lock records",
        include_str!("../../migrations/sqlite/0001_lock_records.sql"),
    ),
    (
        2,
        "restart state",
        include_str!("../../migrations/sqlite/0002_restart_state.sql"),
    ),
];

pub(crate) const POSTGRES: Embedded = &[
    (
        1,
        "lock records",
        include_str!("../../migrations/postgres/0001_lock_records.sql"),
    ),
    (
        2,
        "restart state",
        include_str!("../../migrations/postgres/0002_restart_state.sql"),
    ),
    (
        3,
        "hashed keys",
        include_str!("../../migrations/postgres/0003_hashed_keys.sql"),
    ),
    (
        4,
        "leader lease",
        include_str!("../../migrations/postgres/0004_leader_lease.sql"),
    ),
];

pub(crate) fn migrator(embedded: Embedded) -> Migrator {
    Migrator::with_migrations(
        embedded
            .iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Adding a migration file without embedding it (or the reverse) would ship a binary whose schema
    /// differs from the repository's.
    #[test]
    fn embedded_migrations_match_the_migration_folders() {
        for (dir, embedded) in [("sqlite", SQLITE), ("postgres", POSTGRES)] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut files: Vec<(i64, String)> = std::fs::read_dir(&path)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let name = e.file_name().into_string().unwrap();
                    let version = name.split('_').next().unwrap().parse().unwrap();
                    (version, std::fs::read_to_string(e.path()).unwrap())
                })
                .collect();
            files.sort();
            let embedded: Vec<(i64, String)> = embedded
                .iter()
                .map(|&(v, _, sql)| (v, sql.to_owned()))
                .collect();
            assert_eq!(
                embedded, files,
                "migrations/{dir} and the embedded list differ"
            );
        }
    }
}
