//! One store conformance suite, run against every backend: `memory`, SQLite (a temporary directory
//! per test) and PostgreSQL (`DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`;
//! each test creates its own database `brlock_test_<random>` and drops it at the end). PostgreSQL
//! being down fails the PostgreSQL tests, with how to start it — nothing is skipped.

use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::Arc;

use brlock_core::{
    ClientId, Config, Core, FileId, LockKind, LockRecord, OwnerId, PersistOp, Range, ShareMode,
    ShareRecord,
};
use brlock_native::store::{
    ClientHost, GroupCommit, GroupCommitOptions, HostWrite, RecordFilter, Store, StoreError, Write,
};
use sqlx::Connection;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Memory,
    Sqlite,
    Postgres,
}

/// A database of its own for one test, removed when the test ends (even when it fails).
struct TestDb {
    backend: Backend,
    url: String,
    _cleanup: Cleanup,
}

enum Cleanup {
    Nothing,
    Dir(PathBuf),
    Database { admin_url: String, name: String },
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::Nothing => {}
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database { admin_url, name } => {
                // Drop may run inside the test's runtime: use a thread with a runtime of its own.
                let (admin_url, db) = (admin_url.clone(), name.clone());
                let dropped = std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(async {
                            let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
                            )))
                            .execute(&mut admin)
                            .await?;
                            admin.close().await
                        })
                })
                .join()
                .unwrap();
                if let Err(e) = dropped {
                    eprintln!("could not drop test database {name}: {e}");
                }
            }
        }
    }
}

fn random_suffix() -> String {
    format!("{:016x}", RandomState::new().hash_one(std::process::id()))
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("DATABASE_URL has no scheme");
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split('/').next().unwrap();
    format!("{scheme}://{authority}/{name}{query}")
}

impl TestDb {
    async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Memory => TestDb {
                backend,
                url: "memory".into(),
                _cleanup: Cleanup::Nothing,
            },
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("brlock-store-{}", random_suffix()));
                std::fs::create_dir_all(&dir).unwrap();
                TestDb {
                    backend,
                    url: format!("sqlite://{}", dir.join("brlock.db").display()),
                    _cleanup: Cleanup::Dir(dir),
                }
            }
            Backend::Postgres => {
                let admin_url = admin_url();
                let mut admin = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "PostgreSQL at {admin_url} is not reachable ({e}). Start it with \
                             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main \
                             start`, or point DATABASE_URL at a running server."
                        )
                    });
                let name = format!("brlock_test_{}", random_suffix());
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                TestDb {
                    backend,
                    url: with_database(&admin_url, &name),
                    _cleanup: Cleanup::Database { admin_url, name },
                }
            }
        }
    }

    async fn open(&self) -> Store {
        Store::open(&self.url)
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url))
    }

    fn durable(&self) -> bool {
        self.backend != Backend::Memory
    }

    /// Runs raw SQL on the database behind the store's back.
    async fn raw(&self, sql: &'static str) {
        match self.backend {
            Backend::Memory => unreachable!("memory has no SQL"),
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }
}

fn rec(
    file: &[u8],
    client: &[u8],
    owner: &[u8],
    kind: LockKind,
    offset: u64,
    length: u64,
) -> LockRecord {
    LockRecord {
        file: FileId::from(file),
        client: ClientId::from(client),
        owner: OwnerId::from(owner),
        kind,
        range: Range::new(offset, length),
    }
}

fn put(seq: u64, r: &LockRecord) -> Write {
    Write {
        seq,
        op: PersistOp::Put(r.clone()),
    }
}

fn del(seq: u64, r: &LockRecord) -> Write {
    Write {
        seq,
        op: PersistOp::Delete(r.clone()),
    }
}

fn sorted(mut v: Vec<LockRecord>) -> Vec<LockRecord> {
    v.sort();
    v
}

async fn all(store: &Store) -> Vec<LockRecord> {
    store.records(&RecordFilter::All).await.unwrap()
}

use LockKind::{Exclusive as X, Shared as S};

// ---- The suite: every function runs against every backend. ----

async fn a_fresh_store_starts_epoch_1_with_no_records(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    assert_eq!(store.epoch().await.unwrap(), 0);
    assert_eq!(store.begin_epoch().await.unwrap(), (1, vec![]));
    assert_eq!(store.epoch().await.unwrap(), 1);
    store.close().await;
}

