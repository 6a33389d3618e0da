//! The tiny host's state and its one rule: hand each event to the core, then carry out the actions
//! in order — persist first, then replies and callbacks. No lock rule lives here; the core decides.
//! (`core/tests/tiny_host.rs` runs this file with a scripted clock.)

use std::collections::BTreeMap;

use brlock_core::*;

/// The brlock profile with short callback timings, so that a script shows a GRANTED resent and a
/// grant undone within seconds. A real host would also draw `cookie_key` from the operating system's
/// random source; these clients answer by waiter number and never see the cookie.
pub fn demo_config() -> Config {
    Config {
        callback: CallbackPolicy::Retry {
            interval: Duration::from_millis(500),
            attempts: 2,
        },
        callback_deadline: Some(Duration::from_secs(2)),
        ..Config::default()
    }
}

/// A lock record's key in the store, as `LockRecord` defines it: a `Put` replaces the same key.
type LockKey = (FileId, ClientId, OwnerId, u64);
/// A share record's key in the store, as `ShareRecord` defines it.
type ShareKey = (FileId, ClientId, OwnerId);

fn lock_key(r: &LockRecord) -> LockKey {
    (
        r.file.clone(),
        r.client.clone(),
        r.owner.clone(),
        r.range.offset,
    )
}

fn share_key(r: &ShareRecord) -> ShareKey {
    (r.file.clone(), r.client.clone(), r.owner.clone())
}

pub struct TinyHost {
    core: Core,
    /// The "durable" copy of the held locks and shares: what a restart would hand to `Core::restore`.
    locks: BTreeMap<LockKey, LockRecord>,
    shares: BTreeMap<ShareKey, ShareRecord>,
    /// Reused for every event, so a busy host does not allocate per request.
    actions: Vec<Action>,
}

impl TinyHost {
    pub fn new(config: Config) -> Self {
        let (locks, shares, actions) = (BTreeMap::new(), BTreeMap::new(), Vec::new());
        Self {
            core: Core::new(config),
            locks,
            shares,
            actions,
        }
    }

    /// When the core next wants an `Event::Tick`: the host's one timer.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.core.poll_timeout()
    }

    /// Hands one event to the core at `now` and carries out its actions; returns what it printed.
    pub fn handle(&mut self, now: Instant, event: Event) -> Vec<String> {
        let mut actions = std::mem::take(&mut self.actions);
        self.core.handle(now, event, &mut actions);
        let mut printed = Vec::new();
        // 1. All of the event's persists go to the store in one transaction. This map is durable at
        //    once; a real store commits later, and everything below (and every later event's
        //    actions) waits for that commit: no client may hear "granted" of a lock a crash forgets.
        for action in &actions {
            if let Action::Persist { op, .. } = action {
                printed.push(format!("  store: {}", self.write(op)));
            }
        }
        // 2. Everything else, in the core's order: a grant's callback after the release that made
        //    room for it, every reply exactly once, in the event that asked.
        for action in actions.drain(..) {
            let line = match action {
                Action::Persist { .. } => continue,
                Action::Reply { request, outcome } => {
                    format!("line {}: {}", request.0, describe(&outcome))
                }
                Action::SendGranted {
                    waiter,
                    client,
                    owner,
                    file,
                    range,
                    kind,
                    attempt,
                    ..
                } => {
                    let (waiter, kind) = (waiter.0, letter(kind));
                    format!(
                        "GRANTED to {client}/{owner}: {file} {range} {kind} \
                         (waiter {waiter}, send {attempt}; answer `ok {waiter}` or `fail {waiter}`)"
                    )
                }
                Action::Released {
                    client,
                    owner,
                    file,
                    range,
                    kind,
                    reason,
                } => {
                    format!(
                        "released {client}/{owner}: {file} {range} {} ({reason:?})",
                        letter(kind)
                    )
                }
                Action::WaiterRemoved { waiter, reason, .. } => {
                    format!("waiter {} removed ({reason:?})", waiter.0)
                }
                other => format!("{other:?}"),
            };
            printed.push(line);
        }
        self.actions = actions;
        printed
    }

    /// Applies one persist op to the store; returns what it did.
    fn write(&mut self, op: &PersistOp) -> String {
        match op {
            PersistOp::Put(r) => {
                self.locks.insert(lock_key(r), r.clone());
                format!("put {}", show(r))
            }
            PersistOp::Delete(r) => {
                self.locks.remove(&lock_key(r));
                format!("delete {}", show(r))
            }
            PersistOp::PutShare(s) => {
                self.shares.insert(share_key(s), s.clone());
                format!("put share {s:?}")
            }
            PersistOp::DeleteShare(s) => {
                self.shares.remove(&share_key(s));
                format!("delete share {s:?}")
            }
        }
    }

    /// The ordering contract's promise: the persists, applied in order, hold exactly the core's
    /// locks and shares.
    pub fn check_store(&self) -> Result<(), String> {
        let locks: Vec<LockRecord> = self.locks.values().cloned().collect();
        let shares: Vec<ShareRecord> = self.shares.values().cloned().collect();
        if locks != self.core.records() || shares != self.core.share_records() {
            return Err(format!(
                "store {locks:?} {shares:?} is not the core's {:?}",
                self.core.records()
            ));
        }
        Ok(())
    }
}

fn show(r: &LockRecord) -> String {
    format!(
        "{}/{}: {} {} {}",
        r.client,
        r.owner,
        r.file,
        r.range,
        letter(r.kind)
    )
}

fn letter(kind: LockKind) -> &'static str {
    match kind {
        LockKind::Shared => "r",
        LockKind::Exclusive => "w",
    }
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Granted => "granted".into(),
        Outcome::Denied { holder: h } => {
            format!(
                "denied, held by {}/{} ({} {})",
                h.client,
                h.owner,
                h.range,
                letter(h.kind)
            )
        }
        Outcome::Blocked { waiter } => format!("blocked, waiter {}", waiter.0),
        other => format!("{other:?}"),
    }
}
