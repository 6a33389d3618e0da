//! `brlock-core`: a byte-range lock manager as a pure state machine.
//!
//! The core is fully deterministic: it contains no I/O, reads no clock, draws no random numbers, starts
//! no threads and needs no `std`. A host hands it [`Event`]s together with the time `now` (milliseconds
//! on a monotonic clock of the host's choosing) and carries out the [`Action`]s it returns, in order:
//! replies, GRANTED callbacks, persistence, releases. The same events in give byte-identical actions
//! out, natively and in wasm.
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
//! let actions = core.step(0, lock(1, "alice", LockKind::Exclusive));
//! assert!(matches!(actions.last(), Some(Action::Reply { outcome: Outcome::Granted, .. })));
//! let actions = core.step(1, lock(2, "bob", LockKind::Shared));
//! assert!(matches!(actions.last(), Some(Action::Reply { outcome: Outcome::Denied { .. }, .. })));
//! ```
//!
//! # Contract with the host
//! - Call [`Core::handle`] (or [`Core::step`]) once per event, with `now` never going backwards (an
//!   earlier `now` is treated as the latest seen).
//! - Carry out each event's actions in order. A reply or callback that follows an [`Action::Persist`]
//!   is sent only once that persist is durable; many events' persists may share one transaction.
//! - Arm one timer for [`Core::poll_timeout`] and send [`Event::Tick`] when it fires. Early or extra
//!   ticks are harmless.
//! - Protocol refusals are [`Outcome`]s, never errors or panics.
#![no_std]
#![forbid(unsafe_code)]

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
mod state;
mod stats;
mod table;
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
pub use ids::{ClientId, FileId, Millis, OwnerId, RequestId, WaiterId};
pub use range::{Range, Span};
pub use state::Core;
pub use stats::{OutcomeCounts, Stats, WAIT_BUCKETS_MS};
pub use trace::{Replay, TRACE_VERSION, Trace, TraceError, TraceHeader, TraceStep};
pub use views::{GraceView, HeldLockView, ShareView, WaitEdge, WaiterView};
