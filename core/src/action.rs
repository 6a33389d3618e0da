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

/// An owner as the core knows it: opaque bytes within a client. Two owners are the same only when
/// both the client and the owner bytes are equal, so equal owner bytes from two clients never merge.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct OwnerRef {
    /// The client the owner belongs to, as the host named it in the owner's requests.
    pub client: ClientId,
    /// The owner within that client, as the host named it.
    pub owner: OwnerId,
}

/// The lock (or, with [`Config::fair_nonblocking`](crate::Config::fair_nonblocking), the queued
/// request) that stands in a request's way: what a denied NLM_TEST reports as `nlm4_holder` (a
/// denied LOCK's reply carries only the status). When several conflict, the core names one of them;
/// which one is not part of the contract.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Holder {
    /// The client of the conflicting owner.
    pub client: ClientId,
    /// The conflicting owner (brlockd decodes NLM's svid and oh back out of it).
    pub owner: OwnerId,
    /// The kind of the conflicting lock or queued request.
    pub kind: LockKind,
    /// The whole range of the conflicting lock record (or queued request), not just the overlap;
    /// length 0 when it reaches [`Config::max_offset`](crate::Config::max_offset).
    pub range: Range,
    /// True when this is a queued waiter rather than a held lock (only with `fair_nonblocking`).
    pub queued: bool,
}

/// The answer to one request, carried by [`Action::Reply`]. Refusals are outcomes, not errors; a
/// refusal leaves every lock, waiter and share as it was (only the counters of [`Stats`] move).
/// brlockd maps them to NLM statuses as noted.
///
/// [`Stats`]: crate::Stats
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Outcome {
    /// Done (NLM4_GRANTED): lock granted, unlock done (also when nothing was held), test found no
    /// conflict, cancel done (also when nothing was queued, as Linux lockd answers), share taken or
    /// dropped.
    Granted,
    /// Refused because of a conflict (NLM4_DENIED): a non-blocking LOCK, or a TEST.
    Denied {
        /// A lock (or queued request) that really conflicts with the request.
        holder: Holder,
    },
    /// A blocking LOCK was queued (NLM4_BLOCKED). An [`Action::SendGranted`] naming `waiter` follows,
    /// in the actions of whichever later event grants it; an [`Action::WaiterRemoved`] if it never is.
    /// A retransmitted LOCK for the same owner, file, range and kind gets the same waiter back.
    Blocked {
        /// The core's id for the queued request, which callbacks and views name.
        waiter: WaiterId,
    },
    /// Queueing would close a cycle in the wait-for graph (NLM4_DEADLCK); nothing was queued.
    Deadlock {
        /// The owners around the cycle, starting with the requester, each waiting for the next,
        /// the last waiting for the first.
        cycle: Vec<OwnerRef>,
    },
    /// A configured limit would be exceeded (NLM4_DENIED_NOLOCKS); nothing changed.
    NoLocks {
        /// The first limit the request would pass.
        limit: Limit,
    },
    /// The range reaches past [`Config::max_offset`](crate::Config::max_offset) or its end overflows
    /// (NLM4_FBIG).
    TooBig,
    /// Refused because of the grace period (NLM4_DENIED_GRACE_PERIOD): a new request during grace
    /// (or a TEST, UNLOCK, CANCEL or UNSHARE the profile refuses then), or a reclaim after grace
    /// without [`Config::late_reclaim`](crate::Config::late_reclaim).
    DeniedGrace,
    /// With [`Config::verify_reclaims`](crate::Config::verify_reclaims): a reclaim of a lock (or a
    /// share with these modes) this owner did not hold before the restart (brlockd: NLM4_DENIED).
    NotReclaimable,
    /// A share reservation conflicts with another owner's (brlockd: NLM4_DENIED).
    ShareDenied {
        /// The owner whose reservation denies what was asked, or uses what was to be denied.
        owner: OwnerRef,
    },
}

