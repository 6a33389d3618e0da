//! Calls from brlockd to the client host: NLM_GRANTED for a blocked lock (resent while the
//! client's NLM service cannot be reached, undone when it never can), and the `*_RES` answers to
//! `*_MSG` calls. Each test runs a simulated client host ([`ClientHost`]: an NLM listener and a
//! portmapper that maps NLM to it) and points `--portmap-port` at it.

use std::time::Duration;

use brlock_native::nlm::{
    CancelArgs, NLM_PROGRAM, NlmCall, NlmProc, NlmVersion, Res, Stat, TestArgs, TestRes, UnlockArgs,
};
use brlock_native::portmap::Mapping;
use brlock_testkit::client::{NlmClient, Owner, TestOutcome, Transport};
use brlock_testkit::listener::{ClientHost, NlmListener, Received};
use brlock_testkit::portmapper::Portmapper;
use brlock_tests::brlockd::{Brlockd, DEAD_PORT, Options};

use super::{assert_still_serves, wait_until};

const WAIT: Duration = Duration::from_secs(10);

fn start(host: &ClientHost) -> Brlockd {
    Brlockd::start_with(Options {
        portmap_port: Some(host.portmapper.port()),
        ..Options::default()
    })
}

fn is_grant(call: &NlmCall) -> bool {
    matches!(call, NlmCall::Granted(_) | NlmCall::GrantedMsg(_))
}

fn granted_args(r: &Received) -> &TestArgs {
    match &r.call {
        NlmCall::Granted(a) | NlmCall::GrantedMsg(a) => a,
        other => panic!("not a grant: {other:?}"),
    }
}

/// BLOCKED now, NLM_GRANTED (or GRANTED_MSG) to the client's NLM port when the holder lets
/// go, naming exactly the lock that was asked for; the waiter then holds it.
fn blocked_lock_is_granted_by_callback(version: NlmVersion, transport: Transport) {
    let host = ClientHost::spawn().unwrap();
    let server = start(&host);
    host.listener.answer_granted_msg_to(server.addr);
    let fh = b"fh-callback".to_vec();
    let a = Owner::new("hostA", 1, "ownerA");
    let b = Owner::new("hostB", 7, "ownerB");
    let mut ca = NlmClient::connect(transport, server.addr, version).unwrap();
    let mut cb = NlmClient::connect(transport, server.addr, version).unwrap();

    assert_eq!(
        ca.lock(&a, &fh, true, 0, 100, false).unwrap(),
        Stat::Granted
    );
    assert_eq!(cb.lock(&b, &fh, true, 10, 20, true).unwrap(), Stat::Blocked);
    // Nothing is granted while A holds the range.
    let (early, _) = host.listener.wait_for(Duration::from_millis(300), is_grant);
    assert!(
        early.is_none(),
        "granted while the conflicting lock was held: {early:?}"
    );

    assert_eq!(ca.unlock(&a, &fh, 0, 100).unwrap(), Stat::Granted);
    let (grant, others) = host.listener.wait_for(WAIT, is_grant);
    let grant = grant.unwrap_or_else(|| {
        panic!(
            "no NLM_GRANTED within {WAIT:?} after the holder unlocked; portmapper queries: {:?}; \
             other calls: {others:?}",
            host.portmapper.queries()
        )
    });
    let args = granted_args(&grant);
    assert_eq!(
        grant.version, version as u32,
        "callback in another NLM version"
    );
    assert!(args.exclusive);
    // brlockd's own cookie (the core's keyed callback cookie), as Linux lockd sends its own.
    assert_eq!(
        args.cookie.len(),
        brlock_core::COOKIE_LEN,
        "GRANTED with a cookie not brlockd's: {:02x?}",
        args.cookie
    );
    // The client matches a grant to its waiter by fh, oh, svid and range; caller_name is
    // the server's own name there (Linux lockd sends utsname()->nodename).
    let want = b.lock(&fh, 10, 20);
    assert_eq!(
        (
            &args.lock.fh,
            &args.lock.oh,
            args.lock.svid,
            args.lock.offset,
            args.lock.len
        ),
        (
            &brlock_native::nlm::fh_for(version, &want.fh),
            &want.oh,
            want.svid,
            want.offset,
            want.len
        ),
        "GRANTED names another lock: {:?}",
        args.lock
    );

    // The callback was found through the portmapper, asking for NLM.
    let queries = host.portmapper.queries();
    assert!(
        queries
            .iter()
            .any(|(_, m): &(Transport, Mapping)| m.prog == 100_021),
        "no GETPORT for NLM: {queries:?}"
    );

    // B now holds the range: A sees B as the holder.
    match ca.test(&a, &fh, true, 0, 100).unwrap() {
        TestOutcome::Denied(h) => {
            assert_eq!((h.svid, h.offset, h.len, h.exclusive), (7, 10, 20, true));
            assert_eq!(h.oh, b"ownerB");
        }
        other => panic!("after the grant, TEST by the old holder said {other:?}"),
    }
    assert_still_serves(server.addr);
}

