//! NLM inside brlock-nfsd: a lock names a file by the handle the NFS side issued, and NLM asks
//! the NFS side about every handle before the lock manager sees it (NLM4_STALE_FH for a handle it
//! did not issue or whose file is gone, NLM4_FAILED for a directory), over the real service.

use std::path::PathBuf;

use brlock_native::config::ServerConfig;
use brlock_native::nlm::{NlmVersion, Stat};
use brlock_native::service::NlmService;
use brlock_nfsd::{ExportHandles, LocalFs};
use brlock_testkit::client::{NlmClient, Owner, Transport};
use nfsserve::nfs::sattr3;
use nfsserve::vfs::NFSFileSystem;

fn name(s: &str) -> nfsserve::nfs::filename3 {
    s.as_bytes().to_vec().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nlm_locks_only_what_the_nfs_side_issued() {
    let dir: PathBuf = std::env::temp_dir().join(format!("brlock-nfsd-nlm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fs = LocalFs::new(&dir).unwrap();
    let root = fs.root_dir();
    let (file, _) = fs
        .create(root, &name("f"), sattr3::default())
        .await
        .unwrap();
    let (gone, _) = fs
        .create(root, &name("gone"), sattr3::default())
        .await
        .unwrap();
    let (sub, _) = fs.mkdir(root, &name("sub")).await.unwrap();
    let file_fh = fs.id_to_fh(file).data;
    let gone_fh = fs.id_to_fh(gone).data;
    let dir_fh = fs.id_to_fh(sub).data;
    fs.remove(root, &name("gone")).await.unwrap();

    let mut config = ServerConfig::for_tests();
    config.listen = "127.0.0.1:0".parse().unwrap();
    // No grace period: a fresh start with nothing to reclaim.
    config.core.grace = Default::default();
    let service = NlmService::builder(config)
        .file_handles(ExportHandles(fs.clone()))
        .start()
        .await
        .unwrap();
    let addr = service.local_addr();
    let statuses = tokio::task::spawn_blocking(move || {
        let mut client = NlmClient::connect(Transport::Tcp, addr, NlmVersion::V4).unwrap();
        let owner = Owner::new("nfsd-test", 1, "owner-1");
        let other = Owner::new("nfsd-test-2", 2, "owner-2");
        [
            client.lock(&owner, &file_fh, true, 0, 10, false).unwrap(),
            client.lock(&other, &file_fh, true, 5, 10, false).unwrap(),
            client.lock(&owner, &dir_fh, true, 0, 10, false).unwrap(),
            client.lock(&owner, &gone_fh, true, 0, 10, false).unwrap(),
            client
                .lock(&owner, b"a handle nobody issued", true, 0, 10, false)
                .unwrap(),
        ]
    })
    .await
    .unwrap();
    service.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        statuses,
        [
            Stat::Granted,
            Stat::Denied,
            Stat::Failed,
            Stat::StaleFh,
            Stat::StaleFh
        ]
    );
}
