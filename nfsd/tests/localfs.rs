//! `LocalFs`: the NFS operations on a real directory, the handles NLM checks, and what survives a
//! restart (a new `LocalFs` over the same directory).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use brlock_native::server::{FileHandleCheck, FileHandleStatus};
use brlock_nfsd::{ExportHandles, HandleKind, LocalFs};
use nfsserve::nfs::{nfs_fh3, nfsstat3, sattr3};
use nfsserve::vfs::NFSFileSystem;

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "brlock-nfsd-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn name(s: &str) -> nfsserve::nfs::filename3 {
    s.as_bytes().to_vec().into()
}

#[tokio::test]
async fn create_write_read_and_lookup_work_on_the_directory() {
    let dir = TempDir::new();
    let fs = LocalFs::new(dir.path()).unwrap();
    let root = fs.root_dir();
    let (id, _) = fs
        .create(root, &name("a.txt"), sattr3::default())
        .await
        .unwrap();
    fs.write(id, 0, b"hello, world").await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("a.txt")).unwrap(),
        b"hello, world"
    );
    let (data, eof) = fs.read(id, 7, 100).await.unwrap();
    assert_eq!((data.as_slice(), eof), (&b"world"[..], true));
    let (data, eof) = fs.read(id, 0, 5).await.unwrap();
    assert_eq!((data.as_slice(), eof), (&b"hello"[..], false));
    assert_eq!(fs.lookup(root, &name("a.txt")).await.unwrap(), id);
    assert_eq!(fs.getattr(id).await.unwrap().size, 12);
    assert!(matches!(
        fs.lookup(root, &name("missing")).await,
        Err(nfsstat3::NFS3ERR_NOENT)
    ));
}

#[tokio::test]
async fn names_cannot_leave_the_export() {
    let dir = TempDir::new();
    let fs = LocalFs::new(dir.path()).unwrap();
    let root = fs.root_dir();
    assert_eq!(fs.lookup(root, &name("..")).await.unwrap(), root);
    assert!(matches!(
        fs.lookup(root, &name("../etc")).await,
        Err(nfsstat3::NFS3ERR_INVAL)
    ));
    assert!(matches!(
        fs.create(root, &name("a/b"), sattr3::default()).await,
        Err(nfsstat3::NFS3ERR_INVAL)
    ));
    // A symbolic link is data for the client to resolve, never followed by the server.
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("link")).unwrap();
    let link = fs.lookup(root, &name("link")).await.unwrap();
    assert!(fs.read(link, 0, 10).await.is_err());
    assert_eq!(fs.readlink(link).await.unwrap().0, b"/etc/hostname");
}

#[tokio::test]
async fn handles_survive_a_restart_and_nlm_sees_what_they_name() {
    let dir = TempDir::new();
    let fs = LocalFs::new(dir.path()).unwrap();
    let root = fs.root_dir();
    let (sub, _) = fs.mkdir(root, &name("sub")).await.unwrap();
    let (file, _) = fs.create(sub, &name("f"), sattr3::default()).await.unwrap();
    let file_fh = fs.id_to_fh(file);
    let sub_fh = fs.id_to_fh(sub);

    // A new process over the same directory knows the old handles.
    let again = LocalFs::new(dir.path()).unwrap();
    assert_eq!(again.fh_to_id(&file_fh).unwrap(), file);
    assert_eq!(again.getattr(file).await.unwrap().fileid, file);
    let nlm = ExportHandles(again.clone());
    assert_eq!(nlm.check(&file_fh.data), FileHandleStatus::Valid);
    assert_eq!(nlm.check(&sub_fh.data), FileHandleStatus::NotRegular);
    assert_eq!(nlm.check(b"not a handle of ours"), FileHandleStatus::Stale);
    let mut foreign = file_fh.data.clone();
    foreign[0] ^= 0xff;
    assert_eq!(nlm.check(&foreign), FileHandleStatus::Stale);
    assert!(matches!(
        again.fh_to_id(&nfs_fh3 { data: foreign }),
        Err(nfsstat3::NFS3ERR_STALE)
    ));

    // A removed file's handle is stale for NFS and NLM alike.
    again.remove(sub, &name("f")).await.unwrap();
    assert_eq!(again.classify(&file_fh.data), HandleKind::Unknown);
    assert!(matches!(
        again.getattr(file).await,
        Err(nfsstat3::NFS3ERR_STALE)
    ));
}

#[tokio::test]
async fn renaming_a_directory_keeps_the_handles_below_it() {
    let dir = TempDir::new();
    let fs = LocalFs::new(dir.path()).unwrap();
    let root = fs.root_dir();
    let (d, _) = fs.mkdir(root, &name("d")).await.unwrap();
    let (f, _) = fs.create(d, &name("f"), sattr3::default()).await.unwrap();
    fs.write(f, 0, b"x").await.unwrap();
    fs.rename(root, &name("d"), root, &name("e")).await.unwrap();
    assert_eq!(fs.read(f, 0, 1).await.unwrap().0, b"x");
    assert_eq!(fs.lookup(d, &name("f")).await.unwrap(), f);
    assert_eq!(fs.classify(&fs.id_to_fh(f).data), HandleKind::RegularFile);
}

#[tokio::test]
async fn readdir_pages_by_the_last_id_seen() {
    let dir = TempDir::new();
    let fs = LocalFs::new(dir.path()).unwrap();
    let root = fs.root_dir();
    for n in ["c", "a", "b", "d"] {
        fs.create(root, &name(n), sattr3::default()).await.unwrap();
    }
    let first = fs.readdir(root, 0, 2).await.unwrap();
    let names: Vec<_> = first.entries.iter().map(|e| e.name.0.clone()).collect();
    assert_eq!(names, [b"a".to_vec(), b"b".to_vec()]);
    assert!(!first.end);
    let rest = fs.readdir(root, first.entries[1].fileid, 10).await.unwrap();
    let names: Vec<_> = rest.entries.iter().map(|e| e.name.0.clone()).collect();
    assert_eq!(names, [b"c".to_vec(), b"d".to_vec()]);
    assert!(rest.end);
}
