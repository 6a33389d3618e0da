//! `LocalFs`: a local directory served over NFSv3 through nfsserve's `NFSFileSystem`.
//!
//! A file's NFS id is its inode number, and its file handle is `(export id, inode)`: both survive a
//! restart of brlock-nfsd, so a client's handles — and the NLM locks keyed by them — stay valid
//! across one (nfsserve's default handle embeds the start-up time and would go stale). The inode →
//! path table is filled by a walk of the export at start-up and by every lookup, create and
//! readdir; a handle the table does not know after a fresh walk is stale. The table also knows
//! whether each entry is a regular file, so NLM's handle check is one map lookup, no system call:
//! locking inside the NFS server should cost no more than beside it. A file removed behind NFS's
//! back (by a local process) leaves the table at the next NFS access to it, as a real server's
//! cache of file handles would.
//!
//! Paths never leave the export: names are single components (no `/`, `..` stops at the root), the
//! last component is never followed when it is a symbolic link (`O_NOFOLLOW`, `symlink_metadata`),
//! and clients resolve symbolic links themselves (READLINK), as NFS intends.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use nfsserve::fs_util::{metadata_to_fattr3, path_setattr};
use nfsserve::nfs::{
    fattr3, fileid3, filename3, nfs_fh3, nfspath3, nfsstat3, sattr3, set_gid3, set_mode3,
    set_size3, set_uid3,
};
use nfsserve::vfs::{DirEntry, NFSFileSystem, ReadDirResult, VFSCapabilities};

/// Entries a walk of the export visits at most (start-up and stale-handle rescans): a bound on
/// the time one rescan can take, far above what a test or small export holds.
const MAX_WALK_ENTRIES: usize = 1_000_000;
/// Bytes of a file handle: the export id and the inode number, little-endian.
pub const HANDLE_LEN: usize = 16;

/// What an NFS file handle names, for the NLM side's file-handle check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleKind {
    RegularFile,
    /// A directory, symbolic link or special file.
    NotRegular,
    /// Not a handle of this export, or its file is gone.
    Unknown,
}

/// A local directory as an NFSv3 file system. Clones share one table.
#[derive(Clone)]
pub struct LocalFs {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    root_id: fileid3,
    /// Identifies this export in its handles: the root directory's device and inode, so a handle
    /// of another export (or of a directory that was replaced) is refused as stale.
    export_id: u64,
    /// Inode number → where it is.
    paths: RwLock<HashMap<fileid3, Entry>>,
}

struct Entry {
    /// Relative to the export's root ("" for the root).
    rel: PathBuf,
    regular: bool,
}

fn io_status(e: &io::Error) -> nfsstat3 {
    use io::ErrorKind::*;
    match e.kind() {
        NotFound => nfsstat3::NFS3ERR_NOENT,
        PermissionDenied => nfsstat3::NFS3ERR_ACCES,
        AlreadyExists => nfsstat3::NFS3ERR_EXIST,
        DirectoryNotEmpty => nfsstat3::NFS3ERR_NOTEMPTY,
        NotADirectory => nfsstat3::NFS3ERR_NOTDIR,
        IsADirectory => nfsstat3::NFS3ERR_ISDIR,
        InvalidInput | InvalidFilename => nfsstat3::NFS3ERR_INVAL,
        StorageFull => nfsstat3::NFS3ERR_NOSPC,
        ReadOnlyFilesystem => nfsstat3::NFS3ERR_ROFS,
        CrossesDevices => nfsstat3::NFS3ERR_XDEV,
        _ => match e.raw_os_error() {
            Some(libc::ENAMETOOLONG) => nfsstat3::NFS3ERR_NAMETOOLONG,
            Some(libc::ELOOP) => nfsstat3::NFS3ERR_INVAL,
            Some(libc::EFBIG) => nfsstat3::NFS3ERR_FBIG,
            _ => nfsstat3::NFS3ERR_IO,
        },
    }
}

/// One path component from the wire: not empty, no `/` and no NUL.
fn component(name: &filename3) -> Result<&str, nfsstat3> {
    let s = std::str::from_utf8(&name.0).map_err(|_| nfsstat3::NFS3ERR_INVAL)?;
    if s.is_empty() || s.contains('/') || s.contains('\0') {
        return Err(nfsstat3::NFS3ERR_INVAL);
    }
    if s.len() > 255 {
        return Err(nfsstat3::NFS3ERR_NAMETOOLONG);
    }
    Ok(s)
}

