//! Store figures, printed: `cargo bench -p brlock-native --bench store`.
//!
//! - Recovery: 1,000,000 lock records in SQLite; time from opening the store to a restored core
//!   (`Store::open` + `begin_epoch` + `Core::restore`). Goal: under 2 s.
//! - Group commit: durable Put+Delete pairs per second through `GroupCommit` on SQLite and PostgreSQL
//!   (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`; the bench creates and
//!   drops its own database), with 1, 16 and 256 requests (one pair each) waiting per transaction.
//!
//! `BRLOCK_BENCH_RECORDS` overrides the record count; `BRLOCK_BENCH_SECONDS` the time per
//! throughput figure (default 2); `BRLOCK_BENCH_ONLY=recovery` skips the group-commit figures,
//! `BRLOCK_BENCH_ONLY=group-commit` the recovery figure.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brlock_core::{
    ClientId, Config, Core, FileId, LockKind, LockRecord, OwnerId, PersistOp, Range,
};
use brlock_native::store::{GroupCommit, GroupCommitOptions, Store, Write};
use sqlx::Connection;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Record `i` of a server with 100 locks per file, 5,000 owners over 500 clients; no two conflict.
fn record(i: u64) -> LockRecord {
    LockRecord {
        file: FileId::new(format!("file-handle-{:012}", i / 100)),
        client: ClientId::new(format!("client-{}", i % 500)),
        owner: OwnerId::new(format!("owner-{}", i % 5000)),
        kind: LockKind::Exclusive,
        range: Range::new((i % 100) * 4096, 4096),
    }
}

async fn recovery(records: u64) {
    let dir = std::env::temp_dir().join(format!(
        "brlock-bench-{:x}",
        RandomState::new().hash_one(std::process::id())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("brlock.db").display());

    let store = Store::open(&url).await.unwrap();
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let fill = Instant::now();
    let mut seq = 0;
    let mut i = 0;
    while i < records {
        let batch: Vec<Write> = (i..records.min(i + 20_000))
            .map(|i| {
                seq += 1;
                Write {
                    seq,
                    op: PersistOp::Put(record(i)),
                }
            })
            .collect();
        i += batch.len() as u64;
        store.apply(epoch, &batch).await.unwrap();
    }
    store.close().await;
    drop(store);
    let fill = fill.elapsed();
    let size = std::fs::metadata(dir.join("brlock.db")).map_or(0, |m| m.len());

    let start = Instant::now();
    let store = Store::open(&url).await.unwrap();
    let opened = start.elapsed();
    let (epoch, loaded) = store.begin_epoch().await.unwrap();
    let read = start.elapsed();
    let count = loaded.len();
    let (core, actions) =
        Core::restore(Config::default(), brlock_core::Instant::ZERO, epoch, loaded).unwrap();
    let restored = start.elapsed();
    assert_eq!(count as u64, records);
    assert!(actions.is_empty());
    println!(
        "recovery, sqlite, {records} records ({:.0} MB, written in {:.1} s): serving after {} ms \
         (open {} ms, begin_epoch {} ms, Core::restore {} ms)",
        size as f64 / 1e6,
        fill.as_secs_f64(),
        restored.as_millis(),
        opened.as_millis(),
        (read - opened).as_millis(),
        (restored - read).as_millis(),
    );
    drop(core);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Put+Delete pairs per second through group commit, `batch` requests waiting per transaction.
async fn throughput(backend: &str, url: &str, batch: usize, seconds: u64) {
    let store = Arc::new(Store::open(url).await.unwrap());
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let options = GroupCommitOptions {
        max_writes: 2 * batch,
        ..GroupCommitOptions::default()
    };
    let commits = GroupCommit::spawn(store.clone(), epoch, options);
    let deadline = Duration::from_secs(seconds);
    let start = Instant::now();
    let mut pairs = 0u64;
    loop {
        // `batch` requests arrive together; each one's reply waits for its ticket.
        let mut tickets = Vec::with_capacity(batch);
        // Unconstrained: tokio's cooperative budget would otherwise let the committer in after 128
        // submissions and split the batch.
        tokio::task::unconstrained(async {
            for _ in 0..batch {
                let r = record(pairs);
                let writes = vec![
                    Write {
                        seq: 2 * pairs,
                        op: PersistOp::Put(r.clone()),
                    },
                    Write {
                        seq: 2 * pairs + 1,
                        op: PersistOp::Delete(r),
                    },
                ];
                tickets.push(commits.submit(writes).await);
                pairs += 1;
            }
        })
        .await;
        for t in tickets {
            t.await.unwrap();
        }
        if start.elapsed() >= deadline {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let stats = commits.stats();
    println!(
        "group commit, {backend:8} batch {batch:3}: {:8.0} pairs/s ({:7.0} transactions/s, {:.1} \
         pairs per transaction)",
        pairs as f64 / elapsed,
        stats.transactions as f64 / elapsed,
        stats.writes as f64 / 2.0 / stats.transactions as f64,
    );
    commits.shutdown().await;
    store.close().await;
}

async fn with_postgres_database(f: impl AsyncFnOnce(&str)) {
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => {
            println!(
                "group commit, postgres: not measured, {admin} unreachable ({e}); start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`"
            );
            return;
        }
    };
    let name = format!(
        "brlock_bench_{:x}",
        RandomState::new().hash_one(std::process::id())
    );
    let sql = |s: String| sqlx::raw_sql(sqlx::AssertSqlSafe(s));
    sql(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    f(&format!("{base}/{name}")).await;
    sql(format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then only check it runs.
    let quick = !std::env::args().any(|a| a == "--bench");
    let records = env_number("BRLOCK_BENCH_RECORDS", if quick { 1000 } else { 1_000_000 });
    let seconds = env_number("BRLOCK_BENCH_SECONDS", if quick { 0 } else { 2 });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let only = std::env::var("BRLOCK_BENCH_ONLY").ok();
        if only.as_deref() != Some("group-commit") {
            recovery(records).await;
        }
        if only.as_deref() == Some("recovery") {
            return;
        }
        let dir = std::env::temp_dir().join(format!(
            "brlock-bench-gc-{:x}",
            RandomState::new().hash_one(std::process::id())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for batch in [1, 16, 256] {
            let url = format!("sqlite://{}", dir.join(format!("gc-{batch}.db")).display());
            throughput("sqlite", &url, batch, seconds).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
        with_postgres_database(async |url: &str| {
            for batch in [1, 16, 256] {
                throughput("postgres", url, batch, seconds).await;
            }
        })
        .await;
    });
}
