//! What a host hands the core: one `Event` per request, timer or client change.

use alloc::string::String;
use alloc::vec::Vec;

use crate::ids::{ClientId, FileId, OwnerId, RequestId, WaiterId};
use crate::range::Range;
use crate::time::Duration;

/// Shared (read) or exclusive (write).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum LockKind {
    /// A read lock (`F_RDLCK`; NLM `exclusive = false`): any number of owners may hold one over the
    /// same bytes.
    Shared,
    /// A write lock (`F_WRLCK`; NLM `exclusive = true`): no other owner may hold any lock over its
    /// bytes.
    Exclusive,
}

impl LockKind {
    /// Shared/shared never conflict; exclusive conflicts with anything (of another owner).
    pub const fn conflicts_with(self, other: LockKind) -> bool {
        matches!(
            (self, other),
            (LockKind::Exclusive, _) | (_, LockKind::Exclusive)
        )
    }
}

/// Share reservation modes (NLM_SHARE `fsh_mode`/`fsh_access`, SMB share access): which of read and
/// write an owner uses (access), or refuses to others (deny).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum ShareMode {
    /// Neither read nor write (NLM `fsm_DN` / `fsa_NONE`).
    #[default]
    None,
    /// Read only (`fsm_DR` / `fsa_R`).
    Read,
    /// Write only (`fsm_DW` / `fsa_W`).
    Write,
    /// Read and write (`fsm_DRW` / `fsa_RW`).
    Both,
}

impl ShareMode {
    const fn bits(self) -> u8 {
        match self {
            ShareMode::None => 0,
            ShareMode::Read => 1,
            ShareMode::Write => 2,
            ShareMode::Both => 3,
        }
    }

    /// Whether two modes have read or write in common.
    pub const fn meets(self, other: ShareMode) -> bool {
        self.bits() & other.bits() != 0
    }
}

/// How a GRANTED callback to a client ended.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CallbackResult {
    /// The client acknowledged the grant: the lock is now simply held.
    Delivered,
    /// No answer (timeout) or the client could not be reached: resent as the
    /// [`CallbackPolicy`](crate::CallbackPolicy) says, else the grant is undone.
    Failed,
    /// The client answered with something other than "granted": it no longer wants the lock, and the
    /// grant is undone at once.
    Refused,
}

