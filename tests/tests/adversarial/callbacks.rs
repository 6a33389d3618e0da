//! Rows 8 and 12: calls the server makes back to clients.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use brlock_native::nlm::{NlmCall, NlmProc, NlmVersion, Res, Stat, TestArgs};
use brlock_testkit::client::{NlmClient, Owner, TestOutcome, Transport};
use brlock_testkit::listener::ClientHost;
use brlock_tests::brlockd::Options;

use super::{Siege, fd_count};

/// Row 8: 2,000 TEST_MSG from 127.0.0.3 while the client's portmapper never answers. Every
/// `*_RES` needs a GETPORT that times out; they share one socket and at most
/// `--max-outbound-calls` are in flight, so the server's descriptors stay flat (it was one UDP
/// socket per pending `_RES`, until TCP clients starved).
#[test]
fn row8_res_calls_to_a_silent_portmapper_use_no_descriptor_each() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let siege = Siege::start_with(
        Options {
            portmap_port: Some(silent.local_addr().unwrap().port()),
            extra: ["--max-outbound-calls", "32", "--callback-timeout-ms", "2s"]
                .map(String::from)
                .to_vec(),
            ..Options::default()
        },
        Transport::Tcp,
    );
    let fds_before = fd_count(siege.pid);
    let from: SocketAddr = "127.0.0.3:0".parse().unwrap();
    let mut c = NlmClient::connect_udp_from(from, siege.addr(), NlmVersion::V4).unwrap();
    let asker = Owner::new("msg-host", 1, "asker");
    let mut most = fds_before;
    for i in 0..2000u32 {
        let call = NlmCall::TestMsg(TestArgs {
            cookie: i.to_be_bytes().to_vec(),
            exclusive: true,
            lock: asker.lock(b"msg-file", 0, 10),
        });
        // The void reply comes back at once; the TEST_RES goes to the silent portmapper's host.
        c.call(&call).unwrap();
        if i % 100 == 0 {
            most = most.max(fd_count(siege.pid));
        }
    }
    eprintln!(
        "row 8: 2,000 TEST_MSG to a silent portmapper; server fds {fds_before} → at most {most}"
    );
    assert!(
        most <= fds_before + 4,
        "descriptors grew with the pending _RES calls: {fds_before} → {most}"
    );
    siege.finish("row 8 (silent portmapper)", 24);
}

/// Row 12: a GRANTED_RES that refuses a grant, sent from another address with the grant's real
/// cookie (seen on the wire) or with guessed ones, does not undo it; the client's own
/// confirmation from its bound address does count.
#[test]
fn row12_forged_granted_res_cannot_undo_a_grant() {
    let host = ClientHost::spawn().unwrap();
    let siege = Siege::start_with(
        Options {
            portmap_port: Some(host.portmapper.port()),
            ..Options::default()
        },
        Transport::Tcp,
    );
    let addr = siege.addr();
    let fh = b"granted-file";
    let holder = Owner::new("holder-host", 1, "holder");
    let victim = Owner::new("victim-host", 7, "victim");
    let mut h = NlmClient::connect(Transport::Tcp, addr, NlmVersion::V4).unwrap();
    let mut v = NlmClient::connect(Transport::Udp, addr, NlmVersion::V4).unwrap();
    assert_eq!(
        h.lock(&holder, fh, true, 0, 10, false).unwrap(),
        Stat::Granted
    );
    // The victim asks the asynchronous way, so its grant comes as GRANTED_MSG.
    let args = v.lock_args(&victim, fh, true, 0, 10, true);
    v.call(&NlmCall::LockMsg(args)).unwrap();
    let (res, _) = host
        .listener
        .wait_for(Duration::from_secs(5), |c| matches!(c, NlmCall::LockRes(_)));
    assert!(res.is_some(), "no LOCK_RES");
    assert_eq!(h.unlock(&holder, fh, 0, 10).unwrap(), Stat::Granted);
    let (grant, _) = host.listener.wait_for(Duration::from_secs(5), |c| {
        matches!(c, NlmCall::GrantedMsg(_))
    });
    let Some(NlmCall::GrantedMsg(grant)) = grant.map(|r| r.call) else {
        panic!("no GRANTED_MSG")
    };
    assert_eq!(grant.cookie.len(), 16, "the core's keyed callback cookie");

    let from: SocketAddr = "127.0.0.2:0".parse().unwrap();
    let mut attacker = NlmClient::connect_udp_from(from, addr, NlmVersion::V4).unwrap();
    let refuse = |cookie: Vec<u8>| Res {
        cookie,
        stat: Stat::Denied,
    };
    attacker
        .res_call(NlmProc::GrantedRes, refuse(grant.cookie.clone()))
        .unwrap();
    for n in 0u64..64 {
        let guessed = [b"brlk".as_slice(), &n.to_be_bytes()].concat();
        attacker
            .res_call(NlmProc::GrantedRes, refuse(guessed))
            .unwrap();
    }
    let still_held = |h: &mut NlmClient| match h.test(&holder, fh, true, 0, 10).unwrap() {
        TestOutcome::Denied(who) => who.svid == victim.svid,
        _ => false,
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(still_held(&mut h), "a forged GRANTED_RES undid the grant");
    // The victim's own confirmation, from its bound address.
    v.res_call(
        NlmProc::GrantedRes,
        Res {
            cookie: grant.cookie.clone(),
            stat: Stat::Granted,
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(still_held(&mut h), "the confirmed grant was lost");
    siege.finish("row 12 (forged GRANTED_RES)", 16);
}
