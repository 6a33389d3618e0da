//! Deterministic simulation, TigerBeetle's VOPR in miniature: one seeded PRNG drives many clients doing
//! random lock/unlock/test/cancel/wait and shares, connection-oriented clients that disconnect and
//! reconnect, FREE_ALLs, GRANTED callbacks that are delivered, lost or refused, clock jumps, server
//! restarts that rebuild the core from what its persist actions stored, and store failures (a request's
//! persists are lost and the core is swapped for `Core::rebuild` of the store). After every step:
//! `check_invariants()` (which includes "no two owners hold conflicting locks"), and the store — the
//! fold of every persist action — equals the core's held locks and share reservations. When the faults stop, every waiter is
//! granted, cancelled or expired within a bound.
//!
//! A failure prints its seed; `BRLOCK_SEED=N cargo test -p brlock-core --test simulation` replays that
//! run exactly. `BRLOCK_SIM_SEEDS` sets how many seeds run (default 1000).

use std::collections::BTreeMap;

mod common;
use brlock_core::*;
use common::{Rng, ms};

/// The store the host would keep: key (file, client, owner, offset) → record, and share
/// reservations by (file, client, owner).
#[derive(Default)]
struct Store {
    locks: BTreeMap<(FileId, ClientId, OwnerId, u64), LockRecord>,
    shares: BTreeMap<(FileId, ClientId, OwnerId), ShareRecord>,
}

fn apply_persists(
    store: &mut Store,
    actions: &[Action],
    epoch: u64,
    next_seq: &mut u64,
) -> Result<(), String> {
    for action in actions {
        if let Action::Persist { epoch: e, seq, op } = action {
            if *e != epoch || *seq != *next_seq {
                return Err(format!(
                    "persist out of order: epoch {e} seq {seq}, expected epoch {epoch} seq {next_seq}"
                ));
            }
            *next_seq += 1;
            match op {
                PersistOp::Put(r) => {
                    store.locks.insert(
                        (
                            r.file.clone(),
                            r.client.clone(),
                            r.owner.clone(),
                            r.range.offset,
                        ),
                        r.clone(),
                    );
                }
                PersistOp::Delete(r) => {
                    if store
                        .locks
                        .remove(&(
                            r.file.clone(),
                            r.client.clone(),
                            r.owner.clone(),
                            r.range.offset,
                        ))
                        .is_none()
                    {
                        return Err(format!("delete of a record the store does not hold: {r:?}"));
                    }
                }
                PersistOp::PutShare(r) => {
                    store.shares.insert(
                        (r.file.clone(), r.client.clone(), r.owner.clone()),
                        r.clone(),
                    );
                }
                PersistOp::DeleteShare(r) => {
                    if store
                        .shares
                        .remove(&(r.file.clone(), r.client.clone(), r.owner.clone()))
                        != Some(r.clone())
                    {
                        return Err(format!("delete of a share the store does not hold: {r:?}"));
                    }
                }
            }
        }
    }
    Ok(())
}

struct Sim {
    rng: Rng,
    core: Core,
    config: Config,
    now: Instant,
    epoch: u64,
    next_seq: u64,
    store: Store,
    next_request: u64,
    /// GRANTED callbacks sent and not yet answered.
    outstanding: Vec<WaiterId>,
    connected: BTreeMap<usize, bool>,
    restarts: u32,
    store_failures: u32,
}

const CLIENTS: usize = 6;
const FILES: [&str; 3] = ["f0", "f1", "f2"];

fn client(c: usize) -> ClientId {
    ClientId::new(format!("client{c}"))
}

