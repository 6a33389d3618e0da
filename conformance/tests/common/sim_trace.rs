#![allow(dead_code)] // Each test binary uses its own part of these helpers.
//! Simulation runs: seeded random traces that use every event — blocking locks, callbacks, clients
//! coming and going, grace after a restore, shares, ticks far apart — under every profile.

use brlock_core::{
    CallbackResult, ClientId, Duration, Event, FileId, Instant, LockKind, LockRecord, OwnerId,
    Profile, Range, RequestId, ShareMode, Trace, TraceHeader, TraceStep, WaiterId,
};
use quickcheck::{Arbitrary, Gen};

fn below(g: &mut Gen, n: u64) -> u64 {
    u64::arbitrary(g) % n
}

fn pick<T: Copy>(g: &mut Gen, items: &[T]) -> T {
    *g.choose(items).expect("non-empty")
}

fn range(g: &mut Gen) -> Range {
    Range::new(below(g, 40), pick(g, &[0, 1, 5, 10, 20]))
}

fn names(g: &mut Gen) -> (ClientId, OwnerId, FileId) {
    let client = pick(g, &["c1", "c2", "c3"]);
    let owner = format!("{client}-{}", pick(g, &["a", "b"]));
    (
        ClientId::from(client),
        OwnerId::from(owner.as_str()),
        FileId::from(pick(g, &["f1", "f2"])),
    )
}

/// The trace of `seed`: same seed, same trace.
pub fn sim_trace(seed: u64, size: usize) -> Trace {
    let g = &mut Gen::from_size_and_seed(size, seed);
    let profile = pick(g, &Profile::ALL);
    let mut config = profile.config();
    if bool::arbitrary(g) {
        config.blocking_timeout = Some(Duration::from_secs(20));
    }
    config.limits.locks_per_file = pick(g, &[3, 1_000]);
    config.limits.waiters_per_file = pick(g, &[2, 100]);
    let mut header = TraceHeader::new(config);
    if bool::arbitrary(g) {
        header.epoch = 2;
        header.start = Instant::from_millis(1_000);
        header.restore = Some(
            (0..below(g, 4))
                .map(|i| {
                    let (client, owner, file) = names(g);
                    let kind = if bool::arbitrary(g) {
                        LockKind::Shared
                    } else {
                        LockKind::Exclusive
                    };
                    // Disjoint ranges, so the restored set is a valid one.
                    LockRecord {
                        file,
                        client,
                        owner,
                        kind,
                        range: Range::new(i * 100, 10),
                    }
                })
                .collect(),
        );
    }
    let mut now = header.start;
    let steps = (0..1 + below(g, size as u64))
        .map(|i| {
            now += Duration::from_millis(pick(g, &[0, 1, 10, 1_000, 10_000, 60_000]));
            let request = RequestId(i + 1);
            let (client, owner, file) = names(g);
            let kind = if bool::arbitrary(g) {
                LockKind::Shared
            } else {
                LockKind::Exclusive
            };
            let mode = |g: &mut Gen| {
                pick(
                    g,
                    &[
                        ShareMode::None,
                        ShareMode::Read,
                        ShareMode::Write,
                        ShareMode::Both,
                    ],
                )
            };
            let event = match below(g, 20) {
                0..=6 => Event::Lock {
                    request,
                    client,
                    owner,
                    file,
                    range: range(g),
                    kind,
                    wait: bool::arbitrary(g),
                    reclaim: below(g, 4) == 0,
                    cookie: vec![i as u8],
                },
                7..=9 => Event::Unlock {
                    request,
                    client,
                    owner,
                    file,
                    range: range(g),
                },
                10 => Event::Test {
                    request,
                    client,
                    owner,
                    file,
                    range: range(g),
                    kind,
                },
                11 => Event::Cancel {
                    request,
                    client,
                    owner,
                    file,
                    range: range(g),
                    kind,
                },
                12 => Event::Share {
                    request,
                    client,
                    owner,
                    file,
                    access: mode(g),
                    deny: mode(g),
                    reclaim: false,
                },
                13 => Event::Unshare {
                    request,
                    client,
                    owner,
                    file,
                },
                14 => Event::Tick,
                15 => Event::ClientConnected {
                    client,
                    adapter: pick(g, &["smb", "nlm"]).into(),
                    ttl: Duration::from_millis(pick(g, &[0, 5_000])),
                },
                16 => Event::ClientDisconnected { client },
                17 => Event::FreeAll { client },
                18 => Event::ReclaimComplete { client },
                _ => Event::CallbackOutcome {
                    waiter: WaiterId(1 + below(g, 8)),
                    result: pick(
                        g,
                        &[
                            CallbackResult::Delivered,
                            CallbackResult::Failed,
                            CallbackResult::Refused,
                        ],
                    ),
                },
            };
            TraceStep { now, event }
        })
        .collect();
    Trace { header, steps }
}
