//! The core's state and its one entry point. The rules live beside it, one file per concept:
//! `locks.rs` (lock, unlock, test, cancel), `waiters.rs` (queues, grants, callbacks), `deadlock.rs`,
//! `limits.rs`, `shares.rs`, `clients.rs` (connections, free-all), `grace.rs` (restore and reclaim).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;

use crate::action::{Action, LockRecord, Outcome, PersistOp};
use crate::config::Config;
use crate::event::{Event, LockKind, ShareMode};
use crate::ids::{ClientId, FileId, OwnerId, RequestId, WaiterId};
use crate::range::Span;
use crate::registry::Registry;
use crate::stats::Stats;
use crate::table::{HeldLock, LockTable, OwnerKey, Plan};
use crate::time::{Duration, Instant};

pub(crate) type FileKey = u32;
pub(crate) type ClientKey = u32;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct FileState {
    pub locks: LockTable,
    /// Queued waiters in arrival order (waiter ids grow, so id order is FIFO order), each with its
    /// owner, span and kind, so the scans every request makes of a queue stay inside this map.
    pub queue: BTreeMap<WaiterId, HeldLock>,
    pub shares: BTreeMap<OwnerKey, (ShareMode, ShareMode)>,
    /// Restored locks (owner, start) → end not yet reclaimed; released when grace ends.
    #[cfg_attr(feature = "serde", serde(with = "crate::snapshot::pairs"))]
    pub unreclaimed: BTreeMap<(OwnerKey, u64), u64>,
    /// Waiters naming this file, queued or granted with a callback pending; the key stays live for them.
    pub waiters: u64,
}

