//! `brlock-core`: a byte-range lock manager as a pure state machine.
//!
//! The core is fully deterministic: it contains no I/O, reads no clock, draws no random numbers, starts
//! no threads and needs no `std`. A host hands it [`Event`]s together with the time `now` (an
//! [`Instant`]: milliseconds on a monotonic clock of the host's choosing; spans such as TTLs and
//! timeouts are [`Duration`]s) and carries out the [`Action`]s it returns, in order: replies, GRANTED
//! callbacks, persistence, releases. The same events in give byte-identical actions out, natively
//! and in wasm.
//!
//! ```
//! use brlock_core::*;
//! let mut core = Core::new(Config::default());
//! let lock = |request, owner: &str, kind| Event::Lock {
//!     request: RequestId(request),
//!     client: ClientId::from("host-a"),
//!     owner: OwnerId::from(owner),
//!     file: FileId::from("fh-1"),
//!     range: Range::new(0, 100),
//!     kind,
//!     wait: false,
//!     reclaim: false,
//!     cookie: vec![],
//! };
//! let actions = core.step(Instant::ZERO, lock(1, "alice", LockKind::Exclusive));
//! assert!(matches!(actions.last(), Some(Action::Reply { outcome: Outcome::Granted, .. })));
//! let actions = core.step(Instant::from_millis(1), lock(2, "bob", LockKind::Shared));
//! assert!(matches!(actions.last(), Some(Action::Reply { outcome: Outcome::Denied { .. }, .. })));
//! ```
//!
//! # Contract with the host
//! - Call [`Core::handle`] (or [`Core::step`]) once per event, with `now` never going backwards (an
//!   earlier `now` is treated as the latest seen: no error, no panic, no step back).
//! - Carry out each event's actions in order. A reply or callback that follows an [`Action::Persist`]
//!   is sent only once that persist is durable; many events' persists may share one transaction, and
//!   nothing of a later event may overtake an earlier one's. Applied in order, the persists keep the
//!   store equal to [`Core::records`] and [`Core::share_records`].
//! - Every request event gets exactly one [`Action::Reply`] naming its [`RequestId`], among that
//!   event's actions. A request that queues ([`Outcome::Blocked`]) is granted later by an
//!   [`Action::SendGranted`] in some other event's actions, or dropped with [`Action::WaiterRemoved`].
//! - Report how each `SendGranted` ended with one [`Event::CallbackOutcome`]. A grant nobody confirms
//!   is resent and finally undone as the [`CallbackPolicy`] and [`Config::callback_deadline`] say.
//! - Arm one timer for [`Core::poll_timeout`] (read it again after every event: it can move earlier)
//!   and send [`Event::Tick`] when it fires. Early or extra ticks are harmless.
//! - After a restart, make a new epoch durable first, then build the core with [`Core::restore`] (or
//!   [`Core::restore_with_shares`]) from what the store kept; it starts in the grace period. A host
//!   that kept nothing uses [`Core::open_grace`].
//! - Protocol refusals are [`Outcome`]s, never errors or panics; reports about things the core no
//!   longer tracks (a waiter already gone, a client never seen) are ignored.
//!
//! # A host loop
//! The loop every host runs, with a map as its store: persist first, then the rest in order, then
//! the timer. `core/examples/tiny_host/` is the same loop as a runnable line-based lock service.
//! ```
//! use std::collections::BTreeMap;
//! use brlock_core::*;
//! let (mut core, mut store) = (Core::new(Config::default()), BTreeMap::new());
//! let key = |r: &LockRecord| (r.file.clone(), r.client.clone(), r.owner.clone(), r.range.offset);
//! let (file, range, kind) = (FileId::from("f"), Range::new(0, 10), LockKind::Exclusive);
//! let (a, b) = (ClientId::from("alice"), ClientId::from("bob"));
//! let lock = |request, client: &ClientId, wait| Event::Lock { request: RequestId(request),
//!     client: client.clone(), owner: OwnerId::from("o"), file: file.clone(), range, kind,
//!     wait, reclaim: false, cookie: vec![] };
//! let unlock = Event::Unlock { request: RequestId(3), client: a.clone(),
//!     owner: OwnerId::from("o"), file: file.clone(), range };
//! let (mut replies, mut granted, mut actions) = (Vec::new(), Vec::new(), Vec::new());
//! for (now, event) in [(0, lock(1, &a, false)), (5, lock(2, &b, true)), (9, unlock)] {
//!     core.handle(Instant::from_millis(now), event, &mut actions);
//!     for action in &actions { // 1. one transaction holding all of this event's persists
//!         match action {
//!             Action::Persist { op: PersistOp::Put(r), .. } => drop(store.insert(key(r), r.clone())),
//!             Action::Persist { op: PersistOp::Delete(r), .. } => drop(store.remove(&key(r))),
//!             _ => {}
//!         }
//!     }
//!     for action in actions.drain(..) { // 2. once it is durable: replies and callbacks, in order
//!         match action {
//!             Action::Reply { request, outcome } => replies.push((request, outcome)),
//!             Action::SendGranted { waiter, client, .. } => granted.push((waiter, client)),
//!             _ => {} // releases, removed waiters: logs and metrics
//!         }
//!     }
//!     let _wake_at = core.poll_timeout(); // 3. arm the one timer; on firing, `Event::Tick`
//! }
//! assert_eq!(replies[1], (RequestId(2), Outcome::Blocked { waiter: WaiterId(1) }));
//! assert_eq!(granted, [(WaiterId(1), b)]); // bob's GRANTED callback, after alice's unlock
//! assert_eq!(store.into_values().collect::<Vec<_>>(), core.records()); // the store follows
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

mod action;
mod clients;
mod config;
mod cookie;
mod deadlock;
mod event;
mod grace;
mod ids;
mod interval;
mod invariants;
mod limits;
mod locks;
mod range;
mod recovery;
mod registry;
mod shares;
mod snapshot;
mod state;
mod stats;
mod table;
pub mod time;
mod trace;
mod views;
mod waiters;

pub use action::{
    Action, Holder, Limit, LockRecord, Outcome, OwnerRef, PersistOp, ReleaseReason, ShareRecord,
    WaiterRemovedReason,
};
pub use config::{CallbackPolicy, Config, Limits, Profile};
pub use cookie::{COOKIE_LEN, CookieKey};
pub use event::{CallbackResult, Event, LockKind, ShareMode};
pub use grace::RestoreError;
pub use ids::{ClientId, FileId, OwnerId, RequestId, WaiterId};
pub use range::{Range, Span};
pub use snapshot::Snapshot;
pub use state::Core;
pub use stats::{OutcomeCounts, Stats, WAIT_BUCKETS_MS};
pub use time::{Duration, Instant};
pub use trace::{Replay, TRACE_VERSION, Trace, TraceError, TraceHeader, TraceStep};
pub use views::{GraceView, HeldLockView, ShareView, WaitEdge, WaiterView};
