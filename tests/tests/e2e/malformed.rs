//! Bad input gets the answer RFC 5531 prescribes (or, when nothing can be answered, none),
//! and the server keeps serving: every test ends with a NULL call on a new connection.

use std::time::Duration;

use brlock_native::nlm::{self, LockArgs, NLM_PROGRAM, NlmCall, NlmProc, NlmVersion};
use brlock_native::rpc::{AcceptStat, Auth, AuthStat, RejectStat, Reply, ReplyBody, encode_record};
use brlock_native::xdr::XdrWriter;
use brlock_testkit::client::{NlmClient, Owner, RpcClient, Transport};
use brlock_tests::brlockd::{Brlockd, Options};

use super::assert_still_serves;

fn accept_stat(reply: &Reply) -> &AcceptStat {
    match &reply.body {
        ReplyBody::Accepted { stat, .. } => stat,
        other => panic!("expected MSG_ACCEPTED, got {other:?}"),
    }
}

/// Encoded LOCK v4 arguments with an arbitrary (unchecked) fh length.
fn lock_args_with_fh(fh: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = XdrWriter::new(&mut out);
    w.put_opaque(b"cookie", 1024).unwrap();
    w.put_bool(false); // block
    w.put_bool(true); // exclusive
    w.put_string(b"hostA", 1024).unwrap();
    w.put_opaque(fh, u32::MAX).unwrap();
    w.put_opaque(b"ownerA", 1024).unwrap();
    w.put_u32(1); // svid
    w.put_u64(0);
    w.put_u64(10);
    w.put_bool(false); // reclaim
    w.put_u32(1); // state
    out
}

fn valid_lock_args() -> Vec<u8> {
    let owner = Owner::new("hostA", 1, "ownerA");
    let call = NlmCall::Lock(LockArgs {
        cookie: b"cookie".to_vec(),
        block: false,
        exclusive: true,
        lock: owner.lock(b"fh-garbage", 0, 10),
        reclaim: false,
        state: 1,
    });
    let mut args = Vec::new();
    nlm::encode_call(NlmVersion::V4, &call, &mut args).unwrap();
    args
}

#[test]
fn truncated_arguments_are_garbage_args() {
    let server = Brlockd::start();
    let args = valid_lock_args();
    for transport in Transport::ALL {
        let mut c = RpcClient::connect(transport, server.addr).unwrap();
        for cut in [4, 8, args.len() / 2, args.len() - 4] {
            let reply = c
                .call_raw(
                    NLM_PROGRAM,
                    4,
                    NlmProc::Lock as u32,
                    &args[..args.len() - cut],
                )
                .unwrap_or_else(|e| panic!("LOCK cut by {cut} bytes over {transport:?}: {e}"));
            assert_eq!(
                accept_stat(&reply),
                &AcceptStat::GarbageArgs,
                "cut by {cut}"
            );
        }
        // Trailing bytes after complete arguments are garbage too.
        let mut long = args.clone();
        long.extend_from_slice(&[0, 0, 0, 0]);
        let reply = c
            .call_raw(NLM_PROGRAM, 4, NlmProc::Lock as u32, &long)
            .unwrap();
        assert_eq!(
            accept_stat(&reply),
            &AcceptStat::GarbageArgs,
            "4 trailing bytes"
        );
    }
    assert_still_serves(server.addr);
}

#[test]
fn netobj_over_1024_bytes_is_garbage_args() {
    let server = Brlockd::start();
    for transport in Transport::ALL {
        let mut c = RpcClient::connect(transport, server.addr).unwrap();
        let ok = c
            .call_raw(
                NLM_PROGRAM,
                4,
                NlmProc::Lock as u32,
                &lock_args_with_fh(&[7; 128]),
            )
            .unwrap();
        assert!(
            matches!(accept_stat(&ok), AcceptStat::Success { .. }),
            "a 128-byte fh is allowed in v4: {ok:?}"
        );
        // Linux lockd's limit (NFS_MAXFHSIZE) and XNFS's netobj limit are both refused.
        for len in [129, 1024] {
            let reply = c
                .call_raw(
                    NLM_PROGRAM,
                    4,
                    NlmProc::Lock as u32,
                    &lock_args_with_fh(&vec![7; len]),
                )
                .unwrap();
            assert_eq!(
                accept_stat(&reply),
                &AcceptStat::GarbageArgs,
                "{len}-byte fh"
            );
        }
        let reply = c
            .call_raw(
                NLM_PROGRAM,
                4,
                NlmProc::Lock as u32,
                &lock_args_with_fh(&[7; 1025]),
            )
            .unwrap();
        assert_eq!(accept_stat(&reply), &AcceptStat::GarbageArgs);
    }
    assert_still_serves(server.addr);
}