impl LocalFs {
    /// Serves `root`, which must be a directory; walks it once to know its files' handles.
    pub fn new(root: &Path) -> io::Result<LocalFs> {
        let root = fs::canonicalize(root)?;
        let meta = fs::metadata(&root)?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        let export_id = meta.dev().rotate_left(32) ^ meta.ino();
        let fs = LocalFs {
            inner: Arc::new(Inner {
                root,
                root_id: meta.ino(),
                export_id,
                paths: RwLock::new(HashMap::new()),
            }),
        };
        fs.rescan();
        Ok(fs)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Walks the export and records every entry's inode (bounded by `MAX_WALK_ENTRIES`).
    fn rescan(&self) {
        let mut found = HashMap::new();
        found.insert(
            self.inner.root_id,
            Entry {
                rel: PathBuf::new(),
                regular: false,
            },
        );
        let mut dirs = vec![PathBuf::new()];
        while let Some(rel) = dirs.pop() {
            let Ok(entries) = fs::read_dir(self.inner.root.join(&rel)) else {
                continue;
            };
            for entry in entries.flatten() {
                if found.len() >= MAX_WALK_ENTRIES {
                    break;
                }
                let Ok(meta) = entry.metadata() else { continue };
                let child = rel.join(entry.file_name());
                if meta.is_dir() {
                    dirs.push(child.clone());
                }
                found.entry(meta.ino()).or_insert(Entry {
                    rel: child,
                    regular: meta.is_file(),
                });
            }
        }
        *self.inner.paths.write().unwrap_or_else(|e| e.into_inner()) = found;
    }

    fn remember(&self, id: fileid3, rel: PathBuf, meta: &fs::Metadata) {
        let regular = meta.is_file();
        self.inner
            .paths
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Entry { rel, regular });
    }

    fn forget(&self, id: fileid3) {
        self.inner
            .paths
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    fn known(&self, id: fileid3) -> Option<PathBuf> {
        self.inner
            .paths
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .map(|e| e.rel.clone())
    }

    /// The path relative to the export of `id`, rescanning once for a handle from before a
    /// restart whose file the table has not met since.
    fn rel_path(&self, id: fileid3) -> Result<PathBuf, nfsstat3> {
        if let Some(p) = self.known(id) {
            return Ok(p);
        }
        self.rescan();
        self.known(id).ok_or(nfsstat3::NFS3ERR_STALE)
    }

    /// The absolute path and metadata of `id`, checking that the path still holds that inode.
    fn resolve(&self, id: fileid3) -> Result<(PathBuf, fs::Metadata), nfsstat3> {
        let rel = self.rel_path(id)?;
        let path = self.inner.root.join(&rel);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.ino() == id => Ok((path, meta)),
            _ => {
                self.forget(id);
                Err(nfsstat3::NFS3ERR_STALE)
            }
        }
    }

    fn dir(&self, dirid: fileid3) -> Result<PathBuf, nfsstat3> {
        let (path, meta) = self.resolve(dirid)?;
        if !meta.is_dir() {
            return Err(nfsstat3::NFS3ERR_NOTDIR);
        }
        Ok(path)
    }

    /// `dir/name` as an absolute path and relative to the export.
    fn child(&self, dirid: fileid3, name: &filename3) -> Result<(PathBuf, PathBuf), nfsstat3> {
        let name = component(name)?;
        if name == "." || name == ".." {
            return Err(nfsstat3::NFS3ERR_INVAL);
        }
        let dir = self.dir(dirid)?;
        let rel = dir
            .strip_prefix(&self.inner.root)
            .map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?
            .join(name);
        Ok((self.inner.root.join(&rel), rel))
    }

    fn attrs(&self, id: fileid3, path: &Path) -> Result<fattr3, nfsstat3> {
        let meta = fs::symlink_metadata(path).map_err(|e| io_status(&e))?;
        Ok(metadata_to_fattr3(id, &meta))
    }

    /// Records a newly made `rel` and returns its id and attributes.
    fn made(&self, path: &Path, rel: PathBuf) -> Result<(fileid3, fattr3), nfsstat3> {
        let meta = fs::symlink_metadata(path).map_err(|e| io_status(&e))?;
        let id = meta.ino();
        self.remember(id, rel, &meta);
        Ok((id, metadata_to_fattr3(id, &meta)))
    }

