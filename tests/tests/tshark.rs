//! Wireshark's NLM dissector as a second reader of brlockd's bytes: a scripted session that
//! sends every NLM procedure a client sends (v1, v3, v4; TCP and UDP), including the
//! server's callbacks to a client host (GRANTED, `*_RES`), is captured on `lo`; then
//! `tshark -r FILE -d tcp.port==PORT,rpc -d udp.port==PORT,rpc -Y _ws.malformed` must list
//! no packet, and the capture must hold decoded NLM calls and replies.
//!
//! Needs `tshark` and the right to capture on `lo` (root). Without tshark the test fails
//! and says how to install it: `tests/install-tools.sh` (CI runs it).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use brlock_native::nlm::{
    CancelArgs, NlmCall, NlmProc, NlmVersion, Res, ShareAccess, ShareMode, Stat, TestArgs,
    UnlockArgs,
};
use brlock_testkit::client::{NlmClient, Owner, TestOutcome, Transport};
use brlock_testkit::listener::ClientHost;
use brlock_tests::brlockd::{Brlockd, Options, target_dir};

fn tshark() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("tshark"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "tshark is not installed. Install it with `sudo tests/install-tools.sh`, or by hand:\n  \
             echo 'wireshark-common wireshark-common/install-setuid boolean false' | sudo debconf-set-selections\n  \
             sudo DEBIAN_FRONTEND=noninteractive apt-get install -y tshark"
        )
    })
}

/// A running `tshark -i lo` capture, stopped (SIGINT, so the file is complete) by `stop`
/// or, failing that, killed on drop.
struct Capture {
    child: Child,
}

