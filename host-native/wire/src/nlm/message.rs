//! NLM message bodies, version-independent (see the module doc of [`crate::nlm`]).

use super::NlmVersion;

/// `nlm_lock` / `nlm4_lock`: one lock request's range and owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// Client's host name as it calls itself (bytes, at most 1024).
    pub caller_name: Vec<u8>,
    /// File handle (opaque to NLM).
    pub fh: Vec<u8>,
    /// Owner handle: identifies the lock owner on the client.
    pub oh: Vec<u8>,
    /// Client-chosen owner id (typically a process id).
    pub svid: u32,
    pub offset: u64,
    /// 0 means "to the end of the file".
    pub len: u64,
}

/// Arguments of TEST, TEST_MSG, GRANTED and GRANTED_MSG (`nlm_testargs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestArgs {
    pub cookie: Vec<u8>,
    pub exclusive: bool,
    pub lock: Lock,
}

/// Arguments of LOCK, LOCK_MSG and NM_LOCK (`nlm_lockargs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockArgs {
    pub cookie: Vec<u8>,
    /// Wait for the lock (answer BLOCKED, then GRANTED later) instead of DENIED.
    pub block: bool,
    pub exclusive: bool,
    pub lock: Lock,
    /// Re-establishing a lock held before a server reboot (grace period).
    pub reclaim: bool,
    /// The client's NSM state number.
    pub state: u32,
}

/// Arguments of CANCEL and CANCEL_MSG (`nlm_cancargs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelArgs {
    pub cookie: Vec<u8>,
    pub block: bool,
    pub exclusive: bool,
    pub lock: Lock,
}

/// Arguments of UNLOCK and UNLOCK_MSG (`nlm_unlockargs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnlockArgs {
    pub cookie: Vec<u8>,
    pub lock: Lock,
}

/// DOS share reservation mode: what others may not do (`fsh_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareMode {
    DenyNone = 0,
    DenyRead = 1,
    DenyWrite = 2,
    DenyReadWrite = 3,
}

/// DOS share access: what this opener does (`fsh_access`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShareAccess {
    None = 0,
    Read = 1,
    Write = 2,
    ReadWrite = 3,
}

impl ShareMode {
    pub const ALL: [ShareMode; 4] = [
        ShareMode::DenyNone,
        ShareMode::DenyRead,
        ShareMode::DenyWrite,
        ShareMode::DenyReadWrite,
    ];
    pub fn from_wire(v: u32) -> Option<Self> {
        Self::ALL.get(usize::try_from(v).ok()?).copied()
    }
}

impl ShareAccess {
    pub const ALL: [ShareAccess; 4] = [
        ShareAccess::None,
        ShareAccess::Read,
        ShareAccess::Write,
        ShareAccess::ReadWrite,
    ];
    pub fn from_wire(v: u32) -> Option<Self> {
        Self::ALL.get(usize::try_from(v).ok()?).copied()
    }
}

/// `nlm_share`: a share reservation on a whole file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    pub caller_name: Vec<u8>,
    pub fh: Vec<u8>,
    pub oh: Vec<u8>,
    pub mode: ShareMode,
    pub access: ShareAccess,
}

/// Arguments of SHARE and UNSHARE (`nlm_shareargs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareArgs {
    pub cookie: Vec<u8>,
    pub share: Share,
    pub reclaim: bool,
}

/// Arguments of FREE_ALL (`nlm_notify`): host `name` rebooted and is now at NSM `state`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyArgs {
    pub name: Vec<u8>,
    pub state: u32,
}

/// Outcome of an NLM request: the v4 statuses (`nlm4_stats`).
///
/// Versions 1 and 3 (`nlm_stats`) have only `Granted` … `DeniedGracePeriod` (0–4).
/// Encoding for them follows Linux lockd's `cast_to_nlm` (fs/lockd/svcproc.c): `Deadlck`
/// becomes `Denied` and `Rofs`, `StaleFh`, `Fbig` and `Failed` become `DeniedNolocks`.
/// Decoding v1/v3 accepts 0–4 and also 5 as `Deadlck` (`nlm_deadlck`, which some v3
/// implementations send); anything else is an undefined enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    Granted = 0,
    Denied = 1,
    DeniedNolocks = 2,
    Blocked = 3,
    DeniedGracePeriod = 4,
    Deadlck = 5,
    Rofs = 6,
    StaleFh = 7,
    Fbig = 8,
    Failed = 9,
}

impl Stat {
    pub const ALL: [Stat; 10] = [
        Stat::Granted,
        Stat::Denied,
        Stat::DeniedNolocks,
        Stat::Blocked,
        Stat::DeniedGracePeriod,
        Stat::Deadlck,
        Stat::Rofs,
        Stat::StaleFh,
        Stat::Fbig,
        Stat::Failed,
    ];

    /// The status as `version` can express it (see the type's doc).
    pub fn for_version(self, version: NlmVersion) -> Stat {
        if version.is_64bit() {
            return self;
        }
        match self {
            Stat::Granted
            | Stat::Denied
            | Stat::DeniedNolocks
            | Stat::Blocked
            | Stat::DeniedGracePeriod => self,
            Stat::Deadlck => Stat::Denied,
            Stat::Rofs | Stat::StaleFh | Stat::Fbig | Stat::Failed => Stat::DeniedNolocks,
        }
    }

    /// The wire value `version` carries for this status.
    pub fn to_wire(self, version: NlmVersion) -> u32 {
        self.for_version(version) as u32
    }

    /// The status a `version` peer meant by `v`, or `None` if `v` is undefined there.
    pub fn from_wire(version: NlmVersion, v: u32) -> Option<Stat> {
        let highest = if version.is_64bit() { 9 } else { 5 };
        if v > highest {
            return None;
        }
        Self::ALL.get(usize::try_from(v).ok()?).copied()
    }
}

/// `nlm_res`: the reply to LOCK, CANCEL, UNLOCK, GRANTED and NM_LOCK, and the argument of
/// LOCK_RES, CANCEL_RES, UNLOCK_RES and GRANTED_RES.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Res {
    pub cookie: Vec<u8>,
    pub stat: Stat,
}

/// The lock that conflicts with a TEST (`nlm_holder`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub exclusive: bool,
    pub svid: u32,
    pub oh: Vec<u8>,
    pub offset: u64,
    pub len: u64,
}

/// `nlm_testres`: the reply to TEST and the argument of TEST_RES.
///
/// On the wire the holder is present exactly when the (version-mapped) status is `Denied`:
/// encoding such a reply without a holder fails ([`super::NlmEncodeError::MissingHolder`]),
/// and a holder given with any other status is not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRes {
    pub cookie: Vec<u8>,
    pub stat: Stat,
    pub holder: Option<Holder>,
}

/// `nlm_shareres`: the reply to SHARE and UNSHARE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareRes {
    pub cookie: Vec<u8>,
    pub stat: Stat,
    /// Unused by clients; Linux sends 0.
    pub sequence: i32,
}
