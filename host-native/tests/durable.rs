//! The server over a real store pipeline (`StorePersistSink` → group commit → `Store::Memory` with
//! fault injection): a store failure refuses the requests that needed it, the core is rebuilt from
//! the store, and serving resumes; a fenced server refuses everything and reports it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use brlock_core::{ClientId, Core, FileId, LockKind, LockRecord, Range};
use brlock_native::client::{
    NlmCallbackListener, NlmClient, TestPortmapper, lock_of, metric_value, scrape_metrics, share_of,
};
use brlock_native::config::ServerConfig;
use brlock_native::nlm::{NlmCall, NlmProc, NlmVersion, ShareAccess, ShareMode, Stat};
use brlock_native::server::dispatch::owner_id;
use brlock_native::server::{AcceptAllHandles, Restored, Server, Sockets, StorePersistSink};
use brlock_native::store::{MemoryStore, RecordFilter, Store};

async fn serve(store: &Arc<Store>) -> Server {
    serve_with(store, |_| {}).await
}

async fn serve_with(store: &Arc<Store>, adjust: impl FnOnce(&mut ServerConfig)) -> Server {
    let (epoch, records) = store.begin_epoch().await.unwrap();
    let kept = store.kept().await.unwrap();
    let mut config = ServerConfig::for_tests();
    config.metrics = Some("127.0.0.1:0".parse().unwrap());
    adjust(&mut config);
    let (core, actions) = Core::restore_with_shares(
        config.core.clone(),
        brlock_core::Instant::ZERO,
        epoch,
        records,
        kept.shares,
    )
    .unwrap();
    let sink = StorePersistSink::spawn(store.clone(), epoch, 1024);
    let sockets = Sockets::bind(&config).await.unwrap();
    let restored = Restored {
        core,
        actions,
        sink: Box::new(sink),
        nsm_state: kept.nsm_state,
        hosts: kept.hosts,
        ..Restored::fresh(&config)
    };
    Server::start_restored(config, sockets, restored, Arc::new(AcceptAllHandles))
        .await
        .unwrap()
}

/// `GET /readyz`: the status line's code and the body.
async fn readyz(s: &Server) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut http = tokio::net::TcpStream::connect(s.metrics_addr().unwrap())
        .await
        .unwrap();
    http.write_all(b"GET /readyz HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), http.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head[9..12].parse().unwrap(), body.to_string())
}

fn memory(store: &Store) -> &MemoryStore {
    match store {
        Store::Memory(m) => m,
        _ => unreachable!(),
    }
}

fn record(caller: &str, svid: u32, fh: &str, offset: u64, len: u64) -> LockRecord {
    let l = lock_of(caller, fh, svid, offset, len);
    LockRecord {
        file: FileId::from(fh),
        client: ClientId::from(caller),
        owner: owner_id(&l.caller_name, l.svid, &l.oh),
        kind: LockKind::Exclusive,
        range: Range::new(offset, len),
    }
}

async fn stored(store: &Store) -> Vec<LockRecord> {
    store.records(&RecordFilter::All).await.unwrap()
}

/// 32 bytes: the one file handle size NLM v3 (client b) and v4 (client a) both carry.
const FH: &str = "fh-durable-000000000000000000000";

