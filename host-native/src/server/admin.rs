//! What the admin endpoints show (`GET /locks`, `/waiters`, `/wait-for`, `/shares`, `/clients`,
//! `/grace`, `/readyz`): snapshots of the core task's state, taken on that task.
//!
//! The HTTP task never touches the `Core`: it sends a closure over [`CoreQueries::ask`], the core
//! task runs it between two events with a read-only [`CoreView`], and the answer comes back over a
//! oneshot. So a snapshot is consistent (no event is half applied). Its cost on the core task is
//! kept small: a listing stops collecting at its row limit (it never builds the whole table and
//! cuts it afterwards), a filter by file looks at that file alone, and what is collected there is
//! the core's own views (ids are shared `Arc`s); turning them into rows for people (hex, owner
//! text, decimal offsets) happens afterwards, off the core task ([`LockEntry::row`] and the like).
//!
//! Ids are shown for people: a file handle as lowercase hex, a client as its caller_name (hex with
//! `0x` when not printable), an owner as `caller_name/svid/oh` (`request_log::owner_text`). Offsets
//! are decimal **strings**, `end` inclusive or `"EOF"`: byte offsets reach 2^64 − 1 and a
//! JavaScript reader (or `jq` before 1.7) would round a JSON number above 2^53.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use brlock_core::{
    ClientId, Core, FileId, HeldLockView, LockKind, Millis, OwnerId, OwnerRef, Range, ShareMode,
    ShareView, WaitEdge, WaiterView,
};
use foldhash::{HashMap, HashMapExt};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::client_hosts::ClientHosts;
use super::request_log::owner_text;
use super::shared::CoreMsg;

/// The default `limit` of a listing, and the most one request may ask for.
pub const DEFAULT_LIMIT: usize = 10_000;
pub const MAX_LIMIT: usize = 100_000;

/// Whether the server is serving, for `/readyz` (ready only when `Serving`). A state that is
/// not ready is a variant here, with its reason in [`Readiness::reason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Readiness {
    /// The store is open and the core answers requests (during grace too: reclaims are served).
    Serving,
    /// A store write failed: requests are refused until the core is rebuilt from the store.
    Rebuilding,
    /// Another instance took the store over: nothing is served, and brlockd is exiting.
    Fenced,
    /// The core task has stopped (the server is shutting down).
    Stopped,
    /// A hot standby on a PostgreSQL store: another instance holds the leadership lease.
    Standby,
    /// The leadership lease ran out or was taken over: nothing is answered, brlockd is exiting.
    LeaseLost,
}

impl Readiness {
    pub fn is_ready(self) -> bool {
        self == Readiness::Serving
    }

    pub fn reason(self) -> &'static str {
        match self {
            Readiness::Serving => "serving NLM",
            Readiness::Rebuilding => {
                "a store write failed; refusing requests until the core is rebuilt from the store"
            }
            Readiness::Fenced => "fenced: another instance took the store over",
            Readiness::Stopped => "shutting down",
            Readiness::Standby => "standby: waiting for the leader's lease to run out",
            Readiness::LeaseLost => "the leadership lease ran out or was taken over",
        }
    }

    /// What a leadership role says before the core is asked: `None` when the role serves (the
    /// core then decides), else the state to report.
    pub fn of_role(role: &crate::leader::Role) -> Option<Readiness> {
        use crate::leader::Role;
        match role {
            Role::Sole | Role::Leader { .. } => None,
            Role::Standby { .. } => Some(Readiness::Standby),
            Role::SteppedDown { .. } => Some(Readiness::LeaseLost),
        }
    }
}

/// The core task's state, read-only, as a closure sent by [`CoreQueries::ask`] sees it.
pub struct CoreView<'a> {
    pub core: &'a Core,
    /// The host's clock (ms since the server started), which the core's `since` values use.
    pub now: Millis,
    pub readiness: Readiness,
    /// Client-host bindings and monitoring.
    pub(crate) hosts: &'a ClientHosts,
    /// `GET /events`' feed: a subscription taken here starts from `core` as it is now.
    pub tap: &'a super::events::EventTap,
}

