//! What the core asks the host to do. The host carries out one event's actions in order; a reply or
//! callback that follows a `Persist` goes out only once that persist is durable.

use alloc::string::String;
use alloc::vec::Vec;

use crate::cookie::COOKIE_LEN;
use crate::event::{LockKind, ShareMode};
use crate::ids::{ClientId, FileId, OwnerId, RequestId, WaiterId};
use crate::range::Range;

/// Which configured limit refused a request (NLM4_DENIED_NOLOCKS).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Limit {
    /// Held lock records of one file.
    PerFile,
    /// Held lock records of one client, across files.
    PerClient,
    /// Held lock records of the whole server.
    Total,
    /// Queued waiters of one file.
    QueueLength,
    /// Queued waiters of one client in one file: its share of that file's queue
    /// ([`Limits::client_queue_percent`](crate::Limits::client_queue_percent)).
    QueueShare,
    /// Waiters of one client (queued, or granted with the callback pending), across files.
    WaitersPerClient,
    /// Waiters of the whole server.
    WaitersTotal,
    /// Share reservations of one file.
    SharesPerFile,
    /// Share reservations of one client, across files.
    SharesPerClient,
    /// Share reservations of the whole server.
    SharesTotal,
}

/// An owner as the core knows it: opaque bytes within a client.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OwnerRef {
    pub client: ClientId,
    pub owner: OwnerId,
}

/// The lock (or, with `fair_nonblocking`, the queued request) that stands in a request's way.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Holder {
    pub client: ClientId,
    pub owner: OwnerId,
    pub kind: LockKind,
    pub range: Range,
    /// True when this is a queued waiter rather than a held lock.
    pub queued: bool,
}

/// The answer to one request. Refusals are outcomes, not errors.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Outcome {
    /// Done (lock granted, unlock done, test found no conflict, cancel done, share taken).
    Granted,
    /// Refused because of a conflict; `holder` really conflicts with the request.
    Denied { holder: Holder },
    /// Queued; a `SendGranted` for this waiter follows when it is granted.
    Blocked { waiter: WaiterId },
    /// Waiting would close a cycle in the wait-for graph; `cycle` lists the owners around it, starting
    /// with the requester, each waiting for the next, the last waiting for the first.
    Deadlock { cycle: Vec<OwnerRef> },
    /// A configured limit would be exceeded; nothing changed.
    NoLocks { limit: Limit },
    /// The range reaches past the largest offset accepted (NLM4_FBIG).
    TooBig,
    /// Refused during the grace period (or a reclaim after it) (NLM4_DENIED_GRACE_PERIOD).
    DeniedGrace,
    /// A reclaim of a lock this owner did not hold before the restart.
    NotReclaimable,
    /// A share reservation conflicts with `owner`'s.
    ShareDenied { owner: OwnerRef },
}

/// Why held locks went away.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ReleaseReason {
    /// The owner unlocked (or cancelled a grant whose callback was still pending).
    Explicit,
    /// The client disconnected and its TTL ran out.
    Disconnect,
    /// FREE_ALL or a reboot notification.
    FreeAll,
    /// Restored after a restart, not reclaimed before the grace period ended.
    GraceExpired,
    /// The GRANTED callback failed or was refused.
    CallbackFailed,
}

/// Why a waiter left its queue without being granted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum WaiterRemovedReason {
    /// CANCEL from the owner.
    Cancelled,
    /// The owner unlocked exactly the range it was waiting for (Linux lockd's nlmsvc_unlock).
    Unlocked,
    /// Not granted within `blocking_timeout`: the host tells the client it was denied.
    Expired,
    /// Its client disconnected (TTL ran out) or was freed.
    ClientGone,
    /// Queued again after a store failure ([`Core::rebuild`](crate::Core::rebuild)), it would close a
    /// cycle of waiting owners through a lock the store kept; the client's next retry is told
    /// DEADLCK, as any deadlock is.
    Deadlock,
}

/// One stored lock record. The store key is (file, client, owner, offset); a `Put` replaces the
/// record with the same key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LockRecord {
    pub file: FileId,
    pub client: ClientId,
    pub owner: OwnerId,
    pub kind: LockKind,
    pub range: Range,
}

/// One stored share reservation. The store key is (file, client, owner): an owner has at most one
/// share per file, and a `PutShare` replaces it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ShareRecord {
    pub file: FileId,
    pub client: ClientId,
    pub owner: OwnerId,
    pub access: ShareMode,
    pub deny: ShareMode,
}

#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum PersistOp {
    Put(LockRecord),
    Delete(LockRecord),
    /// A share reservation taken (or replaced), so that a restart restores it into grace.
    PutShare(ShareRecord),
    DeleteShare(ShareRecord),
}

/// One thing for the host to do.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Action {
    /// Answer request `request`.
    Reply {
        request: RequestId,
        outcome: Outcome,
    },
    /// Tell the client its queued request is granted (NLM_GRANTED / NLM_GRANTED_MSG); answer with
    /// `Event::CallbackOutcome`. `attempt` counts from 1; retries carry the same waiter.
    SendGranted {
        waiter: WaiterId,
        request: RequestId,
        client: ClientId,
        owner: OwnerId,
        file: FileId,
        range: Range,
        kind: LockKind,
        cookie: Vec<u8>,
        attempt: u32,
        /// Names this grant in the callback, unguessable without `Config::cookie_key`: brlockd sends
        /// it as NLM_GRANTED_MSG's cookie, and a GRANTED_RES counts only if
        /// [`Core::waiter_of_cookie`](crate::Core::waiter_of_cookie) finds its waiter. The same for
        /// every send of one grant.
        callback_cookie: [u8; COOKIE_LEN],
    },
    /// Make the store equal the core's held locks and share reservations. `seq` grows by one per
    /// persist action of an epoch.
    Persist { epoch: u64, seq: u64, op: PersistOp },
    /// Held locks went away.
    Released {
        client: ClientId,
        owner: OwnerId,
        file: FileId,
        range: Range,
        kind: LockKind,
        reason: ReleaseReason,
    },
    /// A waiter left its queue without a grant.
    WaiterRemoved {
        waiter: WaiterId,
        request: RequestId,
        client: ClientId,
        owner: OwnerId,
        file: FileId,
        range: Range,
        kind: LockKind,
        reason: WaiterRemovedReason,
    },
    /// A connection over its adapter's limit: the host refuses it.
    ConnectionRefused {
        client: ClientId,
        adapter: String,
        limit: u64,
    },
    /// The grace period is over; `released` restored lock records nobody reclaimed were released.
    GraceEnded { released: u64 },
}
