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
//!
//! Here: the query channel ([`CoreQueries`], [`CoreView`]), [`Readiness`], and the client hosts
//! listing (it reads the core task's bindings, not the `Core`). `filter.rs`: which rows and how
//! many; `rows.rs`: locks, waiters, shares and grace; `wait_for.rs`: the wait-for graph.

mod filter;
mod rows;
mod wait_for;
#[cfg(test)]
mod world;

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use brlock_core::{ClientId, Core, Instant as CoreInstant};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

// The core task's own types: the message its queue takes, and the host tables a view borrows.
use super::client_hosts::ClientHosts;
use super::shared::CoreMsg;

pub use filter::{Capped, DEFAULT_LIMIT, Filter, MAX_LIMIT};
pub use rows::{
    GraceRow, LockEntry, LockRow, OwnerRow, ShareEntry, ShareRow, WaiterEntry, WaiterRow, end_text,
    file_hex, grace, locks, shares, waiters,
};
pub use wait_for::{EdgeRow, WaitFor, wait_for};

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
    pub now: CoreInstant,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::admin::world::World;
    use crate::store::ClientHost;
    use std::net::IpAddr;

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
            now: CoreInstant::from_millis(10),
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
}