/// Why held locks went away ([`Action::Released`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ReleaseReason {
    /// The owner unlocked (or cancelled a grant whose callback was still pending).
    Explicit,
    /// The client disconnected ([`Event::ClientDisconnected`](crate::Event::ClientDisconnected)) and
    /// did not reconnect within its TTL.
    Disconnect,
    /// [`Event::FreeAll`](crate::Event::FreeAll): NLM_FREE_ALL or a reboot notification.
    FreeAll,
    /// Restored after a restart and not reclaimed before the grace period ended (or before the
    /// client said [`Event::ReclaimComplete`](crate::Event::ReclaimComplete)).
    GraceExpired,
    /// A grant was undone: its GRANTED callback failed past the [`CallbackPolicy`], was refused, or
    /// was not confirmed by [`Config::callback_deadline`].
    ///
    /// [`CallbackPolicy`]: crate::CallbackPolicy
    /// [`Config::callback_deadline`]: crate::Config::callback_deadline
    CallbackFailed,
}

/// Why a waiter left its queue without being granted ([`Action::WaiterRemoved`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum WaiterRemovedReason {
    /// CANCEL from the owner.
    Cancelled,
    /// The owner unlocked exactly the range it was waiting for (Linux lockd's nlmsvc_unlock).
    Unlocked,
    /// Not granted within [`Config::blocking_timeout`](crate::Config::blocking_timeout). A protocol
    /// that keeps the request open answers it as denied; NLM has no message for it (the client's own
    /// retry finds out).
    Expired,
    /// Its client disconnected (TTL ran out) or was freed (FREE_ALL).
    ClientGone,
    /// It closed a cycle of waiting owners that no request's own check could see: a lock granted
    /// without queueing (a non-blocking LOCK, a woken waiter) made its owner wait for someone who,
    /// through others, already waited for it — or, re-queued by [`Core::rebuild`](crate::Core::rebuild)
    /// after a store failure, it would wait through a lock the store kept. The client's next retry
    /// is told DEADLCK, as any deadlock is.
    Deadlock,
}

/// One stored lock record: one held lock after merging, as [`PersistOp`] writes it and
/// [`Core::restore`](crate::Core::restore) reads it back. The store key is (file, client, owner,
/// `range.offset`); a `Put` replaces the record with the same key.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LockRecord {
    /// The locked file.
    pub file: FileId,
    /// The client of the owner (NLM's caller_name).
    pub client: ClientId,
    /// The owner within that client.
    pub owner: OwnerId,
    /// Shared or exclusive.
    pub kind: LockKind,
    /// The locked bytes; length 0 when the lock reaches
    /// [`Config::max_offset`](crate::Config::max_offset).
    pub range: Range,
}

/// One stored share reservation, as [`PersistOp`] writes it and
/// [`Core::restore_with_shares`](crate::Core::restore_with_shares) reads it back. The store key is
/// (file, client, owner): an owner has at most one share per file, and a `PutShare` replaces it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ShareRecord {
    /// The file the reservation is on (a share covers the whole file).
    pub file: FileId,
    /// The client of the owner.
    pub client: ClientId,
    /// The owner within that client.
    pub owner: OwnerId,
    /// What the owner uses (NLM `fsh_access`).
    pub access: ShareMode,
    /// What the owner refuses to others (NLM `fsh_mode`).
    pub deny: ShareMode,
}

/// One change to the store. Folded in order into a map by each record's key, the `Put`/`Delete`
/// ops always give exactly [`Core::records`](crate::Core::records), and the share ops
/// [`Core::share_records`](crate::Core::share_records).
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum PersistOp {
    /// Insert this lock record, or replace the one with the same (file, client, owner, offset).
    Put(LockRecord),
    /// Remove the lock record with this one's key (the record is the one stored, in full).
    Delete(LockRecord),
    /// A share reservation taken (or replaced), so that a restart restores it into grace.
    PutShare(ShareRecord),
    /// Remove the share reservation with this one's (file, client, owner).
    DeleteShare(ShareRecord),
}