impl FileState {
    fn is_unused(&self) -> bool {
        self.locks.is_empty()
            && self.waiters == 0
            && self.shares.is_empty()
            && self.unreclaimed.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct ClientState {
    /// Set while connected through a connection-oriented adapter.
    pub adapter: Option<String>,
    pub connected: bool,
    pub ttl: Duration,
    pub disconnect_at: Option<Instant>,
    pub owners: BTreeSet<OwnerKey>,
    /// Held lock records of all this client's owners.
    pub locks: u64,
    /// Waiters (queued or granted with the callback pending) of all this client's owners.
    pub waiters: u64,
    /// Share reservations of all this client's owners.
    pub shares: u64,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct OwnerState {
    pub client: ClientKey,
    /// Held lock records per file.
    pub files: FileCounts,
    /// The rest, which most owners never need (they lock without waiting, sharing or reclaiming):
    /// None while all of it is empty, so such an owner costs a pointer for it.
    rare: Option<Box<RareOwnerState>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct RareOwnerState {
    /// Queued waiters and granted ones whose callback is pending, by file: a request looks for the
    /// owner's waiter in its file without walking the owner's waiters in every other file.
    pub waiters: BTreeSet<(FileKey, WaiterId)>,
    /// Out-edges of the wait-for graph: owner → how many (queued waiter of this owner, conflicting
    /// held lock or earlier queued waiter of that owner) pairs there are. An edge is there while its
    /// count is positive. Kept in step with every queue and table change (`deadlock.rs`), so the
    /// deadlock search reads each owner's edges in one step instead of recomputing them.
    pub waits_for: BTreeMap<OwnerKey, u64>,
    /// The sum of the counts of the edges into this owner: zero means nobody waits for it, so no
    /// cycle can pass through it.
    pub waited_on: u64,
    pub shares: BTreeSet<FileKey>,
    /// Files where this owner still has restored locks to reclaim.
    pub unreclaimed: BTreeSet<FileKey>,
}

impl RareOwnerState {
    const EMPTY: RareOwnerState = RareOwnerState {
        waiters: BTreeSet::new(),
        waits_for: BTreeMap::new(),
        waited_on: 0,
        shares: BTreeSet::new(),
        unreclaimed: BTreeSet::new(),
    };

    fn is_empty(&self) -> bool {
        self == &Self::EMPTY
    }
}

static NO_RARE_STATE: RareOwnerState = RareOwnerState::EMPTY;

impl OwnerState {
    pub fn new(client: ClientKey) -> Self {
        Self {
            client,
            ..Default::default()
        }
    }

    pub fn rare(&self) -> &RareOwnerState {
        self.rare.as_deref().unwrap_or(&NO_RARE_STATE)
    }

    pub fn rare_mut(&mut self) -> &mut RareOwnerState {
        self.rare.get_or_insert_with(Default::default)
    }

    /// Frees the rare part once it is empty again.
    pub fn shed_rare(&mut self) {
        if self.rare.as_deref().is_some_and(RareOwnerState::is_empty) {
            self.rare = None;
        }
    }

    /// Nothing refers to the owner any more: no locks, waiters, shares or locks to reclaim.
    pub fn is_unused(&self) -> bool {
        let rare = self.rare();
        self.files.is_empty()
            && rare.waiters.is_empty()
            && rare.shares.is_empty()
            && rare.unreclaimed.is_empty()
    }
}

/// An empty rare part equals none.
impl PartialEq for OwnerState {
    fn eq(&self, other: &Self) -> bool {
        self.client == other.client && self.files == other.files && self.rare() == other.rare()
    }
}

impl Eq for OwnerState {}

/// The serde form lists every field at the owner's level, as before the rare part moved out.
#[cfg(feature = "serde")]
#[derive(serde::Serialize)]
#[serde(rename = "OwnerState")]
struct OwnerFormRef<'a> {
    client: ClientKey,
    files: &'a FileCounts,
    waiters: &'a BTreeSet<(FileKey, WaiterId)>,
    waits_for: &'a BTreeMap<OwnerKey, u64>,
    waited_on: u64,
    shares: &'a BTreeSet<FileKey>,
    unreclaimed: &'a BTreeSet<FileKey>,
}

#[cfg(feature = "serde")]
#[derive(serde::Deserialize)]
#[serde(rename = "OwnerState")]
struct OwnerForm {
    client: ClientKey,
    files: FileCounts,
    waiters: BTreeSet<(FileKey, WaiterId)>,
    waits_for: BTreeMap<OwnerKey, u64>,
    waited_on: u64,
    shares: BTreeSet<FileKey>,
    unreclaimed: BTreeSet<FileKey>,
}

#[cfg(feature = "serde")]
impl serde::Serialize for OwnerState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let rare = self.rare();
        OwnerFormRef {
            client: self.client,
            files: &self.files,
            waiters: &rare.waiters,
            waits_for: &rare.waits_for,
            waited_on: rare.waited_on,
            shares: &rare.shares,
            unreclaimed: &rare.unreclaimed,
        }
        .serialize(s)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for OwnerState {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let form = OwnerForm::deserialize(d)?;
        let mut owner = OwnerState {
            client: form.client,
            files: form.files,
            rare: Some(Box::new(RareOwnerState {
                waiters: form.waiters,
                waits_for: form.waits_for,
                waited_on: form.waited_on,
                shares: form.shares,
                unreclaimed: form.unreclaimed,
            })),
        };
        owner.shed_rare();
        Ok(owner)
    }
}

/// Lock counts per file, sorted by file: an owner usually locks in one file (kept inline, so taking
/// an owner's first lock allocates nothing) or a few, and a vector of pairs costs far less than a
/// tree node per owner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileCounts(smallvec::SmallVec<[(FileKey, u64); 1]>);

/// As a list of (file, count) pairs (smallvec's own serde would be a feature for every crate that
/// uses smallvec in the build).
#[cfg(feature = "serde")]
impl serde::Serialize for FileCounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for FileCounts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs: Vec<(FileKey, u64)> = serde::Deserialize::deserialize(d)?;
        Ok(FileCounts(pairs.into_iter().collect()))
    }
}

