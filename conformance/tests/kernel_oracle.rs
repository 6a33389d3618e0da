//! The Linux kernel as an oracle: quickcheck-generated non-blocking lock/unlock/test traces over K ≥ 4
//! owners of one file run through the core (Linux profile) and through OFD locks (`F_OFD_SETLK` /
//! `F_OFD_GETLK`, one open file description per owner) on a temp file. Every answer must agree, a
//! denial's holder must be a lock that really conflicts on both sides, and after every step each
//! owner's held ranges must be the same (read from `/proc/self/fdinfo/FD`, which lists the OFD locks
//! of that open file description).
//!
//! `BRLOCK_CASES=N` sets the number of traces (default 5000); `BRLOCK_SEED=S` reruns trace S alone
//! (with `BRLOCK_CASES`, S is the first of N consecutive seeds). Known differences between the kernel
//! and NLM semantics are listed in conformance/README.md; none is skipped here.
#![cfg(target_os = "linux")]

#[path = "common/kernel_trace.rs"]
mod kernel_trace;

use std::fs::File;
use std::os::fd::AsRawFd;

use brlock_core::{Action, LockKind, Outcome, Replay};
use kernel_trace::{KernelTrace, MAX, Op};

const DEFAULT_CASES: u64 = 5_000;
/// quickcheck's size: the most ops in one trace.
const SIZE: usize = 40;

/// A held lock as both sides can name it: kind and inclusive span.
type Held = (LockKind, u64, u64);

/// What the kernel answered.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Done,
    /// EAGAIN from F_OFD_SETLK.
    Conflict,
    /// F_OFD_GETLK found this lock in the way.
    Blocked(Held),
    /// EOVERFLOW / EINVAL: the range reaches past OFFSET_MAX.
    TooBig,
}

struct Kernel {
    path: std::path::PathBuf,
    fds: Vec<File>,
}

impl Kernel {
    fn new(owners: usize) -> Kernel {
        let path =
            std::env::temp_dir().join(format!("brlock-kernel-oracle-{}", std::process::id()));
        File::create(&path).expect("create the temp file");
        let fds = (0..owners)
            .map(|_| {
                File::options()
                    .read(true)
                    .write(true)
                    .open(&path)
                    .expect("open the temp file")
            })
            .collect();
        Kernel { path, fds }
    }

    fn fcntl(
        &self,
        owner: usize,
        cmd: libc::c_int,
        kind: libc::c_int,
        start: u64,
        len: u64,
    ) -> Result<libc::flock, i32> {
        // SAFETY: flock is plain old data; all-zero is a valid value (l_pid must be 0 for OFD locks).
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = start as libc::off_t;
        fl.l_len = len as libc::off_t;
        // SAFETY: a valid fd and a pointer to a live flock, as F_OFD_SETLK/F_OFD_GETLK expect.
        let rc = unsafe {
            libc::fcntl(
                self.fds[owner].as_raw_fd(),
                cmd,
                &mut fl as *mut libc::flock,
            )
        };
        if rc == 0 {
            Ok(fl)
        } else {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        }
    }

    fn run(&self, op: &Op) -> Answer {
        let too_big = |e: i32| {
            assert!(
                e == libc::EOVERFLOW || e == libc::EINVAL,
                "unexpected errno {e} for {op:?}"
            );
            Answer::TooBig
        };
        let ty = |kind| {
            if kind == LockKind::Shared {
                libc::F_RDLCK
            } else {
                libc::F_WRLCK
            }
        };
        match *op {
            Op::Lock { owner, kind, range } => match self.fcntl(
                owner,
                libc::F_OFD_SETLK,
                ty(kind),
                range.offset,
                range.length,
            ) {
                Ok(_) => Answer::Done,
                Err(e) if e == libc::EAGAIN || e == libc::EACCES => Answer::Conflict,
                Err(e) => too_big(e),
            },
            Op::Unlock { owner, range } => match self.fcntl(
                owner,
                libc::F_OFD_SETLK,
                libc::F_UNLCK,
                range.offset,
                range.length,
            ) {
                Ok(_) => Answer::Done,
                Err(e) => too_big(e),
            },
            Op::Test { owner, kind, range } => match self.fcntl(
                owner,
                libc::F_OFD_GETLK,
                ty(kind),
                range.offset,
                range.length,
            ) {
                Ok(fl) if fl.l_type == libc::F_UNLCK as libc::c_short => Answer::Done,
                Ok(fl) => {
                    // OFD locks have no process: the kernel reports l_pid -1 (see the README).
                    assert_eq!(fl.l_pid, -1, "holder pid of an OFD lock");
                    let kind = if fl.l_type == libc::F_RDLCK as libc::c_short {
                        LockKind::Shared
                    } else {
                        LockKind::Exclusive
                    };
                    let (start, len) = (fl.l_start as u64, fl.l_len as u64);
                    Answer::Blocked((kind, start, if len == 0 { MAX } else { start + len - 1 }))
                }
                Err(e) => too_big(e),
            },
        }
    }

