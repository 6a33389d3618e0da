//! brlockd's dealings with the host's other RPC services: PMAPPROC_SET/UNSET of NLM v1, v3,
//! v4 (tcp and udp) with rpcbind at start and shutdown, SM_MON to statd on a client's first
//! monitored LOCK, and the statd reboot relay (NLM procedure 16, Linux lockd's private
//! SM_NOTIFY callback) freeing the rebooted client's locks.

use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brlock_native::nlm::{NLM_PROGRAM, NlmProc, NlmVersion, Stat};
use brlock_native::nsm::{
    Mon, NSM_PROGRAM, NSM_VERSION, NsmProc, RebootCallback, SmResult, SmStatRes,
};
use brlock_native::portmap::{IPPROTO_TCP, IPPROTO_UDP, Mapping, PmapProc};
use brlock_native::rpc::{AcceptStat, Reply};
use brlock_native::xdr::{decode_exact, encode_to_vec};
use brlock_tests::brlockd::{Brlockd, Options};
use brlock_tests::callback::{Handler, Portmapper, RpcServer};
use brlock_tests::client::{NlmClient, Owner, RpcClient, Transport, success_results};

use super::assert_still_serves;

const WAIT: Duration = Duration::from_secs(10);

/// Polls `f` until it returns `Some` or `within` passes.
fn wait_until<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sorted(mut v: Vec<(u32, u32, u32)>) -> Vec<(u32, u32, u32)> {
    v.sort_unstable();
    v
}

/// At start: SET (100021, v, tcp|udp, port) for v in 1, 3, 4. On SIGTERM: UNSET of every
/// version (UNSET ignores protocol and port), then exit 0.
#[test]
fn registers_with_rpcbind_and_unregisters_on_sigterm() {
    let rpcbind = Portmapper::spawn(0).unwrap();
    let mut server = Brlockd::start_with(Options {
        rpcbind: Some(format!("127.0.0.1:{}", rpcbind.port())),
        ..Options::default()
    });
    let port = u32::from(server.addr.port());

    let mut want_sets = Vec::new();
    for vers in [1, 3, 4] {
        for prot in [IPPROTO_TCP, IPPROTO_UDP] {
            want_sets.push((vers, prot, port));
        }
    }
    let want_sets = sorted(want_sets);
    let sets = |regs: &[(PmapProc, Mapping)]| {
        sorted(
            regs.iter()
                .filter(|(p, _)| *p == PmapProc::Set)
                .map(|(_, m)| {
                    assert_eq!(m.prog, NLM_PROGRAM, "SET of another program: {m:?}");
                    (m.vers, m.prot, m.port)
                })
                .collect(),
        )
    };
    let got = wait_until(WAIT, || {
        let regs = rpcbind.registrations();
        (sets(&regs) == want_sets).then_some(regs)
    });
    let regs = got.unwrap_or_else(|| {
        panic!(
            "expected SETs {want_sets:?}; the portmapper received {:?}",
            rpcbind.registrations()
        )
    });
    assert!(
        regs.iter().all(|(p, _)| *p == PmapProc::Set),
        "UNSET before shutdown: {regs:?}"
    );
    assert_still_serves(server.addr);

    let status = server.terminate(WAIT);
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "brlockd did not exit 0 within {WAIT:?} of SIGTERM: {status:?}"
    );
    let regs = rpcbind.registrations();
    let unsets: Vec<Mapping> = regs
        .iter()
        .filter(|(p, _)| *p == PmapProc::Unset)
        .map(|(_, m)| *m)
        .collect();
    for vers in [1, 3, 4] {
        assert!(
            unsets
                .iter()
                .any(|m| m.prog == NLM_PROGRAM && m.vers == vers),
            "no UNSET of NLM v{vers} at shutdown; the portmapper received {regs:?}"
        );
    }
    assert!(
        unsets.iter().all(|m| m.prog == NLM_PROGRAM),
        "UNSET of another program: {unsets:?}"
    );
    let first_unset = regs
        .iter()
        .position(|(p, _)| *p == PmapProc::Unset)
        .unwrap();
    assert!(
        regs[first_unset..]
            .iter()
            .all(|(p, _)| *p == PmapProc::Unset),
        "SET after the UNSETs: {regs:?}"
    );
}