#[tokio::test]
async fn a_store_failure_refuses_what_needed_it_and_the_core_follows_the_store() {
    let store = Arc::new(Store::Memory(MemoryStore::new()));
    let s = serve(&store).await;
    let mut a = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let mut b = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V3)
        .await
        .unwrap();
    let held = lock_of("host-a", FH, 1, 0, 100);
    assert_eq!(
        a.lock(&held, true, false).await.unwrap().stat,
        Stat::Granted
    );
    assert_eq!(stored(&store).await, vec![record("host-a", 1, FH, 0, 100)]);

    let page = scrape_metrics(s.metrics_addr().unwrap()).await.unwrap();
    assert_eq!(metric_value(&page, "brlock_store_writes_total"), Some(1.0));
    assert_eq!(
        metric_value(&page, "brlock_store_durable_duration_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&page, r#"brlock_store_failures_total{kind="error"}"#),
        Some(0.0),
        "the series exists from the start, at 0"
    );

    memory(&store).set_unavailable(Some("disk on fire"));
    // v4 says NLM4_FAILED, v1/v3 DENIED_NOLOCKS; neither lock nor unlock happened.
    let lost = lock_of("host-a", FH, 1, 200, 10);
    assert_eq!(a.lock(&lost, true, false).await.unwrap().stat, Stat::Failed);
    let lb = lock_of("host-b", FH, 2, 300, 10);
    assert_eq!(
        b.lock(&lb, true, false).await.unwrap().stat,
        Stat::DeniedNolocks
    );
    assert_eq!(a.unlock(&held).await.unwrap().stat, Stat::Failed);
    // Not ready while the core waits to be rebuilt from the store.
    let (status, body) = readyz(&s).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"rebuilding\""), "{body}");

    memory(&store).set_unavailable(None);
    // Serving resumes once the core is rebuilt: b's TEST over a's lock stops failing.
    let probe = lock_of("host-b", FH, 2, 50, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let stat = loop {
        let stat = b.test(&probe, true).await.unwrap().stat;
        if stat != Stat::DeniedNolocks || Instant::now() > deadline {
            break stat;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The failed unlock did not happen (a still holds [0, 100)); the failed lock is not held.
    assert_eq!(stat, Stat::Denied);
    assert_eq!(stored(&store).await, vec![record("host-a", 1, FH, 0, 100)]);
    // One event's writes failed (the later requests were refused while the core waited for the
    // store), and the core was rebuilt once.
    let page = scrape_metrics(s.metrics_addr().unwrap()).await.unwrap();
    assert_eq!(
        metric_value(&page, r#"brlock_store_failures_total{kind="error"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&page, "brlock_store_rebuilds_total"),
        Some(1.0)
    );
    assert_eq!(readyz(&s).await.0, 200);
    let over_lost = lock_of("host-b", FH, 2, 200, 10);
    assert_eq!(
        b.lock(&over_lost, true, false).await.unwrap().stat,
        Stat::Granted
    );
    assert_eq!(a.unlock(&held).await.unwrap().stat, Stat::Granted);
    assert_eq!(stored(&store).await, vec![record("host-b", 2, FH, 200, 10)]);
    s.shutdown().await;
}

#[tokio::test]
async fn a_fenced_server_refuses_everything_and_says_so() {
    let store = Arc::new(Store::Memory(MemoryStore::new()));
    let s = serve(&store).await;
    assert_eq!(readyz(&s).await.0, 200);
    let mut a = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    assert_eq!(
        a.lock(&lock_of("host-a", "fh", 1, 0, 10), true, false)
            .await
            .unwrap()
            .stat,
        Stat::Granted
    );
    // Another instance begins a newer epoch on the same store.
    let (newer, _) = store.begin_epoch().await.unwrap();
    let refused = lock_of("host-a", "fh", 1, 100, 10);
    assert_eq!(
        a.lock(&refused, true, false).await.unwrap().stat,
        Stat::Failed
    );
    let reason = tokio::time::timeout(Duration::from_secs(5), s.fatal())
        .await
        .unwrap();
    assert!(
        reason.contains("fenced") && reason.contains(&format!("epoch {newer}")),
        "{reason}"
    );
    // Even a request that writes nothing is refused now, and /readyz says why.
    assert_eq!(a.test(&refused, true).await.unwrap().stat, Stat::Failed);
    let (status, body) = readyz(&s).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"fenced\""), "{body}");
    assert_eq!(stored(&store).await, vec![record("host-a", 1, "fh", 0, 10)]);
    let page = scrape_metrics(s.metrics_addr().unwrap()).await.unwrap();
    assert_eq!(
        metric_value(&page, r#"brlock_store_failures_total{kind="fenced"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&page, "brlock_store_rebuilds_total"),
        Some(0.0)
    );
    s.shutdown().await;
}

/// Waits until the server serves again after a store failure (a TEST stops being refused).
async fn until_serving(c: &mut NlmClient, probe: &brlock_native::nlm::Lock) -> Stat {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = c.test(probe, true).await.unwrap().stat;
        if stat != Stat::Failed || Instant::now() > deadline {
            return stat;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn share_reservations_and_queued_waiters_survive_a_rebuild_after_a_store_failure() {
    let store = Arc::new(Store::Memory(MemoryStore::new()));
    let pmap = TestPortmapper::start().await.unwrap();
    let mut listener = NlmCallbackListener::start(Stat::Granted).await.unwrap();
    pmap.register_nlm(&listener);
    let s = serve_with(&store, |c| c.portmap_port = pmap.port()).await;
    let connect = || NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4);
    let (mut a, mut b, mut c) = (
        connect().await.unwrap(),
        connect().await.unwrap(),
        connect().await.unwrap(),
    );
    let share = |caller: &str, access, mode| share_of(caller, "shared", access, mode);
    let held = lock_of("host-a", "fh", 1, 0, 100);
    assert_eq!(
        a.lock(&held, true, false).await.unwrap().stat,
        Stat::Granted
    );
    // b waits behind a; c would wait too but cancels, so only b may come back.
    let waits = lock_of("host-b", "fh", 2, 0, 10);
    assert_eq!(
        b.lock(&waits, true, true).await.unwrap().stat,
        Stat::Blocked
    );
    let cancelled = lock_of("host-c", "fh", 3, 50, 10);
    assert_eq!(
        c.lock(&cancelled, true, true).await.unwrap().stat,
        Stat::Blocked
    );
    assert_eq!(
        c.cancel(&cancelled, true, true).await.unwrap().stat,
        Stat::Granted
    );
    let reserved = share("host-b", ShareAccess::Write, ShareMode::DenyWrite);
    assert_eq!(b.share(&reserved).await.unwrap().stat, Stat::Granted);

    memory(&store).set_unavailable(Some("disk on fire"));
    let lost = lock_of("host-a", "fh", 1, 500, 10);
    assert_eq!(a.lock(&lost, true, false).await.unwrap().stat, Stat::Failed);
    memory(&store).set_unavailable(None);
    let probe = lock_of("host-c", "fh", 3, 90, 1);
    assert_eq!(until_serving(&mut c, &probe).await, Stat::Denied);

    // The reservation is still there: a writer is refused, a reader is not.
    let writer = share("host-c", ShareAccess::Write, ShareMode::DenyNone);
    assert_eq!(c.share(&writer).await.unwrap().stat, Stat::Denied);
    let reader = share("host-c", ShareAccess::Read, ShareMode::DenyNone);
    assert_eq!(c.share(&reader).await.unwrap().stat, Stat::Granted);
    // b still waits: a's unlock grants it by callback, and c's cancelled wait stays cancelled.
    assert_eq!(a.unlock(&held).await.unwrap().stat, Stat::Granted);
    let Some(NlmCall::Granted(g)) = listener
        .recv_proc(NlmProc::Granted, Duration::from_secs(5))
        .await
    else {
        panic!("no GRANTED callback for the waiter queued before the rebuild");
    };
    assert_eq!((g.lock.svid, g.lock.offset, g.lock.len), (2, 0, 10));
    assert!(
        listener
            .recv_proc(NlmProc::Granted, Duration::from_millis(300))
            .await
            .is_none(),
        "the cancelled waiter came back"
    );
    // b holds its range now; c's range is free.
    let over = |offset| lock_of("host-a", "fh", 1, offset, 1);
    assert_eq!(a.test(&over(5), true).await.unwrap().stat, Stat::Denied);
    assert_eq!(a.test(&over(55), true).await.unwrap().stat, Stat::Granted);
    s.shutdown().await;
}