/// One input to the core. Each carries what the rule needs and nothing the core would have to parse.
///
/// Request events (`Lock`, `Unlock`, `Test`, `Cancel`, `Share`, `Unshare`) carry a `request` id of the
/// host's choosing and are answered by exactly one [`Action::Reply`](crate::Action::Reply) naming it,
/// among that event's actions. Ids need not be unique as far as the core is concerned (it only
/// echoes them), but a host that reuses one cannot tell its replies apart.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Event {
    /// Acquire `kind` over `range` for `owner`. With `wait`, a conflicting request queues (NLM `block`).
    /// `reclaim` re-acquires a lock held before a server restart. `cookie` is host bytes handed back
    /// unchanged with the GRANTED callback (an NLM cookie, the protocol version).
    ///
    /// POSIX semantics (Linux `posix_lock_inode`): the new lock replaces whatever the owner held over
    /// the range, so a lock is also how an owner upgrades, downgrades or splits its own locks, and
    /// same-kind locks that overlap or touch merge into one record. A non-blocking request is judged
    /// against held locks only (and queued ones too with `fair_nonblocking`); a blocking one also
    /// queues behind earlier conflicting waiters.
    Lock {
        /// The host's id for this request; the core echoes it in the reply (and, once queued, in
        /// the waiter's `SendGranted` or `WaiterRemoved`).
        request: RequestId,
        /// The client the owner belongs to (NLM caller_name).
        client: ClientId,
        /// The lock owner within `client`.
        owner: OwnerId,
        /// The file to lock.
        file: FileId,
        /// The bytes to lock; length 0 = to the end of the file.
        range: Range,
        /// Shared or exclusive.
        kind: LockKind,
        /// Queue behind a conflict instead of being denied; answered `Blocked`, then granted with
        /// `SendGranted`. A retransmission (same owner, file, range and kind) keeps its place.
        wait: bool,
        /// Re-acquire a lock held before a server restart: allowed only during grace (or later with
        /// `late_reclaim`), and with `verify_reclaims` only for a lock the owner held.
        reclaim: bool,
        /// Host bytes kept with a queued request and handed back in its `SendGranted`; the core never
        /// reads them. Empty when the host needs nothing.
        cookie: Vec<u8>,
    },
    /// Release whatever `owner` holds over `range`; also cancels its waiter for exactly that range.
    /// Unlocking what is not held is answered `Granted`. Unlocking the middle of a lock splits it,
    /// which a lock limit may refuse (`NoLocks`; Linux: ENOLCK).
    Unlock {
        /// The host's id for this request; echoed in the reply.
        request: RequestId,
        /// The client of the owner.
        client: ClientId,
        /// The owner whose locks are released.
        owner: OwnerId,
        /// The file.
        file: FileId,
        /// The bytes to release; length 0 = to the end of the file.
        range: Range,
    },
    /// Would a lock of `kind` over `range` be granted now? Changes nothing. Answered `Granted`, or
    /// `Denied` with a conflicting holder (NLM_TEST), judged like a non-blocking `Lock`.
    Test {
        /// The host's id for this request; echoed in the reply.
        request: RequestId,
        /// The client of the asking owner.
        client: ClientId,
        /// The asking owner: its own locks never conflict.
        owner: OwnerId,
        /// The file.
        file: FileId,
        /// The bytes to test; length 0 = to the end of the file.
        range: Range,
        /// The kind the owner would ask for.
        kind: LockKind,
    },
    /// Withdraw `owner`'s blocking request for exactly this range and kind (NLM_CANCEL). A grant whose
    /// callback is still unconfirmed is undone. Answered `Granted` even when nothing was queued, as
    /// Linux lockd does.
    Cancel {
        /// The host's id for this request; echoed in the reply.
        request: RequestId,
        /// The client of the owner.
        client: ClientId,
        /// The owner whose request is withdrawn.
        owner: OwnerId,
        /// The file.
        file: FileId,
        /// The range of the queued request, exactly as it was asked for.
        range: Range,
        /// The kind of the queued request.
        kind: LockKind,
    },
    /// Take a share reservation on `file` (NLM_SHARE, SMB open share modes). Refused
    /// (`ShareDenied`) when `access` meets what another owner denies, or `deny` meets what another
    /// owner uses. A second share of the same owner on the same file replaces the first.
    Share {
        /// The host's id for this request; echoed in the reply.
        request: RequestId,
        /// The client of the owner.
        client: ClientId,
        /// The owner taking the reservation.
        owner: OwnerId,
        /// The file (a share covers the whole file).
        file: FileId,
        /// What the owner will use.
        access: ShareMode,
        /// What the owner refuses to others.
        deny: ShareMode,
        /// Re-take a reservation held before a restart, as for `Lock`; with `verify_reclaims` the
        /// modes must match the restored ones.
        reclaim: bool,
    },
    /// Drop `owner`'s share reservation on `file` (NLM_UNSHARE). Answered `Granted` even when it had
    /// none; during grace only if the profile allows UNLOCK then.
    Unshare {
        /// The host's id for this request; echoed in the reply.
        request: RequestId,
        /// The client of the owner.
        client: ClientId,
        /// The owner giving up its reservation.
        owner: OwnerId,
        /// The file.
        file: FileId,
    },
    /// Time has passed; the core does whatever fell due by `now`. Early or repeated ticks do nothing.
    /// Send one when the moment [`Core::poll_timeout`](crate::Core::poll_timeout) named has come.
    Tick,
    /// A connection-oriented adapter ("smb", "nfs4", "nlm") saw `client` connect. `ttl` is how long its
    /// state outlives a disconnect (0 = released at once).
    ///
    /// Refused with [`Action::ConnectionRefused`](crate::Action::ConnectionRefused) when the adapter
    /// is at its connection limit. A client already connected only gets the new `ttl`; one that
    /// reconnects within its TTL keeps everything. Connectionless hosts (brlockd's NLM) never send it:
    /// their clients' state lives until unlocked or freed.
    ClientConnected {
        /// The client that connected.
        client: ClientId,
        /// The adapter it came through; connection limits are counted per adapter name.
        adapter: String,
        /// How long the client's locks, waiters and shares outlive a disconnect.
        ttl: Duration,
    },
    /// The connection `client` made (`ClientConnected`) closed: its locks, waiters and shares are
    /// released after its `ttl` (at once with 0), unless it reconnects first
    /// ([`ReleaseReason::Disconnect`](crate::ReleaseReason::Disconnect)). Ignored for a client that
    /// is not connected.
    ClientDisconnected {
        /// The client whose connection closed.
        client: ClientId,
    },
    /// Everything of `client` goes at once: NLM_FREE_ALL, or a reboot notification the host checked.
    /// Its locks are released ([`ReleaseReason::FreeAll`](crate::ReleaseReason::FreeAll)), its
    /// waiters removed, its shares dropped; the waiters of others it was blocking are woken.
    FreeAll {
        /// The client whose state goes.
        client: ClientId,
    },
    /// The client says it has reclaimed all it wants (NFSv4 RECLAIM_COMPLETE); grace may end early.
    /// What it left unreclaimed is released now; ignored outside grace or for a client with nothing
    /// left to reclaim.
    ReclaimComplete {
        /// The client that is done reclaiming.
        client: ClientId,
    },
    /// How the GRANTED callback for `waiter` ended. Report one per `SendGranted`; a report for a waiter
    /// the core no longer tracks, or with no send outstanding, is stale and ignored.
    CallbackOutcome {
        /// The waiter the `SendGranted` named (brlockd finds it from the reply's cookie with
        /// [`Core::waiter_of_cookie`](crate::Core::waiter_of_cookie)).
        waiter: WaiterId,
        /// How the send ended.
        result: CallbackResult,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_never_conflict_and_exclusive_conflicts_with_everything() {
        use LockKind::*;
        assert!(!Shared.conflicts_with(Shared));
        assert!(Shared.conflicts_with(Exclusive));
        assert!(Exclusive.conflicts_with(Shared));
        assert!(Exclusive.conflicts_with(Exclusive));
    }

    #[test]
    fn share_modes_meet_when_they_name_a_common_access() {
        use ShareMode::*;
        assert!(Read.meets(Both) && Write.meets(Both) && Both.meets(Both));
        assert!(!Read.meets(Write) && !None.meets(Both) && !Both.meets(None));
    }
}