impl FileCounts {
    pub fn add(&mut self, file: FileKey, delta: i64) {
        // Restoring visits files in key order, so an owner's next file is nearly always past its
        // last one: append without searching a vector that is often long and cold.
        if delta > 0 && self.0.last().is_none_or(|&(last, _)| last < file) {
            self.0.push((file, delta as u64));
            return;
        }
        match self.0.binary_search_by_key(&file, |&(f, _)| f) {
            Ok(i) => {
                self.0[i].1 = self.0[i].1.saturating_add_signed(delta);
                if self.0[i].1 == 0 {
                    self.0.remove(i);
                }
            }
            Err(i) if delta > 0 => self.0.insert(i, (file, delta as u64)),
            Err(_) => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Held records in `file`.
    pub fn get(&self, file: FileKey) -> u64 {
        self.0
            .binary_search_by_key(&file, |&(f, _)| f)
            .map_or(0, |i| self.0[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (FileKey, u64)> + '_ {
        self.0.iter().copied()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub(crate) enum WaiterState {
    Queued {
        expires_at: Option<Instant>,
    },
    /// Granted; the GRANTED callback's `attempt`th send is out (`retry_at` None) or due at `retry_at`.
    /// Unconfirmed at `deadline`, the grant is undone.
    Granted {
        attempt: u32,
        retry_at: Option<Instant>,
        deadline: Option<Instant>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct Waiter {
    pub request: RequestId,
    pub file: FileKey,
    pub owner: OwnerKey,
    pub span: Span,
    pub kind: LockKind,
    pub cookie: Vec<u8>,
    pub since: Instant,
    pub state: WaiterState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub(crate) enum Timer {
    GraceEnd,
    Disconnect(ClientKey),
    CallbackRetry(WaiterId),
    CallbackDeadline(WaiterId),
    WaiterExpiry(WaiterId),
}

#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub(crate) struct Grace {
    pub ends_at: Instant,
    /// Clients that still have restored locks to reclaim (and have not said they are done).
    pub pending: BTreeSet<ClientKey>,
    pub expected: u64,
    /// Restored share reservations (owner, file) not yet reclaimed; released when grace ends.
    pub unreclaimed_shares: BTreeSet<(OwnerKey, FileKey)>,
}

/// The lock manager. See the crate documentation for the contract with the host.
///
/// Its serde form (a [`Snapshot`](crate::Snapshot)) is the whole state, keys and counters included,
/// so a core read back continues exactly as this one would.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Core {
    pub(crate) config: Config,
    pub(crate) epoch: u64,
    pub(crate) next_seq: u64,
    pub(crate) now: Instant,
    pub(crate) files: Registry<FileId, FileState>,
    pub(crate) clients: Registry<ClientId, ClientState>,
    pub(crate) owners: Registry<(ClientKey, OwnerId), OwnerState>,
    pub(crate) waiters: BTreeMap<WaiterId, Waiter>,
    pub(crate) next_waiter: u64,
    pub(crate) timers: BTreeSet<(Instant, Timer)>,
    pub(crate) total_locks: u64,
    pub(crate) total_shares: u64,
    pub(crate) connected: BTreeMap<String, u64>,
    pub(crate) grace: Option<Grace>,
    /// Files with a waiter that was grantable but for a limit; retried after every event that released
    /// a lock record, since a release in another file (same client, or any for the total) can make
    /// room. Events that release nothing cannot, so a flood of them costs no retries.
    pub(crate) limit_blocked: BTreeSet<FileKey>,
    /// A lock count went down during the current event.
    pub(crate) released_any: bool,
    /// Wait-for edges (from, to) that a held lock created during the current event: the only places
    /// a cycle can have closed (`deadlock.rs`, `break_new_cycles`).
    pub(crate) new_waits: Vec<(OwnerKey, OwnerKey)>,
    pub(crate) stats: Stats,
}

impl Core {
    /// A core with no locks, in epoch 1 and out of grace. After a restart use [`Core::restore`].
    pub fn new(config: Config) -> Self {
        Self::with_epoch(config, 1)
    }

    /// A fresh core in the given server epoch (the host keeps the epoch in its store).
    pub fn with_epoch(config: Config, epoch: u64) -> Self {
        Self {
            config,
            epoch,
            next_seq: 0,
            now: Instant::ZERO,
            files: Registry::default(),
            clients: Registry::default(),
            owners: Registry::default(),
            waiters: BTreeMap::new(),
            next_waiter: 1,
            timers: BTreeSet::new(),
            total_locks: 0,
            total_shares: 0,
            connected: BTreeMap::new(),
            grace: None,
            limit_blocked: BTreeSet::new(),
            released_any: false,
            new_waits: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// Handles one event at time `now`, appending its actions to `out` in the order the host must carry
    /// them out.
    ///
    /// A `now` earlier than the latest the core has seen is taken as that latest moment: time inside
    /// the core never goes backwards, whatever a host, a replayer or a fuzzer passes in, and such
    /// input is not an error (no panic, in debug builds either).
    pub fn handle(&mut self, now: Instant, event: Event, out: &mut Vec<Action>) {
        // Clamp rather than assert: a host's clock is its own business, and bad input never panics.
        self.now = self.now.max(now);
        // Whatever fell due before this event happens first, so the event sees the state at `now`.
        self.run_timers(out);
        match event {
            Event::Lock {
                request,
                client,
                owner,
                file,
                range,
                kind,
                wait,
                reclaim,
                cookie,
            } => {
                let request = crate::locks::LockRequest {
                    request,
                    range,
                    kind,
                    wait,
                    reclaim,
                    cookie,
                };
                self.lock(&client, &owner, &file, request, out)
            }
            Event::Unlock {
                request,
                client,
                owner,
                file,
                range,
            } => self.unlock(request, &client, &owner, &file, range, out),
            Event::Test {
                request,
                client,
                owner,
                file,
                range,
                kind,
            } => self.test(request, &client, &owner, &file, range, kind, out),
            Event::Cancel {
                request,
                client,
                owner,
                file,
                range,
                kind,
            } => self.cancel(request, &client, &owner, &file, range, kind, out),
            Event::Share {
                request,
                client,
                owner,
                file,
                access,
                deny,
                reclaim,
            } => self.share_event(
                request,
                &client,
                &owner,
                &file,
                (access, deny),
                reclaim,
                out,
            ),
            Event::Unshare {
                request,
                client,
                owner,
                file,
            } => self.unshare_event(request, &client, &owner, &file, out),
            Event::Tick => {}
            Event::ClientConnected {
                client,
                adapter,
                ttl,
            } => self.client_connected(&client, adapter, ttl, out),
            Event::ClientDisconnected { client } => self.client_disconnected(&client, out),
            Event::FreeAll { client } => self.free_all(&client, out),
            Event::ReclaimComplete { client } => self.reclaim_complete(&client, out),
            Event::CallbackOutcome { waiter, result } => self.callback_outcome(waiter, result, out),
        }
        if core::mem::take(&mut self.released_any) {
            // A grant that merges records lowers a count too: that is retried after the next event.
            for file in core::mem::take(&mut self.limit_blocked) {
                self.wake(file, out);
            }
        }
        self.break_new_cycles(out);
    }

    /// [`Core::handle`] returning a fresh vector: for tests, tools and wasm.
    pub fn step(&mut self, now: Instant, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        self.handle(now, event, &mut out);
        out
    }

    /// The next moment the core wants an [`Event::Tick`], if any (a grace period's end, a
    /// disconnected client's TTL, a GRANTED resend or deadline, a waiter's expiry). Any event can
    /// move it, so a host re-arms its one timer after each.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    fn run_timers(&mut self, out: &mut Vec<Action>) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > self.now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::GraceEnd => self.end_grace(out),
                Timer::Disconnect(client) => self.disconnect_expired(client, out),
                Timer::CallbackRetry(waiter) => self.resend_granted(waiter, out),
                Timer::CallbackDeadline(waiter) => self.callback_deadline_passed(waiter, out),
                Timer::WaiterExpiry(waiter) => self.expire_waiter(waiter, out),
            }
        }
    }

    // ---- Shared plumbing for the rule files ----

    pub(crate) fn reply(
        &mut self,
        request: RequestId,
        outcome: Outcome,
        is_lock: bool,
        out: &mut Vec<Action>,
    ) {
        if is_lock {
            self.stats.lock_replies.count(&outcome);
        } else {
            self.stats.other_replies.count(&outcome);
        }
        if let Outcome::NoLocks { limit } = outcome {
            self.stats.limit_hit(limit);
        }
        out.push(Action::Reply { request, outcome });
    }

    pub(crate) fn intern_owner(
        &mut self,
        client: &ClientId,
        owner: &OwnerId,
    ) -> (ClientKey, OwnerKey) {
        let ck = self.clients.intern(client, ClientState::default);
        let ok = self.owners.intern_by(
            &(ck, owner),
            |(c, o)| *c == ck && o == owner,
            || (ck, owner.clone()),
            || OwnerState::new(ck),
        );
        self.clients.get_mut(ck).owners.insert(ok);
        (ck, ok)
    }

    pub(crate) fn lookup_owner(&self, client: &ClientId, owner: &OwnerId) -> Option<OwnerKey> {
        let ck = self.clients.lookup(client)?;
        self.owners
            .lookup_by(&(ck, owner), |(c, o)| *c == ck && o == owner)
    }

    pub(crate) fn record(&self, file: FileKey, lock: HeldLock) -> LockRecord {
        let (ck, owner) = self.owners.id(lock.owner);
        LockRecord {
            file: self.files.id(file).clone(),
            client: self.clients.id(*ck).clone(),
            owner: owner.clone(),
            kind: lock.kind,
            range: lock.span.to_range(self.config.max_offset),
        }
    }

    pub(crate) fn persist(&mut self, op: PersistOp, out: &mut Vec<Action>) {
        out.push(Action::Persist {
            epoch: self.epoch,
            seq: self.next_seq,
            op,
        });
        self.next_seq += 1;
    }

    /// What granting `kind` over `span` to `ok` in `fk` would change. An owner that holds nothing
    /// in the file has nothing to merge or replace: its plan adds the one lock, with no search of
    /// the file's owner index.
    pub(crate) fn plan_lock(&self, fk: FileKey, ok: OwnerKey, span: Span, kind: LockKind) -> Plan {
        if self.owners.try_get(ok).is_some_and(|o| o.files.get(fk) > 0) {
            return self.files.get(fk).locks.plan_lock(ok, span, kind);
        }
        let mut plan = Plan::default();
        plan.added.push(HeldLock {
            owner: ok,
            span,
            kind,
        });
        plan
    }

    /// Applies a plan to a file's table, keeps every count in step, and emits its persist actions.
    pub(crate) fn apply_plan(&mut self, file: FileKey, plan: &Plan, out: &mut Vec<Action>) {
        if !plan.changes_anything() {
            return;
        }
        self.apply_counts(file, plan);
        // Records name the file and owner by id; applying a plan removes neither.
        for &lock in plan.deleted() {
            let record = self.record(file, lock);
            self.persist(PersistOp::Delete(record), out);
        }
        for &lock in plan.put() {
            let record = self.record(file, lock);
            self.persist(PersistOp::Put(record), out);
        }
    }

    /// Applies a plan to a file's table and keeps every count in step; persists nothing.
    pub(crate) fn apply_counts(&mut self, file: FileKey, plan: &Plan) {
        // Records a plan keeps unchanged block the same waiters before and after.
        for lock in plan.removed.iter().filter(|l| !plan.added.contains(l)) {
            self.held_changed(file, lock, -1);
        }
        for lock in plan.added.iter().filter(|l| !plan.removed.contains(l)) {
            self.held_changed(file, lock, 1);
        }
        let now = self.now;
        self.files.get_mut(file).locks.apply(plan, now);
        // A plan changes one owner's locks (a release of several owners is several plans).
        let Some(owner) = plan.removed.first().or(plan.added.first()).map(|l| l.owner) else {
            return;
        };
        debug_assert!(
            plan.removed
                .iter()
                .chain(&plan.added)
                .all(|l| l.owner == owner)
        );
        let delta = plan.delta();
        self.released_any |= delta < 0;
        {
            let state = self.owners.get_mut(owner);
            let ck = state.client;
            state.files.add(file, delta);
            let client = self.clients.get_mut(ck);
            client.locks = client.locks.saturating_add_signed(delta);
            self.total_locks = self.total_locks.saturating_add_signed(delta);
        }
    }

    /// Drops the bookkeeping of an owner, its client and a file once nothing refers to them.
    pub(crate) fn tidy(&mut self, file: Option<FileKey>, owner: Option<OwnerKey>) {
        if let Some(ok) = owner.filter(|&ok| self.owners.try_get(ok).is_some()) {
            let state = self.owners.get_mut(ok);
            let ck = state.client;
            if state.is_unused() {
                self.owners.remove(ok);
                self.clients.get_mut(ck).owners.remove(&ok);
            } else {
                state.shed_rare();
            }
            self.tidy_client(ck);
        }
        if let Some(fk) =
            file.filter(|&fk| self.files.try_get(fk).is_some_and(FileState::is_unused))
        {
            self.files.remove(fk);
        }
    }

    pub(crate) fn tidy_client(&mut self, ck: ClientKey) {
        let Some(client) = self.clients.try_get(ck) else {
            return;
        };
        let expected = self.grace.as_ref().is_some_and(|g| g.pending.contains(&ck));
        if client.owners.is_empty()
            && !client.connected
            && client.disconnect_at.is_none()
            && !expected
        {
            self.clients.remove(ck);
        }
    }
}
