//! What the core's tables cost in memory, measured with a counting global allocator (this file holds
//! one test, so nothing else allocates meanwhile): bytes per held lock, per waiter, per share, per
//! owner, per file and per client host, and the worst case at the default limits — every lock, waiter
//! and share as large as the NLM intake lets it be, each with a file, owner and client of its own.
//! The worst case must fit in 1 GiB.
//!
//! By default the worst case is built at a tenth of the default limits and scaled up (every cost is per
//! entry); `BRLOCK_MEMORY_FULL=1` builds it at the limits themselves (about 0.5 GiB; use `--release`).
//! `cargo test -p brlock-core --test memory -- --nocapture` prints the figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

use brlock_core::*;

struct Counting;
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> i64 {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// The largest ids brlockd's intake passes on (issue 13): a v4 file handle of 128 bytes, a
/// caller_name of 1,024 (the client), an owner made of caller_name, svid and an oh of 1,024 (plus
/// brlockd's 16 bytes of framing), and a LOCK cookie of 1,024 (plus brlockd's 4 bytes of framing).
const FILE_MAX: usize = 128;
const CLIENT_MAX: usize = 1_024;
const OWNER_MAX: usize = 16 + 1_024 + 1_024;
const COOKIE_MAX: usize = 4 + 1_024;

/// Distinct bytes of length `len` for entry `i` of kind `tag`.
fn id(tag: u8, i: u64, len: usize) -> Vec<u8> {
    let mut b = vec![tag; len.max(9)];
    b[1..9].copy_from_slice(&i.to_be_bytes());
    b.truncate(len.max(9));
    b
}

struct Driver {
    core: Core,
    out: Vec<Action>,
    request: u64,
}

impl Driver {
    fn new() -> Self {
        Driver {
            core: Core::new(Config::default()),
            out: Vec::with_capacity(64),
            request: 0,
        }
    }

    fn run(&mut self, event: Event) -> Outcome {
        self.out.clear();
        self.core.handle(Instant::ZERO, event, &mut self.out);
        self.out
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::Reply { outcome, .. } => Some(outcome.clone()),
                _ => None,
            })
            .expect("a reply")
    }

    #[allow(clippy::too_many_arguments)]
    fn lock(
        &mut self,
        client: Vec<u8>,
        owner: Vec<u8>,
        file: Vec<u8>,
        offset: u64,
        kind: LockKind,
        wait: bool,
        cookie: Vec<u8>,
    ) -> Outcome {
        self.request += 1;
        self.run(Event::Lock {
            request: RequestId(self.request),
            client: ClientId::from(client),
            owner: OwnerId::from(owner),
            file: FileId::from(file),
            range: Range::new(offset, 1),
            kind,
            wait,
            reclaim: false,
            cookie,
        })
    }

    fn share(&mut self, client: Vec<u8>, owner: Vec<u8>, file: Vec<u8>) -> Outcome {
        self.request += 1;
        self.run(Event::Share {
            request: RequestId(self.request),
            client: ClientId::from(client),
            owner: OwnerId::from(owner),
            file: FileId::from(file),
            access: ShareMode::Read,
            deny: ShareMode::None,
            reclaim: false,
        })
    }
}

/// Bytes per entry of `n` entries made by `make(driver, i)` on a core `setup` prepared.
fn per_entry(
    n: u64,
    setup: impl FnOnce(&mut Driver),
    mut make: impl FnMut(&mut Driver, u64),
) -> f64 {
    let mut d = Driver::new();
    setup(&mut d);
    let before = live();
    for i in 0..n {
        make(&mut d, i);
    }
    let bytes = live() - before;
    drop(d);
    bytes as f64 / n as f64
}

fn granted(outcome: Outcome) {
    assert_eq!(outcome, Outcome::Granted);
}

fn blocked(outcome: Outcome) {
    assert!(matches!(outcome, Outcome::Blocked { .. }), "{outcome:?}");
}

/// Short ids: what the structures cost, apart from the ids' bytes.
struct PerEntry {
    lock: f64,
    lock_own_owner: f64,
    lock_own_client: f64,
    lock_own_file: f64,
    waiter: f64,
    waiter_own_owner: f64,
    share: f64,
}

