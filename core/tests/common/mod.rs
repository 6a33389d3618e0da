//! A small driver for rule tests: names instead of byte vectors, one call per request, and
//! `check_invariants` after every event.
#![allow(dead_code, unused_imports)]

use brlock_core::*;

pub use brlock_core::LockKind::{Exclusive as X, Shared as S};

/// splitmix64: the seeded generator of the randomised suites (same seed, same run, everywhere).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A span of `n` milliseconds, for short tables of timings.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The moment `n` milliseconds after the clock's origin.
pub fn at(n: u64) -> Instant {
    Instant::from_millis(n)
}

pub struct T {
    pub core: Core,
    pub now: Instant,
    next_request: u64,
    /// The actions of the latest event.
    pub last: Vec<Action>,
}

/// "host/owner" names an owner of a client; a bare "a" is owner "a" of client "a".
pub fn who(name: &str) -> (ClientId, OwnerId) {
    match name.split_once('/') {
        Some((client, owner)) => (ClientId::from(client), OwnerId::from(owner)),
        None => (ClientId::from(name), OwnerId::from(name)),
    }
}

impl T {
    pub fn new() -> Self {
        Self::with(Config::default())
    }

    pub fn with(config: Config) -> Self {
        Self::from_core(Core::new(config))
    }

    pub fn from_core(core: Core) -> Self {
        Self {
            core,
            now: Instant::ZERO,
            next_request: 1,
            last: Vec::new(),
        }
    }

    pub fn event(&mut self, event: Event) -> Vec<Action> {
        self.last = self.core.step(self.now, event);
        if let Err(e) = self.core.check_invariants() {
            panic!("invariant broken: {e}\nactions: {:#?}", self.last);
        }
        self.last.clone()
    }

    pub fn advance(&mut self, span: Duration) -> Vec<Action> {
        self.now += span;
        self.event(Event::Tick)
    }

    fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request - 1)
    }

    /// The reply to the latest request.
    pub fn reply(&self) -> Outcome {
        self.last
            .iter()
            .find_map(|a| match a {
                Action::Reply { outcome, .. } => Some(outcome.clone()),
                _ => None,
            })
            .expect("a reply")
    }

    #[allow(clippy::too_many_arguments)]
    pub fn lock_full(
        &mut self,
        owner: &str,
        file: &str,
        offset: u64,
        length: u64,
        kind: LockKind,
        wait: bool,
        reclaim: bool,
    ) -> Outcome {
        let (client, owner) = who(owner);
        let request = self.request();
        self.event(Event::Lock {
            request,
            client,
            owner,
            file: FileId::from(file),
            range: Range::new(offset, length),
            kind,
            wait,
            reclaim,
            cookie: vec![request.0 as u8],
        });
        self.reply()
    }

    pub fn lock(
        &mut self,
        owner: &str,
        file: &str,
        offset: u64,
        length: u64,
        kind: LockKind,
    ) -> Outcome {
        self.lock_full(owner, file, offset, length, kind, false, false)
    }

    pub fn lock_wait(
        &mut self,
        owner: &str,
        file: &str,
        offset: u64,
        length: u64,
        kind: LockKind,
    ) -> Outcome {
        self.lock_full(owner, file, offset, length, kind, true, false)
    }

    pub fn reclaim(
        &mut self,
        owner: &str,
        file: &str,
        offset: u64,
        length: u64,
        kind: LockKind,
    ) -> Outcome {
        self.lock_full(owner, file, offset, length, kind, false, true)
    }

    pub fn unlock(&mut self, owner: &str, file: &str, offset: u64, length: u64) -> Outcome {
        let (client, owner) = who(owner);
        let request = self.request();
        self.event(Event::Unlock {
            request,
            client,
            owner,
            file: FileId::from(file),
            range: Range::new(offset, length),
        });
        self.reply()
    }

    pub fn test(
        &mut self,
        owner: &str,
        file: &str,
        offset: u64,
        length: u64,
        kind: LockKind,
    ) -> Outcome {
        let (client, owner) = who(owner);
        let request = self.request();
        self.event(Event::Test {
            request,
            client,
            owner,
            file: FileId::from(file),
            range: Range::new(offset, length),
            kind,
        });
        self.reply()
    }

    pub fn cancel(
        &mut self,
        owner: &str,
        file: &str,
        offset: u64,
        length: u64,
        kind: LockKind,
    ) -> Outcome {
        let (client, owner) = who(owner);
        let request = self.request();
        self.event(Event::Cancel {
            request,
            client,
            owner,
            file: FileId::from(file),
            range: Range::new(offset, length),
            kind,
        });
        self.reply()
    }

    pub fn share(
        &mut self,
        owner: &str,
        file: &str,
        access: ShareMode,
        deny: ShareMode,
    ) -> Outcome {
        let (client, owner) = who(owner);
        let request = self.request();
        self.event(Event::Share {
            request,
            client,
            owner,
            file: FileId::from(file),
            access,
            deny,
            reclaim: false,
        });
        self.reply()
    }

    pub fn unshare(&mut self, owner: &str, file: &str) -> Outcome {
        let (client, owner) = who(owner);
        let request = self.request();
        self.event(Event::Unshare {
            request,
            client,
            owner,
            file: FileId::from(file),
        });
        self.reply()
    }

    pub fn callback(&mut self, waiter: WaiterId, result: CallbackResult) -> Vec<Action> {
        self.event(Event::CallbackOutcome { waiter, result })
    }

    /// Held locks of `file` as "owner:K:start-end" (end "EOF" for to-end-of-file), in range order.
    pub fn held(&self, file: &str) -> Vec<String> {
        self.core
            .held_locks(&FileId::from(file))
            .iter()
            .map(|l| {
                let kind = if l.kind == S { "S" } else { "X" };
                let end = if l.range.length == 0 {
                    "EOF".to_string()
                } else {
                    (l.range.offset + l.range.length - 1).to_string()
                };
                format!("{}:{kind}:{}-{end}", l.owner, l.range.offset)
            })
            .collect()
    }

    /// Owners of the queued waiters of `file`, in queue order.
    pub fn queue(&self, file: &str) -> Vec<String> {
        self.core
            .waiters(&FileId::from(file))
            .iter()
            .map(|w| w.owner.to_string())
            .collect()
    }

    /// (waiter, owner) of each GRANTED callback the latest event asked for.
    pub fn granted(&self) -> Vec<(WaiterId, String)> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::SendGranted { waiter, owner, .. } => Some((*waiter, owner.to_string())),
                _ => None,
            })
            .collect()
    }

    pub fn released(&self) -> Vec<(String, ReleaseReason)> {
        self.last
            .iter()
            .filter_map(|a| match a {
                Action::Released {
                    owner,
                    range,
                    reason,
                    ..
                } => Some((
                    format!("{owner}:{}+{}", range.offset, range.length),
                    *reason,
                )),
                _ => None,
            })
            .collect()
    }
}

pub fn waiter_of(outcome: &Outcome) -> WaiterId {
    match outcome {
        Outcome::Blocked { waiter } => *waiter,
        other => panic!("expected Blocked, got {other:?}"),
    }
}

pub fn denied_by(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Denied { holder } => format!(
            "{}:{}+{}",
            holder.owner, holder.range.offset, holder.range.length
        ),
        other => panic!("expected Denied, got {other:?}"),
    }
}

pub fn cycle_of(outcome: &Outcome) -> Vec<String> {
    match outcome {
        Outcome::Deadlock { cycle } => cycle.iter().map(|o| o.owner.to_string()).collect(),
        other => panic!("expected Deadlock, got {other:?}"),
    }
}