#[test]
fn blocked_lock_granted_by_callback_v4_tcp() {
    blocked_lock_is_granted_by_callback(NlmVersion::V4, Transport::Tcp);
}

#[test]
fn blocked_lock_granted_by_callback_v4_udp() {
    blocked_lock_is_granted_by_callback(NlmVersion::V4, Transport::Udp);
}

#[test]
fn blocked_lock_granted_by_callback_v3_tcp() {
    blocked_lock_is_granted_by_callback(NlmVersion::V3, Transport::Tcp);
}

#[test]
fn blocked_lock_granted_by_callback_v1_udp() {
    blocked_lock_is_granted_by_callback(NlmVersion::V1, Transport::Udp);
}

/// A cancelled waiter is never called back, even when the range becomes free.
#[test]
fn cancelled_waiter_gets_no_callback() {
    let host = ClientHost::spawn().unwrap();
    let server = start(&host);
    let fh = b"fh-cancel".to_vec();
    let a = Owner::new("hostA", 1, "ownerA");
    let b = Owner::new("hostB", 7, "ownerB");
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    assert_eq!(c.lock(&a, &fh, true, 0, 0, false).unwrap(), Stat::Granted);
    assert_eq!(c.lock(&b, &fh, false, 5, 5, true).unwrap(), Stat::Blocked);
    assert_eq!(c.cancel(&b, &fh, false, 5, 5, true).unwrap(), Stat::Granted);
    assert_eq!(c.unlock(&a, &fh, 0, 0).unwrap(), Stat::Granted);
    let (grant, _) = host.listener.wait_for(Duration::from_secs(1), is_grant);
    assert!(
        grant.is_none(),
        "a cancelled request was granted: {grant:?}"
    );
    assert_eq!(c.test(&a, &fh, true, 0, 0).unwrap(), TestOutcome::Granted);
}

/// GRANTED_RES (the asynchronous answer to GRANTED_MSG) is accepted with a void reply,
/// whether or not a grant is outstanding, and the waiter keeps its lock.
#[test]
fn granted_res_is_accepted() {
    let host = ClientHost::spawn().unwrap();
    let server = start(&host);
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    let res = Res {
        cookie: b"no-such-grant".to_vec(),
        stat: Stat::Granted,
    };
    c.res_call(NlmProc::GrantedRes, res)
        .expect("GRANTED_RES with an unknown cookie");

    // A real grant, answered the asynchronous way if the server used GRANTED_MSG.
    host.listener.answer_granted_msg_to(server.addr);
    let fh = b"fh-granted-res".to_vec();
    let a = Owner::new("hostA", 1, "ownerA");
    let b = Owner::new("hostB", 7, "ownerB");
    assert_eq!(c.lock(&a, &fh, true, 0, 10, false).unwrap(), Stat::Granted);
    assert_eq!(c.lock(&b, &fh, true, 0, 10, true).unwrap(), Stat::Blocked);
    assert_eq!(c.unlock(&a, &fh, 0, 10).unwrap(), Stat::Granted);
    let (grant, _) = host.listener.wait_for(WAIT, is_grant);
    let grant = grant.expect("no grant callback");
    let cookie = granted_args(&grant).cookie.clone();
    c.res_call(
        NlmProc::GrantedRes,
        Res {
            cookie,
            stat: Stat::Granted,
        },
    )
    .expect("GRANTED_RES for the grant just received");
    match c.test(&a, &fh, true, 0, 10).unwrap() {
        TestOutcome::Denied(h) => assert_eq!(h.svid, 7),
        other => panic!("the granted waiter lost its lock after GRANTED_RES: {other:?}"),
    }
    assert_still_serves(server.addr);
}