fn owner(o: usize) -> OwnerId {
    OwnerId::new(format!("owner{o}"))
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed);
        let mut config = Profile::ALL[rng.below(4) as usize].config();
        if rng.chance(50) {
            config.blocking_timeout = Some(ms(5_000 + rng.below(60_000)));
        }
        if rng.chance(30) {
            config.limits.locks_per_file = 3 + rng.below(10);
            config.limits.locks_per_client = 3 + rng.below(10);
            config.limits.waiters_per_file = 1 + rng.below(5);
            config.limits.client_queue_percent = 25 + rng.below(76);
            config.limits.waiters_per_client = 1 + rng.below(6);
            config.limits.waiters_total = 2 + rng.below(10);
            config.limits.shares_per_file = 1 + rng.below(4);
            config.limits.shares_per_client = 1 + rng.below(4);
            config.limits.shares_total = 2 + rng.below(8);
        }
        config.grace = ms(1_000 + rng.below(60_000));
        let core = Core::with_epoch(config.clone(), 1);
        Sim {
            rng,
            core,
            config,
            now: Instant::ZERO,
            epoch: 1,
            next_seq: 0,
            store: Store::default(),
            next_request: 0,
            outstanding: Vec::new(),
            connected: BTreeMap::new(),
            restarts: 0,
            store_failures: 0,
        }
    }

    fn event(&mut self, event: Event) -> Result<Vec<Action>, String> {
        let actions = self.core.step(self.now, event.clone());
        self.after(&actions)
            .map_err(|e| format!("after {event:?}: {e}\nactions: {actions:#?}"))?;
        Ok(actions)
    }

    fn after(&mut self, actions: &[Action]) -> Result<(), String> {
        self.core.check_invariants()?;
        apply_persists(&mut self.store, actions, self.epoch, &mut self.next_seq)?;
        let held: Vec<LockRecord> = self.core.records();
        let mut stored: Vec<LockRecord> = self.store.locks.values().cloned().collect();
        stored.sort();
        if held != stored {
            return Err(format!(
                "store differs from held locks\n held   {held:?}\n stored {stored:?}"
            ));
        }
        let shares = self.core.share_records();
        let stored: Vec<ShareRecord> = self.store.shares.values().cloned().collect();
        if shares != stored {
            return Err(format!(
                "store differs from held shares\n held   {shares:?}\n stored {stored:?}"
            ));
        }
        for a in actions {
            match a {
                Action::SendGranted { waiter, .. } => self.outstanding.push(*waiter),
                Action::Reply {
                    outcome: Outcome::Granted,
                    ..
                }
                | Action::Reply { .. } => {}
                _ => {}
            }
        }
        Ok(())
    }

    fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    fn random_request(&mut self) -> Event {
        let c = self.rng.below(CLIENTS as u64) as usize;
        let o = c * 2 + self.rng.below(2) as usize;
        let file = FileId::from(FILES[self.rng.below(FILES.len() as u64) as usize]);
        let offset = self.rng.below(64);
        let length = if self.rng.chance(10) {
            0
        } else {
            1 + self.rng.below(16)
        };
        let range = Range::new(offset, length);
        let kind = if self.rng.chance(50) {
            LockKind::Shared
        } else {
            LockKind::Exclusive
        };
        let request = self.request();
        let (client, owner) = (client(c), owner(o));
        match self.rng.below(12) {
            0..=4 => Event::Lock {
                request,
                client,
                owner,
                file,
                range,
                kind,
                wait: self.rng.chance(60),
                reclaim: false,
                cookie: vec![],
            },
            5..=7 => Event::Unlock {
                request,
                client,
                owner,
                file,
                range,
            },
            8 => Event::Test {
                request,
                client,
                owner,
                file,
                range,
                kind,
            },
            9 => Event::Cancel {
                request,
                client,
                owner,
                file,
                range,
                kind,
            },
            10 => {
                let modes = [
                    ShareMode::None,
                    ShareMode::Read,
                    ShareMode::Write,
                    ShareMode::Both,
                ];
                let access = modes[self.rng.below(4) as usize];
                let deny = modes[self.rng.below(4) as usize];
                Event::Share {
                    request,
                    client,
                    owner,
                    file,
                    access,
                    deny,
                    reclaim: false,
                }
            }
            _ => Event::Unshare {
                request,
                client,
                owner,
                file,
            },
        }
    }

    fn fault(&mut self) -> Result<(), String> {
        match self.rng.below(6) {
            0 => {
                // Connection-oriented clients (the upper half) come and go.
                let c = CLIENTS / 2 + self.rng.below((CLIENTS / 2) as u64) as usize;
                let up = self.connected.get(&c).copied().unwrap_or(false);
                let event = if up {
                    Event::ClientDisconnected { client: client(c) }
                } else {
                    Event::ClientConnected {
                        client: client(c),
                        adapter: "smb".into(),
                        ttl: ms(5_000) * self.rng.below(3),
                    }
                };
                let actions = self.event(event)?;
                if !actions
                    .iter()
                    .any(|a| matches!(a, Action::ConnectionRefused { .. }))
                {
                    self.connected.insert(c, !up);
                }
            }
            1 => {
                let c = self.rng.below(CLIENTS as u64) as usize;
                self.event(Event::FreeAll { client: client(c) })?;
            }
            2 | 3 => {
                if !self.outstanding.is_empty() {
                    let i = self.rng.below(self.outstanding.len() as u64) as usize;
                    let waiter = self.outstanding.swap_remove(i);
                    let result = match self.rng.below(4) {
                        0 => CallbackResult::Failed,
                        1 => CallbackResult::Refused,
                        _ => CallbackResult::Delivered,
                    };
                    self.event(Event::CallbackOutcome { waiter, result })?;
                }
            }
            4 => {
                self.now += ms(self.rng.below(120_000)); // clock jump
                self.event(Event::Tick)?;
            }
            5 if self.rng.chance(50) => self.store_failure()?,
            _ => self.restart()?,
        }
        Ok(())
    }

    /// One request's persist batch fails: the store keeps what it had, nothing that request's actions
    /// said is acknowledged (its replies are refused, its GRANTED callbacks not sent), and the host
    /// swaps in `Core::rebuild` from the store. The rebuilt core must hold exactly the store, keep the
    /// grace period, and account for every waiter the old core had: still waiting under the same id,
    /// granted (its GRANTED goes out now), or removed with a reason.
    fn store_failure(&mut self) -> Result<(), String> {
        self.store_failures += 1;
        let event = self.random_request();
        let lost = self.core.step(self.now, event.clone());
        let grace = self.core.grace();
        self.next_seq += lost
            .iter()
            .filter(|a| matches!(a, Action::Persist { .. }))
            .count() as u64;
        let lost_grants: Vec<WaiterId> = lost
            .iter()
            .filter_map(|a| match a {
                Action::SendGranted { waiter, .. } => Some(*waiter),
                _ => None,
            })
            .collect();
        self.outstanding.retain(|w| !lost_grants.contains(w));
        // What the rebuild starts from: the core after the failed request, as in the host.
        let before = all_waiters(&self.core);
        let records: Vec<LockRecord> = self.store.locks.values().cloned().collect();
        let shares: Vec<ShareRecord> = self.store.shares.values().cloned().collect();
        let (core, actions) = self
            .core
            .rebuild(self.now, records, shares)
            .map_err(|e| format!("rebuild failed after {event:?}: {e}"))?;
        self.core = core;
        self.after(&actions)
            .map_err(|e| format!("after the rebuild that followed {event:?}: {e}"))?;
        if let Some(g) = &grace {
            let now = self.core.grace();
            let ended = actions
                .iter()
                .any(|a| matches!(a, Action::GraceEnded { .. }));
            if !ended && now.as_ref().map(|n| n.ends_at) != Some(g.ends_at) {
                return Err(format!("rebuild changed the grace period: {g:?} → {now:?}"));
            }
        } else if self.core.grace().is_some() {
            return Err("rebuild opened a grace period".into());
        }
        let after = all_waiters(&self.core);
        for (id, w) in &before {
            let accounted = after.get(id).is_some_and(|a| a.owner == w.owner && a.range == w.range)
                || actions.iter().any(|a| {
                    matches!(a, Action::SendGranted { waiter, .. } | Action::WaiterRemoved { waiter, .. } if waiter == id)
                });
            if !accounted {
                return Err(format!(
                    "waiter {id:?} ({w:?}) lost by the rebuild after {event:?}\nactions {actions:?}"
                ));
            }
        }
        Ok(())
    }

    /// The server dies and comes back from its store in a new epoch; clients reclaim some of what
    /// they held (a reclaim of a stored lock must be granted).
    fn restart(&mut self) -> Result<(), String> {
        self.restarts += 1;
        self.epoch += 1;
        self.next_seq = 0;
        self.outstanding.clear();
        self.connected.clear();
        let records: Vec<LockRecord> = self.store.locks.values().cloned().collect();
        let shares: Vec<ShareRecord> = self.store.shares.values().cloned().collect();
        let (core, actions) = Core::restore_with_shares(
            self.config.clone(),
            self.now,
            self.epoch,
            records.clone(),
            shares.clone(),
        )
        .map_err(|e| format!("restore failed: {e}"))?;
        self.core = core;
        self.after(&actions)?;
        for share in shares {
            if !self.rng.chance(70) || self.core.grace().is_none() {
                continue;
            }
            let request = self.request();
            let actions = self.event(Event::Share {
                request,
                client: share.client.clone(),
                owner: share.owner.clone(),
                file: share.file.clone(),
                access: share.access,
                deny: share.deny,
                reclaim: true,
            })?;
            let granted = actions.iter().any(|a| {
                matches!(
                    a,
                    Action::Reply {
                        outcome: Outcome::Granted,
                        ..
                    }
                )
            });
            if !granted {
                return Err(format!(
                    "reclaim of a stored share refused: {share:?} → {actions:?}"
                ));
            }
        }
        for record in records {
            if !self.rng.chance(70) || self.core.grace().is_none() {
                continue;
            }
            let request = self.request();
            let actions = self.event(Event::Lock {
                request,
                client: record.client.clone(),
                owner: record.owner.clone(),
                file: record.file.clone(),
                range: record.range,
                kind: record.kind,
                wait: false,
                reclaim: true,
                cookie: vec![],
            })?;
            let granted = actions.iter().any(|a| {
                matches!(
                    a,
                    Action::Reply {
                        outcome: Outcome::Granted,
                        ..
                    }
                )
            });
            if !granted {
                return Err(format!(
                    "reclaim of a stored lock refused: {record:?} → {actions:?}"
                ));
            }
        }
        Ok(())
    }

    /// No more faults: confirm every grant, and release locks owner by owner; each waiter must end up
    /// granted, cancelled or expired, with nothing left queued.
    fn drain(&mut self) -> Result<(), String> {
        for _ in 0..10_000 {
            while let Some(waiter) = self.outstanding.pop() {
                self.event(Event::CallbackOutcome {
                    waiter,
                    result: CallbackResult::Delivered,
                })?;
            }
            let held = self.core.records();
            let queued: usize = self
                .core
                .files()
                .iter()
                .map(|f| self.core.waiters(f).len())
                .sum();
            let Some(first) = held.first().cloned() else {
                if queued > 0 {
                    let waiters: Vec<_> = self
                        .core
                        .files()
                        .iter()
                        .flat_map(|f| self.core.waiters(f))
                        .collect();
                    return Err(format!(
                        "{queued} waiters queued with no lock held: {waiters:?}\nconfig {:?}\ngraph {:?}",
                        self.config,
                        self.core.wait_for_graph()
                    ));
                }
                if self.core.grace().is_some() {
                    self.now += self.config.grace;
                    self.event(Event::Tick)?;
                }
                return Ok(());
            };
            let request = self.request();
            let actions = self.event(Event::Unlock {
                request,
                client: first.client.clone(),
                owner: first.owner.clone(),
                file: first.file.clone(),
                range: Range::whole(),
            })?;
            let done = actions.iter().any(|a| {
                matches!(
                    a,
                    Action::Reply {
                        outcome: Outcome::Granted,
                        ..
                    }
                )
            });
            if !done {
                // Refused (grace profile rules): let the grace period run out first.
                self.now += self.config.grace + ms(1);
                self.event(Event::Tick)?;
            }
        }
        Err("waiters not drained within the bound".into())
    }
}

