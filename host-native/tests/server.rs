//! brlockd in-process on 127.0.0.1:0, driven over TCP and UDP by the codec-based test client.

use std::sync::Arc;
use std::time::Duration;

use brlock_native::client::{
    NlmCallbackListener, NlmClient, TestPortmapper, lock_of, scrape_metrics, share_of,
};
use brlock_native::config::ServerConfig;
use brlock_native::nlm::{
    NLM_PROGRAM, NlmCall, NlmProc, NlmVersion, Res, ShareAccess, ShareMode, Stat, TestArgs,
};
use brlock_native::rpc::{AcceptStat, Auth, AuthStat, RejectStat, ReplyBody, encode_record};
use brlock_native::server::{FileHandleCheck, FileHandleStatus, MemorySink, Server};

const WAIT: Duration = Duration::from_secs(5);

async fn server_with(f: impl FnOnce(&mut ServerConfig)) -> Server {
    let mut config = ServerConfig::for_tests();
    f(&mut config);
    Server::start(config).await.expect("server starts")
}

async fn server() -> Server {
    server_with(|_| {}).await
}

/// The server's `/metrics` page, status line and headers included.
async fn metrics_of(s: &Server) -> String {
    scrape_metrics(s.metrics_addr().expect("metrics configured"))
        .await
        .unwrap()
}

fn stat_of(reply: &ReplyBody) -> Option<&AcceptStat> {
    match reply {
        ReplyBody::Accepted { stat, .. } => Some(stat),
        ReplyBody::Denied(_) => None,
    }
}

#[tokio::test]
async fn lock_test_unlock_over_tcp_v4_and_a_conflict_is_denied() {
    let s = server().await;
    let mut a = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let mut b = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    a.null().await.unwrap();
    let la = lock_of("host-a", "fh1", 1, 0, 100);
    let lb = lock_of("host-b", "fh1", 2, 50, 10);
    assert_eq!(a.lock(&la, true, false).await.unwrap().stat, Stat::Granted);
    assert_eq!(b.lock(&lb, true, false).await.unwrap().stat, Stat::Denied);
    let t = b.test(&lb, false).await.unwrap();
    assert_eq!(t.stat, Stat::Denied);
    let h = t.holder.unwrap();
    assert_eq!(
        (h.svid, h.oh.as_slice(), h.offset, h.len, h.exclusive),
        (1, &b"host-a-1"[..], 0, 100, true)
    );
    assert_eq!(a.unlock(&la).await.unwrap().stat, Stat::Granted);
    assert_eq!(b.test(&lb, true).await.unwrap().stat, Stat::Granted);
    assert_eq!(b.lock(&lb, true, false).await.unwrap().stat, Stat::Granted);
    s.shutdown().await;
}