fn res_of(r: &Received) -> Option<(NlmProc, Res)> {
    match &r.call {
        NlmCall::LockRes(res) => Some((NlmProc::LockRes, res.clone())),
        NlmCall::UnlockRes(res) => Some((NlmProc::UnlockRes, res.clone())),
        NlmCall::CancelRes(res) => Some((NlmProc::CancelRes, res.clone())),
        _ => None,
    }
}

/// `*_MSG` calls are answered by `*_RES` calls to the client's NLM port, carrying the
/// request's cookie and the status the synchronous procedure would have given.
fn msg_answered_by_res(transport: Transport) {
    let host = ClientHost::spawn().unwrap();
    let server = start(&host);
    let fh = b"fh-msg".to_vec();
    let a = Owner::new("hostA", 1, "ownerA");
    let b = Owner::new("hostB", 7, "ownerB");
    let mut c = NlmClient::connect(transport, server.addr, NlmVersion::V4).unwrap();

    let expect_res = |what: &str, want: NlmProc, cookie: &[u8], stat: Stat| {
        let (got, others) = host
            .listener
            .wait_for(WAIT, |call| call.procedure() == want);
        let got = got.unwrap_or_else(|| {
            panic!("{what}: no {want:?} within {WAIT:?}; other calls: {others:?}")
        });
        let (_, res) = res_of(&got).expect("a *_RES");
        assert_eq!(res.cookie, cookie, "{what}: {want:?} with another cookie");
        assert_eq!(res.stat, stat, "{what}: {want:?} status");
    };

    // LOCK_MSG → LOCK_RES granted
    let args = c.lock_args(&a, &fh, true, 0, 100, false);
    let cookie = args.cookie.clone();
    c.send(&NlmCall::LockMsg(args)).unwrap();
    expect_res("LOCK_MSG", NlmProc::LockRes, &cookie, Stat::Granted);

    // TEST_MSG → TEST_RES denied with the holder
    let cookie = c.cookie();
    c.send(&NlmCall::TestMsg(TestArgs {
        cookie: cookie.clone(),
        exclusive: true,
        lock: b.lock(&fh, 50, 1),
    }))
    .unwrap();
    let (got, others) = host
        .listener
        .wait_for(WAIT, |call| matches!(call, NlmCall::TestRes(_)));
    match got.map(|r| r.call) {
        Some(NlmCall::TestRes(TestRes {
            cookie: c2,
            stat: Stat::Denied,
            holder: Some(h),
        })) => {
            assert_eq!(c2, cookie);
            assert_eq!((h.svid, h.offset, h.len), (1, 0, 100));
        }
        other => panic!(
            "TEST_MSG: expected TEST_RES denied with holder, got {other:?} (others {others:?})"
        ),
    }

    // LOCK_MSG with block → LOCK_RES blocked; CANCEL_MSG → CANCEL_RES granted
    let args = c.lock_args(&b, &fh, true, 50, 10, true);
    let cookie = args.cookie.clone();
    c.send(&NlmCall::LockMsg(args)).unwrap();
    expect_res(
        "blocking LOCK_MSG",
        NlmProc::LockRes,
        &cookie,
        Stat::Blocked,
    );
    let cookie = c.cookie();
    c.send(&NlmCall::CancelMsg(CancelArgs {
        cookie: cookie.clone(),
        block: true,
        exclusive: true,
        lock: b.lock(&fh, 50, 10),
    }))
    .unwrap();
    expect_res("CANCEL_MSG", NlmProc::CancelRes, &cookie, Stat::Granted);

    // UNLOCK_MSG → UNLOCK_RES granted
    let cookie = c.cookie();
    c.send(&NlmCall::UnlockMsg(UnlockArgs {
        cookie: cookie.clone(),
        lock: a.lock(&fh, 0, 100),
    }))
    .unwrap();
    expect_res("UNLOCK_MSG", NlmProc::UnlockRes, &cookie, Stat::Granted);

    // The cancelled waiter was not granted; the range is free.
    let mut fresh = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    assert_eq!(
        fresh.test(&a, &fh, true, 0, 0).unwrap(),
        TestOutcome::Granted
    );
    assert_still_serves(server.addr);
}

