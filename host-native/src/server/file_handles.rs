//! What the host checks of a file handle before the core sees it: brlockd alone knows no file
//! system and accepts every handle; an NFS server that embeds the NLM service plugs in its export
//! table.

/// What a file handle names, as far as the host can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileHandleStatus {
    Valid,
    /// Not (or no longer) a file: NLM4_STALE_FH.
    Stale,
    /// A directory or other non-regular file: NLM4_FAILED (v1/v3: DENIED_NOLOCKS).
    NotRegular,
}

/// Checks NLM file handles before the core sees them (an NFS server plugs in its export table here).
pub trait FileHandleCheck: Send + Sync + 'static {
    fn check(&self, fh: &[u8]) -> FileHandleStatus;
}

/// Accepts every handle as a regular file: brlockd alone knows no file system.
#[derive(Debug, Default)]
pub struct AcceptAllHandles;

impl FileHandleCheck for AcceptAllHandles {
    fn check(&self, _fh: &[u8]) -> FileHandleStatus {
        FileHandleStatus::Valid
    }
}