/// A fake statd (NSM 100024 v1): answers SM_MON `stat_succ`, state 1, and reports each
/// monitored name; anything else is PROC_UNAVAIL.
fn fake_statd() -> (RpcServer, Receiver<Mon>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let handler: Arc<Handler> = Arc::new(move |_transport, header, args| {
        if header.program != NSM_PROGRAM {
            return Some(Reply::accepted(header.xid, AcceptStat::ProgUnavail));
        }
        if header.version != NSM_VERSION {
            return Some(Reply::accepted(
                header.xid,
                AcceptStat::ProgMismatch { low: 1, high: 1 },
            ));
        }
        match header.procedure {
            p if p == NsmProc::Null as u32 => Some(Reply::success(header.xid, Vec::new())),
            p if p == NsmProc::Mon as u32 => {
                let Ok(mon) = decode_exact::<Mon>(args) else {
                    return Some(Reply::accepted(header.xid, AcceptStat::GarbageArgs));
                };
                let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(mon);
                let res = SmStatRes {
                    result: SmResult::Success,
                    state: 1,
                };
                Some(Reply::success(
                    header.xid,
                    encode_to_vec(&res).expect("sm_stat_res encodes"),
                ))
            }
            _ => Some(Reply::accepted(header.xid, AcceptStat::ProcUnavail)),
        }
    });
    (RpcServer::spawn(handler).unwrap(), rx)
}

/// Sends NLM procedure 16 (`RebootCallback`) over UDP from 127.0.0.1, in the version and
/// procedure brlockd gave statd in SM_MON's `my_id`, and expects a void reply.
fn reboot_notice(server: SocketAddr, mon: &Mon, state: u32) {
    let notice = RebootCallback {
        mon_name: mon.mon_id.mon_name.clone(),
        state,
        private: mon.private,
    };
    let args = encode_to_vec(&notice).expect("reboot callback encodes");
    let mut rpc = RpcClient::connect(Transport::Udp, server).unwrap();
    let reply = rpc
        .call_raw(
            mon.mon_id.my_id.my_prog,
            mon.mon_id.my_id.my_vers,
            mon.mon_id.my_id.my_proc,
            &args,
        )
        .unwrap_or_else(|e| panic!("reboot notice (state {state}): {e}"));
    let results = success_results(reply).unwrap_or_else(|e| panic!("reboot notice: {e}"));
    assert!(
        results.is_empty(),
        "reboot notice answered non-void {results:02x?}"
    );
}

/// A monitored LOCK makes brlockd SM_MON the caller; statd's reboot relay (procedure 16) with
/// the same state is ignored, with a new state it frees the client's locks.
#[test]
fn statd_reboot_notice_frees_monitored_client_locks() {
    let (statd, monitored) = fake_statd();
    let server = Brlockd::start_with(Options {
        statd: Some(format!("127.0.0.1:{}", statd.port)),
        ..Options::default()
    });
    let fh = b"fh-reboot".to_vec();
    let a = Owner::new("rebooting-host", 1, "ownerA");
    let b = Owner::new("other-host", 2, "ownerB");
    let mut ca = NlmClient::connect(Transport::Udp, server.addr, NlmVersion::V4).unwrap();
    let mut cb = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();

    // A monitored LOCK (state 1, as `lock_args` sends).
    assert_eq!(
        ca.lock(&a, &fh, true, 0, 100, false).unwrap(),
        Stat::Granted
    );
    let mon = monitored
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("no SM_MON within {WAIT:?} after a monitored LOCK"));
    assert_eq!(
        mon.mon_id.mon_name, a.caller,
        "SM_MON for another name: {mon:?}"
    );
    assert_eq!(
        (mon.mon_id.my_id.my_prog, mon.mon_id.my_id.my_proc),
        (NLM_PROGRAM, NlmProc::NsmNotify as u32),
        "statd told to call back something else: {mon:?}"
    );
    assert_eq!(cb.lock(&b, &fh, true, 50, 10, false).unwrap(), Stat::Denied);

    // Same state as the LOCK carried: not a reboot, the lock stays.
    reboot_notice(server.addr, &mon, 1);
    assert_eq!(cb.lock(&b, &fh, true, 50, 10, false).unwrap(), Stat::Denied);

    // A new state: the host rebooted, its locks are gone.
    reboot_notice(server.addr, &mon, 3);
    assert_eq!(
        cb.lock(&b, &fh, true, 50, 10, false).unwrap(),
        Stat::Granted
    );

    assert_still_serves(server.addr);
}