/// Queued waiters and granted ones whose callback is pending, by id.
fn all_waiters(core: &Core) -> BTreeMap<WaiterId, WaiterView> {
    core.files()
        .iter()
        .flat_map(|f| core.waiters(f))
        .chain(core.pending_callbacks())
        .map(|w| (w.waiter, w))
        .collect()
}

/// Runs one seed; says how many restarts and store failures it simulated.
fn run(seed: u64, steps: usize) -> Result<(u32, u32), String> {
    let mut sim = Sim::new(seed);
    for _ in 0..steps {
        sim.now += ms(sim.rng.below(2_000));
        if sim.rng.chance(15) {
            sim.fault()?;
        } else {
            let event = sim.random_request();
            sim.event(event)?;
        }
    }
    sim.drain()?;
    Ok((sim.restarts, sim.store_failures))
}

#[test]
fn simulated_clients_faults_and_restarts_keep_every_invariant() {
    if let Ok(seed) = std::env::var("BRLOCK_SEED") {
        let seed: u64 = seed.parse().expect("BRLOCK_SEED is a number");
        run(seed, 400).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        return;
    }
    let seeds: u64 = std::env::var("BRLOCK_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000);
    // A different stretch of seeds each run, printed so a failure can be replayed.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        * 1_000_003;
    let (mut restarts, mut store_failures) = (0, 0);
    for seed in base..base + seeds {
        match run(seed, 400) {
            Ok((r, f)) => {
                restarts += r;
                store_failures += f;
            }
            Err(e) => panic!("simulation failed: {e}\nreplay with BRLOCK_SEED={seed}"),
        }
    }
    assert!(restarts > 0, "the simulation should exercise restarts");
    assert!(
        store_failures > 0,
        "the simulation should exercise store failures and rebuilds"
    );
}

#[test]
fn a_run_is_deterministic() {
    fn trace(seed: u64) -> Vec<Action> {
        let mut sim = Sim::new(seed);
        let mut all = Vec::new();
        for _ in 0..300 {
            sim.now += ms(sim.rng.below(2_000));
            let event = sim.random_request();
            all.extend(sim.event(event).unwrap());
        }
        all
    }
    assert_eq!(trace(42), trace(42));
}
