//! Durable lock state, end to end: brlockd on SQLite and on PostgreSQL is killed with SIGKILL in the
//! middle of a stream of lock requests and restarted; every lock whose grant reached its client comes
//! back and is reclaimable during grace, nothing else is. Two brlockd on one PostgreSQL: the second
//! is a standby that fences nothing until the leader's lease runs out (takeovers: `ha.rs`).
//!
//! PostgreSQL: `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) must be up;
//! each test creates its own database `brlock_e2e_<random>` with `psql` and drops it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brlock_native::nlm::{NlmVersion, Stat};
use brlock_testkit::client::{NlmClient, Owner, Transport};
use brlock_tests::brlockd::{Brlockd, Options};
use brlock_tests::pg::{PgDb, unique};

fn start(store: &str, grace: u64) -> Brlockd {
    Brlockd::start_with(Options {
        store: Some(store.to_string()),
        grace: Some(grace),
        ..Options::default()
    })
}

fn client(server: &Brlockd) -> NlmClient {
    NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).expect("connect")
}

/// One lock as a client holds it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    owner: usize,
    fh: &'static [u8],
    offset: u64,
    len: u64,
    exclusive: bool,
}

fn owners() -> Vec<Owner> {
    (0..4)
        .map(|i| Owner::new(&format!("host-{i}"), 100 + i as u32, &format!("oh-{i}")))
        .collect()
}

fn reclaim(c: &mut NlmClient, owner: &Owner, h: &Held) -> Stat {
    let mut args = c.lock_args(owner, h.fh, h.exclusive, h.offset, h.len, false);
    args.reclaim = true;
    c.lock_with(args).expect("reclaim answered")
}

/// A SQLite file in a fresh directory, removed on drop.
struct SqliteDb(PathBuf);