/// A question for the core task (`CoreMsg::Inspect`).
pub(crate) type Inspect = Box<dyn FnOnce(&CoreView<'_>) + Send>;

/// Asks the core task about its state; cheap to clone. It may be made before the core task exists
/// (a standby's HTTP endpoint, `http_endpoint.rs`) and attached to it later.
#[derive(Clone, Default)]
pub struct CoreQueries {
    tx: Arc<OnceLock<mpsc::Sender<CoreMsg>>>,
}

impl CoreQueries {
    /// Not attached to a core task yet: every question is answered `None`.
    pub(crate) fn unattached() -> Self {
        Self::default()
    }

    /// From now on questions go to the core task behind `tx` (the first attachment stays).
    pub(crate) fn attach(&self, tx: mpsc::Sender<CoreMsg>) {
        let _ = self.tx.set(tx);
    }

    /// Runs `f` on the core task and returns its answer; `None` once that task has stopped (or
    /// before there is one).
    /// `f` runs between two events: keep it short (bounded by a row limit).
    pub async fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CoreView<'_>) -> T + Send + 'static,
    ) -> Option<T> {
        let core = self.tx.get()?;
        let (tx, rx) = oneshot::channel();
        let inspect: Inspect = Box::new(move |view| {
            let _ = tx.send(f(view));
        });
        // The core's queue is bounded: wait for room rather than drop the question.
        core.send(CoreMsg::Inspect(inspect)).await.ok()?;
        rx.await.ok()
    }
}

/// Which rows a listing keeps. Empty: all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub file: Option<FileId>,
    /// `caller_name/svid/oh`, or a prefix of it ending at a `/` (`host-a/42`: every oh of svid 42).
    pub owner: Option<String>,
    pub client: Option<ClientId>,
}

impl Filter {
    /// A matcher for one listing (it remembers each owner's answer: an owner's text is formatted
    /// once per listing, not once per lock).
    fn matcher(&self) -> Matcher<'_> {
        Matcher {
            filter: self,
            owners: HashMap::new(),
        }
    }

    /// The files to look at, in name order: the one asked for, or all.
    fn files(&self, core: &Core) -> Vec<FileId> {
        match &self.file {
            Some(file) => vec![file.clone()],
            None => core.files(),
        }
    }
}

struct Matcher<'f> {
    filter: &'f Filter,
    owners: HashMap<OwnerId, bool>,
}