/// Programs brlockd does not serve on its port: NSM (100024) only with `--nsm builtin`.
#[test]
fn wrong_program_is_prog_unavail() {
    let server = Brlockd::start_with(Options {
        extra: vec!["--nsm".into(), "none".into()],
        ..Options::default()
    });
    for transport in Transport::ALL {
        let mut c = RpcClient::connect(transport, server.addr).unwrap();
        for program in [100_099, 100_024, 100_003, 100_000] {
            let reply = c.call_raw(program, 1, 0, &[]).unwrap();
            assert_eq!(
                accept_stat(&reply),
                &AcceptStat::ProgUnavail,
                "program {program}"
            );
        }
    }
    assert_still_serves(server.addr);
}

#[test]
fn wrong_version_is_prog_mismatch() {
    let server = Brlockd::start();
    for transport in Transport::ALL {
        let mut c = RpcClient::connect(transport, server.addr).unwrap();
        for version in [0, 2, 5, u32::MAX] {
            let reply = c.call_raw(NLM_PROGRAM, version, 0, &[]).unwrap();
            assert_eq!(
                accept_stat(&reply),
                &AcceptStat::ProgMismatch { low: 1, high: 4 },
                "NLM version {version}"
            );
        }
    }
    assert_still_serves(server.addr);
}

#[test]
fn unknown_procedure_is_proc_unavail() {
    let server = Brlockd::start();
    for transport in Transport::ALL {
        let mut c = RpcClient::connect(transport, server.addr).unwrap();
        // 17–19 were never assigned; 24+ do not exist; SHARE (20) and FREE_ALL (23) are
        // not in v1.
        for (version, procedure) in [(4, 17), (4, 19), (4, 24), (3, 1000), (1, 20), (1, 23)] {
            let reply = c.call_raw(NLM_PROGRAM, version, procedure, &[]).unwrap();
            assert_eq!(
                accept_stat(&reply),
                &AcceptStat::ProcUnavail,
                "NLM v{version} procedure {procedure}"
            );
        }
    }
    assert_still_serves(server.addr);
}

#[test]
fn rpc_version_3_is_rpc_mismatch() {
    let server = Brlockd::start();
    for transport in Transport::ALL {
        let mut c = RpcClient::connect(transport, server.addr).unwrap();
        let (xid, mut msg) = c.encode(NLM_PROGRAM, 4, 0, &[]);
        msg[8..12].copy_from_slice(&3u32.to_be_bytes());
        let reply = c.exchange(xid, &msg).unwrap();
        assert_eq!(
            reply.body,
            ReplyBody::Denied(RejectStat::RpcMismatch { low: 2, high: 2 })
        );
    }
    assert_still_serves(server.addr);
}

#[test]
fn unsupported_auth_flavour_is_auth_error() {
    let server = Brlockd::start();
    for transport in Transport::ALL {
        let mut c = RpcClient::connect(transport, server.addr).unwrap();
        // RPCSEC_GSS (6) and AUTH_DH (3): neither is served.
        for flavor in [6, 3] {
            c.cred = Auth::Other {
                flavor,
                body: vec![0, 0, 0, 1, 0, 0, 0, 0],
            };
            let reply = c.call_raw(NLM_PROGRAM, 4, 0, &[]).unwrap();
            match reply.body {
                ReplyBody::Denied(RejectStat::AuthError(
                    AuthStat::BadCred | AuthStat::RejectedCred | AuthStat::TooWeak,
                )) => {}
                other => panic!("credential flavour {flavor} over {transport:?}: {other:?}"),
            }
        }
    }
    assert_still_serves(server.addr);
}