#[test]
fn msg_calls_answered_by_res_calls_udp() {
    msg_answered_by_res(Transport::Udp);
}

#[test]
fn msg_calls_answered_by_res_calls_tcp() {
    msg_answered_by_res(Transport::Tcp);
}

/// brlockd whose GRANTED goes out `attempts` times in all, `retry_ms` apart, before the grant is
/// undone (the brlock profile's 3 sends 2 s apart, with its 10 s deadline still over them).
fn start_retrying(portmapper: &Portmapper, attempts: u32, retry_ms: u64) -> Brlockd {
    Brlockd::start_with(Options {
        portmap_port: Some(portmapper.port()),
        extra: vec![
            "--callback-attempts".into(),
            attempts.to_string(),
            "--callback-retry-ms".into(),
            retry_ms.to_string(),
        ],
        ..Options::default()
    })
}

/// GETPORTs for NLM: brlockd asks once per GRANTED it sends.
fn nlm_getports(portmapper: &Portmapper) -> usize {
    portmapper
        .queries()
        .iter()
        .filter(|(_, m)| m.prog == NLM_PROGRAM)
        .count()
}

/// The holder of `fh`'s bytes 0..100 as `who` sees it: the holder's svid, or None when free.
fn holder_svid(c: &mut NlmClient, who: &Owner, fh: &[u8]) -> Option<u32> {
    match c.test(who, fh, true, 0, 100).unwrap() {
        TestOutcome::Granted => None,
        TestOutcome::Denied(h) => Some(h.svid),
        other => panic!("TEST answered {other:?}"),
    }
}

/// The client host's lockd is down when its blocked lock is granted (its portmapper names a port
/// where nothing listens): the GRANTED fails, is sent again `--callback-retry-ms` later, and
/// reaches the listener once that is up; the waiter keeps the lock.
#[test]
fn granted_is_resent_until_the_clients_nlm_listener_is_up() {
    let portmapper = Portmapper::spawn(DEAD_PORT).unwrap();
    let server = start_retrying(&portmapper, 20, 300);
    let fh = b"fh-late-listener".to_vec();
    let a = Owner::new("hostA", 1, "ownerA");
    let b = Owner::new("hostB", 7, "ownerB");
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    assert_eq!(c.lock(&a, &fh, true, 0, 100, false).unwrap(), Stat::Granted);
    assert_eq!(c.lock(&b, &fh, true, 10, 20, true).unwrap(), Stat::Blocked);
    assert_eq!(c.unlock(&a, &fh, 0, 100).unwrap(), Stat::Granted);
    assert!(
        server.log_contains("GRANTED callback failed", WAIT),
        "the first GRANTED, to a port where nothing listens, did not fail"
    );

    let listener = NlmListener::spawn().unwrap();
    portmapper.map_nlm_to(listener.port());
    let (grant, others) = listener.wait_for(WAIT, is_grant);
    let grant = grant.unwrap_or_else(|| {
        panic!(
            "no GRANTED within {WAIT:?} of the listener coming up; GETPORTs: {}; other calls: \
             {others:?}",
            nlm_getports(&portmapper)
        )
    });
    let args = granted_args(&grant);
    assert_eq!(
        (args.lock.svid, args.lock.offset, args.lock.len),
        (7, 10, 20),
        "GRANTED names another lock: {:?}",
        args.lock
    );
    assert!(
        nlm_getports(&portmapper) >= 2,
        "the GRANTED that arrived was not a resend"
    );
    assert!(
        server.log_contains("GRANTED delivered on a retry", WAIT),
        "no log line for the delivered retry"
    );
    // Delivered: B keeps the range, past the point where more resends would have gone out.
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(holder_svid(&mut c, &a, &fh), Some(7));
    let (again, _) = listener.wait_for(Duration::from_millis(100), is_grant);
    assert!(
        again.is_none(),
        "GRANTED sent again after delivery: {again:?}"
    );
    assert_still_serves(server.addr);
}