impl Matcher<'_> {
    fn keeps(&mut self, client: &ClientId, owner: &OwnerId) -> bool {
        if self.filter.client.as_ref().is_some_and(|c| c != client) {
            return false;
        }
        let Some(wanted) = &self.filter.owner else {
            return true;
        };
        *self.owners.entry(owner.clone()).or_insert_with(|| {
            owner_text(owner)
                .strip_prefix(wanted.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

/// At most `limit` rows, and whether more would have matched.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Capped<T> {
    pub rows: Vec<T>,
    pub truncated: bool,
}

impl<T> Capped<T> {
    /// The same listing with each row turned into `U`.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Capped<U> {
        Capped {
            rows: self.rows.into_iter().map(f).collect(),
            truncated: self.truncated,
        }
    }

    fn new() -> Self {
        Capped {
            rows: Vec::new(),
            truncated: false,
        }
    }

    /// Adds a row unless `limit` are there already (then marks the listing truncated). Returns
    /// whether to go on collecting.
    fn offer(&mut self, limit: usize, row: impl FnOnce() -> T) -> bool {
        if self.rows.len() >= limit {
            self.truncated = true;
            return false;
        }
        self.rows.push(row());
        true
    }
}

/// A file handle as lowercase hex (the spelling the `file` filter takes).
pub fn file_hex(file: &FileId) -> String {
    file.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The inclusive last byte of `range` as a decimal string, or `EOF`.
pub fn end_text(range: Range) -> String {
    match range.length {
        0 => "EOF".into(),
        n => range.offset.saturating_add(n - 1).to_string(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct OwnerRow {
    pub client: String,
    /// `caller_name/svid/oh` for an NLM owner.
    pub owner: String,
}

impl OwnerRow {
    fn new(client: &ClientId, owner: &OwnerId) -> Self {
        OwnerRow {
            client: client.to_string(),
            owner: owner_text(owner),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct LockRow {
    pub file: String,
    #[serde(flatten)]
    pub owner: OwnerRow,
    pub kind: LockKind,
    pub start: String,
    pub end: String,
    /// Restored after a restart and not reclaimed yet.
    pub unreclaimed: bool,
    /// Since when the owner has held these bytes, in ms since the server started (a restored lock:
    /// since the restore).
    pub since_ms: u64,
    pub held_ms: u64,
}

/// A held lock as collected on the core task.
pub struct LockEntry {
    pub file: FileId,
    pub lock: HeldLockView,
    pub held_ms: u64,
}

impl LockEntry {
    pub fn row(self) -> LockRow {
        let lock = self.lock;
        LockRow {
            file: file_hex(&self.file),
            owner: OwnerRow::new(&lock.client, &lock.owner),
            kind: lock.kind,
            start: lock.range.offset.to_string(),
            end: end_text(lock.range),
            unreclaimed: lock.unreclaimed,
            since_ms: lock.since,
            held_ms: self.held_ms,
        }
    }
}

/// Held locks, by file name, then in range order.
pub fn locks(view: &CoreView<'_>, filter: &Filter, limit: usize) -> Capped<LockEntry> {
    let mut out = Capped::new();
    let mut matcher = filter.matcher();
    'files: for file in filter.files(view.core) {
        for lock in view.core.held_locks(&file) {
            if !matcher.keeps(&lock.client, &lock.owner) {
                continue;
            }
            let file = file.clone();
            let held_ms = view.now.saturating_sub(lock.since);
            if !out.offer(limit, || LockEntry {
                file,
                lock,
                held_ms,
            }) {
                break 'files;
            }
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct WaiterRow {
    pub file: String,
    /// 1 for the head of the file's queue.
    pub position: u64,
    pub waiter: u64,
    #[serde(flatten)]
    pub owner: OwnerRow,
    pub kind: LockKind,
    pub start: String,
    pub end: String,
    /// When it queued, in ms since the server started.
    pub since_ms: u64,
    pub waiting_ms: u64,
}

/// A queued waiter as collected on the core task.
pub struct WaiterEntry {
    pub file: FileId,
    /// 1 for the head of the queue.
    pub position: u64,
    pub waiter: WaiterView,
    pub waiting_ms: u64,
}

impl WaiterEntry {
    pub fn row(self) -> WaiterRow {
        let w = self.waiter;
        WaiterRow {
            file: file_hex(&self.file),
            position: self.position,
            waiter: w.waiter.0,
            owner: OwnerRow::new(&w.client, &w.owner),
            kind: w.kind,
            start: w.range.offset.to_string(),
            end: end_text(w.range),
            since_ms: w.since,
            waiting_ms: self.waiting_ms,
        }
    }
}

/// Queued blocking requests, by file name, then in queue order.
pub fn waiters(view: &CoreView<'_>, filter: &Filter, limit: usize) -> Capped<WaiterEntry> {
    let mut out = Capped::new();
    let mut matcher = filter.matcher();
    'files: for file in filter.files(view.core) {
        for (i, waiter) in view.core.waiters(&file).into_iter().enumerate() {
            if !matcher.keeps(&waiter.client, &waiter.owner) {
                continue;
            }
            let entry = || WaiterEntry {
                file: file.clone(),
                position: i as u64 + 1,
                waiting_ms: view.now.saturating_sub(waiter.since),
                waiter,
            };
            if !out.offer(limit, entry) {
                break 'files;
            }
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct ShareRow {
    pub file: String,
    #[serde(flatten)]
    pub owner: OwnerRow,
    pub access: ShareMode,
    pub deny: ShareMode,
}

/// A share reservation as collected on the core task.
pub struct ShareEntry {
    pub file: FileId,
    pub share: ShareView,
}

impl ShareEntry {
    pub fn row(self) -> ShareRow {
        ShareRow {
            file: file_hex(&self.file),
            owner: OwnerRow::new(&self.share.client, &self.share.owner),
            access: self.share.access,
            deny: self.share.deny,
        }
    }
}

/// Share reservations, by file name, then client and owner.
pub fn shares(core: &Core, filter: &Filter, limit: usize) -> Capped<ShareEntry> {
    let mut out = Capped::new();
    let mut matcher = filter.matcher();
    'files: for file in filter.files(core) {
        for share in core.shares(&file) {
            if !matcher.keeps(&share.client, &share.owner) {
                continue;
            }
            let file = file.clone();
            if !out.offer(limit, || ShareEntry { file, share }) {
                break 'files;
            }
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct EdgeRow {
    /// The waiting request (as in `/waiters`).
    pub waiter: u64,
    pub file: String,
    pub from: OwnerRow,
    pub to: OwnerRow,
    /// Both ends are on one cycle of the graph.
    pub in_cycle: bool,
}

/// The wait-for graph as collected on the core task: edges (each with whether it lies on a
/// cycle) and the cycles' owners.
pub struct WaitFor {
    pub edges: Capped<(WaitEdge, bool)>,
    /// The owners of each cycle (a strongly connected part of more than one owner, or one that
    /// waits for itself). The core refuses a blocking request that would close a cycle
    /// (NLM4_DEADLCK), but a cycle can form later, when a non-blocking lock (judged against held
    /// locks only) lands on a range an owner already waits for.
    pub cycles: Vec<Vec<OwnerRef>>,
}

impl WaitFor {
    /// Edges as rows, and each cycle's owners in order.
    pub fn rows(self) -> (Capped<EdgeRow>, Vec<Vec<OwnerRow>>) {
        let edges = self.edges.map(|(e, in_cycle)| EdgeRow {
            waiter: e.waiter.0,
            file: file_hex(&e.file),
            from: OwnerRow::new(&e.from.client, &e.from.owner),
            to: OwnerRow::new(&e.to.client, &e.to.owner),
            in_cycle,
        });
        let mut cycles: Vec<Vec<OwnerRow>> = self
            .cycles
            .into_iter()
            .map(|cycle| {
                let mut owners: Vec<OwnerRow> = cycle
                    .iter()
                    .map(|o| OwnerRow::new(&o.client, &o.owner))
                    .collect();
                owners.sort();
                owners
            })
            .collect();
        cycles.sort();
        (edges, cycles)
    }
}

/// The wait-for graph: an edge from a waiter's owner to each owner it waits for, in waiter order.
/// The graph is as large as the waiter limits allow (the core builds it whole); the edges listed
/// are capped, the cycles are searched over all of it.
pub fn wait_for(core: &Core, limit: usize) -> WaitFor {
    let graph = core.wait_for_graph();
    let mut nodes: BTreeMap<&OwnerRef, usize> = BTreeMap::new();
    for e in &graph {
        let n = nodes.len();
        nodes.entry(&e.from).or_insert(n);
        let n = nodes.len();
        nodes.entry(&e.to).or_insert(n);
    }
    let pairs: Vec<(usize, usize)> = graph
        .iter()
        .map(|e| (nodes[&e.from], nodes[&e.to]))
        .collect();
    let component = strongly_connected(nodes.len(), &pairs);
    // A component is a cycle when it has two owners or more, or one that waits for itself.
    let mut cyclic = vec![0usize; nodes.len()];
    for &c in &component {
        cyclic[c] += 1;
    }
    for &(a, b) in &pairs {
        if a == b {
            cyclic[component[a]] += 1;
        }
    }
    let on_cycle = |n: usize| cyclic[component[n]] > 1;
    let mut cycles: BTreeMap<usize, Vec<OwnerRef>> = BTreeMap::new();
    for (owner, &n) in &nodes {
        if on_cycle(n) {
            cycles
                .entry(component[n])
                .or_default()
                .push((*owner).clone());
        }
    }
    let cycles = cycles.into_values().collect();
    let mut edges = Capped::new();
    for (edge, (a, b)) in graph.into_iter().zip(pairs.iter().copied()) {
        let in_cycle = component[a] == component[b] && on_cycle(a);
        if !edges.offer(limit, || (edge, in_cycle)) {
            break;
        }
    }
    WaitFor { edges, cycles }
}

/// Kosaraju's algorithm, iterative (a graph of 10,000 waiters must not overflow a stack): the
/// component number of each of `n` nodes, equal for nodes that reach each other.
fn strongly_connected(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut forward = vec![Vec::new(); n];
    let mut backward = vec![Vec::new(); n];
    for &(a, b) in edges {
        forward[a].push(b);
        backward[b].push(a);
    }
    // Pass 1: nodes in order of finishing a depth-first search.
    let mut finished = Vec::with_capacity(n);
    let mut seen = vec![false; n];
    for root in 0..n {
        if seen[root] {
            continue;
        }
        seen[root] = true;
        let mut stack = vec![(root, 0usize)];
        while let Some((node, next)) = stack.last_mut() {
            if let Some(&to) = forward[*node].get(*next) {
                *next += 1;
                if !seen[to] {
                    seen[to] = true;
                    stack.push((to, 0));
                }
            } else {
                finished.push(*node);
                stack.pop();
            }
        }
    }
    // Pass 2: on the reversed graph, latest finisher first; each search is one component.
    const NONE: usize = usize::MAX;
    let mut component = vec![NONE; n];
    let mut count = 0;
    for &root in finished.iter().rev() {
        if component[root] != NONE {
            continue;
        }
        component[root] = count;
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            for &from in &backward[node] {
                if component[from] == NONE {
                    component[from] = count;
                    stack.push(from);
                }
            }
        }
        count += 1;
    }
    component
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct ClientRow {
    /// The caller_name the host's calls carry.
    pub name: String,
    /// The address its calls come from (the first one it called from; a call with this name from
    /// elsewhere is refused), and the address of ours they arrive at.
    pub address: Option<String>,
    pub local_address: Option<String>,
    /// Its locks are monitored ones (LOCK, not NM_LOCK): brlockd keeps its NSM state, and with
    /// `--nsm builtin` or `statd` its reboot frees them.
    pub monitored: bool,
    /// SM_MON for it went to the local rpc.statd (`--nsm statd`).
    pub statd: bool,
    /// The NSM state its latest monitored request carried.
    pub nsm_state: Option<u32>,
    /// Since its latest request naming a lock or share (monitored hosts only).
    pub last_seen_ms_ago: Option<u64>,
    /// The core still tracks it (it holds, waits for or reserves something, or has locks to
    /// reclaim).
    pub known_to_core: bool,
}

/// Client hosts brlockd has bound or monitors, by name.
pub fn clients(view: &CoreView<'_>, limit: usize) -> Capped<ClientRow> {
    let (callers, monitored) = (view.hosts.callers(), view.hosts.monitored());
    let names: BTreeSet<&Vec<u8>> = callers.keys().chain(monitored.keys()).collect();
    let now = Instant::now();
    let mut out = Capped::new();
    for name in names {
        let bound = callers.get(name);
        let monitored = monitored.get(name);
        let client = ClientId::new(name.clone());
        let row = || ClientRow {
            name: client.to_string(),
            address: bound.map(|b| b.ip.to_string()),
            local_address: bound.map(|b| b.local.to_string()),
            monitored: monitored.is_some(),
            statd: monitored.is_some_and(|m| m.statd),
            nsm_state: monitored.map(|m| m.state),
            last_seen_ms_ago: monitored
                .map(|m| now.saturating_duration_since(m.last_seen).as_millis() as u64),
            known_to_core: view.core.knows_client(&client),
        };
        if !out.offer(limit, row) {
            break;
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct GraceRow {
    pub in_grace: bool,
    pub remaining_ms: u64,
    /// Client hosts that held locks before the restart.
    pub expected_clients: u64,
    /// Those that still have locks to reclaim, by name.
    pub pending_clients: Vec<String>,
}

/// The grace period after a restart (the pending list is as long as the clients the store kept).
pub fn grace(core: &Core) -> GraceRow {
    match core.grace() {
        Some(g) => GraceRow {
            in_grace: true,
            remaining_ms: g.remaining,
            expected_clients: g.expected,
            pending_clients: g.pending.iter().map(ToString::to_string).collect(),
        },
        None => GraceRow {
            in_grace: false,
            remaining_ms: 0,
            expected_clients: 0,
            pending_clients: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::dispatch::owner_id;
    use crate::store::ClientHost;
    use brlock_core::{Config, Event, Profile, RequestId};
    use std::net::IpAddr;

    struct World {
        core: Core,
        next: u64,
    }

    impl World {
        fn new() -> Self {
            World {
                core: Core::new(Profile::Brlock.config()),
                next: 1,
            }
        }

        fn lock(&mut self, caller: &str, svid: u32, fh: &[u8], offset: u64, len: u64, wait: bool) {
            self.next += 1;
            self.core.step(
                self.next,
                Event::Lock {
                    request: RequestId(self.next),
                    client: ClientId::from(caller),
                    owner: owner_id(caller.as_bytes(), svid, b"oh"),
                    file: FileId::from(fh),
                    range: Range::new(offset, len),
                    kind: LockKind::Exclusive,
                    wait,
                    reclaim: false,
                    cookie: Vec::new(),
                },
            );
        }

        fn view<T>(&self, now: Millis, f: impl FnOnce(&CoreView<'_>) -> T) -> T {
            let hosts = ClientHosts::new(10, std::time::Duration::from_secs(60), false);
            let tap = crate::server::events::EventTap::default();
            f(&CoreView {
                core: &self.core,
                now,
                readiness: Readiness::Serving,
                hosts: &hosts,
                tap: &tap,
            })
        }
    }

    #[test]
    fn locks_are_listed_for_people_and_filtered() {
        let mut w = World::new();
        w.lock("host-a", 7, b"\x01\xab", 0, 0, false);
        w.lock("host-b", 8, b"\x02", (1 << 53) + 1, 10, false);
        w.lock("host-b", 9, b"\x02", 10, 5, false);
        let all = w
            .view(100, |v| locks(v, &Filter::default(), 100))
            .map(LockEntry::row);
        assert!(!all.truncated);
        assert_eq!(
            all.rows[0],
            LockRow {
                file: "01ab".into(),
                owner: OwnerRow {
                    client: "host-a".into(),
                    owner: "host-a/7/oh".into()
                },
                kind: LockKind::Exclusive,
                start: "0".into(),
                end: "EOF".into(),
                unreclaimed: false,
                since_ms: 2,
                held_ms: 98,
            }
        );
        // Exact offsets past 2^53 (a JSON number would round 2^53 + 1 down), in range order.
        let ends: Vec<_> = all
            .rows
            .iter()
            .map(|r| (r.start.as_str(), r.end.as_str()))
            .collect();
        assert_eq!(
            ends,
            [
                ("0", "EOF"),
                ("10", "14"),
                ("9007199254740993", "9007199254741002")
            ]
        );
        let count = |f: Filter| w.view(100, |v| locks(v, &f, 100)).rows.len();
        assert_eq!(
            count(Filter {
                file: Some(FileId::from(&b"\x02"[..])),
                ..Filter::default()
            }),
            2
        );
        assert_eq!(
            count(Filter {
                file: Some(FileId::from("none")),
                ..Filter::default()
            }),
            0
        );
        assert_eq!(
            count(Filter {
                client: Some("host-b".into()),
                ..Filter::default()
            }),
            2
        );
        for (owner, n) in [
            ("host-b/9/oh", 1),
            ("host-b/9", 1),
            ("host-b", 2),
            ("host-b/", 0),
            ("host-b/9/o", 0),
        ] {
            let f = Filter {
                owner: Some(owner.into()),
                ..Filter::default()
            };
            assert_eq!(count(f), n, "owner filter {owner:?}");
        }
    }

    #[test]
    fn listings_stop_at_the_limit_and_say_so() {
        let mut w = World::new();
        for i in 0..5 {
            w.lock("host-a", 1, format!("f{i}").as_bytes(), 0, 1, false);
        }
        let capped = w.view(100, |v| locks(v, &Filter::default(), 3));
        assert_eq!((capped.rows.len(), capped.truncated), (3, true));
        let exact = w.view(100, |v| locks(v, &Filter::default(), 5));
        assert_eq!((exact.rows.len(), exact.truncated), (5, false));
    }

    #[test]
    fn waiters_show_their_queue_position_and_how_long_they_wait() {
        let mut w = World::new();
        w.lock("host-a", 1, b"f", 0, 100, false);
        w.lock("host-b", 2, b"f", 50, 10, true); // queued at now = 3
        w.lock("host-c", 3, b"f", 0, 0, true); // queued at now = 4
        let rows = w
            .view(1_004, |v| waiters(v, &Filter::default(), 10))
            .map(WaiterEntry::row)
            .rows;
        let summary: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.position,
                    r.owner.owner.as_str(),
                    r.start.as_str(),
                    r.end.as_str(),
                    r.waiting_ms,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, "host-b/2/oh", "50", "59", 1_001),
                (2, "host-c/3/oh", "0", "EOF", 1_000)
            ]
        );
        let only_c = Filter {
            client: Some("host-c".into()),
            ..Filter::default()
        };
        let rows = w
            .view(5, |v| waiters(v, &only_c, 10))
            .map(WaiterEntry::row)
            .rows;
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].position, 2,
            "the position is in the whole queue, not the listing"
        );
    }

    #[test]
    fn the_wait_for_graph_lists_edges_without_a_cycle_the_core_would_refuse() {
        let mut w = World::new();
        w.lock("host-a", 1, b"f", 0, 10, false);
        w.lock("host-b", 2, b"g", 0, 10, false);
        w.lock("host-a", 1, b"g", 0, 10, true); // a waits for b
        w.lock("host-b", 2, b"f", 0, 10, true); // would close a cycle: refused (deadlock)
        let (edges, cycles) = wait_for(&w.core, 10).rows();
        assert_eq!(edges.rows.len(), 1);
        let e = &edges.rows[0];
        assert_eq!(
            (e.from.owner.as_str(), e.to.owner.as_str(), e.file.as_str()),
            ("host-a/1/oh", "host-b/2/oh", "67")
        );
        assert!(!e.in_cycle);
        assert!(cycles.is_empty());
    }

    /// A non-blocking lock, judged against held locks only, lands on a range an owner already waits
    /// for; the core breaks the cycle that would close (removing that waiter), so `/wait-for` lists
    /// what is left and no cycle.
    #[test]
    fn a_cycle_a_grant_would_close_is_broken_before_it_is_listed() {
        let mut w = World::new();
        w.lock("x", 1, b"g", 0, 10, false); // x holds g
        w.lock("y", 2, b"g", 0, 10, true); // y waits for x on g
        w.lock("z", 3, b"f", 0, 10, false); // z holds f[0, 10)
        w.lock("x", 1, b"f", 0, 20, true); // x waits for z on f[0, 20)
        w.lock("y", 2, b"f", 15, 5, false); // y takes f[15, 20): x's wait would close a cycle
        let (edges, cycles) = wait_for(&w.core, 10).rows();
        let marked: Vec<_> = edges
            .rows
            .iter()
            .map(|e| (e.from.owner.as_str(), e.to.owner.as_str(), e.in_cycle))
            .collect();
        assert_eq!(marked, [("y/2/oh", "x/1/oh", false)]);
        assert!(cycles.is_empty());
    }

    #[test]
    fn strongly_connected_parts_are_found_without_recursion() {
        // 0 → 1 → 2 → 0 is a cycle; 3 → 0 and 4 alone are not.
        let c = strongly_connected(5, &[(0, 1), (1, 2), (2, 0), (3, 0)]);
        assert!(c[0] == c[1] && c[1] == c[2]);
        assert!(c[3] != c[0] && c[4] != c[0] && c[3] != c[4]);
        // A long chain and a long ring: no stack overflow.
        let n = 200_000;
        let chain: Vec<_> = (0..n - 1).map(|i| (i, i + 1)).collect();
        let c = strongly_connected(n, &chain);
        assert_eq!(c.iter().collect::<BTreeSet<_>>().len(), n);
        let mut ring = chain;
        ring.push((n - 1, 0));
        let c = strongly_connected(n, &ring);
        assert!(c.iter().all(|&x| x == c[0]));
    }

    #[test]
    fn client_hosts_join_bindings_and_monitoring() {
        let mut w = World::new();
        w.lock("host-a", 1, b"f", 0, 1, false);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut hosts = ClientHosts::new(10, std::time::Duration::from_secs(60), false);
        let row = |name: &str, address: &str, local: &str, nsm_state| ClientHost {
            caller_name: name.as_bytes().to_vec(),
            address: ip(address),
            local_address: ip(local),
            nsm_state,
            statd_monitored: false,
        };
        hosts.restore(
            &[
                row("host-a", "127.0.0.2", "127.0.0.1", Some(3)),
                row("host-z", "::1", "::1", None),
            ],
            Instant::now(),
        );
        let tap = crate::server::events::EventTap::default();
        let view = CoreView {
            core: &w.core,
            now: 10,
            readiness: Readiness::Serving,
            hosts: &hosts,
            tap: &tap,
        };
        let rows = clients(&view, 10);
        assert!(!rows.truncated);
        let a = &rows.rows[0];
        assert_eq!(
            (
                a.name.as_str(),
                a.address.as_deref(),
                a.local_address.as_deref(),
                (a.monitored, a.statd),
                a.nsm_state,
                a.known_to_core
            ),
            (
                "host-a",
                Some("127.0.0.2"),
                Some("127.0.0.1"),
                (true, false),
                Some(3),
                true
            )
        );
        assert!(a.last_seen_ms_ago.is_some_and(|ms| ms < 60_000));
        let z = &rows.rows[1];
        assert_eq!(
            (
                z.name.as_str(),
                z.monitored,
                z.last_seen_ms_ago,
                z.known_to_core
            ),
            ("host-z", false, None, false)
        );
        let one = clients(&view, 1);
        assert_eq!((one.rows.len(), one.truncated), (1, true));
    }

    /// Against the naive model: two nodes share a component exactly when each reaches the other.
    #[test]
    fn strongly_connected_agrees_with_mutual_reachability() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |below: usize| {
            // xorshift64*: a fixed seed, so a failure replays.
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % below
        };
        for case in 0..2_000 {
            let n = 1 + next(12);
            let edges: Vec<(usize, usize)> = (0..next(30)).map(|_| (next(n), next(n))).collect();
            let mut reach = vec![vec![false; n]; n];
            for (a, row) in reach.iter_mut().enumerate() {
                let mut stack = vec![a];
                while let Some(x) = stack.pop() {
                    if !row[x] {
                        row[x] = true;
                        stack.extend(edges.iter().filter(|e| e.0 == x).map(|e| e.1));
                    }
                }
            }
            let component = strongly_connected(n, &edges);
            for a in 0..n {
                for b in 0..n {
                    assert_eq!(
                        component[a] == component[b],
                        reach[a][b] && reach[b][a],
                        "case {case}: nodes {a}, {b} of {edges:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn readiness_is_ready_only_when_serving() {
        assert!(Readiness::Serving.is_ready());
        for r in [
            Readiness::Rebuilding,
            Readiness::Fenced,
            Readiness::Stopped,
            Readiness::Standby,
            Readiness::LeaseLost,
        ] {
            assert!(!r.is_ready());
            assert!(!r.reason().is_empty());
        }
    }

    #[test]
    fn a_standby_or_a_leader_that_lost_its_lease_is_not_ready_whatever_the_core_says() {
        use crate::leader::Role;
        let standby = Role::Standby {
            leader: "pid 1".into(),
            since: "t".into(),
        };
        let lost = Role::SteppedDown {
            reason: "lost".into(),
        };
        assert_eq!(Readiness::of_role(&standby), Some(Readiness::Standby));
        assert_eq!(Readiness::of_role(&lost), Some(Readiness::LeaseLost));
        assert_eq!(Readiness::of_role(&Role::Leader { term: 3 }), None);
        assert_eq!(Readiness::of_role(&Role::Sole), None);
    }

    #[test]
    fn grace_and_ids_are_shown_plainly() {
        let w = World::new();
        assert_eq!(
            grace(&w.core),
            GraceRow {
                in_grace: false,
                remaining_ms: 0,
                expected_clients: 0,
                pending_clients: vec![]
            }
        );
        let (core, _) = Core::open_grace(
            Config {
                grace: 5_000,
                ..Profile::Brlock.config()
            },
            1_000,
            1,
        );
        let g = grace(&core);
        assert!(g.in_grace);
        assert_eq!(g.remaining_ms, 5_000);
        assert_eq!(file_hex(&FileId::from(&[0u8, 0xff, 0x10][..])), "00ff10");
        assert_eq!(end_text(Range::new(u64::MAX, 1)), u64::MAX.to_string());
    }
}