#[tokio::test]
async fn v1_over_udp_speaks_32_bit_and_length_zero_is_to_eof() {
    let s = server().await;
    let mut a = NlmClient::connect_udp(s.local_addr(), NlmVersion::V1)
        .await
        .unwrap();
    let mut b = NlmClient::connect_udp(s.local_addr(), NlmVersion::V1)
        .await
        .unwrap();
    let whole = lock_of("host-a", "fh", 7, 10, 0);
    assert_eq!(
        a.lock(&whole, true, false).await.unwrap().stat,
        Stat::Granted
    );
    let far = lock_of("host-b", "fh", 8, 4_000_000_000, 1);
    let t = b.test(&far, true).await.unwrap();
    assert_eq!(t.stat, Stat::Denied);
    let h = t.holder.unwrap();
    assert_eq!((h.svid, h.offset, h.len), (7, 10, 0));
    assert_eq!(a.unlock(&whole).await.unwrap().stat, Stat::Granted);
    assert_eq!(
        b.lock(&far, false, false).await.unwrap().stat,
        Stat::Granted
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_blocked_lock_is_granted_by_callback_and_cancel_withdraws_a_waiter() {
    let pmap = TestPortmapper::start().await.unwrap();
    let mut listener = NlmCallbackListener::start(Stat::Granted).await.unwrap();
    pmap.register_nlm(&listener);
    let s = server_with(|c| c.portmap_port = pmap.port()).await;
    let mut a = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let mut b = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let la = lock_of("host-a", "fh", 1, 0, 0);
    let lb = lock_of("host-b", "fh", 2, 0, 10);
    assert_eq!(a.lock(&la, true, false).await.unwrap().stat, Stat::Granted);
    assert_eq!(b.lock(&lb, true, true).await.unwrap().stat, Stat::Blocked);
    assert_eq!(a.unlock(&la).await.unwrap().stat, Stat::Granted);
    let Some(NlmCall::Granted(g)) = listener.recv_proc(NlmProc::Granted, WAIT).await else {
        panic!("no GRANTED callback");
    };
    assert_eq!(
        (g.lock.svid, g.lock.fh.as_slice(), g.lock.len),
        (2, &b"fh"[..], 10)
    );
    // brlockd's own cookie (the core's keyed callback cookie), as Linux lockd sends its own.
    assert_eq!(g.cookie.len(), brlock_core::COOKIE_LEN);
    assert_ne!(g.cookie, b"lock");
    // b now holds it: a conflicts.
    assert_eq!(a.lock(&la, true, false).await.unwrap().stat, Stat::Denied);
    // a queues and cancels; b's unlock then grants nothing to a.
    assert_eq!(a.lock(&la, true, true).await.unwrap().stat, Stat::Blocked);
    assert_eq!(a.cancel(&la, true, true).await.unwrap().stat, Stat::Granted);
    assert_eq!(b.unlock(&lb).await.unwrap().stat, Stat::Granted);
    assert!(
        listener
            .recv_proc(NlmProc::Granted, Duration::from_millis(300))
            .await
            .is_none()
    );
    assert_eq!(b.test(&la, true).await.unwrap().stat, Stat::Granted);
    s.shutdown().await;
}

#[tokio::test]
async fn lock_msg_is_answered_by_lock_res_and_granted_msg_by_granted_res() {
    let pmap = TestPortmapper::start().await.unwrap();
    let mut listener = NlmCallbackListener::start(Stat::Granted).await.unwrap();
    pmap.register_nlm(&listener);
    let s = server_with(|c| c.portmap_port = pmap.port()).await;
    let mut a = NlmClient::connect_udp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let mut b = NlmClient::connect_udp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let la = lock_of("host-a", "fh", 1, 0, 0);
    let lb = lock_of("host-b", "fh", 2, 0, 0);
    assert_eq!(a.lock(&la, true, false).await.unwrap().stat, Stat::Granted);
    let args = NlmClient::lock_args(&lb, true, true);
    // The _MSG call itself gets an empty reply; the result arrives as LOCK_RES.
    let void = b.call(&NlmCall::LockMsg(args)).await.unwrap();
    assert_eq!(void, brlock_native::nlm::NlmReply::Void);
    let Some(NlmCall::LockRes(res)) = listener.recv_proc(NlmProc::LockRes, WAIT).await else {
        panic!("no LOCK_RES");
    };
    assert_eq!(
        res,
        Res {
            cookie: b"lock".to_vec(),
            stat: Stat::Blocked
        }
    );
    assert_eq!(a.unlock(&la).await.unwrap().stat, Stat::Granted);
    let Some(NlmCall::GrantedMsg(g)) = listener.recv_proc(NlmProc::GrantedMsg, WAIT).await else {
        panic!("no GRANTED_MSG");
    };
    b.call(&NlmCall::GrantedRes(Res {
        cookie: g.cookie.clone(),
        stat: Stat::Granted,
    }))
    .await
    .unwrap();
    // Delivered: the lock stays with b.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a.test(&la, true).await.unwrap().stat, Stat::Denied);
    s.shutdown().await;
}

#[tokio::test]
async fn free_all_releases_everything_of_a_host() {
    let s = server().await;
    let mut a = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let la = lock_of("host-a", "fh", 1, 0, 10);
    let lb = lock_of("host-b", "fh", 2, 0, 10);
    assert_eq!(a.lock(&la, true, false).await.unwrap().stat, Stat::Granted);
    assert_eq!(a.test(&lb, true).await.unwrap().stat, Stat::Denied);
    a.free_all("host-a", 3).await.unwrap();
    assert_eq!(a.test(&lb, true).await.unwrap().stat, Stat::Granted);
    s.shutdown().await;
}

#[tokio::test]
async fn share_reservations_conflict_and_unshare_releases() {
    let s = server().await;
    let mut c = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V3)
        .await
        .unwrap();
    let share = |caller: &str, access, mode| share_of(caller, "fh", access, mode);
    let a = share("host-a", ShareAccess::Write, ShareMode::DenyWrite);
    let b = share("host-b", ShareAccess::ReadWrite, ShareMode::DenyNone);
    assert_eq!(c.share(&a).await.unwrap().stat, Stat::Granted);
    assert_eq!(c.share(&b).await.unwrap().stat, Stat::Denied);
    assert_eq!(c.unshare(&a).await.unwrap().stat, Stat::Granted);
    assert_eq!(c.share(&b).await.unwrap().stat, Stat::Granted);
    s.shutdown().await;
}

#[tokio::test]
async fn rpc_errors_are_answered_as_rfc_5531_says() {
    let s = server().await;
    let mut c = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let r = c.call_rpc(100_003, 3, 0, &[]).await.unwrap();
    assert_eq!(stat_of(&r.body), Some(&AcceptStat::ProgUnavail));
    let r = c.call_rpc(NLM_PROGRAM, 2, 0, &[]).await.unwrap();
    assert_eq!(
        stat_of(&r.body),
        Some(&AcceptStat::ProgMismatch { low: 1, high: 4 })
    );
    let r = c.call_rpc(NLM_PROGRAM, 4, 17, &[]).await.unwrap();
    assert_eq!(stat_of(&r.body), Some(&AcceptStat::ProcUnavail));
    let r = c.call_rpc(NLM_PROGRAM, 1, 20, &[]).await.unwrap();
    assert_eq!(
        stat_of(&r.body),
        Some(&AcceptStat::ProcUnavail),
        "SHARE is not in v1"
    );
    let r = c.call_rpc(NLM_PROGRAM, 4, 2, &[0, 0, 0]).await.unwrap();
    assert_eq!(stat_of(&r.body), Some(&AcceptStat::GarbageArgs));
    c.cred = Auth::Other {
        flavor: 6,
        body: vec![1, 2, 3, 4],
    };
    let r = c.call_rpc(NLM_PROGRAM, 4, 0, &[]).await.unwrap();
    assert_eq!(
        r.body,
        ReplyBody::Denied(RejectStat::AuthError(AuthStat::BadCred))
    );
    c.cred = Auth::None;
    // rpcvers 3.
    let mut rec = c.call_record(77, NLM_PROGRAM, 4, 0, &[]);
    rec[11] = 3;
    let mut framed = Vec::new();
    encode_record(&rec, &mut framed);
    c.send_raw(&framed).await.unwrap();
    let r = c.recv_reply().await.unwrap();
    assert_eq!(
        (r.xid, r.body),
        (
            77,
            ReplyBody::Denied(RejectStat::RpcMismatch { low: 2, high: 2 })
        )
    );
    c.null().await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn callers_outside_the_allowed_networks_get_auth_tooweak() {
    let s = server_with(|c| c.allow = vec!["10.0.0.0/8".parse().unwrap()]).await;
    let mut c = NlmClient::connect_udp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let r = c.call_rpc(NLM_PROGRAM, 4, 0, &[]).await.unwrap();
    assert_eq!(
        r.body,
        ReplyBody::Denied(RejectStat::AuthError(AuthStat::TooWeak))
    );
    s.shutdown().await;
}

#[tokio::test]
async fn an_oversized_record_closes_only_its_connection() {
    let s = server_with(|c| c.max_record_bytes = 1024).await;
    let mut bad = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let mut good = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    bad.send_raw(&[0x80, 0x10, 0, 0, 1, 2, 3, 4]).await.unwrap();
    assert!(bad.recv_reply().await.is_err(), "the connection is closed");
    good.null().await.unwrap();
    let l = lock_of("host-a", "fh", 1, 0, 1);
    assert_eq!(
        good.lock(&l, true, false).await.unwrap().stat,
        Stat::Granted
    );
    // Garbage that is not even an RPC header is dropped; the connection stays usable.
    let mut framed = Vec::new();
    encode_record(&[1, 2, 3], &mut framed);
    good.send_raw(&framed).await.unwrap();
    good.null().await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn a_retransmitted_udp_xid_is_replayed_not_rerun() {
    let s = server().await;
    let mut c = NlmClient::connect_udp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let l = lock_of("host-a", "fh", 1, 0, 1);
    let mut args = Vec::new();
    brlock_native::nlm::encode_call(
        NlmVersion::V4,
        &NlmCall::Lock(NlmClient::lock_args(&l, true, false)),
        &mut args,
    )
    .unwrap();
    let first = c
        .call_with_xid(4242, NLM_PROGRAM, 4, 2, &args)
        .await
        .unwrap();
    // Unlock, then retransmit the LOCK: the cached GRANTED comes back and nothing is locked again.
    assert_eq!(c.unlock(&l).await.unwrap().stat, Stat::Granted);
    let again = c
        .call_with_xid(4242, NLM_PROGRAM, 4, 2, &args)
        .await
        .unwrap();
    assert_eq!(first, again);
    let other = lock_of("host-b", "fh", 2, 0, 1);
    assert_eq!(c.test(&other, true).await.unwrap().stat, Stat::Granted);
    s.shutdown().await;
}

#[tokio::test]
async fn a_caller_binding_lasts_while_the_host_holds_something_and_is_then_forgotten() {
    let s = server_with(|c| c.unmonitor_idle = Duration::from_millis(100)).await;
    let mut home = NlmClient::connect_udp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let other = std::net::SocketAddr::new("127.0.0.2".parse().unwrap(), 0);
    let mut elsewhere = NlmClient::connect_udp_from(other, s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let l = lock_of("host-a", "fh", 1, 0, 1);
    let probe = lock_of("host-a", "fh", 1, 10, 1);
    assert_eq!(
        home.lock(&l, true, false).await.unwrap().stat,
        Stat::Granted
    );
    // Long past the idle time, the binding holds while host-a holds its lock. (A refused TEST
    // has no holder to name, so it says DENIED_NOLOCKS.)
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        elsewhere.test(&probe, true).await.unwrap().stat,
        Stat::DeniedNolocks
    );
    assert_eq!(home.unlock(&l).await.unwrap().stat, Stat::Granted);
    // Holding nothing and idle, host-a is forgotten: the name may now call from elsewhere.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let stat = elsewhere.test(&probe, true).await.unwrap().stat;
        if stat == Stat::Granted {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "binding never forgotten: {stat:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A request that leaves the name holding nothing binds it no longer than itself (issue 13,
    // row 7): it may call from home again ...
    assert_eq!(home.test(&probe, true).await.unwrap().stat, Stat::Granted);
    // ... while a lock binds it to the address the lock came from.
    assert_eq!(
        elsewhere.lock(&probe, true, false).await.unwrap().stat,
        Stat::Granted
    );
    assert_eq!(
        home.test(&probe, true).await.unwrap().stat,
        Stat::DeniedNolocks
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_caller_name_from_another_address_is_refused() {
    let s = server().await;
    let mut v4 = NlmClient::connect_udp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let l = lock_of("host-a", "fh", 1, 0, 1);
    assert_eq!(v4.lock(&l, true, false).await.unwrap().stat, Stat::Granted);
    // 127.0.0.2 is loopback too (allowed), but not where host-a first called from.
    let other = std::net::SocketAddr::new("127.0.0.2".parse().unwrap(), 0);
    let mut spoof = NlmClient::connect_udp_from(other, s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    assert_eq!(spoof.unlock(&l).await.unwrap().stat, Stat::Denied);
    assert_eq!(
        spoof
            .test(&lock_of("host-z", "fh", 9, 0, 1), true)
            .await
            .unwrap()
            .stat,
        Stat::Denied
    );
    s.shutdown().await;
}

#[tokio::test]
async fn granted_to_a_server_is_denied() {
    let s = server().await;
    let mut c = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let r = c
        .call(&NlmCall::Granted(TestArgs {
            cookie: b"c".to_vec(),
            exclusive: true,
            lock: lock_of("h", "fh", 1, 0, 1),
        }))
        .await
        .unwrap();
    assert_eq!(
        r,
        brlock_native::nlm::NlmReply::Res(Res {
            cookie: b"c".to_vec(),
            stat: Stat::Denied
        })
    );
    s.shutdown().await;
}

#[tokio::test]
async fn metrics_are_served_as_prometheus_text() {
    let s = server_with(|c| c.metrics = Some("127.0.0.1:0".parse().unwrap())).await;
    let mut c = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    c.lock(&lock_of("host-a", "fh", 1, 0, 1), true, false)
        .await
        .unwrap();
    let body = metrics_of(&s).await;
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("brlock_held_locks 1"), "{body}");
    assert!(
        body.contains("brlock_lock_replies_total{outcome=\"granted\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("brlock_rpc_requests_total{procedure=\"lock\",status=\"granted\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("brlock_rpc_request_duration_seconds_bucket"),
        "{body}"
    );
    s.shutdown().await;
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
#[tokio::test]
async fn the_file_handle_hook_refuses_stale_and_non_regular_handles() {
    let mut config = ServerConfig::for_tests();
    config.metrics = Some("127.0.0.1:0".parse().unwrap());
    let s = Server::start_with(config, Box::new(MemorySink), Arc::new(ExportTable))
        .await
        .expect("server starts");
    let mut holder = NlmClient::connect_tcp(s.local_addr(), NlmVersion::V4)
        .await
        .unwrap();
    let held = lock_of("host-b", "fh-regular", 2, 0, 100);
    assert_eq!(
        holder.lock(&held, true, false).await.unwrap().stat,
        Stat::Granted
    );
    for (version, stale, not_regular) in [
        (NlmVersion::V4, Stat::StaleFh, Stat::Failed),
        (NlmVersion::V3, Stat::DeniedNolocks, Stat::DeniedNolocks),
        (NlmVersion::V1, Stat::DeniedNolocks, Stat::DeniedNolocks),
    ] {
        let mut c = NlmClient::connect_tcp(s.local_addr(), version)
            .await
            .unwrap();
        for (fh, want) in [("stale-fh", stale), ("dir-fh", not_regular)] {
            let l = lock_of("host-a", fh, 1, 0, 10);
            let what = |proc: &str| format!("{version:?} {proc} on {fh}");
            assert_eq!(
                c.lock(&l, true, false).await.unwrap().stat,
                want,
                "{}",
                what("LOCK")
            );
            assert_eq!(
                c.lock(&l, true, true).await.unwrap().stat,
                want,
                "{}",
                what("blocking LOCK")
            );
            let t = c.test(&l, true).await.unwrap();
            assert_eq!((t.stat, t.holder), (want, None), "{}", what("TEST"));
            assert_eq!(c.unlock(&l).await.unwrap().stat, want, "{}", what("UNLOCK"));
            assert_eq!(
                c.cancel(&l, true, true).await.unwrap().stat,
                want,
                "{}",
                what("CANCEL")
            );
            if version != NlmVersion::V1 {
                let share = share_of("host-a", fh, ShareAccess::Read, ShareMode::DenyNone);
                assert_eq!(
                    c.share(&share).await.unwrap().stat,
                    want,
                    "{}",
                    what("SHARE")
                );
            }
        }
        // The same client on a regular file: served, and the held lock still conflicts. (In
        // v1/v3 the client pads the handle to 32 bytes: the v4 holder holds that one too.)
        let sized = brlock_native::nlm::fh_for(version, b"fh-regular");
        let sized = String::from_utf8(sized).unwrap();
        if version != NlmVersion::V4 {
            let held = lock_of("host-b", &sized, 2, 0, 100);
            let stat = holder.lock(&held, true, false).await.unwrap().stat;
            assert!(matches!(stat, Stat::Granted), "{stat:?}");
        }
        let regular = lock_of("host-a", &sized, 1, 50, 10);
        assert_eq!(
            c.lock(&regular, true, false).await.unwrap().stat,
            Stat::Denied,
            "{version:?} LOCK on a held regular file"
        );
        let free = lock_of("host-a", &sized, 1, 200, 10);
        assert_eq!(
            c.lock(&free, true, false).await.unwrap().stat,
            Stat::Granted,
            "{version:?} LOCK on a free range of a regular file"
        );
        assert_eq!(c.unlock(&free).await.unwrap().stat, Stat::Granted);
    }
    // No refused request reached the core: it holds only host-b's locks (on the v4 handle and
    // on the padded v1/v3 one) and queues nothing.
    let metrics = metrics_of(&s).await;
    for line in [
        "brlock_held_locks 2\n",
        "brlock_waiters 0\n",
        "brlock_files 2\n",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
    assert_eq!(holder.unlock(&held).await.unwrap().stat, Stat::Granted);
    s.shutdown().await;
}