async fn stored_values_round_trip_exactly(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let handle: Vec<u8> = (0..1024).map(|i| (i * 7 % 256) as u8).collect();
    let records = vec![
        rec(b"f", b"c", b"o", X, u64::MAX, u64::MAX),
        rec(b"f", b"c", b"o", S, 1 << 63, 1),
        rec(b"f", b"c", b"o", X, (1 << 63) - 1, 0),
        rec(b"f", b"c", b"o", S, 0, 0),
        rec(&handle, b"\0\xff\x80", b"\0", X, 42, u64::MAX - 42),
        rec(b"", b"", b"", S, 7, 3),
    ];
    let writes: Vec<Write> = records
        .iter()
        .enumerate()
        .map(|(i, r)| put(i as u64, r))
        .collect();
    store.apply(epoch, &writes).await.unwrap();
    assert_eq!(all(&store).await, sorted(records.clone()));
    assert_eq!(
        store.begin_epoch().await.unwrap(),
        (epoch + 1, sorted(records))
    );
    store.close().await;
}

async fn a_put_replaces_the_record_with_the_same_key(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let first = rec(b"f", b"c", b"o", S, 10, 5);
    let wider = rec(b"f", b"c", b"o", X, 10, 50);
    let elsewhere = rec(b"f", b"c", b"o", S, 11, 5);
    store
        .apply(epoch, &[put(1, &first), put(2, &elsewhere)])
        .await
        .unwrap();
    store.apply(epoch, &[put(3, &wider)]).await.unwrap();
    assert_eq!(all(&store).await, sorted(vec![wider, elsewhere]));
}

async fn a_delete_removes_only_its_key(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let a = rec(b"f", b"c", b"o", X, 0, 10);
    let other_owner = rec(b"f", b"c", b"p", X, 20, 10);
    let other_file = rec(b"g", b"c", b"o", X, 0, 10);
    store
        .apply(
            epoch,
            &[put(1, &a), put(2, &other_owner), put(3, &other_file)],
        )
        .await
        .unwrap();
    // The key is (file, client, owner, offset): a Delete carrying another kind or length still hits.
    let same_key = rec(b"f", b"c", b"o", S, 0, 99);
    store.apply(epoch, &[del(4, &same_key)]).await.unwrap();
    assert_eq!(
        all(&store).await,
        sorted(vec![other_owner.clone(), other_file.clone()])
    );
    // Deleting what is not there is no error.
    store.apply(epoch, &[del(5, &a)]).await.unwrap();
    assert_eq!(all(&store).await, sorted(vec![other_owner, other_file]));
}

async fn a_batch_applies_in_order(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let a = rec(b"f", b"c", b"o", X, 0, 10);
    let b2 = rec(b"f", b"c", b"o", S, 5, 1);
    store
        .apply(epoch, &[put(1, &a), del(2, &a), put(3, &b2)])
        .await
        .unwrap();
    assert_eq!(all(&store).await, vec![b2.clone()]);
    store
        .apply(epoch, &[del(4, &b2), put(5, &b2), put(6, &a), del(7, &a)])
        .await
        .unwrap();
    assert_eq!(all(&store).await, vec![b2]);
    store.apply(epoch, &[]).await.unwrap();
}

async fn records_lists_by_file_client_and_owner(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let r1 = rec(b"f1", b"c1", b"o1", X, 0, 1);
    let r2 = rec(b"f1", b"c2", b"o1", X, 1, 1);
    let r3 = rec(b"f2", b"c1", b"o1", S, 0, 1);
    let r4 = rec(b"f2", b"c1", b"o2", S, 0, 1);
    let writes = [put(1, &r1), put(2, &r2), put(3, &r3), put(4, &r4)];
    store.apply(epoch, &writes).await.unwrap();
    let list = |f| {
        let store = &store;
        async move { store.records(&f).await.unwrap() }
    };
    assert_eq!(
        list(RecordFilter::File(FileId::from("f1"))).await,
        vec![r1.clone(), r2.clone()]
    );
    assert_eq!(list(RecordFilter::File(FileId::from("f3"))).await, vec![]);
    assert_eq!(
        list(RecordFilter::Client(ClientId::from("c1"))).await,
        vec![r1.clone(), r3.clone(), r4.clone()]
    );
    assert_eq!(
        list(RecordFilter::Owner(
            ClientId::from("c1"),
            OwnerId::from("o1")
        ))
        .await,
        vec![r1.clone(), r3.clone()]
    );
    assert_eq!(
        list(RecordFilter::Owner(
            ClientId::from("c2"),
            OwnerId::from("o2")
        ))
        .await,
        vec![]
    );
    assert_eq!(list(RecordFilter::All).await, vec![r1, r2, r3, r4]);
}

async fn begin_epoch_bumps_the_epoch_and_returns_every_record(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    let (e1, none) = store.begin_epoch().await.unwrap();
    assert!(none.is_empty());
    let r = rec(b"f", b"c", b"o", X, 0, 0);
    store.apply(e1, &[put(1, &r)]).await.unwrap();
    let (e2, records) = store.begin_epoch().await.unwrap();
    assert_eq!((e2, records), (e1 + 1, vec![r.clone()]));
    // Records of every earlier epoch come back, and the new epoch writes.
    let r2 = rec(b"g", b"c", b"o", S, 0, 0);
    store.apply(e2, &[put(1, &r2)]).await.unwrap();
    assert_eq!(store.begin_epoch().await.unwrap(), (e2 + 1, vec![r, r2]));
}