fn measure_per_entry() -> PerEntry {
    const N: u64 = 900; // under the 1,000 locks a file may hold
    let x = LockKind::Exclusive;
    let s = |i: u64| id(b's', i, 12);
    PerEntry {
        lock: per_entry(
            N,
            |_| {},
            |d, i| granted(d.lock(s(0), s(0), s(0), i * 2, x, false, vec![])),
        ),
        lock_own_owner: per_entry(
            N,
            |_| {},
            |d, i| granted(d.lock(s(0), s(i), s(0), i, x, false, vec![])),
        ),
        lock_own_client: per_entry(
            N,
            |_| {},
            |d, i| granted(d.lock(s(i), s(i), s(0), i, x, false, vec![])),
        ),
        lock_own_file: per_entry(
            N,
            |_| {},
            |d, i| granted(d.lock(s(0), s(0), s(i), 0, x, false, vec![])),
        ),
        // Waiters of one owner, each on a file the holder keeps busy (set up beforehand).
        waiter: per_entry(
            N,
            |d| {
                for i in 0..N {
                    granted(d.lock(s(0), s(0), s(i), 0, x, false, vec![]));
                }
            },
            |d, i| blocked(d.lock(s(1), s(1), s(i), 0, x, true, vec![0; 8])),
        ),
        // Waiters of distinct owners of distinct clients, 100 to a busy file.
        waiter_own_owner: per_entry(
            N,
            |d| {
                for f in 0..N / 100 {
                    granted(d.lock(s(0), s(0), s(f), 0, x, false, vec![]));
                }
            },
            |d, i| blocked(d.lock(s(1 + i), s(1 + i), s(i / 100), 0, x, true, vec![0; 8])),
        ),
        share: per_entry(N, |_| {}, |d, i| granted(d.share(s(0), s(0), s(i)))),
    }
}

/// The worst case at `1/scale` of the default limits: every held lock, waiter and share with a file,
/// owner and client of its own, all ids and cookies as long as the intake allows. Returns the bytes.
fn worst_case(scale: u64) -> i64 {
    let limits = Limits::default();
    let (locks, waiters, shares) = (
        limits.locks_total / scale,
        limits.waiters_total / scale,
        limits.shares_total / scale,
    );
    let per_file = limits.waiters_per_file;
    let before = live();
    let mut d = Driver::new();
    let x = LockKind::Exclusive;
    for i in 0..locks {
        let outcome = d.lock(
            id(b'c', i, CLIENT_MAX),
            id(b'o', i, OWNER_MAX),
            id(b'f', i, FILE_MAX),
            0,
            x,
            false,
            vec![],
        );
        granted(outcome);
    }
    // Waiters fill the queues of the first files, each from a client of its own.
    for i in 0..waiters {
        let outcome = d.lock(
            id(b'C', i, CLIENT_MAX),
            id(b'O', i, OWNER_MAX),
            id(b'f', i / per_file, FILE_MAX),
            0,
            x,
            true,
            id(b'k', i, COOKIE_MAX),
        );
        blocked(outcome);
    }
    for i in 0..shares {
        let outcome = d.share(
            id(b'd', i, CLIENT_MAX),
            id(b'p', i, OWNER_MAX),
            id(b'g', i, FILE_MAX),
        );
        granted(outcome);
    }
    let stats = d.core.stats();
    assert_eq!(
        (stats.held_locks, stats.waiters, stats.clients),
        (locks, waiters, locks + waiters + shares)
    );
    let bytes = live() - before;
    drop(d);
    bytes
}

#[test]
fn every_table_at_its_default_limit_fits_in_1_gib() {
    let e = measure_per_entry();
    println!("bytes per entry (short ids, so structure alone):");
    println!(
        "  held lock, in its owner's file:            {:>6.0}",
        e.lock
    );
    println!(
        "  held lock of an owner of its own:          {:>6.0}",
        e.lock_own_owner
    );
    println!(
        "  held lock of a client (host) of its own:   {:>6.0}",
        e.lock_own_client
    );
    println!(
        "  held lock in a file of its own:            {:>6.0}",
        e.lock_own_file
    );
    println!(
        "  waiter of an owner with others:            {:>6.0}",
        e.waiter
    );
    println!(
        "  waiter of a client and owner of its own:   {:>6.0}",
        e.waiter_own_owner
    );
    println!(
        "  share reservation:                         {:>6.0}",
        e.share
    );
    println!(
        "  so an owner costs ~{:.0}, a client host ~{:.0}, a file ~{:.0}",
        e.lock_own_owner - e.lock,
        e.lock_own_client - e.lock_own_owner,
        e.lock_own_file - e.lock
    );

    let full = std::env::var_os("BRLOCK_MEMORY_FULL").is_some();
    let scale = if full { 1 } else { 10 };
    let total = worst_case(scale) * scale as i64;
    let limits = Limits::default();
    let entries = limits.locks_total + limits.waiters_total + limits.shares_total;
    println!(
        "worst case at the default limits ({} locks, {} waiters, {} shares, each with its own \
         {FILE_MAX}-byte file, {OWNER_MAX}-byte owner and {CLIENT_MAX}-byte client; {}): \
         {:.0} MiB, {:.0} bytes per entry",
        limits.locks_total,
        limits.waiters_total,
        limits.shares_total,
        if full {
            "built whole"
        } else {
            "a tenth built, times ten"
        },
        total as f64 / (1 << 20) as f64,
        total as f64 / entries as f64
    );
    // Well within 1 GiB: at most five eighths of it, so the host's own tables have room too.
    assert!(
        total < 640 << 20,
        "the core's worst case, {total} bytes, leaves the host less than 3/8 of 1 GiB"
    );
    // Structure alone must stay small; the ids dominate the worst case.
    assert!(e.lock < 200.0, "a held lock record costs {} bytes", e.lock);
}
