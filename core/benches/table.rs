//! Lock+unlock pairs and TEST calls on a file that already holds 10, 1,000 and 100,000 locks of other
//! owners, in the core and — the baseline — in the Linux kernel's OFD locks on a temp file, plus the
//! core's memory per held lock (a counting allocator).
//!
//! `cargo bench -p brlock-core --bench table`; the summary lines at the end print ns/op for both, the
//! ratio, and bytes per lock. The kernel keeps one list per inode, so its other locks are held by one
//! open file description (RLIMIT_NOFILE rules out 100,000 descriptions); its list is as long as ours.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use brlock_core::*;
use criterion::{BenchmarkId, Criterion, criterion_group};

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

const SIZES: [u64; 3] = [10, 1_000, 100_000];
const STRIDE: u64 = 10;

fn config() -> Config {
    let mut config = Config::default();
    config.limits.locks_per_file = u64::MAX;
    config.limits.locks_per_client = u64::MAX;
    config.limits.locks_total = u64::MAX;
    config
}

fn lock(request: u64, owner: &OwnerId, offset: u64, kind: LockKind) -> Event {
    Event::Lock {
        request: RequestId(request),
        client: ClientId::from("bench"),
        owner: owner.clone(),
        file: FileId::from("file"),
        range: Range::new(offset, 5),
        kind,
        wait: false,
        reclaim: false,
        cookie: Vec::new(),
    }
}

/// A core whose file holds `n` exclusive locks of `n` other owners, 5 bytes every 10.
fn core_with(n: u64) -> Core {
    let mut core = Core::new(config());
    let mut out = Vec::new();
    for i in 0..n {
        core.handle(
            brlock_core::Instant::ZERO,
            lock(
                i,
                &OwnerId::new(i.to_be_bytes()),
                i * STRIDE,
                LockKind::Exclusive,
            ),
            &mut out,
        );
        out.clear();
    }
    assert_eq!(core.stats().held_locks, n);
    core
}

struct CoreOps {
    core: Core,
    out: Vec<Action>,
    me: OwnerId,
    gap: u64,
}

impl CoreOps {
    fn new(n: u64) -> Self {
        // A free gap in the middle of the file: the work is finding no conflict among n neighbours.
        Self {
            core: core_with(n),
            out: Vec::new(),
            me: OwnerId::from("me"),
            gap: (n / 2) * STRIDE + 5,
        }
    }
    fn lock_unlock(&mut self) {
        self.core.handle(
            brlock_core::Instant::ZERO,
            lock(1, &self.me, self.gap, LockKind::Exclusive),
            &mut self.out,
        );
        let unlock = Event::Unlock {
            request: RequestId(2),
            client: ClientId::from("bench"),
            owner: self.me.clone(),
            file: FileId::from("file"),
            range: Range::new(self.gap, 5),
        };
        self.core
            .handle(brlock_core::Instant::ZERO, unlock, &mut self.out);
        self.out.clear();
    }
    fn test(&mut self) {
        let test = Event::Test {
            request: RequestId(3),
            client: ClientId::from("bench"),
            owner: self.me.clone(),
            file: FileId::from("file"),
            range: Range::new(self.gap - 5, 5), // conflicts with a neighbour: reports it
            kind: LockKind::Shared,
        };
        self.core
            .handle(brlock_core::Instant::ZERO, test, &mut self.out);
        self.out.clear();
    }
}

struct KernelOps {
    _dir: std::path::PathBuf,
    _others: std::fs::File,
    mine: std::fs::File,
    gap: u64,
}

fn ofd(fd: i32, cmd: libc::c_int, kind: libc::c_short, start: u64, len: u64) -> libc::flock {
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = start as libc::off_t;
    fl.l_len = len as libc::off_t;
    fl.l_pid = 0;
    let rc = unsafe { libc::fcntl(fd, cmd, &mut fl) };
    assert!(rc == 0, "fcntl: {}", std::io::Error::last_os_error());
    fl
}

