//! `brlock-nfsd`: an NFSv3 server for a local directory (nfsserve) whose clients lock through
//! brlock's NLM service in the same process. Locks are keyed by the file handles the NFS side
//! issued, and the NLM side checks every handle with the NFS side before the lock manager sees it.

pub mod localfs;

use brlock_native::server::{FileHandleCheck, FileHandleStatus};

pub use localfs::{HandleKind, LocalFs};

/// NLM's view of the export's handles: what nfsserve issued and still names a regular file.
pub struct ExportHandles(pub LocalFs);

impl FileHandleCheck for ExportHandles {
    fn check(&self, fh: &[u8]) -> FileHandleStatus {
        match self.0.classify(fh) {
            HandleKind::RegularFile => FileHandleStatus::Valid,
            HandleKind::NotRegular => FileHandleStatus::NotRegular,
            HandleKind::Unknown => FileHandleStatus::Stale,
        }
    }
}