impl Capture {
    fn start(file: &Path, ports: &[u16]) -> Self {
        let filter = ports
            .iter()
            .map(|p| format!("port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut child = Command::new(tshark())
            .args(["-i", "lo", "-q", "-f", &filter, "-w"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tshark");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut seen = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains("Capturing on") => break,
                Ok(line) => seen.push(line),
                Err(_) => {
                    let _ = child.kill();
                    panic!("tshark did not start capturing on lo (root needed?): {seen:?}");
                }
            }
        }
        // "Capturing on" comes as the capture opens; give the first packets a moment.
        std::thread::sleep(Duration::from_millis(500));
        Capture { child }
    }

    fn stop(mut self) {
        // Let the last packets reach the capture before stopping it.
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tshark did not stop within 10 s of SIGINT");
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tshark -r FILE` with RPC decoding forced on `ports`, and `extra` arguments; stdout lines.
fn read_capture(file: &Path, ports: &[u16], extra: &[&str]) -> Vec<String> {
    let mut cmd = Command::new(tshark());
    cmd.arg("-r").arg(file);
    for p in ports {
        cmd.args([
            "-d",
            &format!("tcp.port=={p},rpc"),
            "-d",
            &format!("udp.port=={p},rpc"),
        ]);
    }
    let out = cmd.args(extra).output().expect("run tshark -r");
    assert!(
        out.status.success(),
        "tshark -r {extra:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Every NLM procedure a client sends, in `version` over `transport`, plus the callbacks
/// they cause. Returns the procedures sent.
fn session(
    server: &Brlockd,
    host: &ClientHost,
    version: NlmVersion,
    transport: Transport,
) -> Vec<NlmProc> {
    let mut sent = Vec::new();
    let mut c = NlmClient::connect(transport, server.addr, version).unwrap();
    let fh = format!("fh-tshark-{version:?}-{transport:?}").into_bytes();
    let a = Owner::new("hostA", 1, "ownerA");
    let b = Owner::new("hostB", 7, "ownerB");
    let wait = Duration::from_secs(10);

    c.null().unwrap();
    sent.push(NlmProc::Null);
    assert_eq!(c.lock(&a, &fh, true, 0, 100, false).unwrap(), Stat::Granted);
    sent.push(NlmProc::Lock);
    assert!(matches!(
        c.test(&b, &fh, true, 0, 10).unwrap(),
        TestOutcome::Denied(_)
    ));
    sent.push(NlmProc::Test);
    assert_eq!(c.lock(&b, &fh, true, 0, 10, true).unwrap(), Stat::Blocked);
    assert_eq!(c.cancel(&b, &fh, true, 0, 10, true).unwrap(), Stat::Granted);
    sent.push(NlmProc::Cancel);
    // A grant callback (GRANTED or GRANTED_MSG) to the client host.
    assert_eq!(c.lock(&b, &fh, true, 0, 10, true).unwrap(), Stat::Blocked);
    assert_eq!(c.unlock(&a, &fh, 0, 100).unwrap(), Stat::Granted);
    sent.push(NlmProc::Unlock);
    let (grant, _) = host.listener.wait_for(wait, |call| {
        matches!(call, NlmCall::Granted(_) | NlmCall::GrantedMsg(_))
    });
    let grant = grant.expect("grant callback");
    let cookie = match &grant.call {
        NlmCall::Granted(a) | NlmCall::GrantedMsg(a) => a.cookie.clone(),
        _ => unreachable!(),
    };
    c.res_call(
        NlmProc::GrantedRes,
        Res {
            cookie,
            stat: Stat::Granted,
        },
    )
    .unwrap();
    sent.push(NlmProc::GrantedRes);
    assert_eq!(c.unlock(&b, &fh, 0, 10).unwrap(), Stat::Granted);

    // The asynchronous procedures, each answered by a *_RES callback.
    let args = c.lock_args(&a, &fh, true, 0, 100, false);
    c.send(&NlmCall::LockMsg(args)).unwrap();
    sent.push(NlmProc::LockMsg);
    let cookie = c.cookie();
    c.send(&NlmCall::TestMsg(TestArgs {
        cookie,
        exclusive: true,
        lock: b.lock(&fh, 5, 1),
    }))
    .unwrap();
    sent.push(NlmProc::TestMsg);
    let cookie = c.cookie();
    c.send(&NlmCall::CancelMsg(CancelArgs {
        cookie,
        block: true,
        exclusive: true,
        lock: b.lock(&fh, 5, 1),
    }))
    .unwrap();
    sent.push(NlmProc::CancelMsg);
    let cookie = c.cookie();
    c.send(&NlmCall::UnlockMsg(UnlockArgs {
        cookie,
        lock: a.lock(&fh, 0, 100),
    }))
    .unwrap();
    sent.push(NlmProc::UnlockMsg);
    // The four answers may come in any order.
    let mut missing: BTreeSet<u32> = [
        NlmProc::LockRes,
        NlmProc::TestRes,
        NlmProc::CancelRes,
        NlmProc::UnlockRes,
    ]
    .iter()
    .map(|p| *p as u32)
    .collect();
    while !missing.is_empty() {
        let Some(got) = host.listener.next_call(wait) else {
            panic!("no callbacks {missing:?} in NLM {version:?} over {transport:?}");
        };
        missing.remove(&(got.call.procedure() as u32));
    }

    if version != NlmVersion::V1 {
        assert_eq!(c.nm_lock(&a, &fh, true, 200, 10).unwrap(), Stat::Granted);
        sent.push(NlmProc::NmLock);
        let s = c.share(
            false,
            "hostA",
            "ownerS",
            &fh,
            ShareMode::DenyWrite,
            ShareAccess::Read,
        );
        assert_eq!(s.unwrap(), Stat::Granted);
        sent.push(NlmProc::Share);
        let s = c.share(
            true,
            "hostA",
            "ownerS",
            &fh,
            ShareMode::DenyWrite,
            ShareAccess::Read,
        );
        assert_eq!(s.unwrap(), Stat::Granted);
        sent.push(NlmProc::Unshare);
        c.free_all("hostA", 3).unwrap();
        sent.push(NlmProc::FreeAll);
    }
    if version == NlmVersion::V4 {
        assert_eq!(
            c.lock(&a, &fh, false, 1 << 40, 0, false).unwrap(),
            Stat::Granted
        );
        assert_eq!(
            c.lock(&a, &fh, false, u64::MAX, 2, false).unwrap(),
            Stat::Fbig
        );
    }
    sent
}

#[test]
fn tshark_decodes_every_nlm_message() {
    let tshark = tshark();
    let host = ClientHost::spawn().unwrap();
    let server = Brlockd::start_with(Options {
        portmap_port: Some(host.portmapper.port()),
        ..Options::default()
    });
    host.listener.answer_granted_msg_to(server.addr);
    let ports = [
        server.addr.port(),
        host.listener.port(),
        host.portmapper.port(),
    ];
    let dir = target_dir().join("tshark");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("brlockd-{}.pcapng", std::process::id()));

    let capture = Capture::start(&file, &ports);
    let mut sent = BTreeSet::new();
    for version in NlmVersion::ALL {
        for transport in Transport::ALL {
            for p in session(&server, &host, version, transport) {
                sent.insert((version as u32, p as u32));
            }
        }
    }
    capture.stop();

    let malformed = read_capture(&file, &ports, &["-Y", "_ws.malformed"]);
    assert!(
        malformed.is_empty(),
        "{} packets tshark ({}) could not decode, in {}:\n{}",
        malformed.len(),
        tshark.display(),
        file.display(),
        malformed.join("\n")
    );

    let fields = [
        "-T",
        "fields",
        "-e",
        "rpc.programversion",
        "-e",
        "rpc.procedure",
    ];
    let decoded = |filter: &str| -> BTreeSet<(u32, u32)> {
        let mut args = vec!["-Y", filter];
        args.extend(fields);
        read_capture(&file, &ports, &args)
            .iter()
            .filter_map(|line| {
                // Several RPC messages in one TCP segment list their fields comma-separated.
                let mut cols = line.split('\t');
                let versions = cols.next()?;
                let procedures = cols.next()?;
                Some(
                    versions
                        .split(',')
                        .zip(procedures.split(','))
                        .filter_map(|(v, p)| Some((v.parse().ok()?, p.parse().ok()?)))
                        .collect::<Vec<_>>(),
                )
            })
            .flatten()
            .collect()
    };
    let calls = decoded("nlm && rpc.msgtyp == 0");
    let replies = decoded("nlm && rpc.msgtyp == 1");
    let uncalled: Vec<_> = sent.difference(&calls).collect();
    assert!(
        uncalled.is_empty(),
        "sent but not decoded as NLM calls (version, procedure): {uncalled:?}; decoded: {calls:?}"
    );
    // Every synchronous call got a decoded reply (the one-way *_MSG calls need none).
    let synchronous: BTreeSet<_> = sent
        .iter()
        .filter(|(_, p)| !(6..=10).contains(p))
        .copied()
        .collect();
    let unanswered: Vec<_> = synchronous.difference(&replies).collect();
    assert!(
        unanswered.is_empty(),
        "calls without a decoded NLM reply (version, procedure): {unanswered:?}"
    );
    // The server's own calls were captured and decoded too.
    for (proc_number, name) in [
        (12, "LOCK_RES"),
        (11, "TEST_RES"),
        (13, "CANCEL_RES"),
        (14, "UNLOCK_RES"),
    ] {
        assert!(
            calls.iter().any(|(_, p)| *p == proc_number),
            "no {name} callback decoded"
        );
    }
    assert!(
        calls.iter().any(|(_, p)| *p == 5 || *p == 10),
        "no GRANTED/GRANTED_MSG callback decoded"
    ); // Kept only when the test fails, for inspection.
    let _ = std::fs::remove_file(&file);
}