#[test]
fn oversized_tcp_record_closes_that_connection() {
    let server = Brlockd::start();
    let mut bystander = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    let mut c = RpcClient::connect(Transport::Tcp, server.addr).unwrap();
    // A last fragment claiming 2 GiB - 1, then the start of its body.
    let mut bytes = 0xffff_ffffu32.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 4096]);
    let _ = c.send_bytes(&bytes);
    assert!(
        c.wait_closed(Duration::from_secs(5)).unwrap(),
        "the server kept a connection open after a 2 GiB record header"
    );
    // Many small fragments adding up past any sane limit: 64 MiB in 64 KiB pieces.
    let mut c = RpcClient::connect(Transport::Tcp, server.addr).unwrap();
    let mut fragment = (64u32 * 1024).to_be_bytes().to_vec();
    fragment.extend_from_slice(&vec![0u8; 64 * 1024]);
    let mut closed = false;
    for _ in 0..1024 {
        if c.send_bytes(&fragment).is_err() {
            closed = true;
            break;
        }
    }
    assert!(
        closed || c.wait_closed(Duration::from_secs(5)).unwrap(),
        "the server kept a connection open after 64 MiB of non-final fragments"
    );
    // Other connections are unaffected.
    bystander
        .null()
        .expect("an existing connection stopped working");
    assert_still_serves(server.addr);
}

#[test]
fn fragmented_record_is_reassembled() {
    let server = Brlockd::start();
    let mut c = RpcClient::connect(Transport::Tcp, server.addr).unwrap();
    let (xid, msg) = c.encode(NLM_PROGRAM, 4, 0, &[]);
    let mut framed = Vec::new();
    brlock_native::rpc::record::encode_record_fragmented(&msg, 5, &mut framed);
    // Byte by byte, so the server sees every possible split.
    for b in &framed {
        c.send_bytes(std::slice::from_ref(b)).unwrap();
    }
    let record = c.recv_record().unwrap();
    let reply = brlock_native::rpc::decode_reply(&record).unwrap();
    assert_eq!(reply.xid, xid);
    assert!(matches!(accept_stat(&reply), AcceptStat::Success { .. }));
    // Two calls in one write are both answered.
    let (x1, m1) = c.encode(NLM_PROGRAM, 4, 0, &[]);
    let (x2, m2) = c.encode(NLM_PROGRAM, 1, 0, &[]);
    let mut both = Vec::new();
    encode_record(&m1, &mut both);
    encode_record(&m2, &mut both);
    c.send_bytes(&both).unwrap();
    let r1 = brlock_native::rpc::decode_reply(&c.recv_record().unwrap()).unwrap();
    let r2 = brlock_native::rpc::decode_reply(&c.recv_record().unwrap()).unwrap();
    let mut xids = [r1.xid, r2.xid];
    xids.sort();
    let mut want = [x1, x2];
    want.sort();
    assert_eq!(xids, want);
}

#[test]
fn unreadable_datagrams_and_records_are_dropped() {
    let server = Brlockd::start();
    // A 3-byte datagram, a reply instead of a call, and an empty record: nothing to answer.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.connect(server.addr).unwrap();
    udp.send(&[1, 2, 3]).unwrap();
    udp.send(&[0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap();
    let mut c = RpcClient::connect(Transport::Tcp, server.addr).unwrap();
    let mut junk = Vec::new();
    encode_record(&[], &mut junk);
    encode_record(&[0, 0, 0, 9, 0, 0, 0, 1], &mut junk);
    let _ = c.send_bytes(&junk);
    // Dropped, not answered: the connection that sent them goes on serving.
    let reply = c
        .call_raw(NLM_PROGRAM, 4, 0, &[])
        .expect("NULL on the connection that sent junk");
    assert!(matches!(accept_stat(&reply), AcceptStat::Success { .. }));
    assert_still_serves(server.addr);
}
