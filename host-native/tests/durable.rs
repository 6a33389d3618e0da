//! The server over a real store pipeline (`StorePersistSink` → group commit → `Store::Memory` with
//! fault injection): a store failure refuses the requests that needed it, the core is rebuilt from
//! the store, and serving resumes; a fenced server refuses everything and reports it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use brlock_core::{ClientId, Core, FileId, LockKind, LockRecord, Range};
use brlock_native::config::ServerConfig;
use brlock_native::nlm::{NlmCall, NlmVersion, ShareAccess, ShareMode, Stat};
use brlock_native::server::dispatch::owner_id;
use brlock_native::server::{AcceptAllHandles, Restored, Server, Sockets, StorePersistSink};
use brlock_native::store::{MemoryStore, RecordFilter, Store};
use brlock_testkit::client::{NlmClient, Owner, TestOutcome, Transport};
use brlock_testkit::http::{self, metric_value};
use brlock_testkit::listener::ClientHost;

/// The test thread makes the kit's blocking calls while this runtime's threads serve them.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

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

/// `GET /readyz`: the status code and the body.
fn readyz(s: &Server) -> (u16, String) {
    http::get(s.metrics_addr().unwrap(), "/readyz").unwrap()
}

/// The body of `/metrics`.
fn metrics(s: &Server) -> String {
    http::get(s.metrics_addr().unwrap(), "/metrics").unwrap().1
}

fn memory(store: &Store) -> &MemoryStore {
    match store {
        Store::Memory(m) => m,
        _ => unreachable!(),
    }
}

/// An owner as the tests name them: `oh` is "caller-svid".
fn owner(caller: &str, svid: u32) -> Owner {
    Owner::new(caller, svid, &format!("{caller}-{svid}"))
}

fn record(caller: &str, svid: u32, fh: &str, offset: u64, len: u64) -> LockRecord {
    let o = owner(caller, svid);
    LockRecord {
        file: FileId::from(fh),
        client: ClientId::from(caller),
        owner: owner_id(&o.caller, o.svid, &o.oh),
        kind: LockKind::Exclusive,
        range: Range::new(offset, len),
    }
}

async fn stored(store: &Store) -> Vec<LockRecord> {
    store.records(&RecordFilter::All).await.unwrap()
}

/// The TEST's status: GRANTED, DENIED (with a holder) or the refusal.
fn test_stat(c: &mut NlmClient, who: &Owner, fh: &[u8], offset: u64, len: u64) -> Stat {
    match c.test(who, fh, true, offset, len).unwrap() {
        TestOutcome::Granted => Stat::Granted,
        TestOutcome::Denied(_) => Stat::Denied,
        TestOutcome::Other(stat) => stat,
    }
}

/// 32 bytes: the one file handle size NLM v3 (client b) and v4 (client a) both carry.
const FH: &[u8] = b"fh-durable-000000000000000000000";
const FH_NAME: &str = "fh-durable-000000000000000000000";

#[test]
fn a_store_failure_refuses_what_needed_it_and_the_core_follows_the_store() {
    let rt = runtime();
    let store = Arc::new(Store::Memory(MemoryStore::new()));
    let s = rt.block_on(serve(&store));
    let mut a = NlmClient::connect(Transport::Tcp, s.local_addr(), NlmVersion::V4).unwrap();
    let mut b = NlmClient::connect(Transport::Tcp, s.local_addr(), NlmVersion::V3).unwrap();
    let (ha, hb) = (owner("host-a", 1), owner("host-b", 2));
    assert_eq!(a.lock(&ha, FH, true, 0, 100, false).unwrap(), Stat::Granted);
    assert_eq!(
        rt.block_on(stored(&store)),
        vec![record("host-a", 1, FH_NAME, 0, 100)]
    );

    let page = metrics(&s);
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
    assert_eq!(a.lock(&ha, FH, true, 200, 10, false).unwrap(), Stat::Failed);
    assert_eq!(
        b.lock(&hb, FH, true, 300, 10, false).unwrap(),
        Stat::DeniedNolocks
    );
    assert_eq!(a.unlock(&ha, FH, 0, 100).unwrap(), Stat::Failed);
    // Not ready while the core waits to be rebuilt from the store.
    let (status, body) = readyz(&s);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"rebuilding\""), "{body}");

    memory(&store).set_unavailable(None);
    // Serving resumes once the core is rebuilt: b's TEST over a's lock stops failing.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stat = loop {
        let stat = test_stat(&mut b, &hb, FH, 50, 1);
        if stat != Stat::DeniedNolocks || Instant::now() > deadline {
            break stat;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The failed unlock did not happen (a still holds [0, 100)); the failed lock is not held.
    assert_eq!(stat, Stat::Denied);
    assert_eq!(
        rt.block_on(stored(&store)),
        vec![record("host-a", 1, FH_NAME, 0, 100)]
    );
    // One event's writes failed (the later requests were refused while the core waited for the
    // store), and the core was rebuilt once.
    let page = metrics(&s);
    assert_eq!(
        metric_value(&page, r#"brlock_store_failures_total{kind="error"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&page, "brlock_store_rebuilds_total"),
        Some(1.0)
    );
    assert_eq!(readyz(&s).0, 200);
    assert_eq!(
        b.lock(&hb, FH, true, 200, 10, false).unwrap(),
        Stat::Granted
    );
    assert_eq!(a.unlock(&ha, FH, 0, 100).unwrap(), Stat::Granted);
    assert_eq!(
        rt.block_on(stored(&store)),
        vec![record("host-b", 2, FH_NAME, 200, 10)]
    );
    rt.block_on(s.shutdown());
}

#[test]
fn a_fenced_server_refuses_everything_and_says_so() {
    let rt = runtime();
    let store = Arc::new(Store::Memory(MemoryStore::new()));
    let s = rt.block_on(serve(&store));
    assert_eq!(readyz(&s).0, 200);
    let mut a = NlmClient::connect(Transport::Tcp, s.local_addr(), NlmVersion::V4).unwrap();
    let ha = owner("host-a", 1);
    assert_eq!(
        a.lock(&ha, b"fh", true, 0, 10, false).unwrap(),
        Stat::Granted
    );
    // Another instance begins a newer epoch on the same store.
    let (newer, _) = rt.block_on(store.begin_epoch()).unwrap();
    assert_eq!(
        a.lock(&ha, b"fh", true, 100, 10, false).unwrap(),
        Stat::Failed
    );
    let reason = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(5), s.fatal()).await })
        .unwrap();
    assert!(
        reason.contains("fenced") && reason.contains(&format!("epoch {newer}")),
        "{reason}"
    );
    // Even a request that writes nothing is refused now, and /readyz says why.
    assert_eq!(test_stat(&mut a, &ha, b"fh", 100, 10), Stat::Failed);
    let (status, body) = readyz(&s);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"fenced\""), "{body}");
    assert_eq!(
        rt.block_on(stored(&store)),
        vec![record("host-a", 1, "fh", 0, 10)]
    );
    let page = metrics(&s);
    assert_eq!(
        metric_value(&page, r#"brlock_store_failures_total{kind="fenced"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&page, "brlock_store_rebuilds_total"),
        Some(0.0)
    );
    rt.block_on(s.shutdown());
}

