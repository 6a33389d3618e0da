//! What a host hands the core: one `Event` per request, timer or client change.

use alloc::string::String;
use alloc::vec::Vec;

use crate::ids::{ClientId, FileId, Millis, OwnerId, RequestId, WaiterId};
use crate::range::Range;

/// Shared (read) or exclusive (write).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum LockKind {
    Shared,
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
    #[default]
    None,
    Read,
    Write,
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
    /// The client acknowledged the grant.
    Delivered,
    /// No answer (timeout) or the client could not be reached.
    Failed,
    /// The client answered with something other than "granted": it no longer wants the lock.
    Refused,
}

/// One input to the core. Each carries what the rule needs and nothing the core would have to parse.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Event {
    /// Acquire `kind` over `range` for `owner`. With `wait`, a conflicting request queues (NLM `block`).
    /// `reclaim` re-acquires a lock held before a server restart. `cookie` is host bytes handed back
    /// unchanged with the GRANTED callback (an NLM cookie, the protocol version).
    Lock {
        request: RequestId,
        client: ClientId,
        owner: OwnerId,
        file: FileId,
        range: Range,
        kind: LockKind,
        wait: bool,
        reclaim: bool,
        cookie: Vec<u8>,
    },
    /// Release whatever `owner` holds over `range`; also cancels its waiter for exactly that range.
    Unlock {
        request: RequestId,
        client: ClientId,
        owner: OwnerId,
        file: FileId,
        range: Range,
    },
    /// Would a lock of `kind` over `range` be granted now? Changes nothing.
    Test {
        request: RequestId,
        client: ClientId,
        owner: OwnerId,
        file: FileId,
        range: Range,
        kind: LockKind,
    },
    /// Withdraw `owner`'s blocking request for exactly this range and kind.
    Cancel {
        request: RequestId,
        client: ClientId,
        owner: OwnerId,
        file: FileId,
        range: Range,
        kind: LockKind,
    },
    /// Take a share reservation on `file` (NLM_SHARE, SMB open share modes).
    Share {
        request: RequestId,
        client: ClientId,
        owner: OwnerId,
        file: FileId,
        access: ShareMode,
        deny: ShareMode,
        reclaim: bool,
    },
    /// Drop `owner`'s share reservation on `file`.
    Unshare {
        request: RequestId,
        client: ClientId,
        owner: OwnerId,
        file: FileId,
    },
    /// Time has passed; the core does whatever fell due by `now`. Early or repeated ticks do nothing.
    Tick,
    /// A connection-oriented adapter ("smb", "nfs4", "nlm") saw `client` connect. `ttl` is how long its
    /// state outlives a disconnect (0 = released at once).
    ClientConnected {
        client: ClientId,
        adapter: String,
        ttl: Millis,
    },
    ClientDisconnected {
        client: ClientId,
    },
    /// Everything of `client` goes at once: NLM_FREE_ALL, or a reboot notification the host checked.
    FreeAll {
        client: ClientId,
    },
    /// The client says it has reclaimed all it wants (NFSv4 RECLAIM_COMPLETE); grace may end early.
    ReclaimComplete {
        client: ClientId,
    },
    /// How the GRANTED callback for `waiter` ended.
    CallbackOutcome {
        waiter: WaiterId,
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
