//! Issue 13, row 6: 99 owners each queue a shared LOCK behind one holder's exclusive lock on each of
//! 2,000 files (198,000 waiters), then exclusive blocking LOCKs arrive. Every one of them asks the
//! deadlock detector whether waiting would close a cycle. Three requests are measured:
//!
//! - `fresh_owner_lock`: an owner nobody waits for LOCKs file 0 (then CANCELs, untimed, so the state
//!   is the same for the next round). It waits for the holder and all 99 queued owners.
//! - `waited_on_owner_lock`: the same, by an owner that another owner waits for, so the search must
//!   really run: from the 99 queued owners to the holder, finding no way back.
//! - `deadlock`: the holder LOCKs a file where one of the 99 holds a shared lock: a cycle (holder →
//!   that owner → holder), refused, so nothing changes.
//!
//! `cargo bench -p brlock-core --bench deadlock`. The goal: at most 1 ms of CPU per LOCK.

use std::hint::black_box;
use std::time::{Duration, Instant};

use brlock_core::*;
use criterion::{Criterion, criterion_group};

const OWNERS: u64 = 99;
const FILES: u64 = 2_000;

fn config() -> Config {
    // The flood is the point: let it in whole.
    Config {
        limits: Limits::unlimited(),
        ..Config::default()
    }
}

fn file(i: u64) -> FileId {
    FileId::new(format!("file-{i}"))
}

fn queued(i: u64) -> OwnerId {
    OwnerId::new(format!("queued-{i}"))
}

#[allow(clippy::too_many_arguments)]
fn lock(request: u64, client: &str, owner: OwnerId, file: FileId, kind: LockKind) -> Event {
    Event::Lock {
        request: RequestId(request),
        client: ClientId::from(client),
        owner,
        file,
        range: Range::new(0, 100),
        kind,
        wait: true,
        reclaim: false,
        cookie: Vec::new(),
    }
}

struct Row6 {
    core: Core,
    out: Vec<Action>,
    request: u64,
}

impl Row6 {
    fn build() -> Self {
        let started = Instant::now();
        let mut row = Row6 {
            core: Core::new(config()),
            out: Vec::new(),
            request: 0,
        };
        let holder = || OwnerId::from("holder");
        for f in 0..FILES {
            row.expect_granted(lock(0, "holder", holder(), file(f), LockKind::Exclusive));
        }
        for o in 0..OWNERS {
            for f in 0..FILES {
                row.expect_blocked(lock(0, "flood", queued(o), file(f), LockKind::Shared));
            }
        }
        // `queued-0` holds a shared lock on "side" (the holder's LOCK there closes a cycle), and
        // "watcher" waits for "waited-on" on "other", so that some owner waits for "waited-on".
        row.expect_granted(lock(
            0,
            "flood",
            queued(0),
            FileId::from("side"),
            LockKind::Shared,
        ));
        row.expect_granted(lock(
            0,
            "other",
            OwnerId::from("waited-on"),
            FileId::from("other"),
            LockKind::Shared,
        ));
        row.expect_blocked(lock(
            0,
            "watcher",
            OwnerId::from("watcher"),
            FileId::from("other"),
            LockKind::Exclusive,
        ));
        let stats = row.core.stats();
        assert_eq!(stats.waiters, OWNERS * FILES + 1);
        eprintln!(
            "row 6 built: {} waiters, {} held locks, in {:.1} s",
            stats.waiters,
            stats.held_locks,
            started.elapsed().as_secs_f64()
        );
        row
    }

    fn step(&mut self, mut event: Event) -> Outcome {
        self.request += 1;
        if let Event::Lock { request, .. } | Event::Cancel { request, .. } = &mut event {
            *request = RequestId(self.request);
        }
        self.out.clear();
        self.core
            .handle(brlock_core::Instant::ZERO, event, &mut self.out);
        self.out
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Reply { outcome, .. } => Some(outcome.clone()),
                _ => None,
            })
            .expect("every request is answered")
    }

    fn expect_granted(&mut self, event: Event) {
        let outcome = self.step(event);
        assert_eq!(outcome, Outcome::Granted);
    }

    fn expect_blocked(&mut self, event: Event) {
        let outcome = self.step(event);
        assert!(matches!(outcome, Outcome::Blocked { .. }), "{outcome:?}");
    }

    /// An exclusive LOCK of file 0 by `owner` of `client`, which queues, and its CANCEL; returns how
    /// long the LOCK alone took.
    fn lock_and_cancel(&mut self, client: &str, owner: &str) -> Duration {
        let owner = OwnerId::from(owner);
        let started = Instant::now();
        self.expect_blocked(lock(0, client, owner.clone(), file(0), LockKind::Exclusive));
        let took = started.elapsed();
        let cancel = Event::Cancel {
            request: RequestId(0),
            client: ClientId::from(client),
            owner,
            file: file(0),
            range: Range::new(0, 100),
            kind: LockKind::Exclusive,
        };
        assert_eq!(self.step(cancel), Outcome::Granted);
        took
    }

    fn deadlock(&mut self) {
        let outcome = self.step(lock(
            0,
            "holder",
            OwnerId::from("holder"),
            FileId::from("side"),
            LockKind::Exclusive,
        ));
        assert!(matches!(outcome, Outcome::Deadlock { .. }), "{outcome:?}");
        black_box(outcome);
    }
}

fn bench(c: &mut Criterion) {
    let mut row = Row6::build();
    let mut group = c.benchmark_group("row6");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    // Only the LOCK is timed; its CANCEL puts the state back for the next one.
    group.bench_function("fresh_owner_lock", |b| {
        b.iter_custom(|n| (0..n).map(|_| row.lock_and_cancel("fresh", "fresh")).sum())
    });
    group.bench_function("waited_on_owner_lock", |b| {
        b.iter_custom(|n| {
            (0..n)
                .map(|_| row.lock_and_cancel("other", "waited-on"))
                .sum()
        })
    });
    group.bench_function("deadlock", |b| b.iter(|| row.deadlock()));
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