/// Waits until the server serves again after a store failure (a TEST stops being refused).
fn until_serving(c: &mut NlmClient, who: &Owner, offset: u64) -> Stat {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = test_stat(c, who, b"fh", offset, 1);
        if stat != Stat::Failed || Instant::now() > deadline {
            return stat;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn share_reservations_and_queued_waiters_survive_a_rebuild_after_a_store_failure() {
    let rt = runtime();
    let store = Arc::new(Store::Memory(MemoryStore::new()));
    let host = ClientHost::spawn().unwrap();
    let s = rt.block_on(serve_with(&store, |c| {
        c.portmap_port = host.portmapper.port()
    }));
    let connect = || NlmClient::connect(Transport::Tcp, s.local_addr(), NlmVersion::V4).unwrap();
    let (mut a, mut b, mut c) = (connect(), connect(), connect());
    let (ha, hb, hc) = (owner("host-a", 1), owner("host-b", 2), owner("host-c", 3));
    let share = |c: &mut NlmClient, caller: &str, access, mode| {
        c.share(false, caller, "oh", b"shared", mode, access)
            .unwrap()
    };
    assert_eq!(
        a.lock(&ha, b"fh", true, 0, 100, false).unwrap(),
        Stat::Granted
    );
    // b waits behind a; c would wait too but cancels, so only b may come back.
    assert_eq!(
        b.lock(&hb, b"fh", true, 0, 10, true).unwrap(),
        Stat::Blocked
    );
    assert_eq!(
        c.lock(&hc, b"fh", true, 50, 10, true).unwrap(),
        Stat::Blocked
    );
    assert_eq!(
        c.cancel(&hc, b"fh", true, 50, 10, true).unwrap(),
        Stat::Granted
    );
    assert_eq!(
        share(&mut b, "host-b", ShareAccess::Write, ShareMode::DenyWrite),
        Stat::Granted
    );

    memory(&store).set_unavailable(Some("disk on fire"));
    assert_eq!(
        a.lock(&ha, b"fh", true, 500, 10, false).unwrap(),
        Stat::Failed
    );
    memory(&store).set_unavailable(None);
    assert_eq!(until_serving(&mut c, &hc, 90), Stat::Denied);

    // The reservation is still there: a writer is refused, a reader is not.
    assert_eq!(
        share(&mut c, "host-c", ShareAccess::Write, ShareMode::DenyNone),
        Stat::Denied
    );
    assert_eq!(
        share(&mut c, "host-c", ShareAccess::Read, ShareMode::DenyNone),
        Stat::Granted
    );
    // b still waits: a's unlock grants it by callback, and c's cancelled wait stays cancelled.
    assert_eq!(a.unlock(&ha, b"fh", 0, 100).unwrap(), Stat::Granted);
    let is_granted = |call: &NlmCall| matches!(call, NlmCall::Granted(_));
    let (grant, others) = host.listener.wait_for(Duration::from_secs(5), is_granted);
    let Some(NlmCall::Granted(g)) = grant.map(|r| r.call) else {
        panic!("no GRANTED callback for the waiter queued before the rebuild: {others:?}");
    };
    assert_eq!((g.lock.svid, g.lock.offset, g.lock.len), (2, 0, 10));
    let (again, _) = host
        .listener
        .wait_for(Duration::from_millis(300), is_granted);
    assert!(again.is_none(), "the cancelled waiter came back: {again:?}");
    // b holds its range now; c's range is free.
    assert_eq!(test_stat(&mut a, &ha, b"fh", 5, 1), Stat::Denied);
    assert_eq!(test_stat(&mut a, &ha, b"fh", 55, 1), Stat::Granted);
    rt.block_on(s.shutdown());
}
