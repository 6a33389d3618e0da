//! Lock semantics seen from a client, one script per rule, run for each NLM version and
//! transport. The scripts are in `brlock_tests::scenarios`, shared with the rpcgen
//! conformance test.

use brlock_native::nlm::NlmVersion;
use brlock_testkit::client::{NlmClient, Transport};
use brlock_tests::brlockd::Brlockd;
use brlock_tests::scenarios::*;
use brlock_tests::script;

use super::assert_still_serves;

fn run(name: &str, text: &str, version: NlmVersion, transport: Transport) {
    let server = Brlockd::start();
    let mut client = NlmClient::connect(transport, server.addr, version).expect("connect");
    let fh = format!("fh-{name}");
    let text = script::substitute(text, &[("F", &fh)]);
    script::check(
        &format!("{name}, NLM {version:?} over {transport:?}"),
        &mut client,
        &text,
    );
    assert_still_serves(server.addr);
}

macro_rules! scenario {
    ($script:ident: $($test:ident => $version:ident $transport:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                run(stringify!($script), $script, NlmVersion::$version, Transport::$transport);
            }
        )*
    };
}

scenario!(EXCLUSIVE_CONFLICT:
    exclusive_conflict_v1_tcp => V1 Tcp, exclusive_conflict_v1_udp => V1 Udp,
    exclusive_conflict_v3_tcp => V3 Tcp, exclusive_conflict_v3_udp => V3 Udp,
    exclusive_conflict_v4_tcp => V4 Tcp, exclusive_conflict_v4_udp => V4 Udp);
scenario!(PARTIAL_UNLOCK:
    partial_unlock_v1_tcp => V1 Tcp, partial_unlock_v1_udp => V1 Udp,
    partial_unlock_v3_tcp => V3 Tcp, partial_unlock_v3_udp => V3 Udp,
    partial_unlock_v4_tcp => V4 Tcp, partial_unlock_v4_udp => V4 Udp);
scenario!(SHARED:
    shared_locks_v1_tcp => V1 Tcp, shared_locks_v1_udp => V1 Udp,
    shared_locks_v3_tcp => V3 Tcp, shared_locks_v3_udp => V3 Udp,
    shared_locks_v4_tcp => V4 Tcp, shared_locks_v4_udp => V4 Udp);
scenario!(WHOLE_FILE:
    whole_file_v1_tcp => V1 Tcp, whole_file_v1_udp => V1 Udp,
    whole_file_v3_tcp => V3 Tcp, whole_file_v3_udp => V3 Udp,
    whole_file_v4_tcp => V4 Tcp, whole_file_v4_udp => V4 Udp);
scenario!(BLOCK_THEN_CANCEL:
    block_then_cancel_v1_tcp => V1 Tcp, block_then_cancel_v1_udp => V1 Udp,
    block_then_cancel_v3_tcp => V3 Tcp, block_then_cancel_v3_udp => V3 Udp,
    block_then_cancel_v4_tcp => V4 Tcp, block_then_cancel_v4_udp => V4 Udp);
scenario!(WIDE_OFFSETS:
    wide_offsets_v4_tcp => V4 Tcp, wide_offsets_v4_udp => V4 Udp);
scenario!(SHARES_AND_HOST_CALLS:
    shares_nm_lock_free_all_v3_tcp => V3 Tcp, shares_nm_lock_free_all_v3_udp => V3 Udp,
    shares_nm_lock_free_all_v4_tcp => V4 Tcp, shares_nm_lock_free_all_v4_udp => V4 Udp);

/// v1/v3 carry 32-bit offsets; a v4 lock above 2^32 is still seen by a v3 TEST of the
/// whole file, reported as "to end of file" or refused, never truncated to a low range.
#[test]
fn v4_lock_above_4g_is_not_truncated_for_v3() {
    let server = Brlockd::start();
    let mut v4 = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    let mut v3 = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V3).unwrap();
    // 32 bytes: the one file handle size both v3 and v4 carry.
    let fh = "fh-mixed-0123456789abcdefghijklm";
    assert_eq!(fh.len(), 32);
    let a = script::execute(
        &mut v4,
        &format!("lock hostA 1 ownerA {fh} 1 4294967306 100 0 0 1"),
    );
    assert_eq!(a, "granted");
    // Same low 32 bits as the v4 lock: a v3 client must get it.
    let b = script::execute(&mut v3, &format!("lock hostB 7 ownerC {fh} 1 10 100 0 0 1"));
    assert_eq!(
        b, "granted",
        "a v4 lock at 2^32+10 blocked the v3 range [10,110)"
    );
    // A v3 whole-file TEST meets the v4 lock, whose offset v3 cannot express.
    let t = script::execute(&mut v3, &format!("test hostB 8 ownerD {fh} 1 200 0"));
    assert_ne!(
        t, "granted",
        "v3 whole-file TEST did not see the lock above 4 GiB"
    );
    assert!(
        !t.contains("offset=10 "),
        "the holder's offset was truncated to 32 bits: {t}"
    );
}