/// One thing for the host to do. One event's actions come in the order the host must carry them out;
/// a reply or callback that follows a [`Action::Persist`] goes out only once that persist is durable.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Action {
    /// Answer request `request`. Every request event (LOCK, UNLOCK, TEST, CANCEL, SHARE, UNSHARE)
    /// gets exactly one, in the actions of that same event.
    Reply {
        /// The id the host gave the request; the host uses it to find the caller to answer.
        request: RequestId,
        /// The answer.
        outcome: Outcome,
    },
    /// Tell the client its queued request is granted (NLM_GRANTED / NLM_GRANTED_MSG); answer with
    /// `Event::CallbackOutcome`. `attempt` counts from 1; retries carry the same waiter.
    ///
    /// The lock is already held (and persisted by the `Persist` actions before this one). The host
    /// reports exactly one [`Event::CallbackOutcome`](crate::Event::CallbackOutcome) per send; a
    /// failed send may be followed by a resend (a new `SendGranted` from a later `Tick`, per
    /// [`CallbackPolicy`](crate::CallbackPolicy)), and a grant nobody confirms is undone
    /// ([`ReleaseReason::CallbackFailed`]).
    SendGranted {
        /// The waiter being granted, as its `Outcome::Blocked` named it.
        waiter: WaiterId,
        /// The request that queued it (the latest retransmission of that LOCK).
        request: RequestId,
        /// The client to call back.
        client: ClientId,
        /// The owner the lock is granted to.
        owner: OwnerId,
        /// The file.
        file: FileId,
        /// The granted range, as the LOCK asked for it (length 0 up to `max_offset`).
        range: Range,
        /// The granted kind.
        kind: LockKind,
        /// The LOCK's `cookie`, unchanged: host bytes the callback needs (NLM: the client's cookie
        /// and the protocol version).
        cookie: Vec<u8>,
        /// Which send of this grant this is, from 1.
        attempt: u32,
        /// Names this grant in the callback, unguessable without `Config::cookie_key`: brlockd sends
        /// it as NLM_GRANTED_MSG's cookie, and a GRANTED_RES counts only if
        /// [`Core::waiter_of_cookie`](crate::Core::waiter_of_cookie) finds its waiter. The same for
        /// every send of one grant.
        callback_cookie: [u8; COOKIE_LEN],
    },
    /// Make the store equal the core's held locks and share reservations. `seq` grows by one per
    /// persist action of an epoch.
    ///
    /// Apply the ops in order; the host may commit many events' persists in one transaction, but
    /// nothing that follows a persist (of this event or a later one) may leave before it is durable.
    Persist {
        /// The core's server epoch ([`Core::epoch`](crate::Core::epoch)), the same on every op of
        /// one core: which run wrote the op (brlockd keeps it with the row).
        epoch: u64,
        /// Grows by one with every persist action the core emits (from 0 in a core just built):
        /// the order the ops must be applied in.
        seq: u64,
        /// The change.
        op: PersistOp,
    },
    /// Held locks went away: one action per released piece, after the `Persist` ops that record it.
    /// For logs and metrics; the client is not told (NLM has no message for it).
    Released {
        /// The client of the owner that lost the lock.
        client: ClientId,
        /// The owner that lost the lock.
        owner: OwnerId,
        /// The file.
        file: FileId,
        /// The bytes released (only the unlocked part when an unlock splits a lock).
        range: Range,
        /// The kind the released bytes were held with.
        kind: LockKind,
        /// Why.
        reason: ReleaseReason,
    },
    /// A waiter left its queue without a grant: the host drops what it keeps for the waiter.
    WaiterRemoved {
        /// The waiter, as its `Outcome::Blocked` named it.
        waiter: WaiterId,
        /// The request that queued it (the latest retransmission of that LOCK).
        request: RequestId,
        /// Its client.
        client: ClientId,
        /// Its owner.
        owner: OwnerId,
        /// The file it waited in.
        file: FileId,
        /// The range it waited for.
        range: Range,
        /// The kind it waited for.
        kind: LockKind,
        /// Why it left.
        reason: WaiterRemovedReason,
    },
    /// A connection over its adapter's limit
    /// ([`Limits::connections_for`](crate::Limits::connections_for)): the host refuses it. The core
    /// keeps nothing for it.
    ConnectionRefused {
        /// The client that tried to connect.
        client: ClientId,
        /// The adapter it came through, as `Event::ClientConnected` named it.
        adapter: String,
        /// The limit it ran into.
        limit: u64,
    },
    /// The grace period is over; new requests are served from now on. The releases it caused came
    /// before it (their `Persist` and `Released` actions).
    GraceEnded {
        /// How many restored lock pieces and share reservations nobody reclaimed were released.
        released: u64,
    },
}