    /// The OFD locks of the first `owners` open file descriptions, sorted, from /proc/self/fdinfo.
    fn held(&self, owners: usize) -> Vec<Vec<Held>> {
        self.fds[..owners]
            .iter()
            .map(|fd| {
                let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
                    .expect("fdinfo");
                let mut held: Vec<Held> = info
                    .lines()
                    .filter_map(|l| l.strip_prefix("lock:"))
                    .map(|l| {
                        // "1: OFDLCK ADVISORY  WRITE -1 fe:00:123 0 EOF"
                        let f: Vec<&str> = l.split_whitespace().collect();
                        assert_eq!(f[1], "OFDLCK", "{l}");
                        let kind = if f[3] == "READ" {
                            LockKind::Shared
                        } else {
                            LockKind::Exclusive
                        };
                        let end = if f[7] == "EOF" {
                            MAX
                        } else {
                            f[7].parse().expect("end")
                        };
                        (kind, f[6].parse().expect("start"), end)
                    })
                    .collect();
                held.sort();
                held
            })
            .collect()
    }

    fn unlock_all(&self) {
        for owner in 0..self.fds.len() {
            self.fcntl(owner, libc::F_OFD_SETLK, libc::F_UNLCK, 0, 0)
                .expect("unlock everything");
        }
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn core_held(replay: &Replay, owners: usize) -> Vec<Vec<Held>> {
    let mut held = vec![Vec::new(); owners];
    for lock in replay.core.held_locks(&brlock_core::FileId::from("f")) {
        let n: usize = lock.owner.to_string()[1..].parse().expect("owner oN");
        let r = lock.range;
        held[n].push((
            lock.kind,
            r.offset,
            if r.length == 0 {
                MAX
            } else {
                r.offset + r.length - 1
            },
        ));
    }
    held.iter_mut().for_each(|h| h.sort());
    held
}

/// Whether `lock`, held by `holder` before the step, really stands in the way of `op`'s request.
fn conflicts(
    before: &[Vec<Held>],
    holder: usize,
    lock: Held,
    owner: usize,
    kind: LockKind,
    start: u64,
    end: u64,
) -> bool {
    holder != owner
        && before[holder].contains(&lock)
        && lock.0.conflicts_with(kind)
        && lock.1 <= end
        && start <= lock.2
}

fn span(range: brlock_core::Range) -> (u64, u64) {
    (
        range.offset,
        if range.length == 0 {
            MAX
        } else {
            range.offset + range.length - 1
        },
    )
}

/// How often each kind of answer came up, so a run shows it exercised every comparison.
#[derive(Default, Debug)]
struct Tally {
    granted: u64,
    denied: u64,
    test_denied: u64,
    too_big: u64,
}

/// Runs one trace on both sides; the first disagreement, described.
fn check(kernel: &Kernel, trace: &KernelTrace) -> Result<Tally, String> {
    let mut tally = Tally::default();
    kernel.unlock_all();
    let core_trace = trace.to_trace();
    let mut replay = Replay::start(&core_trace.header).expect("a Linux header");
    let mut before = kernel.held(trace.owners);
    for (i, (op, step)) in trace.ops.iter().zip(&core_trace.steps).enumerate() {
        let n = i + 1;
        let actions = replay.step(step).expect("monotonic time");
        replay
            .core
            .check_invariants()
            .map_err(|e| format!("step {n}: invariant broken: {e}"))?;
        let outcome = match actions.as_slice() {
            [.., Action::Reply { outcome, .. }] => outcome.clone(),
            other => return Err(format!("step {n}: no reply among {other:?}")),
        };
        let answer = kernel.run(op);
        let (owner, kind, range) = match *op {
            Op::Lock { owner, kind, range } | Op::Test { owner, kind, range } => {
                (owner, kind, range)
            }
            Op::Unlock { owner, range } => (owner, LockKind::Exclusive, range),
        };
        let agree = match (&outcome, &answer) {
            (Outcome::Granted, Answer::Done) => {
                tally.granted += 1;
                true
            }
            (Outcome::TooBig, Answer::TooBig) => {
                tally.too_big += 1;
                true
            }
            (Outcome::Denied { holder }, Answer::Conflict | Answer::Blocked(_)) => {
                let (start, end) = span(range);
                let (h_start, h_end) = span(holder.range);
                let h: usize = holder.owner.to_string()[1..].parse().expect("owner oN");
                if !conflicts(
                    &before,
                    h,
                    (holder.kind, h_start, h_end),
                    owner,
                    kind,
                    start,
                    end,
                ) {
                    return Err(format!(
                        "step {n}: {op:?}: the core's holder {holder:?} does not conflict (held before: {before:?})"
                    ));
                }
                tally.denied += 1;
                if let Answer::Blocked(lock) = answer {
                    tally.test_denied += 1;
                    if !(0..trace.owners)
                        .any(|o| conflicts(&before, o, lock, owner, kind, start, end))
                    {
                        return Err(format!(
                            "step {n}: {op:?}: the kernel's holder {lock:?} does not conflict (held before: {before:?})"
                        ));
                    }
                }
                matches!(
                    (op, &answer),
                    (Op::Lock { .. }, Answer::Conflict) | (Op::Test { .. }, Answer::Blocked(_))
                )
            }
            _ => false,
        };
        if !agree {
            return Err(format!(
                "step {n}: {op:?}: core {outcome:?}, kernel {answer:?} (held before: {before:?})"
            ));
        }
        let (core, kern) = (core_held(&replay, trace.owners), kernel.held(trace.owners));
        if core != kern {
            return Err(format!(
                "step {n}: {op:?}: held locks differ\n  core:   {core:?}\n  kernel: {kern:?}"
            ));
        }
        before = kern;
    }
    Ok(tally)
}

/// Drops ops while the trace still fails, so the report shows a short trace.
fn shrink(kernel: &Kernel, mut trace: KernelTrace) -> KernelTrace {
    use quickcheck::Arbitrary;
    'again: loop {
        for shorter in trace.shrink() {
            if check(kernel, &shorter).is_err() {
                trace = shorter;
                continue 'again;
            }
        }
        return trace;
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

#[test]
fn the_core_answers_like_the_kernels_ofd_locks() {
    let seed = env_u64("BRLOCK_SEED");
    let cases = env_u64("BRLOCK_CASES").unwrap_or(if seed.is_some() { 1 } else { DEFAULT_CASES });
    let first = seed.unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970");
        t.as_nanos() as u64 & 0xffff_ffff_ffff
    });
    eprintln!(
        "kernel oracle: {cases} traces, seeds {first}..{}",
        first + cases
    );
    let kernel = Kernel::new(6);
    let mut total = Tally::default();
    for seed in first..first + cases {
        let trace = KernelTrace::from_seed(seed, SIZE);
        match check(&kernel, &trace) {
            Ok(t) => {
                total.granted += t.granted;
                total.denied += t.denied;
                total.test_denied += t.test_denied;
                total.too_big += t.too_big;
            }
            Err(error) => {
                let small = shrink(&kernel, trace);
                let why = check(&kernel, &small).expect_err("the shrunk trace still fails");
                panic!(
                    "kernel oracle: seed {seed} failed: {error}\n\nshrunk to {} ops: {why}\n{}\n\
                 rerun: BRLOCK_SEED={seed} cargo test -p brlock-conformance --test kernel_oracle",
                    small.ops.len(),
                    brlock_conformance::write_jsonl(&small.to_trace()),
                );
            }
        }
    }
    eprintln!("kernel oracle: all agree: {total:?}");
    assert!(
        cases < 100 || (total.denied > 0 && total.test_denied > 0 && total.too_big > 0),
        "the traces never met a conflict"
    );
}
