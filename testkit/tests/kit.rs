//! The kit's peers against its own client: what brlockd would see of them.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use brlock_testkit::client::{NlmClient, Owner, RpcClient, Transport, success_results};
use brlock_testkit::http::metric_value;
use brlock_testkit::listener::ClientHost;
use brlock_testkit::portmapper::Portmapper;
use brlock_testkit::rpc_server::CALLS_KEPT;
use brlock_testkit::socket::connect_small_buffered;
use brlock_wire::nlm::{NLM_PROGRAM, NlmCall, NlmReply, NlmVersion, Res, Stat, TestArgs};
use brlock_wire::nsm::NSM_PROGRAM;
use brlock_wire::portmap::{IPPROTO_TCP, IPPROTO_UDP, Mapping, PMAP_PROGRAM, PmapProc};
use brlock_wire::rpc::{AcceptStat, ReplyBody};
use brlock_wire::xdr::{decode_exact, encode_to_vec};

fn getport(c: &mut RpcClient, prog: u32, prot: u32) -> u32 {
    let args = encode_to_vec(&Mapping {
        prog,
        vers: 4,
        prot,
        port: 0,
    })
    .unwrap();
    let reply = c
        .call_raw(PMAP_PROGRAM, 2, PmapProc::Getport as u32, &args)
        .unwrap();
    decode_exact::<u32>(&success_results(reply).unwrap()).unwrap()
}

#[test]
fn the_portmapper_answers_getport_with_the_ports_a_test_set_and_records_what_it_was_asked() {
    let pmap = Portmapper::spawn(4045).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], pmap.port()));
    for transport in Transport::ALL {
        let mut c = RpcClient::connect(transport, addr).unwrap();
        assert_eq!(getport(&mut c, NLM_PROGRAM, IPPROTO_UDP), 4045);
        assert_eq!(getport(&mut c, NSM_PROGRAM, IPPROTO_TCP), 0, "no statd yet");
        pmap.map_nsm_to(662);
        assert_eq!(getport(&mut c, NSM_PROGRAM, IPPROTO_TCP), 662);
        pmap.map_nsm_to(0);
    }
    assert_eq!(pmap.queries().len(), 6);
    assert_eq!(pmap.queries()[3].0, Transport::Udp);

    let mut c = RpcClient::connect(Transport::Udp, addr).unwrap();
    let set = Mapping {
        prog: NLM_PROGRAM,
        vers: 4,
        prot: IPPROTO_TCP,
        port: 0x1234,
    };
    let reply = c
        .call_raw(
            PMAP_PROGRAM,
            2,
            PmapProc::Set as u32,
            &encode_to_vec(&set).unwrap(),
        )
        .unwrap();
    assert_eq!(
        success_results(reply).unwrap(),
        encode_to_vec(&true).unwrap()
    );
    assert_eq!(pmap.changes(), [("set", NLM_PROGRAM, 4)]);
    assert_eq!(
        pmap.table()
            .get(&(NLM_PROGRAM, 4, "tcp"))
            .map(String::as_str),
        Some("0.0.0.0.18.52")
    );
    let other = c.call_raw(100_003, 3, 0, &[]).unwrap();
    assert!(matches!(
        other.body,
        ReplyBody::Accepted {
            stat: AcceptStat::ProgUnavail,
            ..
        }
    ));
}

#[test]
fn the_listener_answers_granted_with_its_cookie_and_keeps_the_call() {
    let host = ClientHost::spawn().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], host.listener.port()));
    for (transport, version) in [
        (Transport::Tcp, NlmVersion::V4),
        (Transport::Udp, NlmVersion::V1),
    ] {
        let mut c = NlmClient::connect(transport, addr, version).unwrap();
        let lock = Owner::new("server", 7, "oh").lock(b"fh", 10, 20);
        let granted = NlmCall::Granted(TestArgs {
            cookie: b"grant-1".to_vec(),
            exclusive: true,
            lock,
        });
        assert_eq!(
            c.call(&granted).unwrap(),
            NlmReply::Res(Res {
                cookie: b"grant-1".to_vec(),
                stat: Stat::Granted
            })
        );
        let (got, others) = host
            .listener
            .wait_for(Duration::from_secs(5), |c| matches!(c, NlmCall::Granted(_)));
        let got = got.unwrap();
        assert!(others.is_empty(), "{others:?}");
        assert_eq!((got.transport, got.version), (transport, version as u32));
        let NlmCall::Granted(args) = got.call else {
            unreachable!()
        };
        assert_eq!(
            (args.lock.svid, args.lock.offset, args.lock.len),
            (7, 10, 20)
        );
    }
}

/// A caller that never stops is answered throughout, but the listener keeps only the first
/// `CALLS_KEPT` calls its test has not read.
#[test]
fn the_listener_keeps_at_most_calls_kept_calls() {
    let host = ClientHost::spawn().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], host.listener.port()));
    let mut c = NlmClient::connect(Transport::Tcp, addr, NlmVersion::V4).unwrap();
    for _ in 0..CALLS_KEPT + 10 {
        c.null().unwrap();
    }
    let mut kept = 0;
    while host
        .listener
        .next_call(Duration::from_millis(200))
        .is_some()
    {
        kept += 1;
    }
    assert_eq!(kept, CALLS_KEPT);
}

#[test]
fn a_small_buffered_connection_connects_and_says_so_for_ipv6() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = connect_small_buffered(listener.local_addr().unwrap(), 4096).unwrap();
    let (_, peer) = listener.accept().unwrap();
    assert_eq!(peer, stream.local_addr().unwrap());
    let v6 = "[::1]:9".parse().unwrap();
    assert_eq!(
        connect_small_buffered(v6, 4096).unwrap_err().kind(),
        std::io::ErrorKind::Unsupported
    );
}

#[test]
fn a_metric_sample_is_found_by_its_exact_name_and_labels() {
    let page = "# TYPE brlock_held_locks gauge\nbrlock_held_locks 3\n\
                brlock_store_failures_total{kind=\"error\"} 2\nbrlock_held_locks_max 9\n";
    assert_eq!(metric_value(page, "brlock_held_locks"), Some(3.0));
    assert_eq!(
        metric_value(page, r#"brlock_store_failures_total{kind="error"}"#),
        Some(2.0)
    );
    assert_eq!(metric_value(page, "brlock_store_failures_total"), None);
}
