//! NLM, the Network Lock Manager protocol: program 100021, versions 1, 3 and 4
//! (Open Group XNFS; v1/v3 as in `rpcsvc/nlm_prot.x`).
//!
//! Messages are modelled once, independently of the version: offsets and lengths are `u64`,
//! `svid` is `u32` (v1/v3 declare it `int`; the 32 bits are carried unchanged). The version
//! only matters on the wire, so every encode/decode function takes an [`NlmVersion`]:
//! - v1/v3 carry offsets and lengths as 32-bit unsigned; decoding widens them, and encoding a
//!   value above `u32::MAX` fails with [`NlmEncodeError::DoesNotFit`] so the server can answer
//!   with a status instead (XNFS: NLM4_FBIG is the v4 answer to an unrepresentable range).
//! - v1/v3 know fewer statuses; see [`Stat`] for the mapping.
//!
//! The server loop:
//! ```
//! use brlock_wire::nlm::{self, NlmCall, NlmReply, NlmVersion, Res, Stat};
//! # let args = vec![0u8; 0];
//! let version = NlmVersion::from_wire(4).expect("else PROG_MISMATCH 1..=4");
//! match nlm::decode_call(version, 0, &args) {
//!     Ok(NlmCall::Null) => {
//!         let mut results = Vec::new();
//!         nlm::encode_reply(version, &NlmReply::Void, &mut results).unwrap();
//!     }
//!     Ok(_) => { /* hand the call to the core */ }
//!     Err(nlm::NlmDecodeError::ProcUnavail(_)) => { /* PROC_UNAVAIL */ }
//!     Err(nlm::NlmDecodeError::Garbage(_)) => { /* GARBAGE_ARGS */ }
//! }
//! ```

mod message;
#[cfg(test)]
mod tests;
mod wire;

pub use message::{
    CancelArgs, Holder, Lock, LockArgs, NotifyArgs, Res, Share, ShareAccess, ShareArgs, ShareMode,
    ShareRes, Stat, TestArgs, TestRes, UnlockArgs,
};
pub use wire::{
    NlmCall, NlmDecodeError, NlmEncodeError, NlmReply, ReplyShape, decode_call, decode_reply,
    encode_call, encode_reply,
};

/// RPC program number of NLM.
pub const NLM_PROGRAM: u32 = 100_021;

/// XNFS `LM_MAXSTRLEN`: longest `caller_name` (and FREE_ALL `name`).
pub const MAX_STRING: u32 = 1024;
/// XNFS `MAXNETOBJ_SZ`: longest cookie, file handle or owner handle.
pub const MAX_NETOBJ: u32 = 1024;

/// The NLM versions this codec speaks. (Version 2 was never deployed.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NlmVersion {
    V1 = 1,
    V3 = 3,
    /// XNFS NLM4: 64-bit offsets and lengths, more statuses.
    V4 = 4,
}

impl NlmVersion {
    pub const ALL: [NlmVersion; 3] = [NlmVersion::V1, NlmVersion::V3, NlmVersion::V4];
    /// Lowest and highest versions, for a PROG_MISMATCH reply.
    pub const LOWEST: u32 = 1;
    pub const HIGHEST: u32 = 4;

    /// `None` for an unsupported version: answer PROG_MISMATCH { LOWEST, HIGHEST }.
    pub fn from_wire(v: u32) -> Option<Self> {
        match v {
            1 => Some(NlmVersion::V1),
            3 => Some(NlmVersion::V3),
            4 => Some(NlmVersion::V4),
            _ => None,
        }
    }

    /// Whether offsets and lengths are 64-bit on the wire.
    pub fn is_64bit(self) -> bool {
        self == NlmVersion::V4
    }

    /// Whether a file handle of `len` bytes is one this version carries, by Linux lockd's rule
    /// (fs/lockd/xdr.c, xdr4.c `svcxdr_decode_fhandle`): v1/v3 speak for NFSv2, whose handles are
    /// exactly [`NFS2_FHSIZE`] bytes; v4 takes up to [`NFS_MAXFHSIZE`]. The codec itself takes any
    /// netobj (XNFS); a server refuses the rest as GARBAGE_ARGS, as lockd does.
    pub fn takes_fh(self, len: usize) -> bool {
        match self {
            NlmVersion::V1 | NlmVersion::V3 => len == NFS2_FHSIZE,
            NlmVersion::V4 => len <= NFS_MAXFHSIZE,
        }
    }
}

/// `fh` as a handle `version` carries: in v1/v3 a shorter one is zero-padded to NFSv2's 32 bytes
/// (for test clients and tools that name files with short strings); otherwise unchanged.
pub fn fh_for(version: NlmVersion, fh: &[u8]) -> Vec<u8> {
    let mut out = fh.to_vec();
    if !version.is_64bit() && out.len() < NFS2_FHSIZE {
        out.resize(NFS2_FHSIZE, 0);
    }
    out
}

/// Length of an NFSv2 file handle, the only one NLM v1/v3 carry (Linux `NFS2_FHSIZE`).
pub const NFS2_FHSIZE: usize = 32;
/// The longest file handle NLM v4 carries (Linux `NFS_MAXFHSIZE`).
pub const NFS_MAXFHSIZE: usize = 128;

/// NLM procedure numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NlmProc {
    Null = 0,
    Test = 1,
    Lock = 2,
    Cancel = 3,
    Unlock = 4,
    /// Server → client: a blocked lock has been granted (synchronous callback).
    Granted = 5,
    TestMsg = 6,
    LockMsg = 7,
    CancelMsg = 8,
    UnlockMsg = 9,
    GrantedMsg = 10,
    TestRes = 11,
    LockRes = 12,
    CancelRes = 13,
    UnlockRes = 14,
    GrantedRes = 15,
    /// Not in XNFS: the procedure Linux lockd registers with statd for reboot notices
    /// (`NLMPROC_NSM_NOTIFY`), so a server that names it in SM_MON's `my_id` receives
    /// [`crate::nsm::RebootCallback`] here.
    NsmNotify = 16,
    /// v3 and v4 only, as are the three below.
    Share = 20,
    Unshare = 21,
    NmLock = 22,
    FreeAll = 23,
}

impl NlmProc {
    pub const ALL: [NlmProc; 21] = [
        NlmProc::Null,
        NlmProc::Test,
        NlmProc::Lock,
        NlmProc::Cancel,
        NlmProc::Unlock,
        NlmProc::Granted,
        NlmProc::TestMsg,
        NlmProc::LockMsg,
        NlmProc::CancelMsg,
        NlmProc::UnlockMsg,
        NlmProc::GrantedMsg,
        NlmProc::TestRes,
        NlmProc::LockRes,
        NlmProc::CancelRes,
        NlmProc::UnlockRes,
        NlmProc::GrantedRes,
        NlmProc::NsmNotify,
        NlmProc::Share,
        NlmProc::Unshare,
        NlmProc::NmLock,
        NlmProc::FreeAll,
    ];

    /// The procedure `number` if `version` has it; `None` means PROC_UNAVAIL.
    pub fn from_wire(version: NlmVersion, number: u32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| *p as u32 == number && p.exists_in(version))
    }

    /// XNFS: SHARE, UNSHARE, NM_LOCK and FREE_ALL appeared in version 3.
    pub fn exists_in(self, version: NlmVersion) -> bool {
        (self as u32) < 20 || version != NlmVersion::V1
    }
}
