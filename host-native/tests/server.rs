//! brlockd in-process on 127.0.0.1:0, driven over TCP and UDP by the test kit's client: the cases
//! that need the server's own configuration or plug-ins (idle times, the file-handle hook) or that
//! look inside it. What a user sees of the binary is tested against the binary, in
//! `tests/tests/e2e`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use brlock_native::config::ServerConfig;
use brlock_native::nlm::{
    self, NLM_PROGRAM, NlmCall, NlmProc, NlmReply, NlmVersion, Res, ShareAccess, ShareMode, Stat,
    TestArgs,
};
use brlock_native::server::{
    AcceptAllHandles, FileHandleCheck, FileHandleStatus, MemorySink, PersistSink, Server,
};
use brlock_testkit::client::{NlmClient, Owner, TestOutcome, Transport};
use brlock_testkit::http;
use brlock_testkit::listener::ClientHost;

const WAIT: Duration = Duration::from_secs(5);

/// A server on a runtime of its own, so that the test thread can make the kit's blocking calls
/// while the runtime's threads serve them. Shut down when dropped.
struct InProcess {
    server: Option<Server>,
    runtime: tokio::runtime::Runtime,
}

impl InProcess {
    fn start(adjust: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut config = ServerConfig::for_tests();
        adjust(&mut config);
        Self::start_with(config, Box::new(MemorySink), Arc::new(AcceptAllHandles))
    }

    fn start_with(
        config: ServerConfig,
        sink: Box<dyn PersistSink>,
        handles: Arc<dyn FileHandleCheck>,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let server = runtime
            .block_on(Server::start_with(config, sink, handles))
            .expect("server starts");
        InProcess {
            server: Some(server),
            runtime,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("running until dropped")
    }

    fn addr(&self) -> SocketAddr {
        self.server().local_addr()
    }

    fn client(&self, transport: Transport, version: NlmVersion) -> NlmClient {
        NlmClient::connect(transport, self.addr(), version).expect("connect")
    }

    /// The body of `/metrics`.
    fn metrics(&self) -> String {
        let addr = self.server().metrics_addr().expect("metrics configured");
        let (status, body) = http::get(addr, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.shutdown());
        }
    }
}

/// An owner as the tests name them: `oh` is "caller-svid".
fn owner(caller: &str, svid: u32) -> Owner {
    Owner::new(caller, svid, &format!("{caller}-{svid}"))
}

/// A waiter that asked by LOCK_MSG is told BLOCKED by LOCK_RES and granted the asynchronous way,
/// by GRANTED_MSG; the client's GRANTED_RES keeps the lock with it.
#[test]
fn a_waiter_queued_by_lock_msg_is_granted_by_granted_msg() {
    let host = ClientHost::spawn().unwrap();
    let s = InProcess::start(|c| c.portmap_port = host.portmapper.port());
    let mut a = s.client(Transport::Udp, NlmVersion::V4);
    let mut b = s.client(Transport::Udp, NlmVersion::V4);
    let (ha, hb) = (owner("host-a", 1), owner("host-b", 2));
    assert_eq!(
        a.lock(&ha, b"fh", true, 0, 0, false).unwrap(),
        Stat::Granted
    );
    let args = b.lock_args(&hb, b"fh", true, 0, 0, true);
    let cookie = args.cookie.clone();
    // The _MSG call itself gets an empty reply; the result arrives as LOCK_RES.
    assert_eq!(b.call(&NlmCall::LockMsg(args)).unwrap(), NlmReply::Void);
    let (res, others) = host
        .listener
        .wait_for(WAIT, |c| matches!(c, NlmCall::LockRes(_)));
    match res.map(|r| r.call) {
        Some(NlmCall::LockRes(res)) => assert_eq!(
            res,
            Res {
                cookie,
                stat: Stat::Blocked
            }
        ),
        other => panic!("no LOCK_RES: {other:?}; other calls: {others:?}"),
    }
    assert_eq!(a.unlock(&ha, b"fh", 0, 0).unwrap(), Stat::Granted);
    let (grant, others) = host
        .listener
        .wait_for(WAIT, |c| matches!(c, NlmCall::GrantedMsg(_)));
    let Some(NlmCall::GrantedMsg(g)) = grant.map(|r| r.call) else {
        panic!("no GRANTED_MSG; other calls: {others:?}");
    };
    let res = Res {
        cookie: g.cookie,
        stat: Stat::Granted,
    };
    b.res_call(NlmProc::GrantedRes, res).unwrap();
    // Delivered: the lock stays with b.
    std::thread::sleep(Duration::from_millis(100));
    assert!(matches!(
        a.test(&ha, b"fh", true, 0, 0).unwrap(),
        TestOutcome::Denied(h) if h.svid == 2
    ));
}