impl SqliteDb {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("brlock_e2e_sqlite"));
        std::fs::create_dir_all(&dir).unwrap();
        SqliteDb(dir)
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.0.join("brlock.db").display())
    }
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The crash test on one store URL.
fn crash_and_reclaim(url: &str) {
    let owners = owners();
    let server = start(url, 0);
    // Three clients take locks that stay; they share fh-a (shared locks) and hold ranges of fh-b.
    let mut held: Vec<Held> = vec![
        Held {
            owner: 0,
            fh: b"fh-a",
            offset: 0,
            len: 100,
            exclusive: false,
        },
        Held {
            owner: 1,
            fh: b"fh-a",
            offset: 0,
            len: 100,
            exclusive: false,
        },
        Held {
            owner: 0,
            fh: b"fh-b",
            offset: 0,
            len: 10,
            exclusive: true,
        },
        Held {
            owner: 1,
            fh: b"fh-b",
            offset: 10,
            len: 10,
            exclusive: true,
        },
        Held {
            owner: 2,
            fh: b"fh-b",
            offset: 20,
            len: 0,
            exclusive: true,
        },
    ];
    for h in &held {
        let mut c = client(&server);
        let stat = c
            .lock(&owners[h.owner], h.fh, h.exclusive, h.offset, h.len, false)
            .unwrap();
        assert_eq!(stat, Stat::Granted, "{h:?}");
    }
    // The fourth client streams LOCK (and every third time UNLOCK) of its own ranges of fh-s until
    // the server dies under it. What it was told is certain; the request in flight is not.
    let certain = Arc::new(Mutex::new(BTreeSet::<u64>::new()));
    let uncertain = Arc::new(Mutex::new(None::<u64>));
    let granted = Arc::new(AtomicBool::new(false));
    let stream = {
        let (certain, uncertain, granted) = (certain.clone(), uncertain.clone(), granted.clone());
        let mut c = client(&server);
        let owner = owners[3].clone();
        std::thread::spawn(move || {
            for i in 0.. {
                *uncertain.lock().unwrap() = Some(i);
                match c.lock(&owner, b"fh-s", true, i * 10, 10, false) {
                    Ok(Stat::Granted) => {
                        certain.lock().unwrap().insert(i);
                        granted.store(true, Ordering::Relaxed);
                    }
                    Ok(other) => panic!("stream lock {i}: {other:?}"),
                    Err(_) => return,
                }
                if i % 3 == 0 {
                    certain.lock().unwrap().remove(&i);
                    if c.unlock(&owner, b"fh-s", i * 10, 10).is_err() {
                        return;
                    }
                }
                *uncertain.lock().unwrap() = None;
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while certain.lock().unwrap().len() < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(granted.load(Ordering::Relaxed), "the stream got no grant");
    let mut server = server;
    server.kill();
    stream.join().unwrap();
    let certain: Vec<u64> = certain.lock().unwrap().iter().copied().collect();
    let uncertain = *uncertain.lock().unwrap();
    drop(server);

    // Restart into a long grace period: only reclaims get through.
    let server = start(url, 60);
    assert!(
        server.log_contains("restored", Duration::from_secs(5)),
        "no restore line:\n{}",
        server.stderr_text()
    );
    let newcomer = Owner::new("host-new", 7, "oh-new");
    let mut n = client(&server);
    assert_eq!(
        n.lock(&newcomer, b"fh-new", true, 0, 1, false).unwrap(),
        Stat::DeniedGracePeriod,
        "a non-reclaim during grace"
    );
    let mut c2 = client(&server);
    let never = Held {
        owner: 2,
        fh: b"fh-b",
        offset: 0,
        len: 5,
        exclusive: true,
    };
    assert_eq!(
        reclaim(&mut c2, &owners[2], &never),
        Stat::Denied,
        "a reclaim of a lock never held"
    );
    // Everything certain is reclaimable; the in-flight request may or may not have made it.
    let stream_locks = |i: u64| Held {
        owner: 3,
        fh: b"fh-s",
        offset: i * 10,
        len: 10,
        exclusive: true,
    };
    held.extend(certain.iter().map(|&i| stream_locks(i)));
    // A lock the stream never reached is not reclaimable either.
    let beyond = stream_locks(certain.last().copied().unwrap_or(0) + 1000);
    assert_eq!(reclaim(&mut n, &owners[3], &beyond), Stat::Denied);
    // The request in flight at the kill: durable or not, both are right (first, while grace lasts).
    if let Some(i) = uncertain {
        let mut c = client(&server);
        let stat = reclaim(&mut c, &owners[3], &stream_locks(i));
        assert!(
            matches!(stat, Stat::Granted | Stat::Denied),
            "in-flight {i}: {stat:?}"
        );
    }
    for h in &held {
        let mut c = client(&server);
        assert_eq!(
            reclaim(&mut c, &owners[h.owner], h),
            Stat::Granted,
            "reclaim {h:?}"
        );
    }
    // Every client reclaimed all it held: grace is over before its 60 s.
    assert_eq!(
        n.lock(&newcomer, b"fh-new", true, 0, 1, false).unwrap(),
        Stat::Granted,
        "grace should have ended once everything was reclaimed; log:\n{}",
        server.stderr_text()
    );
    assert!(server.log_contains("grace period ended", Duration::from_secs(5)));
    // And the reclaimed locks are held: fh-b [0, 10) is owner 0's.
    assert_eq!(
        n.lock(&newcomer, b"fh-b", true, 0, 1, false).unwrap(),
        Stat::Denied
    );

    // Crash again; this time only owner 0 reclaims, and grace runs out: the rest is released.
    let mut server = server;
    server.kill();
    drop(server);
    let server = start(url, 2);
    let mut c = client(&server);
    assert_eq!(reclaim(&mut c, &owners[0], &held[2]), Stat::Granted);
    let mut n = client(&server);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match n.lock(&newcomer, b"fh-b", true, 10, 10, false).unwrap() {
            Stat::Granted => break,
            Stat::DeniedGracePeriod if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => panic!("owner 1's unreclaimed lock: {other:?}"),
        }
    }
    // Owner 0's reclaimed lock is still held; owner 2's unreclaimed [20, EOF) is gone.
    assert_eq!(
        n.lock(&newcomer, b"fh-b", true, 0, 1, false).unwrap(),
        Stat::Denied
    );
    assert_eq!(
        n.lock(&newcomer, b"fh-b", true, 20, 0, false).unwrap(),
        Stat::Granted
    );
}

#[test]
fn sqlite_crash_keeps_every_acknowledged_lock() {
    let db = SqliteDb::new();
    crash_and_reclaim(&db.url());
}

#[test]
fn postgres_crash_keeps_every_acknowledged_lock() {
    let db = PgDb::new();
    crash_and_reclaim(&db.url());
}

/// A second brlockd on the same PostgreSQL database waits as a standby: it fences nothing, and the
/// leader keeps granting. Once the leader is gone (SIGTERM gives the lease up) the standby serves
/// on the same address, holding what the leader acknowledged.
#[test]
fn postgres_second_instance_is_a_standby_until_the_leader_goes() {
    let db = PgDb::new();
    let owner = Owner::new("host-f", 1, "oh-f");
    let mut old = start(&db.url(), 0);
    let mut c = client(&old);
    assert_eq!(
        c.lock(&owner, b"fh", true, 0, 10, false).unwrap(),
        Stat::Granted
    );
    let mut standby = Brlockd::spawn_with(Options {
        store: Some(db.url()),
        grace: Some(30),
        listen: Some(old.addr.to_string()),
        ..Options::default()
    });
    assert!(
        standby.log_contains("standby: waiting for the leader", Duration::from_secs(15)),
        "{}",
        standby.stderr_text()
    );
    // Not fenced: the leader's writes are taken.
    assert_eq!(
        c.lock(&owner, b"fh", true, 100, 10, false).unwrap(),
        Stat::Granted
    );
    assert!(!standby.is_listening());
    assert!(!old.log_contains("fenced: another brlockd", Duration::from_millis(200)));
    // A clean stop gives the lease up: the standby takes over at once, on the same address.
    assert_eq!(
        old.terminate(Duration::from_secs(15))
            .and_then(|s| s.code()),
        Some(0)
    );
    assert!(
        standby.wait_listening(Duration::from_secs(15)),
        "{}",
        standby.stderr_text()
    );
    assert_eq!(standby.addr, old.addr);
    let mut n = client(&standby);
    for offset in [0, 100] {
        let mut args = n.lock_args(&owner, b"fh", true, offset, 10, false);
        args.reclaim = true;
        assert_eq!(
            n.lock_with(args).unwrap(),
            Stat::Granted,
            "reclaim at {offset}"
        );
    }
    let other = Owner::new("host-g", 2, "oh-g");
    assert_eq!(
        n.lock(&other, b"fh", true, 200, 10, false).unwrap(),
        Stat::Granted
    );
}

/// A second brlockd started by mistake on the same PostgreSQL database and the same address is a
/// standby: it neither binds the address nor touches the epoch, so the running one is not fenced and
/// keeps writing.
#[test]
fn postgres_second_start_on_a_taken_address_does_not_fence_the_first() {
    let db = PgDb::new();
    let owner = Owner::new("host-h", 1, "oh-h");
    let mut first = start(&db.url(), 0);
    let mut c = client(&first);
    assert_eq!(
        c.lock(&owner, b"fh", true, 0, 10, false).unwrap(),
        Stat::Granted
    );
    let epoch = || {
        db.query("SELECT epoch FROM server WHERE id = 1")
            .trim()
            .to_string()
    };
    let before = epoch();
    let mut second = Brlockd::spawn_with(Options {
        store: Some(db.url()),
        listen: Some(first.addr.to_string()),
        ..Options::default()
    });
    assert!(
        second.log_contains("standby: waiting for the leader", Duration::from_secs(15)),
        "{}",
        second.stderr_text()
    );
    // Still the store's instance: its writes are taken.
    assert_eq!(
        c.lock(&owner, b"fh", true, 20, 10, false).unwrap(),
        Stat::Granted
    );
    assert_eq!(epoch(), before, "a standby begins no epoch");
    assert!(second.is_running() && !second.is_listening());
    assert!(first.is_running());
    assert!(!first.log_contains("fenced: another brlockd", Duration::from_millis(300)));
}