/// When the client host's lockd never comes up, GRANTED goes out `--callback-attempts` times
/// and the grant is then undone: the waiter is dropped and a third host can take the range.
#[test]
fn a_grant_the_client_never_hears_of_is_released_after_the_last_attempt() {
    let portmapper = Portmapper::spawn(DEAD_PORT).unwrap();
    let server = start_retrying(&portmapper, 3, 1000);
    let fh = b"fh-no-listener".to_vec();
    let a = Owner::new("hostA", 1, "ownerA");
    let b = Owner::new("hostB", 7, "ownerB");
    let third = Owner::new("hostC", 9, "ownerC");
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    assert_eq!(c.lock(&a, &fh, true, 0, 100, false).unwrap(), Stat::Granted);
    assert_eq!(c.lock(&b, &fh, true, 10, 20, true).unwrap(), Stat::Blocked);
    assert_eq!(c.unlock(&a, &fh, 0, 100).unwrap(), Stat::Granted);

    // While GRANTED is being resent, the range is B's.
    assert_eq!(holder_svid(&mut c, &third, &fh), Some(7));
    let freed = wait_until(WAIT, || {
        holder_svid(&mut c, &third, &fh).is_none().then_some(())
    });
    assert!(
        freed.is_some(),
        "B still holds the range {WAIT:?} after its grant; GETPORTs: {}",
        nlm_getports(&portmapper)
    );
    assert_eq!(
        nlm_getports(&portmapper),
        3,
        "expected one GETPORT per GRANTED sent, 3 in all"
    );
    assert!(server.log_contains("attempt=3", WAIT));
    assert_eq!(
        c.lock(&third, &fh, true, 0, 100, false).unwrap(),
        Stat::Granted
    );
    assert_still_serves(server.addr);
}

/// Every `--blocking-timeout-ms` up to u64::MAX is accepted; one too long for the OS clock makes a
/// waiter that never expires, not a core task that fails to arm its timer: the waiter still gets
/// its grant, and other requests are still decided.
#[test]
fn a_blocking_timeout_past_the_clock_never_fires() {
    let host = ClientHost::spawn().unwrap();
    let server = Brlockd::start_with(Options {
        portmap_port: Some(host.portmapper.port()),
        extra: vec!["--blocking-timeout-ms".into(), u64::MAX.to_string()],
        ..Options::default()
    });
    let fh = b"fh-far-timeout".to_vec();
    let a = Owner::new("hostA", 1, "ownerA");
    let b = Owner::new("hostB", 2, "ownerB");
    let mut ca = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    let mut cb = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    assert_eq!(ca.lock(&a, &fh, true, 0, 10, false).unwrap(), Stat::Granted);
    assert_eq!(cb.lock(&b, &fh, true, 0, 10, true).unwrap(), Stat::Blocked);
    // The core task still decides (NULL alone would not show it: intake answers NULL).
    assert_eq!(
        ca.lock(&a, b"fh-elsewhere", true, 0, 1, false).unwrap(),
        Stat::Granted
    );
    assert_eq!(ca.unlock(&a, &fh, 0, 10).unwrap(), Stat::Granted);
    let (grant, _) = host.listener.wait_for(WAIT, is_grant);
    assert!(grant.is_some(), "the waiter was not granted");
}
