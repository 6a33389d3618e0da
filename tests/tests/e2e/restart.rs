//! Restarts that clients survive (issue 12), end to end on 127.0.0.x: brlockd tells the client
//! hosts it kept that it restarted (SM_NOTIFY to their statd, found through their portmapper, and
//! retried while it is down); the built-in NSM answers and frees only a host that says itself it
//! rebooted; NLM procedure 16 only from a privileged loopback port; caller_name bindings, share
//! reservations and the NSM state survive a crash; a second instance on the same SQLite file is
//! refused while the first keeps serving; rpcbind points at the new instance right after a crash.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brlock_native::nlm::{NLM_PROGRAM, NlmProc, NlmVersion, ShareAccess, ShareMode, Stat};
use brlock_native::nsm::{
    NSM_PROGRAM, NSM_VERSION, NsmProc, RebootCallback, SmName, SmResult, SmStatRes, StatChange,
};
use brlock_native::portmap::RpcbProc;
use brlock_native::rpc::{AcceptStat, Reply};
use brlock_native::xdr::{decode_exact, encode_to_vec};
use brlock_testkit::client::{NlmClient, Owner, RpcClient, Transport, success_results};
use brlock_testkit::portmapper::Portmapper;
use brlock_testkit::rpc_server::{CALLS_KEPT, PeerHandler, RpcServer};
use brlock_tests::brlockd::{Brlockd, Options, brlockd_path};

use super::{assert_still_serves, wait_until};

const WAIT: Duration = Duration::from_secs(15);

/// A SQLite store in a directory of its own, removed on drop.
struct SqliteDb(std::path::PathBuf);

impl SqliteDb {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "brlock-restart-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        SqliteDb(dir)
    }
    fn url(&self) -> String {
        format!("sqlite://{}", self.0.join("brlock.db").display())
    }
}

impl Drop for SqliteDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One SM_NOTIFY a fake statd received.
#[derive(Clone, Debug)]
struct Notice {
    from: SocketAddr,
    notice: StatChange,
}

/// A client host's statd that records every SM_NOTIFY (with its sender) and answers it.
fn fake_statd(port: Option<u16>) -> (RpcServer, Receiver<Notice>) {
    // Bounded as the kit's fakes are: past it, calls are answered and not kept.
    let (tx, rx) = mpsc::sync_channel(CALLS_KEPT);
    let tx = Mutex::new(tx);
    let handler: Arc<PeerHandler> = Arc::new(move |_transport, peer, header, args| {
        if header.program != NSM_PROGRAM || header.version != NSM_VERSION {
            return Some(Reply::accepted(header.xid, AcceptStat::ProgUnavail));
        }
        if header.procedure == NsmProc::Null as u32 {
            return Some(Reply::success(header.xid, Vec::new()));
        }
        if header.procedure != NsmProc::Notify as u32 {
            return Some(Reply::accepted(header.xid, AcceptStat::ProcUnavail));
        }
        let Ok(notice) = decode_exact::<StatChange>(args) else {
            return Some(Reply::accepted(header.xid, AcceptStat::GarbageArgs));
        };
        let _ = tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_send(Notice { from: peer, notice });
        Some(Reply::success(header.xid, Vec::new()))
    });
    let server = match port {
        Some(port) => RpcServer::spawn_on(port, handler),
        None => RpcServer::spawn_with_peer(handler),
    };
    (server.unwrap(), rx)
}