async fn records_and_epoch_survive_closing_and_reopening(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let r = rec(b"f", b"c", b"o", X, 3, 4);
    store.apply(epoch, &[put(1, &r)]).await.unwrap();
    store.close().await;
    drop(store);
    let store = db.open().await;
    if db.durable() {
        assert_eq!(store.begin_epoch().await.unwrap(), (epoch + 1, vec![r]));
    } else {
        // `memory`: nothing survives.
        assert_eq!(store.begin_epoch().await.unwrap(), (1, vec![]));
    }
}

async fn concurrent_batches_all_land(b: Backend) {
    let db = TestDb::new(b).await;
    let store = Arc::new(db.open().await);
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for batch in 0..10u64 {
                    let writes: Vec<Write> = (0..5u64)
                        .map(|i| {
                            let r =
                                rec(b"f", format!("c{t}").as_bytes(), b"o", X, batch * 10 + i, 1);
                            put(batch * 5 + i, &r)
                        })
                        .collect();
                    store.apply(epoch, &writes).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(all(&store).await.len(), 8 * 10 * 5);
}

async fn a_superseded_epoch_is_fenced_and_writes_nothing(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    let (old, _) = store.begin_epoch().await.unwrap();
    let kept = rec(b"f", b"c", b"o", X, 0, 1);
    store.apply(old, &[put(1, &kept)]).await.unwrap();
    let (new, _) = store.begin_epoch().await.unwrap();
    let late = rec(b"f", b"c", b"o", X, 5, 1);
    assert_eq!(
        store.apply(old, &[put(2, &late), del(3, &kept)]).await,
        Err(StoreError::Fenced {
            mine: old,
            current: new
        })
    );
    assert_eq!(all(&store).await, vec![kept]);
    store.apply(new, &[put(1, &late)]).await.unwrap();
}

async fn group_commit_answers_every_submission_once_durable(b: Backend) {
    let db = TestDb::new(b).await;
    let store = Arc::new(db.open().await);
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let commits = Arc::new(GroupCommit::spawn(
        store.clone(),
        epoch,
        GroupCommitOptions::default(),
    ));
    // Submit everything first, as a server loop does, then wait for the tickets.
    let mut tickets = Vec::new();
    for i in 0..200u64 {
        let r = rec(b"f", b"c", format!("o{i}").as_bytes(), X, i, 1);
        let writes = if i % 3 == 0 {
            vec![put(i, &r), del(i + 1, &r)]
        } else {
            vec![put(i, &r)]
        };
        tickets.push(commits.submit(writes).await);
    }
    tickets.push(commits.submit(vec![]).await);
    for t in tickets {
        t.await.unwrap();
    }
    let stats = commits.stats();
    assert_eq!(stats.submissions, 201);
    assert_eq!(stats.writes, 200 + 67);
    assert_eq!(stats.failures, 0);
    // The test runtime is single-threaded: the committer runs only when this task waits, and then
    // finds many submissions queued.
    assert!(stats.transactions < 20, "no grouping happened: {stats:?}");
    assert_eq!(all(&store).await.len(), 200 - 67);
    // Concurrent submitters through a shared handle.
    let tasks: Vec<_> = (0..16u64)
        .map(|t| {
            let commits = commits.clone();
            tokio::spawn(async move {
                for i in 0..10u64 {
                    let r = rec(b"g", format!("c{t}").as_bytes(), b"o", S, i, 1);
                    commits.commit(vec![put(i, &r)]).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        store
            .records(&RecordFilter::File(FileId::from("g")))
            .await
            .unwrap()
            .len(),
        160
    );
    Arc::into_inner(commits).unwrap().shutdown().await;
}

async fn group_commit_respects_max_writes_and_order(b: Backend) {
    let db = TestDb::new(b).await;
    let store = Arc::new(db.open().await);
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let options = GroupCommitOptions {
        max_writes: 4,
        queue: 64,
        ..GroupCommitOptions::default()
    };
    let commits = GroupCommit::spawn(store.clone(), epoch, options);
    let r = rec(b"f", b"c", b"o", X, 0, 1);
    let mut tickets = Vec::new();
    // Alternating put/delete of one key: only submission order leaves it present at the end.
    for i in 0..21u64 {
        let w = if i % 2 == 0 { put(i, &r) } else { del(i, &r) };
        tickets.push(commits.submit(vec![w]).await);
    }
    for t in tickets {
        t.await.unwrap();
    }
    assert_eq!(all(&store).await, vec![r]);
    let stats = commits.stats();
    assert!(stats.transactions >= 6, "max_writes 4 but {stats:?}");
    commits.shutdown().await;
}

/// `submit_now` never waits, but never grows the queue past its capacity either: past it a
/// submission fails at once, and everything queued before it still commits.
async fn group_commit_refuses_past_its_capacity(b: Backend) {
    let db = TestDb::new(b).await;
    let store = Arc::new(db.open().await);
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let options = GroupCommitOptions {
        max_writes: 1,
        queue: 1,
        capacity: 4,
        ..GroupCommitOptions::default()
    };
    let commits = GroupCommit::spawn(store.clone(), epoch, options);
    // Submitted in one go on this task: the committer cannot run in between.
    let tickets: Vec<_> = (0..64u64)
        .map(|i| commits.submit_now(vec![put(i, &rec(b"f", b"c", b"o", X, i * 10, 1))]))
        .collect();
    let mut committed = 0;
    let mut refused = 0;
    for t in tickets {
        match t.await {
            Ok(()) => committed += 1,
            Err(StoreError::Unavailable(e)) if e.contains("capacity") => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!((4..=5).contains(&committed), "{committed} committed");
    assert_eq!(committed + refused, 64);
    assert_eq!(all(&store).await.len(), committed);
    commits.shutdown().await;
}

async fn group_commit_fencing_is_final(b: Backend) {
    let db = TestDb::new(b).await;
    let store = Arc::new(db.open().await);
    let (old, _) = store.begin_epoch().await.unwrap();
    let commits = GroupCommit::spawn(store.clone(), old, GroupCommitOptions::default());
    let r = rec(b"f", b"c", b"o", X, 0, 1);
    commits.commit(vec![put(1, &r)]).await.unwrap();
    let (new, _) = store.begin_epoch().await.unwrap();
    let fenced = Err(StoreError::Fenced {
        mine: old,
        current: new,
    });
    assert_eq!(commits.commit(vec![del(2, &r)]).await, fenced);
    // Even a barrier fails now, and nothing more reaches the store.
    assert_eq!(commits.commit(vec![]).await, fenced);
    assert_eq!(commits.stats().failures, 1);
    assert_eq!(all(&store).await, vec![r]);
    commits.shutdown().await;
}

async fn restore_takes_what_begin_epoch_returns(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let r = rec(b"f", b"c", b"o", X, 0, 100);
    store.apply(epoch, &[put(1, &r)]).await.unwrap();
    let (epoch, records) = store.begin_epoch().await.unwrap();
    let (core, _) = Core::restore(
        Config::default(),
        brlock_core::Instant::ZERO,
        epoch,
        records,
    )
    .unwrap();
    assert_eq!(core.records(), vec![r]);
}

fn share(
    file: &[u8],
    client: &[u8],
    owner: &[u8],
    access: ShareMode,
    deny: ShareMode,
) -> ShareRecord {
    ShareRecord {
        file: FileId::new(file.to_vec()),
        client: ClientId::new(client.to_vec()),
        owner: OwnerId::new(owner.to_vec()),
        access,
        deny,
    }
}

fn host(name: &[u8], address: &str, nsm_state: Option<u32>) -> ClientHost {
    ClientHost {
        caller_name: name.to_vec(),
        address: address.parse().unwrap(),
        local_address: "127.0.0.9".parse().unwrap(),
        nsm_state,
        statd_monitored: nsm_state.is_some(),
    }
}

/// Shares, client hosts and the NSM state come back after a restart (for `memory`, within one
/// process), written in order with the lock writes of their transaction, and fenced like them.
async fn shares_hosts_and_the_nsm_state_are_kept(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    let (e1, _) = store.begin_epoch().await.unwrap();
    let first = store.kept().await.unwrap();
    assert_eq!(first.nsm_state % 2, 1, "odd while up: {}", first.nsm_state);
    assert!(first.shares.is_empty() && first.hosts.is_empty());
    let (s1, s2) = (
        share(b"f", b"c", b"o", ShareMode::Read, ShareMode::Write),
        share(b"g", b"c", b"o", ShareMode::Both, ShareMode::None),
    );
    let replaced = share(b"f", b"c", b"o", ShareMode::Write, ShareMode::Both);
    let r = rec(b"f", b"c", b"o", X, 0, 10);
    let writes = [
        put(1, &r),
        Write {
            seq: 2,
            op: PersistOp::PutShare(s1.clone()),
        },
        Write {
            seq: 3,
            op: PersistOp::PutShare(s2.clone()),
        },
        Write {
            seq: 4,
            op: PersistOp::PutShare(replaced.clone()),
        },
        Write {
            seq: 5,
            op: PersistOp::DeleteShare(s2.clone()),
        },
    ];
    let hosts = [
        HostWrite::Put(host(b"a", "127.0.0.1", None)),
        HostWrite::Put(host(b"b", "::1", Some(7))),
        HostWrite::Put(host(b"a", "127.0.0.2", Some(3))),
        HostWrite::Put(host(b"gone", "127.0.0.3", None)),
        HostWrite::Delete(b"gone".to_vec()),
    ];
    store.apply_with_hosts(e1, &writes, &hosts).await.unwrap();
    let (e2, records) = store.begin_epoch().await.unwrap();
    assert_eq!(records, vec![r]);
    let kept = store.kept().await.unwrap();
    assert_eq!(
        kept.nsm_state,
        first.nsm_state + 2,
        "two more at every start"
    );
    assert_eq!(kept.shares, vec![replaced]);
    assert_eq!(
        kept.hosts,
        vec![host(b"a", "127.0.0.2", Some(3)), host(b"b", "::1", Some(7))]
    );
    // A fenced instance writes no host either.
    let late = [HostWrite::Put(host(b"late", "127.0.0.4", None))];
    assert!(matches!(
        store.apply_with_hosts(e1, &[], &late).await,
        Err(StoreError::Fenced { .. })
    ));
    store.apply_with_hosts(e2, &[], &[]).await.unwrap();
    assert_eq!(store.kept().await.unwrap().hosts.len(), 2);
    if db.durable() {
        store.close().await;
        let reopened = db.open().await;
        reopened.begin_epoch().await.unwrap();
        let again = reopened.kept().await.unwrap();
        assert_eq!(again.nsm_state, first.nsm_state + 4);
        assert_eq!((again.shares, again.hosts), (kept.shares, kept.hosts));
    }
}

/// The largest values intake lets through (a 128-byte file handle, a 1,024-byte caller_name, an
/// owner of caller_name + svid + a 1,024-byte oh), incompressible, in one batch with an ordinary
/// record: the whole batch lands, and every lookup and delete finds them (issue 13, row 10: on
/// PostgreSQL such a key was once too large for its index and failed the batch).
async fn the_largest_accepted_keys_fit_and_do_not_fail_a_batch(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    let (epoch, _) = store.begin_epoch().await.unwrap();
    let state = RandomState::new();
    let noise = |n: usize, salt: u64| -> Vec<u8> {
        (0..n as u64)
            .flat_map(|i| state.hash_one((salt, i)).to_le_bytes())
            .take(n)
            .collect()
    };
    let (fh, caller) = (noise(128, 1), noise(1024, 2));
    let owner = [&caller[..], &noise(1040, 3)].concat();
    let big = rec(&fh, &caller, &owner, X, u64::MAX - 1, 1);
    let small = rec(b"f", b"c", b"o", S, 0, 10);
    store
        .apply(epoch, &[put(1, &small), put(2, &big)])
        .await
        .unwrap();
    assert_eq!(all(&store).await, sorted(vec![small.clone(), big.clone()]));
    let by_owner = RecordFilter::Owner(big.client.clone(), big.owner.clone());
    assert_eq!(store.records(&by_owner).await.unwrap(), vec![big.clone()]);
    let big_share = share(&fh, &caller, &owner, ShareMode::Both, ShareMode::Write);
    let shares = [Write {
        seq: 3,
        op: PersistOp::PutShare(big_share.clone()),
    }];
    store.apply(epoch, &shares).await.unwrap();
    assert_eq!(store.kept().await.unwrap().shares, vec![big_share.clone()]);
    let gone = [
        del(4, &big),
        Write {
            seq: 5,
            op: PersistOp::DeleteShare(big_share),
        },
    ];
    store.apply(epoch, &gone).await.unwrap();
    assert_eq!(all(&store).await, vec![small]);
    assert_eq!(store.kept().await.unwrap().shares, vec![]);
    store.close().await;
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $( #[tokio::test]
               async fn $test() { super::$test(super::Backend::Memory).await } )*
        }
        mod sqlite {
            $( #[tokio::test]
               async fn $test() { super::$test(super::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test]
               async fn $test() { super::$test(super::Backend::Postgres).await } )*
        }
    };
}

suite!(
    a_fresh_store_starts_epoch_1_with_no_records,
    stored_values_round_trip_exactly,
    a_put_replaces_the_record_with_the_same_key,
    a_delete_removes_only_its_key,
    a_batch_applies_in_order,
    records_lists_by_file_client_and_owner,
    begin_epoch_bumps_the_epoch_and_returns_every_record,
    records_and_epoch_survive_closing_and_reopening,
    concurrent_batches_all_land,
    a_superseded_epoch_is_fenced_and_writes_nothing,
    group_commit_answers_every_submission_once_durable,
    group_commit_respects_max_writes_and_order,
    group_commit_refuses_past_its_capacity,
    group_commit_fencing_is_final,
    restore_takes_what_begin_epoch_returns,
    shares_hosts_and_the_nsm_state_are_kept,
    the_largest_accepted_keys_fit_and_do_not_fail_a_batch,
);

// ---- What only databases can show. ----

/// Two instances on one database: the one that started later fences the other.
async fn a_second_instance_fences_the_first(b: Backend) {
    let db = TestDb::new(b).await;
    let first = db.open().await;
    let second = db.open().await;
    let (e1, _) = first.begin_epoch().await.unwrap();
    let mine = rec(b"f", b"first", b"o", X, 0, 0);
    first.apply(e1, &[put(1, &mine)]).await.unwrap();
    let (e2, restored) = second.begin_epoch().await.unwrap();
    assert_eq!(restored, vec![mine.clone()]);
    // A conflicting lock the first instance would grant can no longer be acknowledged.
    let conflicting = rec(b"f", b"first", b"o2", X, 0, 0);
    assert_eq!(
        first.apply(e1, &[put(2, &conflicting)]).await,
        Err(StoreError::Fenced {
            mine: e1,
            current: e2
        })
    );
    second.apply(e2, &[del(1, &mine)]).await.unwrap();
    assert_eq!(all(&first).await, vec![]);
    first.close().await;
    second.close().await;
}

async fn a_row_with_an_unknown_kind_is_corrupt(b: Backend) {
    let db = TestDb::new(b).await;
    let store = db.open().await;
    store.begin_epoch().await.unwrap();
    match b {
        Backend::Sqlite => {
            db.raw(
                "PRAGMA ignore_check_constraints = ON; \
                 INSERT INTO lock_record VALUES (x'66', x'63', x'6f', 0, 0, 7, 1, 1)",
            )
            .await
        }
        Backend::Postgres => {
            db.raw(
                "ALTER TABLE lock_record DROP CONSTRAINT lock_record_kind_check; \
                 INSERT INTO lock_record VALUES ('f', 'c', 'o', 0, 0, 7, 1, 1)",
            )
            .await
        }
        Backend::Memory => unreachable!(),
    }
    let err = store.begin_epoch().await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(m) if m.contains("kind 7")),
        "{err}"
    );
    let err = store.records(&RecordFilter::All).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
}

mod sqlite_only {
    use super::*;

    #[tokio::test]
    async fn a_second_instance_fences_the_first() {
        super::a_second_instance_fences_the_first(Backend::Sqlite).await
    }

    #[tokio::test]
    async fn a_row_with_an_unknown_kind_is_corrupt() {
        super::a_row_with_an_unknown_kind_is_corrupt(Backend::Sqlite).await
    }

    #[tokio::test]
    async fn the_database_is_in_wal_mode() {
        let db = TestDb::new(Backend::Sqlite).await;
        db.open().await.close().await;
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn committed_writes_survive_dropping_the_store_without_close() {
        let db = TestDb::new(Backend::Sqlite).await;
        let r = rec(b"f", b"c", b"o", X, 1, 2);
        {
            let store = db.open().await;
            let (epoch, _) = store.begin_epoch().await.unwrap();
            store.apply(epoch, &[put(1, &r)]).await.unwrap();
            std::mem::forget(store);
        }
        let store = db.open().await;
        assert_eq!(store.begin_epoch().await.unwrap().1, vec![r]);
    }

    const CRASH_DB: &str = "BRLOCK_STORE_CRASH_DB";

    /// The child half of the next test: commits, then dies without any clean-up.
    #[tokio::test]
    async fn crash_child() {
        let Ok(url) = std::env::var(CRASH_DB) else {
            return;
        };
        let store = Store::open(&url).await.unwrap();
        let (epoch, _) = store.begin_epoch().await.unwrap();
        store
            .apply(epoch, &[put(1, &rec(b"f", b"c", b"o", X, 1, 2))])
            .await
            .unwrap();
        std::process::abort();
    }

    #[tokio::test]
    async fn committed_writes_survive_a_process_abort() {
        let db = TestDb::new(Backend::Sqlite).await;
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sqlite_only::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DB, &db.url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(!status.success(), "the child should have aborted");
        let store = db.open().await;
        assert_eq!(
            store.begin_epoch().await.unwrap(),
            (2, vec![rec(b"f", b"c", b"o", X, 1, 2)])
        );
    }

    /// `begin_epoch` reads SQLite's rows with the C API (store/sqlite_load.rs); `records` still goes
    /// through sqlx. Both must decode every value exactly.
    #[tokio::test]
    async fn begin_epoch_loads_10000_extreme_records_exactly() {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = db.open().await;
        let (epoch, _) = store.begin_epoch().await.unwrap();
        let records: Vec<LockRecord> = (0..10_000u64)
            .map(|i| {
                // 1024-byte handles (the NLM maximum) with NULs and 0xff bytes in them.
                let mut file = vec![0u8; 1024];
                file[..8].copy_from_slice(&i.to_be_bytes());
                file[1023] = 0xff;
                let (client, owner) = if i == 0 {
                    (Vec::new(), Vec::new())
                } else {
                    (
                        format!("client-{}", i % 97).into_bytes(),
                        vec![0, 0xff, (i % 251) as u8],
                    )
                };
                LockRecord {
                    file: FileId::new(file),
                    client: ClientId::new(client),
                    owner: OwnerId::new(owner),
                    kind: if i % 2 == 0 { S } else { X },
                    range: Range::new(u64::MAX - i % 3, u64::MAX - i),
                }
            })
            .collect();
        let batch: Vec<Write> = (1..).zip(&records).map(|(seq, r)| put(seq, r)).collect();
        store.apply(epoch, &batch).await.unwrap();
        store.close().await;

        let store = db.open().await;
        let (epoch, loaded) = store.begin_epoch().await.unwrap();
        assert_eq!(epoch, 2);
        assert_eq!(loaded.len(), 10_000);
        assert_eq!(loaded, sorted(records));
        assert_eq!(loaded, all(&store).await);
    }

    /// A bad row among good ones fails `begin_epoch` with `Corrupt`, and the epoch bump is rolled
    /// back with it.
    #[tokio::test]
    async fn begin_epoch_reports_a_corrupt_row_among_many_and_keeps_the_epoch() {
        for (bad_row, expected) in [
            (
                "PRAGMA ignore_check_constraints = ON; \
                 INSERT INTO lock_record VALUES (x'6666', x'63', x'6f', 0, 0, 9, 1, 1)",
                "kind 9",
            ),
            (
                "INSERT INTO lock_record VALUES (x'6666', x'63', x'6f', 0.5, 0, 1, 1, 1)",
                "column range_offset holds a value of type REAL",
            ),
            (
                "INSERT INTO lock_record VALUES (42, x'63', x'6f', 0, 0, 1, 1, 1)",
                "column file holds a value of type INTEGER",
            ),
        ] {
            let db = TestDb::new(Backend::Sqlite).await;
            let store = db.open().await;
            let (epoch, _) = store.begin_epoch().await.unwrap();
            let batch: Vec<Write> = (0..1000u64)
                .map(|i| put(i + 1, &rec(b"f", b"c", b"o", X, i * 10, 10)))
                .collect();
            store.apply(epoch, &batch).await.unwrap();
            db.raw(bad_row).await;
            let err = store.begin_epoch().await.unwrap_err();
            assert!(
                matches!(&err, StoreError::Corrupt(m) if m.contains(expected)),
                "{bad_row}: {err}"
            );
            // Rolled back: still this instance's epoch, and the connection still serves.
            assert_eq!(store.epoch().await.unwrap(), epoch);
            let first = rec(b"f", b"c", b"o", X, 0, 10);
            store.apply(epoch, &[del(1001, &first)]).await.unwrap();
        }
    }

    /// `apply` writes with the C API (store/sqlite_write.rs): every column exactly, including the
    /// epoch and sequence number `records` does not show, the ops of a batch in order.
    #[tokio::test]
    async fn apply_writes_every_column_exactly_and_in_order() {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = db.open().await;
        let (epoch, _) = store.begin_epoch().await.unwrap();
        let handle: Vec<u8> = (0..1024).map(|i| (i * 13 % 256) as u8).collect();
        let a = rec(&handle, b"\0c", b"o\xff", X, u64::MAX, u64::MAX);
        let a_shared = rec(&handle, b"\0c", b"o\xff", S, u64::MAX, 1);
        let b = rec(b"f", b"c", b"o", S, 0, 0);
        let gone = rec(b"f", b"c", b"o", X, 1 << 63, 5);
        store
            .apply(
                epoch,
                &[
                    // Put then Delete of one key, then Put again: the last one stays.
                    put(1, &a),
                    del(2, &a),
                    put(3, &a),
                    // Replaced within the batch.
                    put(4, &a_shared),
                    put(5, &gone),
                    del(6, &gone),
                    // Delete then Put of one key.
                    del(u64::MAX - 1, &b),
                    put(u64::MAX, &b),
                ],
            )
            .await
            .unwrap();
        let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        type Row = (Vec<u8>, Vec<u8>, Vec<u8>, i64, i64, i64, i64, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT file, client, owner, range_offset, range_length, kind, epoch, seq \
             FROM lock_record ORDER BY seq",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
        // Signed columns: u64::MAX is -1, so ORDER BY seq puts b (seq u64::MAX) first.
        let e = epoch as i64;
        assert_eq!(
            rows,
            vec![
                (b"f".to_vec(), b"c".to_vec(), b"o".to_vec(), 0, 0, 0, e, -1),
                (
                    handle.clone(),
                    b"\0c".to_vec(),
                    b"o\xff".to_vec(),
                    -1,
                    1,
                    0,
                    e,
                    4
                ),
            ]
        );
        assert_eq!(all(&store).await, sorted(vec![a_shared, b]));
    }

    /// A write that fails half-way through a batch fails `apply` as Unavailable and rolls back the
    /// writes before it; the connection serves the next batch. A missing server row is corrupt.
    #[tokio::test]
    async fn a_failing_write_rolls_back_its_batch() {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = db.open().await;
        let (epoch, _) = store.begin_epoch().await.unwrap();
        let kept = rec(b"f", b"c", b"o", X, 0, 1);
        store.apply(epoch, &[put(1, &kept)]).await.unwrap();
        db.raw(
            "CREATE TRIGGER refuse BEFORE INSERT ON lock_record WHEN NEW.range_offset = 666 \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .await;
        let first = rec(b"f", b"c", b"o", X, 10, 1);
        let refused = rec(b"f", b"c", b"o", X, 666, 1);
        let err = store
            .apply(epoch, &[put(2, &first), del(3, &kept), put(4, &refused)])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Unavailable(m) if m.contains("refused by the test")),
            "{err}"
        );
        assert_eq!(all(&store).await, vec![kept.clone()]);
        store.apply(epoch, &[put(5, &first)]).await.unwrap();
        assert_eq!(all(&store).await, sorted(vec![kept.clone(), first.clone()]));

        db.raw("DELETE FROM server").await;
        let err = store.apply(epoch, &[del(6, &kept)]).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Corrupt(m) if m.contains("server row is missing")),
            "{err}"
        );
        assert_eq!(all(&store).await, sorted(vec![kept, first]));
    }

    /// One request the store cannot take fails alone: in a group-commit transaction of three
    /// requests, the one before it commits and is answered Ok; it and the one after it fail (the
    /// server rebuilds its core after any failure, so nothing after it may be written).
    #[tokio::test]
    async fn group_commit_fails_only_from_the_request_the_store_cannot_take() {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = Arc::new(db.open().await);
        let (epoch, _) = store.begin_epoch().await.unwrap();
        db.raw(
            "CREATE TRIGGER refuse BEFORE INSERT ON lock_record WHEN NEW.range_offset = 666 \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        )
        .await;
        let options = GroupCommitOptions {
            halt_on_failure: true,
            ..GroupCommitOptions::default()
        };
        let commits = GroupCommit::spawn(store.clone(), epoch, options);
        let before = rec(b"f", b"a", b"o", X, 0, 1);
        let refused = rec(b"f", b"b", b"o", X, 666, 1);
        let after = rec(b"f", b"c", b"o", X, 10, 1);
        // Queued before the committer runs: one transaction.
        let tickets = [
            commits.submit_now(vec![put(1, &before)]),
            commits.submit_now(vec![put(2, &refused)]),
            commits.submit_now(vec![put(3, &after)]),
        ];
        let mut results = Vec::new();
        for t in tickets {
            results.push(t.await);
        }
        assert_eq!(results[0], Ok(()));
        assert!(
            matches!(&results[1], Err(StoreError::Unavailable(m)) if m.contains("refused by the test")),
            "{:?}",
            results[1]
        );
        assert!(results[2].is_err());
        assert_eq!(all(&store).await, vec![before]);
        commits.shutdown().await;
    }

    #[tokio::test]
    async fn a_path_in_a_missing_directory_is_unavailable() {
        let err = Store::open("sqlite:///nonexistent-brlock-dir/x/brlock.db")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    }
}

mod postgres_only {
    use super::*;

    #[tokio::test]
    async fn a_second_instance_fences_the_first() {
        super::a_second_instance_fences_the_first(Backend::Postgres).await
    }

    #[tokio::test]
    async fn a_row_with_an_unknown_kind_is_corrupt() {
        super::a_row_with_an_unknown_kind_is_corrupt(Backend::Postgres).await
    }

    /// A store failure is an error, and the store serves again once the database answers.
    #[tokio::test]
    async fn the_store_serves_again_after_its_connections_are_killed() {
        let db = TestDb::new(Backend::Postgres).await;
        let store = db.open().await;
        let (epoch, _) = store.begin_epoch().await.unwrap();
        let r = rec(b"f", b"c", b"o", X, 0, 1);
        store.apply(epoch, &[put(1, &r)]).await.unwrap();
        let name = db.url.rsplit('/').next().unwrap().to_owned();
        let mut admin = sqlx::PgConnection::connect(&admin_url()).await.unwrap();
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&name)
        .fetch_all(&mut admin)
        .await
        .unwrap();
        assert!(!killed.is_empty());
        // The first write may meet a dead connection; it must say so rather than pretend.
        match store.apply(epoch, &[del(2, &r)]).await {
            Ok(()) => {}
            Err(StoreError::Unavailable(_)) => store.apply(epoch, &[del(2, &r)]).await.unwrap(),
            Err(e) => panic!("unexpected {e}"),
        }
        assert_eq!(all(&store).await, vec![]);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable() {
        let err = Store::open("postgres://postgres@127.0.0.1:1/postgres")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    }
}
