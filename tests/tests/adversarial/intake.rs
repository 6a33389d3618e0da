//! Rows 10 and 13: what the arguments of a call may hold.

use std::process::Command;

use brlock_native::nlm::{self, LockArgs, NLM_PROGRAM, NlmCall, NlmProc, NlmVersion, Stat};
use brlock_native::rpc::{AcceptStat, ReplyBody};
use brlock_testkit::client::{NlmClient, Owner, RpcClient, Transport};
use brlock_tests::brlockd::Options;

use super::{Siege, metric, noise, scrape};

/// The accept status of a LOCK whose file handle is `fh`, sent in `version` without the test
/// client's padding.
fn lock_with_fh(c: &mut RpcClient, version: NlmVersion, fh: &[u8]) -> AcceptStat {
    let call = NlmCall::Lock(LockArgs {
        cookie: b"c".to_vec(),
        block: false,
        exclusive: true,
        lock: Owner::new("fh-host", 1, "oh").lock(fh, 0, 1),
        reclaim: false,
        state: 1,
    });
    let mut args = Vec::new();
    nlm::encode_call(version, &call, &mut args).unwrap();
    let reply = c
        .call_raw(NLM_PROGRAM, version as u32, NlmProc::Lock as u32, &args)
        .unwrap();
    match reply.body {
        ReplyBody::Accepted { stat, .. } => stat,
        other => panic!("LOCK with a {}-byte fh: {other:?}", fh.len()),
    }
}

/// Row 13: Linux lockd's file-handle sizes — exactly 32 bytes in v1/v3, at most 128 in v4 — and
/// GARBAGE_ARGS for any other, as lockd answers (it fails decoding them).
#[test]
fn row13_file_handles_have_lockd_sizes() {
    let siege = Siege::start(&[], Transport::Udp);
    for transport in Transport::ALL {
        let mut c = RpcClient::connect(transport, siege.addr()).unwrap();
        for (version, len, taken) in [
            (NlmVersion::V1, 32, true),
            (NlmVersion::V1, 31, false),
            (NlmVersion::V1, 33, false),
            (NlmVersion::V3, 32, true),
            (NlmVersion::V3, 0, false),
            (NlmVersion::V3, 128, false),
            (NlmVersion::V4, 0, true),
            (NlmVersion::V4, 128, true),
            (NlmVersion::V4, 129, false),
            (NlmVersion::V4, 1024, false),
        ] {
            let fh = vec![len as u8 ^ version as u8; len];
            let stat = lock_with_fh(&mut c, version, &fh);
            if taken {
                assert!(
                    matches!(stat, AcceptStat::Success { .. }),
                    "{version:?} {transport:?} {len}-byte fh: {stat:?}"
                );
            } else {
                assert_eq!(
                    stat,
                    AcceptStat::GarbageArgs,
                    "{version:?} {transport:?} {len}-byte fh"
                );
            }
        }
    }
    siege.finish("row 13 (file-handle sizes)", 16);
}

/// A database of its own on the PostgreSQL at 127.0.0.1:5432, dropped with the guard.
struct Database(String);

impl Database {
    fn create() -> Database {
        let name = format!("brlock_adversarial_{}", std::process::id());
        let db = Database(name);
        db.psql(&format!("DROP DATABASE IF EXISTS {}", db.0));
        db.psql(&format!("CREATE DATABASE {}", db.0));
        db
    }

    fn psql(&self, sql: &str) {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
                sql,
            ])
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"));
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0),
            ])
            .output();
    }
}

/// Row 10 (needs the PostgreSQL of TOOLCHAIN.md): LOCKs whose caller_name and oh are 1 KiB of
/// incompressible bytes and whose file handle is 128 bytes, sent while another client locks and
/// unlocks: every one is granted, the other client's requests all succeed, and no store
/// transaction fails (such a key was too large for the index, failed whole batches and made the
/// core rebuild hundreds of times).
#[test]
fn row10_postgres_keys_take_the_largest_values() {
    let db = Database::create();
    let siege = Siege::start_with(
        Options {
            store: Some(db.url()),
            metrics: true,
            ..Options::default()
        },
        Transport::Tcp,
    );
    let addr = siege.addr();
    let big = std::thread::spawn(move || {
        let mut c = NlmClient::connect(Transport::Tcp, addr, NlmVersion::V4).unwrap();
        (0..40u64)
            .map(|i| {
                let caller: String = noise(1024, i)
                    .into_iter()
                    .map(|b| char::from(b'!' + b % 90))
                    .collect();
                let mut owner = Owner::new(&caller, i as u32, "");
                owner.oh = noise(1024, 1000 + i);
                let fh = noise(128, 2000 + i);
                c.lock(&owner, &fh, true, 0, 10, false).unwrap()
            })
            .collect::<Vec<Stat>>()
    });
    let mut other = NlmClient::connect(Transport::Tcp, addr, NlmVersion::V4).unwrap();
    let plain = Owner::new("plain-host", 1, "plain");
    let mut refused = 0;
    for i in 0..200u64 {
        let fh = format!("plain-file-{}", i % 20);
        let locked = other
            .lock(&plain, fh.as_bytes(), true, 0, 10, false)
            .unwrap();
        let unlocked = other.unlock(&plain, fh.as_bytes(), 0, 10).unwrap();
        refused += usize::from(locked != Stat::Granted) + usize::from(unlocked != Stat::Granted);
    }
    let big = big.join().unwrap();
    assert!(big.iter().all(|s| *s == Stat::Granted), "{big:?}");
    assert_eq!(refused, 0, "another client's requests failed");
    let page = scrape(siege.server.metrics.expect("metrics"));
    assert_eq!(
        metric(&page, r#"brlock_store_failures_total{kind="error"}"#),
        Some(0.0),
        "store transactions failed"
    );
    assert_eq!(metric(&page, "brlock_store_rebuilds_total"), Some(0.0));
    siege.finish("row 10 (PostgreSQL keys)", 48);
    drop(db);
}
