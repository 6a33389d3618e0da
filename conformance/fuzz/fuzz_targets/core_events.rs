//! Arbitrary bytes → a sequence of events → the core, with `check_invariants` after every step. No
//! input may panic or break an invariant.
//!
//! The first byte picks the profile and how the rest is read: odd → a postcard `Vec<TraceStep>` (the
//! trace format itself; `now` made monotonic), even → an `arbitrary`-style decoding with small id
//! domains (3 clients × 2 owners, 2 files, offsets near 0 and near the ends) so that requests
//! actually meet, and time advancing by deltas.
#![no_main]

use arbitrary::{Result, Unstructured};
use brlock_core::*;
use libfuzzer_sys::fuzz_target;

fn pick<'a, T: Copy>(u: &mut Unstructured<'a>, items: &[T]) -> Result<T> {
    u.choose(items).copied()
}

fn range(u: &mut Unstructured, max: u64) -> Result<Range> {
    let offset = match u.int_in_range(0..=3u8)? {
        0 | 1 => u.int_in_range(0..=64)?,
        2 => max - u.int_in_range(0..=64)?.min(max),
        _ => u.arbitrary()?,
    };
    let length = match u.int_in_range(0..=4u8)? {
        0 => 0,
        1..=3 => u.int_in_range(1..=32)?,
        _ => u.arbitrary()?,
    };
    Ok(Range::new(offset, length))
}

fn event(u: &mut Unstructured, max: u64, request: u64) -> Result<Event> {
    let request = RequestId(request);
    let c = pick(u, &["c1", "c2", "c3"])?;
    let client = ClientId::from(c);
    let owner = OwnerId::from(pick(u, &["a", "b"])?);
    let file = FileId::from(pick(u, &["f1", "f2"])?);
    let kind = pick(u, &[LockKind::Shared, LockKind::Exclusive])?;
    let mode = |u: &mut Unstructured| pick(u, &[ShareMode::None, ShareMode::Read, ShareMode::Write, ShareMode::Both]);
    Ok(match u.int_in_range(0..=19u8)? {
        0..=6 => Event::Lock {
            request,
            client,
            owner,
            file,
            range: range(u, max)?,
            kind,
            wait: u.arbitrary()?,
            reclaim: u.ratio(1, 4)?,
            cookie: vec![request.0 as u8],
        },
        7..=9 => Event::Unlock { request, client, owner, file, range: range(u, max)? },
        10 => Event::Test { request, client, owner, file, range: range(u, max)?, kind },
        11 => Event::Cancel { request, client, owner, file, range: range(u, max)?, kind },
        12 => Event::Share { request, client, owner, file, access: mode(u)?, deny: mode(u)?, reclaim: u.arbitrary()? },
        13 => Event::Unshare { request, client, owner, file },
        14 => Event::Tick,
        15 => Event::ClientConnected { client, adapter: pick(u, &["smb", "nlm"])?.into(), ttl: Duration::from_millis(pick(u, &[0, 10, 5_000])?) },
        16 => Event::ClientDisconnected { client },
        17 => Event::FreeAll { client },
        18 => Event::ReclaimComplete { client },
        _ => Event::CallbackOutcome {
            waiter: WaiterId(u.int_in_range(1..=8)?),
            result: pick(u, &[CallbackResult::Delivered, CallbackResult::Failed, CallbackResult::Refused])?,
        },
    })
}

fn config(u: &mut Unstructured) -> Result<Config> {
    let mut config = pick(u, &Profile::ALL)?.config();
    if u.arbitrary()? {
        config.blocking_timeout = Some(Duration::from_millis(pick(u, &[0, 100, 20_000])?));
    }
    if u.arbitrary()? {
        config.limits.locks_per_file = u.int_in_range(0..=4)?;
        config.limits.locks_per_client = u.int_in_range(0..=6)?;
        config.limits.locks_total = u.int_in_range(0..=8)?;
        config.limits.waiters_per_file = u.int_in_range(0..=3)?;
        config.limits.connections_per_adapter = u.int_in_range(0..=2)?;
    }
    config.callback = pick(u, &[CallbackPolicy::Release, CallbackPolicy::Retry { interval: Duration::from_secs(1), attempts: 3 }])?;
    config.fair_nonblocking = u.arbitrary()?;
    Ok(config)
}

/// Starts fresh, or (sometimes) from a restore of disjoint records, and so in grace.
fn start(u: &mut Unstructured, config: Config) -> Result<Core> {
    if !u.ratio(1, 3)? {
        return Ok(Core::new(config));
    }
    let mut records = Vec::new();
    for i in 0..u.int_in_range(0..=4u64)? {
        records.push(LockRecord {
            file: FileId::from(pick(u, &["f1", "f2"])?),
            client: ClientId::from(pick(u, &["c1", "c2", "c3"])?),
            owner: OwnerId::from(pick(u, &["a", "b"])?),
            kind: pick(u, &[LockKind::Shared, LockKind::Exclusive])?,
            range: Range::new(i * 100, u.int_in_range(1..=50)?),
        });
    }
    Ok(match Core::restore(config.clone(), Instant::ZERO, 2, records) {
        Ok((core, _)) => core,
        Err(_) => Core::new(config),
    })
}

fn check(core: &Core, step: usize) {
    if let Err(e) = core.check_invariants() {
        panic!("invariant broken after step {step}: {e}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 1 == 1 {
        // The trace format: whatever postcard accepts as events is replayed, time clamped monotonic.
        let Ok(steps) = postcard::from_bytes::<Vec<TraceStep>>(rest) else { return };
        let mut core = Core::new(Profile::ALL[(mode as usize >> 1) % 4].config());
        let mut now = Instant::ZERO;
        for (i, step) in steps.into_iter().enumerate() {
            now = step.now.max(now);
            core.step(now, step.event);
            check(&core, i + 1);
        }
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(config) = config(&mut u) else { return };
    let max = config.max_offset;
    let Ok(mut core) = start(&mut u, config) else { return };
    check(&core, 0);
    let mut now = Instant::ZERO;
    let mut n = 0;
    while !u.is_empty() {
        let Ok(delta) = pick(&mut u, &[0u64, 1, 10, 500, 1_000, 10_000, 100_000]) else { return };
        let Ok(event) = event(&mut u, max, n as u64 + 1) else { return };
        now += Duration::from_millis(delta);
        n += 1;
        core.step(now, event);
        check(&core, n);
    }
});
