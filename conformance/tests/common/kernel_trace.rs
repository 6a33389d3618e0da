#![allow(dead_code)] // Each test binary uses its own part of these helpers.
//! Traces for the kernel oracle: non-blocking lock, unlock and test by K owners of one file, as
//! quickcheck generates them, and their form as a core trace (Linux profile).

use brlock_core::{
    ClientId, Config, Event, FileId, Instant, LockKind, OwnerId, Range, RequestId, Trace,
    TraceHeader, TraceStep,
};
use quickcheck::{Arbitrary, Gen};

/// Linux's OFFSET_MAX, the core's Linux `max_offset`.
pub const MAX: u64 = i64::MAX as u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lock {
        owner: usize,
        kind: LockKind,
        range: Range,
    },
    Unlock {
        owner: usize,
        range: Range,
    },
    Test {
        owner: usize,
        kind: LockKind,
        range: Range,
    },
}

#[derive(Clone, Debug)]
pub struct KernelTrace {
    /// At least 4: one open file description each on the kernel's side.
    pub owners: usize,
    pub ops: Vec<Op>,
}

fn below(g: &mut Gen, n: u64) -> u64 {
    u64::arbitrary(g) % n
}

/// Offsets cluster near 0 and near OFFSET_MAX so that ranges meet, split and merge at both ends.
fn offset(g: &mut Gen) -> u64 {
    match below(g, 10) {
        0..=5 => below(g, 48),
        6..=8 => MAX - below(g, 48),
        _ => below(g, MAX + 1),
    }
}

/// Lengths: 0 (to end of file), short, exactly to OFFSET_MAX, one past it (too big), or anything up to
/// i64::MAX (the kernel's `l_len` is signed; the core's is not, so larger lengths have no kernel twin).
fn length(g: &mut Gen, offset: u64) -> u64 {
    match below(g, 12) {
        0..=2 => 0,
        3..=8 => 1 + below(g, 32),
        9 => (MAX - offset + 1).min(MAX),
        10 => (MAX - offset + 2).min(MAX),
        _ => 1 + below(g, MAX),
    }
}

fn kind(g: &mut Gen) -> LockKind {
    if bool::arbitrary(g) {
        LockKind::Shared
    } else {
        LockKind::Exclusive
    }
}

impl Arbitrary for KernelTrace {
    fn arbitrary(g: &mut Gen) -> Self {
        let owners = 4 + below(g, 3) as usize;
        let len = 1 + below(g, g.size() as u64) as usize;
        let ops = (0..len)
            .map(|_| {
                let owner = below(g, owners as u64) as usize;
                let start = offset(g);
                let range = Range::new(start, length(g, start));
                match below(g, 10) {
                    0..=4 => Op::Lock {
                        owner,
                        kind: kind(g),
                        range,
                    },
                    5..=7 => Op::Unlock { owner, range },
                    _ => Op::Test {
                        owner,
                        kind: kind(g),
                        range,
                    },
                }
            })
            .collect();
        KernelTrace { owners, ops }
    }

    /// Shorter traces: without one op at a time (the oracle shrinks greedily with this).
    fn shrink(&self) -> Box<dyn Iterator<Item = Self>> {
        let this = self.clone();
        Box::new((0..self.ops.len()).rev().map(move |i| {
            let mut shorter = this.clone();
            shorter.ops.remove(i);
            shorter
        }))
    }
}

impl KernelTrace {
    /// The trace of seed `seed`: the same seed gives the same trace on every machine.
    pub fn from_seed(seed: u64, size: usize) -> KernelTrace {
        KernelTrace::arbitrary(&mut Gen::from_size_and_seed(size, seed))
    }

    /// The core's side: owner `n` is `kernel/o{n}`; one event per millisecond.
    pub fn to_trace(&self) -> Trace {
        let (client, file) = (ClientId::from("kernel"), FileId::from("f"));
        let steps = self
            .ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let request = RequestId(i as u64 + 1);
                let owner = |n: usize| OwnerId::from(format!("o{n}").as_str());
                let (client, file) = (client.clone(), file.clone());
                let event = match *op {
                    Op::Lock {
                        owner: n,
                        kind,
                        range,
                    } => Event::Lock {
                        request,
                        client,
                        owner: owner(n),
                        file,
                        range,
                        kind,
                        wait: false,
                        reclaim: false,
                        cookie: vec![],
                    },
                    Op::Unlock { owner: n, range } => Event::Unlock {
                        request,
                        client,
                        owner: owner(n),
                        file,
                        range,
                    },
                    Op::Test {
                        owner: n,
                        kind,
                        range,
                    } => Event::Test {
                        request,
                        client,
                        owner: owner(n),
                        file,
                        range,
                        kind,
                    },
                };
                TraceStep {
                    now: Instant::from_millis(i as u64),
                    event,
                }
            })
            .collect();
        Trace {
            header: TraceHeader::new(Config::linux()),
            steps,
        }
    }
}