fn start(db: &SqliteDb, portmap: &Portmapper, extra: &[&str]) -> Brlockd {
    Brlockd::start_with(Options {
        store: Some(db.url()),
        grace: Some(30),
        portmap_port: Some(portmap.port()),
        metrics: true,
        extra: ["--notify-retry-ms", "100"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect(),
        ..Options::default()
    })
}

fn metrics(server: &Brlockd) -> String {
    let addr = server.metrics.expect("started with metrics");
    let mut http = TcpStream::connect(addr).unwrap();
    http.set_read_timeout(Some(WAIT)).unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: brlockd\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    let _ = http.read_to_string(&mut page);
    page
}

fn reclaim(c: &mut NlmClient, owner: &Owner, fh: &[u8], offset: u64, len: u64) -> Stat {
    let mut args = c.lock_args(owner, fh, true, offset, len, false);
    args.reclaim = true;
    c.lock_with(args).expect("reclaim answered")
}

fn udp_from(ip: &str, server: &Brlockd) -> NlmClient {
    let local: SocketAddr = format!("{ip}:0").parse().unwrap();
    NlmClient::connect_udp_from(local, server.addr, NlmVersion::V4).unwrap()
}

fn next_notice(rx: &Receiver<Notice>, after: &str) -> Notice {
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("{after}: no SM_NOTIFY within {WAIT:?}"))
}