#[test]
fn a_retransmitted_udp_xid_is_replayed_not_rerun() {
    let s = InProcess::start(|_| {});
    let mut c = s.client(Transport::Udp, NlmVersion::V4);
    let a = owner("host-a", 1);
    let args = c.lock_args(&a, b"fh", true, 0, 1, false);
    let args = c.encode_args(&NlmCall::Lock(args));
    let (xid, call) = c.rpc.encode(NLM_PROGRAM, 4, NlmProc::Lock as u32, &args);
    let first = c.rpc.exchange(xid, &call).unwrap();
    // Unlock, then retransmit the LOCK: the cached GRANTED comes back and nothing is locked again.
    assert_eq!(c.unlock(&a, b"fh", 0, 1).unwrap(), Stat::Granted);
    let again = c.rpc.exchange(xid, &call).unwrap();
    assert_eq!(first, again);
    let other = owner("host-b", 2);
    assert_eq!(
        c.test(&other, b"fh", true, 0, 1).unwrap(),
        TestOutcome::Granted
    );
}

#[test]
fn a_caller_binding_lasts_while_the_host_holds_something_and_is_then_forgotten() {
    let s = InProcess::start(|c| c.unmonitor_idle = Duration::from_millis(100));
    let mut home = s.client(Transport::Udp, NlmVersion::V4);
    let other = SocketAddr::new("127.0.0.2".parse().unwrap(), 0);
    let mut elsewhere = NlmClient::connect_udp_from(other, s.addr(), NlmVersion::V4).unwrap();
    let a = owner("host-a", 1);
    assert_eq!(a_lock(&mut home, &a, 0), Stat::Granted);
    // Long past the idle time, the binding holds while host-a holds its lock. (A refused TEST
    // has no holder to name, so it says DENIED_NOLOCKS.)
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        elsewhere.test(&a, b"fh", true, 10, 1).unwrap(),
        TestOutcome::Other(Stat::DeniedNolocks)
    );
    assert_eq!(home.unlock(&a, b"fh", 0, 1).unwrap(), Stat::Granted);
    // Holding nothing and idle, host-a is forgotten: the name may now call from elsewhere.
    let deadline = Instant::now() + WAIT;
    loop {
        let outcome = elsewhere.test(&a, b"fh", true, 10, 1).unwrap();
        if outcome == TestOutcome::Granted {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "binding never forgotten: {outcome:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A request that leaves the name holding nothing binds it no longer than itself (issue 13,
    // row 7): it may call from home again ...
    assert_eq!(
        home.test(&a, b"fh", true, 10, 1).unwrap(),
        TestOutcome::Granted
    );
    // ... while a lock binds it to the address the lock came from.
    assert_eq!(a_lock(&mut elsewhere, &a, 10), Stat::Granted);
    assert_eq!(
        home.test(&a, b"fh", true, 10, 1).unwrap(),
        TestOutcome::Other(Stat::DeniedNolocks)
    );
}

/// An exclusive lock of `who` on byte `offset` of "fh".
fn a_lock(c: &mut NlmClient, who: &Owner, offset: u64) -> Stat {
    c.lock(who, b"fh", true, offset, 1, false).unwrap()
}

#[test]
fn a_caller_name_from_another_address_is_refused() {
    let s = InProcess::start(|_| {});
    let mut v4 = s.client(Transport::Udp, NlmVersion::V4);
    let a = owner("host-a", 1);
    assert_eq!(a_lock(&mut v4, &a, 0), Stat::Granted);
    // 127.0.0.2 is loopback too (allowed), but not where host-a first called from.
    let other = SocketAddr::new("127.0.0.2".parse().unwrap(), 0);
    let mut spoof = NlmClient::connect_udp_from(other, s.addr(), NlmVersion::V4).unwrap();
    assert_eq!(spoof.unlock(&a, b"fh", 0, 1).unwrap(), Stat::Denied);
    // The refused unlock did nothing: a name of its own from that address still meets host-a's
    // lock.
    match spoof.test(&owner("host-z", 9), b"fh", true, 0, 1).unwrap() {
        TestOutcome::Denied(h) => assert_eq!((h.svid, h.oh), (1, b"host-a-1".to_vec())),
        other => panic!("host-a's lock is gone after a refused unlock: {other:?}"),
    }
}

#[test]
fn granted_to_a_server_is_denied() {
    let s = InProcess::start(|_| {});
    let mut c = s.client(Transport::Tcp, NlmVersion::V4);
    let r = c
        .call(&NlmCall::Granted(TestArgs {
            cookie: b"c".to_vec(),
            exclusive: true,
            lock: owner("h", 1).lock(b"fh", 0, 1),
        }))
        .unwrap();
    assert_eq!(
        r,
        NlmReply::Res(Res {
            cookie: b"c".to_vec(),
            stat: Stat::Denied
        })
    );
}

#[test]
fn metrics_are_served_as_prometheus_text() {
    let s = InProcess::start(|c| c.metrics = Some("127.0.0.1:0".parse().unwrap()));
    let mut c = s.client(Transport::Tcp, NlmVersion::V4);
    assert_eq!(a_lock(&mut c, &owner("host-a", 1), 0), Stat::Granted);
    let body = s.metrics();
    for sample in [
        "brlock_held_locks",
        "brlock_lock_replies_total{outcome=\"granted\"}",
        "brlock_rpc_requests_total{procedure=\"lock\",status=\"granted\"}",
    ] {
        assert_eq!(
            http::metric_value(&body, sample),
            Some(1.0),
            "{sample} in\n{body}"
        );
    }
    assert!(
        body.contains("brlock_rpc_request_duration_seconds_bucket"),
        "{body}"
    );
}

/// An NFS server's view of its handles, as plugged in through [`FileHandleCheck`]: handles
/// starting "stale" name nothing any more, "dir" a directory, everything else a regular file.
struct ExportTable;

impl FileHandleCheck for ExportTable {
    fn check(&self, fh: &[u8]) -> FileHandleStatus {
        if fh.starts_with(b"stale") {
            FileHandleStatus::Stale
        } else if fh.starts_with(b"dir") {
            FileHandleStatus::NotRegular
        } else {
            FileHandleStatus::Valid
        }
    }
}

/// The hook's verdict reaches the client in its version's terms: v4 says NLM4_STALE_FH for a
/// stale handle and NLM4_FAILED for a non-regular file; v1/v3 know neither and say
/// DENIED_NOLOCKS (Linux lockd's cast_to_nlm). The core never sees such a request, and the
/// server goes on serving other handles.
#[test]
fn the_file_handle_hook_refuses_stale_and_non_regular_handles() {
    let mut config = ServerConfig::for_tests();
    config.metrics = Some("127.0.0.1:0".parse().unwrap());
    let s = InProcess::start_with(config, Box::new(MemorySink), Arc::new(ExportTable));
    let mut holder = s.client(Transport::Tcp, NlmVersion::V4);
    let (a, b) = (owner("host-a", 1), owner("host-b", 2));
    assert_eq!(
        holder.lock(&b, b"fh-regular", true, 0, 100, false).unwrap(),
        Stat::Granted
    );
    for (version, stale, not_regular) in [
        (NlmVersion::V4, Stat::StaleFh, Stat::Failed),
        (NlmVersion::V3, Stat::DeniedNolocks, Stat::DeniedNolocks),
        (NlmVersion::V1, Stat::DeniedNolocks, Stat::DeniedNolocks),
    ] {
        let mut c = s.client(Transport::Tcp, version);
        for (fh, want) in [(&b"stale-fh"[..], stale), (&b"dir-fh"[..], not_regular)] {
            let what = |proc: &str| format!("{version:?} {proc} on {}", fh.escape_ascii());
            assert_eq!(
                c.lock(&a, fh, true, 0, 10, false).unwrap(),
                want,
                "{}",
                what("LOCK")
            );
            assert_eq!(
                c.lock(&a, fh, true, 0, 10, true).unwrap(),
                want,
                "{}",
                what("blocking LOCK")
            );
            assert_eq!(
                c.test(&a, fh, true, 0, 10).unwrap(),
                TestOutcome::Other(want),
                "{}",
                what("TEST")
            );
            assert_eq!(c.unlock(&a, fh, 0, 10).unwrap(), want, "{}", what("UNLOCK"));
            assert_eq!(
                c.cancel(&a, fh, true, 0, 10, true).unwrap(),
                want,
                "{}",
                what("CANCEL")
            );
            if version != NlmVersion::V1 {
                let share = c.share(
                    false,
                    "host-a",
                    "oh",
                    fh,
                    ShareMode::DenyNone,
                    ShareAccess::Read,
                );
                assert_eq!(share.unwrap(), want, "{}", what("SHARE"));
            }
        }
        // The same client on a regular file: served, and the held lock still conflicts. (In
        // v1/v3 the client pads the handle to 32 bytes: the v4 holder holds that one too.)
        let sized = nlm::fh_for(version, b"fh-regular");
        if version != NlmVersion::V4 {
            let stat = holder.lock(&b, &sized, true, 0, 100, false).unwrap();
            assert!(matches!(stat, Stat::Granted), "{stat:?}");
        }
        assert_eq!(
            c.lock(&a, &sized, true, 50, 10, false).unwrap(),
            Stat::Denied,
            "{version:?} LOCK on a held regular file"
        );
        assert_eq!(
            c.lock(&a, &sized, true, 200, 10, false).unwrap(),
            Stat::Granted,
            "{version:?} LOCK on a free range of a regular file"
        );
        assert_eq!(c.unlock(&a, &sized, 200, 10).unwrap(), Stat::Granted);
    }
    // No refused request reached the core: it holds only host-b's locks (on the v4 handle and
    // on the padded v1/v3 one) and queues nothing.
    let metrics = s.metrics();
    for (sample, want) in [
        ("brlock_held_locks", 2.0),
        ("brlock_waiters", 0.0),
        ("brlock_files", 2.0),
    ] {
        assert_eq!(
            http::metric_value(&metrics, sample),
            Some(want),
            "{sample} in\n{metrics}"
        );
    }
    assert_eq!(
        holder.unlock(&b, b"fh-regular", 0, 100).unwrap(),
        Stat::Granted
    );
}