    fn open_regular(&self, id: fileid3, write: bool) -> Result<File, nfsstat3> {
        let (path, meta) = self.resolve(id)?;
        if meta.is_dir() {
            return Err(nfsstat3::NFS3ERR_ISDIR);
        }
        if !meta.is_file() {
            return Err(nfsstat3::NFS3ERR_INVAL);
        }
        OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| io_status(&e))
    }

    /// The id a handle names, if it is a handle of this export (the file may be gone since).
    pub fn handle_id(&self, fh: &[u8]) -> Option<fileid3> {
        let bytes: &[u8; HANDLE_LEN] = fh.try_into().ok()?;
        let (export, ino) = bytes.split_at(8);
        let export = u64::from_le_bytes(export.try_into().ok()?);
        (export == self.inner.export_id)
            .then(|| u64::from_le_bytes(ino.try_into().unwrap_or([0; 8])))
    }

    /// For NLM: what `fh` names, from the table alone — no system call, never a walk: it runs on
    /// the lock manager's path.
    pub fn classify(&self, fh: &[u8]) -> HandleKind {
        let Some(id) = self.handle_id(fh) else {
            return HandleKind::Unknown;
        };
        match self
            .inner
            .paths
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
        {
            Some(Entry { regular: true, .. }) => HandleKind::RegularFile,
            Some(_) => HandleKind::NotRegular,
            None => HandleKind::Unknown,
        }
    }

    /// The handle of `id` (what nfsserve hands out), for tests and tools.
    pub fn handle_of(&self, id: fileid3) -> Vec<u8> {
        let mut fh = Vec::with_capacity(HANDLE_LEN);
        fh.extend_from_slice(&self.inner.export_id.to_le_bytes());
        fh.extend_from_slice(&id.to_le_bytes());
        fh
    }

    /// The id of `rel` (relative to the export), looked up like an NFS client would.
    pub fn id_of(&self, rel: &Path) -> Result<fileid3, nfsstat3> {
        let meta = fs::symlink_metadata(self.inner.root.join(rel)).map_err(|e| io_status(&e))?;
        self.remember(meta.ino(), rel.to_path_buf(), &meta);
        Ok(meta.ino())
    }
}

#[async_trait]
impl NFSFileSystem for LocalFs {
    fn capabilities(&self) -> VFSCapabilities {
        VFSCapabilities::ReadWrite
    }

    fn root_dir(&self) -> fileid3 {
        self.inner.root_id
    }

    async fn lookup(&self, dirid: fileid3, filename: &filename3) -> Result<fileid3, nfsstat3> {
        let name = component(filename)?;
        let dir = self.dir(dirid)?;
        match name {
            "." => return Ok(dirid),
            ".." => {
                if dirid == self.inner.root_id {
                    return Ok(dirid);
                }
                let parent = dir.parent().ok_or(nfsstat3::NFS3ERR_SERVERFAULT)?;
                let rel = parent
                    .strip_prefix(&self.inner.root)
                    .map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?;
                return self.id_of(rel);
            }
            _ => {}
        }
        let (_, rel) = self.child(dirid, filename)?;
        self.id_of(&rel)
    }

    async fn getattr(&self, id: fileid3) -> Result<fattr3, nfsstat3> {
        let (_, meta) = self.resolve(id)?;
        Ok(metadata_to_fattr3(id, &meta))
    }

    async fn setattr(&self, id: fileid3, setattr: sattr3) -> Result<fattr3, nfsstat3> {
        let (path, meta) = self.resolve(id)?;
        if meta.file_type().is_symlink() {
            // Changing a link's target's attributes through the link would leave the export.
            return Err(nfsstat3::NFS3ERR_INVAL);
        }
        path_setattr(&path, &setattr).await?;
        self.attrs(id, &path)
    }