/// The reboot notice a Linux client's statd takes: `mon_name` is the address the client's calls
/// reached (what it mounted), sent from that address and a privileged port, with brlockd's new odd
/// state — after a crash (SIGKILL) and after a clean stop (SIGTERM) alike, each start 2 more.
/// The client then reclaims in grace, and grace ends as soon as everything is reclaimed.
#[test]
fn reboot_notices_reach_the_clients_statd_after_sigkill_and_after_sigterm() {
    let db = SqliteDb::new("notices");
    let (statd, notices) = fake_statd(None);
    let portmap = Portmapper::spawn(0).unwrap();
    portmap.map_nsm_to(statd.port);
    let fh = b"fh-notice".to_vec();
    let a = Owner::new("client-a", 1, "oh-a");
    let b = Owner::new("client-b", 2, "oh-b");

    let mut first = start(&db, &portmap, &[]);
    let mut c = NlmClient::connect(Transport::Tcp, first.addr, NlmVersion::V4).unwrap();
    assert_eq!(c.lock(&a, &fh, true, 0, 10, false).unwrap(), Stat::Granted);
    if let Ok(n) = notices.recv_timeout(Duration::from_millis(300)) {
        panic!("a first start on an empty store told someone: {n:?}");
    }
    first.kill();

    let mut second = start(&db, &portmap, &[]);
    let n = next_notice(&notices, "restart after SIGKILL");
    assert_eq!(n.notice.mon_name, b"127.0.0.1", "{n:?}");
    assert_eq!(n.from.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    assert!(n.from.port() < 1024, "not from a privileged port: {n:?}");
    assert_eq!(n.notice.state % 2, 1, "odd while up: {n:?}");
    let state = n.notice.state;
    let mut c = NlmClient::connect(Transport::Tcp, second.addr, NlmVersion::V4).unwrap();
    assert_eq!(
        c.lock(&b, &fh, true, 0, 10, false).unwrap(),
        Stat::DeniedGracePeriod
    );
    assert_eq!(reclaim(&mut c, &a, &fh, 0, 10), Stat::Granted);
    // Everything reclaimed: grace is over, and the lock is held.
    assert_eq!(c.lock(&b, &fh, true, 0, 10, false).unwrap(), Stat::Denied);
    assert_eq!(c.lock(&b, &fh, true, 20, 10, false).unwrap(), Stat::Granted);
    let page = wait_until(WAIT, || {
        let page = metrics(&second);
        page.contains("brlock_reboot_notices_total{result=\"delivered\"} 1")
            .then_some(page)
    });
    assert!(page.is_some(), "metrics:\n{}", metrics(&second));

    let status = second.terminate(WAIT);
    assert_eq!(status.and_then(|s| s.code()), Some(0));
    let third = start(&db, &portmap, &[]);
    let n = next_notice(&notices, "restart after SIGTERM");
    assert_eq!(n.notice.mon_name, b"127.0.0.1");
    assert_eq!(n.notice.state, state + 2, "2 more at every start");
    assert!(third.log_contains("reboot notice delivered", WAIT));
    // One notice per client address, however many caller_names call from it.
    if let Ok(extra) = notices.recv_timeout(Duration::from_millis(500)) {
        panic!("a second notice for the same address: {extra:?}");
    }
}

/// `--notify-name` puts that name in `mon_name` (for clients that mounted by name).
#[test]
fn notify_name_sets_the_notices_mon_name() {
    let db = SqliteDb::new("notify-name");
    let (statd, notices) = fake_statd(None);
    let portmap = Portmapper::spawn(0).unwrap();
    portmap.map_nsm_to(statd.port);
    let mut first = start(&db, &portmap, &[]);
    let mut c = NlmClient::connect(Transport::Udp, first.addr, NlmVersion::V3).unwrap();
    let a = Owner::new("named-client", 1, "oh");
    assert_eq!(c.lock(&a, b"fh", true, 0, 1, false).unwrap(), Stat::Granted);
    first.kill();
    let _second = start(&db, &portmap, &["--notify-name", "nfs-server.example"]);
    let n = next_notice(&notices, "restart with --notify-name");
    assert_eq!(n.notice.mon_name, b"nfs-server.example");
}

/// While the client's statd is down (its portmapper points at a dead port), the notice is sent
/// again with back-off; once statd is back on that port, it arrives and is counted delivered.
#[test]
fn a_reboot_notice_is_retried_while_the_clients_statd_is_down() {
    let db = SqliteDb::new("retry");
    // Find a free port for the statd to come back on, and leave it dead for now.
    let port = {
        let (probe, _) = fake_statd(None);
        probe.port
    };
    std::thread::sleep(Duration::from_millis(200)); // the probe's threads let go of the port
    let portmap = Portmapper::spawn(0).unwrap();
    portmap.map_nsm_to(port);
    let mut first = start(&db, &portmap, &[]);
    let mut c = NlmClient::connect(Transport::Tcp, first.addr, NlmVersion::V4).unwrap();
    let a = Owner::new("patient-client", 1, "oh");
    assert_eq!(c.lock(&a, b"fh", true, 0, 1, false).unwrap(), Stat::Granted);
    first.kill();

    let second = start(&db, &portmap, &[]);
    // Several attempts fail while nothing listens…
    std::thread::sleep(Duration::from_millis(1500));
    let (_statd, notices) = fake_statd(Some(port));
    // …and a later one reaches the statd that came back.
    let n = next_notice(&notices, "statd back up");
    assert_eq!(n.notice.mon_name, b"127.0.0.1");
    let delivered = wait_until(WAIT, || {
        metrics(&second)
            .contains("brlock_reboot_notices_total{result=\"delivered\"} 1")
            .then_some(())
    });
    assert!(delivered.is_some(), "metrics:\n{}", metrics(&second));
}

/// NSM over UDP to brlockd's port.
fn nsm_call(server: SocketAddr, from: &str, procedure: NsmProc, args: &[u8]) -> Reply {
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    let mut rpc = RpcClient::connect_udp_from(local, server).unwrap();
    rpc.call_raw(NSM_PROGRAM, NSM_VERSION, procedure as u32, args)
        .unwrap_or_else(|e| panic!("{procedure:?}: {e}"))
}

fn sm_notify(server: SocketAddr, from: &str, mon_name: &str, state: u32) {
    let args = encode_to_vec(&StatChange {
        mon_name: mon_name.as_bytes().to_vec(),
        state,
    })
    .unwrap();
    let results = success_results(nsm_call(server, from, NsmProc::Notify, &args)).unwrap();
    assert!(results.is_empty(), "SM_NOTIFY answered {results:?}");
}

/// `--nsm builtin`: NSM 100024 v1 is registered with rpcbind on brlockd's port and answers
/// SM_STAT with brlockd's state; a client host's SM_NOTIFY frees that host's locks only — and only
/// when it comes from the host's bound address.
#[test]
fn the_builtin_nsm_is_registered_answers_and_frees_only_the_rebooted_host() {
    let rpcbind = Portmapper::spawn(0).unwrap();
    let server = Brlockd::start_with(Options {
        rpcbind: Some(format!("127.0.0.1:{}", rpcbind.port())),
        extra: vec!["--nsm".into(), "builtin".into()],
        ..Options::default()
    });
    let port = server.addr.port();
    let nsm_set = wait_until(WAIT, || {
        let regs = rpcbind.rpcb_registrations();
        regs.iter()
            .any(|(p, r)| *p == RpcbProc::Set && r.prog == NSM_PROGRAM && r.vers == NSM_VERSION)
            .then_some(regs)
    })
    .unwrap_or_else(|| panic!("no SET of NSM: {:?}", rpcbind.rpcb_registrations()));
    let want = format!("127.0.0.1.{}.{}", port >> 8, port & 0xff);
    assert!(
        nsm_set
            .iter()
            .filter(|(p, r)| *p == RpcbProc::Set && r.prog == NSM_PROGRAM)
            .all(|(_, r)| r.addr == want),
        "{nsm_set:?}"
    );
    assert!(server.log_contains("NSM: --nsm builtin", WAIT));

    let stat = nsm_call(
        server.addr,
        "127.0.0.1",
        NsmProc::Stat,
        &encode_to_vec(&SmName {
            mon_name: b"anyone".to_vec(),
        })
        .unwrap(),
    );
    let res: SmStatRes = decode_exact(&success_results(stat).unwrap()).unwrap();
    assert_eq!(res.result, SmResult::Success);
    assert_eq!(res.state % 2, 1, "brlockd's state is odd while up: {res:?}");

    let fh = b"fh-builtin".to_vec();
    let a = Owner::new("host-a", 1, "oh-a");
    let b = Owner::new("host-b", 2, "oh-b");
    let mut ca = udp_from("127.0.0.1", &server);
    let mut cb = udp_from("127.0.0.2", &server);
    assert_eq!(ca.lock(&a, &fh, true, 0, 10, false).unwrap(), Stat::Granted);
    assert_eq!(
        cb.lock(&b, &fh, true, 20, 10, false).unwrap(),
        Stat::Granted
    );

    // host-b says host-a rebooted: refused, host-a keeps its lock.
    sm_notify(server.addr, "127.0.0.2", "host-a", 7);
    assert!(server.log_contains("reboot notice refused", WAIT));
    assert_eq!(cb.lock(&b, &fh, true, 0, 10, false).unwrap(), Stat::Denied);

    // host-a itself says so: its locks go, host-b's stay.
    sm_notify(server.addr, "127.0.0.1", "host-a", 7);
    let freed = wait_until(WAIT, || {
        (cb.lock(&b, &fh, true, 0, 10, false).unwrap() == Stat::Granted).then_some(())
    });
    assert!(freed.is_some(), "host-a's lock was not freed");
    assert_eq!(ca.lock(&a, &fh, true, 20, 10, false).unwrap(), Stat::Denied);
    assert_still_serves(server.addr);
}

/// Without `--nsm`, brlockd uses the statd rpcbind knows of, and says so; else (nothing
/// registered, or a stale mapping) the built-in NSM.
#[test]
fn the_default_nsm_is_the_statd_rpcbind_knows_else_builtin() {
    let (statd, _notices) = fake_statd(None);
    let rpcbind = Portmapper::spawn(0).unwrap();
    rpcbind.map_nsm_to(statd.port);
    let with_statd = Brlockd::start_with(Options {
        rpcbind: Some(format!("127.0.0.1:{}", rpcbind.port())),
        statd: Some(String::new()),
        ..Options::default()
    });
    assert!(
        with_statd.log_contains("another statd is registered with rpcbind", WAIT),
        "{}",
        with_statd.stderr_text()
    );
    // A mapping a crashed instance left behind (nothing answers there) is no statd to use.
    let stale = Portmapper::spawn(0).unwrap();
    stale.map_nsm_to(brlock_tests::brlockd::DEAD_PORT);
    let after_crash = Brlockd::start_with(Options {
        rpcbind: Some(format!("127.0.0.1:{}", stale.port())),
        statd: Some(String::new()),
        ..Options::default()
    });
    assert!(
        after_crash.log_contains("no live statd is registered with rpcbind", WAIT),
        "{}",
        after_crash.stderr_text()
    );
    let empty = Portmapper::spawn(0).unwrap();
    let builtin = Brlockd::start_with(Options {
        rpcbind: Some(format!("127.0.0.1:{}", empty.port())),
        statd: Some(String::new()),
        ..Options::default()
    });
    assert!(
        builtin.log_contains("no live statd is registered with rpcbind", WAIT),
        "{}",
        builtin.stderr_text()
    );
}

/// NLM procedure 16 (statd's reboot relay) frees a monitored host's locks only from a privileged
/// port on a loopback address: any local user could send it from an unprivileged one.
#[test]
fn nlm_procedure_16_from_an_unprivileged_port_is_refused() {
    let server = Brlockd::start();
    let fh = b"fh-16".to_vec();
    let a = Owner::new("monitored-host", 1, "oh-a");
    let b = Owner::new("other-host", 2, "oh-b");
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    assert_eq!(c.lock(&a, &fh, true, 0, 10, false).unwrap(), Stat::Granted);
    let notice = encode_to_vec(&RebootCallback {
        mon_name: b"monitored-host".to_vec(),
        state: 9,
        private: [0; 16],
    })
    .unwrap();
    let relay = |local: &str| {
        let mut rpc = RpcClient::connect_udp_from(local.parse().unwrap(), server.addr).unwrap();
        let reply = rpc
            .call_raw(NLM_PROGRAM, 3, NlmProc::NsmNotify as u32, &notice)
            .unwrap();
        success_results(reply).unwrap();
    };
    relay("127.0.0.1:0");
    assert!(server.log_contains("not from a privileged port", WAIT));
    assert_eq!(c.lock(&b, &fh, true, 0, 10, false).unwrap(), Stat::Denied);
    // From a privileged port (as root; statd's own) it is taken.
    let privileged = (700..1000)
        .find(|p| std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free privileged port");
    relay(&format!("127.0.0.1:{privileged}"));
    let freed = wait_until(WAIT, || {
        (c.lock(&b, &fh, true, 0, 10, false).unwrap() == Stat::Granted).then_some(())
    });
    assert!(
        freed.is_some(),
        "the relay from a privileged port freed nothing"
    );
}

/// After a restart, a restored host's name is still bound to its address: 127.0.0.2 reusing
/// 127.0.0.1's caller_name can neither reclaim nor unlock its lock, and the real host's reclaim is
/// granted.
#[test]
fn a_hijack_of_a_restored_hosts_name_is_refused_after_a_restart() {
    let db = SqliteDb::new("hijack");
    let portmap = Portmapper::spawn(0).unwrap();
    let mut first = start(&db, &portmap, &[]);
    let fh = b"fh-hijack".to_vec();
    let a = Owner::new("real-host", 1, "oh-a");
    let mut real = udp_from("127.0.0.1", &first);
    assert_eq!(
        real.lock(&a, &fh, true, 0, 10, false).unwrap(),
        Stat::Granted
    );
    first.kill();

    let second = start(&db, &portmap, &[]);
    let mut spoof = udp_from("127.0.0.2", &second);
    assert_eq!(reclaim(&mut spoof, &a, &fh, 0, 10), Stat::Denied);
    assert_eq!(spoof.unlock(&a, &fh, 0, 10).unwrap(), Stat::Denied);
    let mut real = udp_from("127.0.0.1", &second);
    assert_eq!(reclaim(&mut real, &a, &fh, 0, 10), Stat::Granted);
    assert!(second.log_contains("caller_name bound to another address", WAIT));
}

/// Share reservations survive a crash: held again in grace (a conflicting SHARE waits), the owner's
/// reclaim is granted, a reclaim of a share never held is refused, and afterwards the restored
/// share still conflicts.
#[test]
fn shares_survive_a_crash_and_only_their_owner_reclaims_them() {
    let db = SqliteDb::new("shares");
    let portmap = Portmapper::spawn(0).unwrap();
    let mut first = start(&db, &portmap, &[]);
    let fh = b"fh-share".to_vec();
    let mut c = NlmClient::connect(Transport::Tcp, first.addr, NlmVersion::V4).unwrap();
    assert_eq!(
        c.share(
            false,
            "share-host",
            "oh-s",
            &fh,
            ShareMode::DenyWrite,
            ShareAccess::ReadWrite
        )
        .unwrap(),
        Stat::Granted
    );
    first.kill();

    let second = start(&db, &portmap, &[]);
    let mut c = NlmClient::connect(Transport::Tcp, second.addr, NlmVersion::V4).unwrap();
    assert_eq!(
        c.share(
            false,
            "writer",
            "oh-w",
            &fh,
            ShareMode::DenyNone,
            ShareAccess::Write
        )
        .unwrap(),
        Stat::DeniedGracePeriod,
        "a conflicting SHARE in grace"
    );
    assert_eq!(
        c.share_reclaim(
            "writer",
            "oh-w",
            &fh,
            ShareMode::DenyNone,
            ShareAccess::Write
        )
        .unwrap(),
        Stat::Denied,
        "a reclaim of a share never held"
    );
    assert_eq!(
        c.share_reclaim(
            "share-host",
            "oh-s",
            &fh,
            ShareMode::DenyWrite,
            ShareAccess::ReadWrite
        )
        .unwrap(),
        Stat::Granted,
        "the owner's reclaim"
    );
    // Reclaimed: grace is over and the share holds.
    assert_eq!(
        c.share(
            false,
            "writer",
            "oh-w",
            &fh,
            ShareMode::DenyNone,
            ShareAccess::Write
        )
        .unwrap(),
        Stat::Denied
    );
    assert_eq!(
        c.share(
            false,
            "reader",
            "oh-r",
            &fh,
            ShareMode::DenyNone,
            ShareAccess::Read
        )
        .unwrap(),
        Stat::Granted
    );
}

/// A second brlockd on the same SQLite file refuses to start, naming the running one, before it
/// touches the store: the first keeps serving and writing (it was not fenced).
#[test]
fn a_second_start_on_the_same_sqlite_file_is_refused_while_the_first_keeps_serving() {
    let db = SqliteDb::new("second");
    let portmap = Portmapper::spawn(0).unwrap();
    let mut first = start(&db, &portmap, &[]);
    let mut c = NlmClient::connect(Transport::Tcp, first.addr, NlmVersion::V4).unwrap();
    let a = Owner::new("first-client", 1, "oh");
    assert_eq!(c.lock(&a, b"f", true, 0, 1, false).unwrap(), Stat::Granted);

    let mut second = Command::new(brlockd_path())
        .args([
            "--listen",
            "127.0.0.1:0",
            "--store",
            &db.url(),
            "--rpcbind",
            "none",
            "--statd",
            "none",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_until(WAIT, || second.try_wait().unwrap());
    let Some(status) = status else {
        let _ = second.kill();
        let _ = second.wait();
        panic!("the second brlockd did not exit");
    };
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", first.pid())) && stderr.contains("another brlockd"),
        "the error should name the running instance: {stderr}"
    );
    // The first still serves and still writes: a new lock, then an unlock.
    assert_eq!(c.lock(&a, b"f", true, 10, 1, false).unwrap(), Stat::Granted);
    assert_eq!(c.unlock(&a, b"f", 0, 1).unwrap(), Stat::Granted);
    assert!(first.is_running(), "the first instance stopped");
    assert!(!first.log_contains("fenced: another brlockd", Duration::from_millis(200)));
}

/// Right after a crash, the new instance UNSETs the dead one's mappings before its SETs, and
/// rpcbind points every NLM version at the new address (its universal address, not 0.0.0.0).
#[test]
fn rpcbind_points_at_the_new_instance_right_after_a_crash() {
    let db = SqliteDb::new("rpcbind");
    let rpcbind = Portmapper::spawn(0).unwrap();
    let opts = |db: &SqliteDb| Options {
        store: Some(db.url()),
        rpcbind: Some(format!("127.0.0.1:{}", rpcbind.port())),
        ..Options::default()
    };
    let mut first = Brlockd::start_with(opts(&db));
    let sets = |n: usize| {
        wait_until(WAIT, || {
            let sets = rpcbind
                .rpcb_registrations()
                .into_iter()
                .filter(|(p, r)| *p == RpcbProc::Set && r.prog == NLM_PROGRAM)
                .count();
            (sets >= n).then_some(())
        })
    };
    assert!(sets(6).is_some(), "{:?}", rpcbind.rpcb_registrations());
    first.kill();
    let second = Brlockd::start_with(opts(&db));
    assert!(sets(12).is_some(), "{:?}", rpcbind.rpcb_registrations());
    // Each start: an UNSET of every NLM version (portmap v2, every protocol), then the SETs.
    let nlm: Vec<(&str, u32)> = rpcbind
        .changes()
        .into_iter()
        .filter(|&(_, prog, _)| prog == NLM_PROGRAM)
        .map(|(what, _, vers)| (what, vers))
        .collect();
    let one_start = [
        ("unset", 1),
        ("unset", 3),
        ("unset", 4),
        ("set", 1),
        ("set", 1),
        ("set", 3),
        ("set", 3),
        ("set", 4),
        ("set", 4),
    ];
    assert_eq!(
        nlm,
        [one_start, one_start].concat(),
        "UNSET before SET at each start"
    );
    let port = second.addr.port();
    let want = format!("127.0.0.1.{}.{}", port >> 8, port & 0xff);
    let table = rpcbind.table();
    for vers in [1, 3, 4] {
        for prot in ["tcp", "udp"] {
            assert_eq!(
                table.get(&(NLM_PROGRAM, vers, prot)),
                Some(&want),
                "NLM v{vers} {prot}: {table:?}"
            );
        }
    }
    assert!(!second.log_contains("refused the registration", Duration::from_millis(200)));
}

/// `--store memory` keeps nothing, yet a start opens the grace period (clients may have been told
/// to reclaim by someone else): new locks wait, reclaims are taken unverified.
#[test]
fn a_memory_store_still_opens_grace_and_takes_reclaims_unverified() {
    let server = Brlockd::start_with(Options {
        grace: Some(30),
        ..Options::default()
    });
    assert!(server.log_contains("grace period opened anyway", WAIT));
    let mut c = NlmClient::connect(Transport::Tcp, server.addr, NlmVersion::V4).unwrap();
    let a = Owner::new("told-by-someone", 1, "oh-a");
    let b = Owner::new("newcomer", 2, "oh-b");
    assert_eq!(
        c.lock(&b, b"fh-mem", true, 0, 10, false).unwrap(),
        Stat::DeniedGracePeriod
    );
    assert_eq!(reclaim(&mut c, &a, b"fh-mem", 0, 10), Stat::Granted);
    assert_eq!(
        c.lock(&b, b"fh-mem", true, 0, 10, false).unwrap(),
        Stat::DeniedGracePeriod,
        "nothing to wait for: grace runs to its deadline"
    );
}