impl KernelOps {
    fn new(n: u64) -> Self {
        let dir = std::env::temp_dir().join(format!("brlock-bench-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("file");
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        let others = open();
        for i in 0..n {
            ofd(
                others.as_raw_fd(),
                libc::F_OFD_SETLK,
                libc::F_WRLCK as _,
                i * STRIDE,
                5,
            );
        }
        Self {
            _dir: dir,
            _others: others,
            mine: open(),
            gap: (n / 2) * STRIDE + 5,
        }
    }
    fn lock_unlock(&mut self) {
        ofd(
            self.mine.as_raw_fd(),
            libc::F_OFD_SETLK,
            libc::F_WRLCK as _,
            self.gap,
            5,
        );
        ofd(
            self.mine.as_raw_fd(),
            libc::F_OFD_SETLK,
            libc::F_UNLCK as _,
            self.gap,
            5,
        );
    }
    fn test(&mut self) {
        let fl = ofd(
            self.mine.as_raw_fd(),
            libc::F_OFD_GETLK,
            libc::F_RDLCK as _,
            self.gap - 5,
            5,
        );
        black_box(fl.l_type);
    }
}

impl Drop for KernelOps {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("lock_unlock");
    for n in SIZES {
        let mut core = CoreOps::new(n);
        group.bench_with_input(BenchmarkId::new("core", n), &n, |b, _| {
            b.iter(|| core.lock_unlock())
        });
        let mut kernel = KernelOps::new(n);
        group.bench_with_input(BenchmarkId::new("kernel_ofd", n), &n, |b, _| {
            b.iter(|| kernel.lock_unlock())
        });
    }
    group.finish();
    let mut group = c.benchmark_group("test");
    for n in SIZES {
        let mut core = CoreOps::new(n);
        group.bench_with_input(BenchmarkId::new("core", n), &n, |b, _| {
            b.iter(|| core.test())
        });
        let mut kernel = KernelOps::new(n);
        group.bench_with_input(BenchmarkId::new("kernel_ofd", n), &n, |b, _| {
            b.iter(|| kernel.test())
        });
    }
    group.finish();
}

/// ns per call of `f`: the best of five rounds of about 100 ms each.
fn ns_per_op(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    f();
    let once = start.elapsed().as_nanos().max(1) as u64;
    let rounds = (100_000_000 / once).clamp(10, 200_000);
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..rounds {
                f();
            }
            start.elapsed().as_nanos() as f64 / rounds as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn summary() {
    println!("\nsummary (best of 5 rounds of ~100 ms; lock+unlock counts as one operation)");
    println!(
        "{:>8} {:>10} {:>14} {:>16} {:>8}",
        "locks", "op", "core ns/op", "kernel ns/op", "ratio"
    );
    let mut core_at = Vec::new();
    for n in SIZES {
        let mut core = CoreOps::new(n);
        let mut kernel = KernelOps::new(n);
        let (c, k) = (
            ns_per_op(|| core.lock_unlock()),
            ns_per_op(|| kernel.lock_unlock()),
        );
        println!(
            "{n:>8} {:>10} {c:>14.0} {k:>16.0} {:>7.1}x",
            "lock+unl",
            k / c
        );
        let (ct, kt) = (ns_per_op(|| core.test()), ns_per_op(|| kernel.test()));
        println!(
            "{n:>8} {:>10} {ct:>14.0} {kt:>16.0} {:>7.1}x",
            "test",
            kt / ct
        );
        core_at.push((c, ct));
    }
    let (first, last) = (core_at[0], core_at[core_at.len() - 1]);
    println!(
        "core cost at {} locks vs {}: lock+unlock {:.2}x, test {:.2}x (goal <= 2x)",
        SIZES[SIZES.len() - 1],
        SIZES[0],
        last.0 / first.0,
        last.1 / first.1
    );
    memory();
}

/// Bytes per held lock at 100,000 locks, of as many owners and of one.
fn memory() {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let core = core_with(100_000);
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    println!(
        "memory: {:.1} bytes per held lock at 100,000 locks of 100,000 owners (goal <= 200)",
        (after - before) as f64 / 100_000.0
    );
    drop(core);
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut core = Core::new(config());
    let mut out = Vec::new();
    let owner = OwnerId::from("one");
    for i in 0..100_000u64 {
        core.handle(
            brlock_core::Instant::ZERO,
            lock(i, &owner, i * STRIDE, LockKind::Exclusive),
            &mut out,
        );
        out.clear();
    }
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    println!(
        "memory: {:.1} bytes per held lock at 100,000 locks of one owner",
        (after - before) as f64 / 100_000.0
    );
}

criterion_group!(benches, bench);

/// `BRLOCK_PAIRS=<pairs>:<held locks>` runs that many lock+unlock pairs and nothing else: a driver
/// for `valgrind --tool=callgrind`, run at two pair counts so the difference divided by the extra
/// pairs is the instructions of one pair, whatever the machine's load.
fn pairs_only(spec: &str) {
    let (pairs, held) = spec
        .split_once(':')
        .and_then(|(p, n)| Some((p.parse::<u64>().ok()?, n.parse::<u64>().ok()?)))
        .expect("BRLOCK_PAIRS=<pairs>:<held locks>");
    let mut core = CoreOps::new(held);
    for _ in 0..pairs {
        core.lock_unlock();
    }
    black_box(core.core.stats().held_locks);
}

fn main() {
    if let Some(spec) = std::env::var_os("BRLOCK_PAIRS") {
        return pairs_only(&spec.to_string_lossy());
    }
    if std::env::var_os("BRLOCK_MEMORY_ONLY").is_some() {
        return memory();
    }
    // BRLOCK_SUMMARY_ONLY=1 skips criterion's runs and prints the comparison table alone.
    if std::env::var_os("BRLOCK_SUMMARY_ONLY").is_none() {
        benches();
        criterion::Criterion::default()
            .configure_from_args()
            .final_summary();
    }
    summary();
}