    async fn read(
        &self,
        id: fileid3,
        offset: u64,
        count: u32,
    ) -> Result<(Vec<u8>, bool), nfsstat3> {
        let file = self.open_regular(id, false)?;
        let size = file.metadata().map_err(|e| io_status(&e))?.len();
        if offset >= size {
            return Ok((Vec::new(), true));
        }
        let n = (size - offset).min(u64::from(count)) as usize;
        let mut buf = vec![0; n];
        let mut got = 0;
        while got < n {
            match file.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_status(&e)),
            }
        }
        buf.truncate(got);
        Ok((buf, offset + got as u64 >= size))
    }

    async fn write(&self, id: fileid3, offset: u64, data: &[u8]) -> Result<fattr3, nfsstat3> {
        let file = self.open_regular(id, true)?;
        file.write_all_at(data, offset).map_err(|e| io_status(&e))?;
        let meta = file.metadata().map_err(|e| io_status(&e))?;
        Ok(metadata_to_fattr3(id, &meta))
    }

    async fn create(
        &self,
        dirid: fileid3,
        filename: &filename3,
        attr: sattr3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let (path, rel) = self.child(dirid, filename)?;
        let mode = match attr.mode {
            set_mode3::mode(m) => m & 0o7777,
            set_mode3::Void => 0o644,
        };
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| io_status(&e))?;
        let wanted = matches!(attr.uid, set_uid3::uid(_))
            || matches!(attr.gid, set_gid3::gid(_))
            || matches!(attr.size, set_size3::size(_));
        if wanted {
            path_setattr(&path, &attr).await?;
        }
        self.made(&path, rel)
    }

    async fn create_exclusive(
        &self,
        dirid: fileid3,
        filename: &filename3,
    ) -> Result<fileid3, nfsstat3> {
        let (path, rel) = self.child(dirid, filename)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(|e| io_status(&e))?;
        Ok(self.made(&path, rel)?.0)
    }

    async fn mkdir(
        &self,
        dirid: fileid3,
        dirname: &filename3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let (path, rel) = self.child(dirid, dirname)?;
        fs::create_dir(&path).map_err(|e| io_status(&e))?;
        self.made(&path, rel)
    }

    async fn remove(&self, dirid: fileid3, filename: &filename3) -> Result<(), nfsstat3> {
        let (path, _) = self.child(dirid, filename)?;
        let meta = fs::symlink_metadata(&path).map_err(|e| io_status(&e))?;
        if meta.is_dir() {
            fs::remove_dir(&path)
        } else {
            fs::remove_file(&path)
        }
        .map_err(|e| io_status(&e))?;
        self.forget(meta.ino());
        Ok(())
    }

    async fn rename(
        &self,
        from_dirid: fileid3,
        from_filename: &filename3,
        to_dirid: fileid3,
        to_filename: &filename3,
    ) -> Result<(), nfsstat3> {
        let (from, from_rel) = self.child(from_dirid, from_filename)?;
        let (to, to_rel) = self.child(to_dirid, to_filename)?;
        let replaced = fs::symlink_metadata(&to).ok().map(|m| m.ino());
        fs::rename(&from, &to).map_err(|e| io_status(&e))?;
        let mut paths = self.inner.paths.write().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = replaced {
            paths.remove(&old);
        }
        // The moved entry and, for a directory, everything below it.
        for entry in paths.values_mut() {
            if let Ok(rest) = entry.rel.strip_prefix(&from_rel) {
                entry.rel = to_rel.join(rest);
            }
        }
        Ok(())
    }

    async fn readdir(
        &self,
        dirid: fileid3,
        start_after: fileid3,
        max_entries: usize,
    ) -> Result<ReadDirResult, nfsstat3> {
        let dir = self.dir(dirid)?;
        let rel_dir = dir
            .strip_prefix(&self.inner.root)
            .map_err(|_| nfsstat3::NFS3ERR_SERVERFAULT)?
            .to_path_buf();
        let mut all = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_status(&e))? {
            let entry = entry.map_err(|e| io_status(&e))?;
            let Ok(meta) = entry.metadata() else { continue };
            all.push((entry.file_name(), meta));
        }
        // Deterministic order across calls: by name.
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let start = if start_after == 0 {
            0
        } else {
            match all.iter().position(|(_, m)| m.ino() == start_after) {
                Some(i) => i + 1,
                None => return Err(nfsstat3::NFS3ERR_BAD_COOKIE),
            }
        };
        let mut result = ReadDirResult::default();
        for (name, meta) in all.iter().skip(start).take(max_entries) {
            let id = meta.ino();
            self.remember(id, rel_dir.join(name), meta);
            result.entries.push(DirEntry {
                fileid: id,
                name: name.as_encoded_bytes().to_vec().into(),
                attr: metadata_to_fattr3(id, meta),
            });
        }
        result.end = start + result.entries.len() >= all.len();
        Ok(result)
    }

    async fn symlink(
        &self,
        dirid: fileid3,
        linkname: &filename3,
        symlink: &nfspath3,
        _attr: &sattr3,
    ) -> Result<(fileid3, fattr3), nfsstat3> {
        let (path, rel) = self.child(dirid, linkname)?;
        let target = std::ffi::OsStr::from_bytes(&symlink.0);
        std::os::unix::fs::symlink(target, &path).map_err(|e| io_status(&e))?;
        self.made(&path, rel)
    }

    async fn readlink(&self, id: fileid3) -> Result<nfspath3, nfsstat3> {
        let (path, meta) = self.resolve(id)?;
        if !meta.file_type().is_symlink() {
            return Err(nfsstat3::NFS3ERR_INVAL);
        }
        let target = fs::read_link(path).map_err(|e| io_status(&e))?;
        Ok(target.into_os_string().into_encoded_bytes().into())
    }

    fn id_to_fh(&self, id: fileid3) -> nfs_fh3 {
        nfs_fh3 {
            data: self.handle_of(id),
        }
    }

    fn fh_to_id(&self, fh: &nfs_fh3) -> Result<fileid3, nfsstat3> {
        if fh.data.len() != HANDLE_LEN {
            return Err(nfsstat3::NFS3ERR_BADHANDLE);
        }
        self.handle_id(&fh.data).ok_or(nfsstat3::NFS3ERR_STALE)
    }

    fn serverid(&self) -> [u8; 8] {
        self.inner.export_id.to_le_bytes()
    }
}
