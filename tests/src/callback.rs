//! The client host's side of callbacks: a test portmapper and a test NLM listener, each a
//! small RPC server on one free 127.0.0.1 port serving both TCP and UDP.
//!
//! brlockd delivers NLM_GRANTED (and `*_RES` answers to `*_MSG` calls) by asking the
//! portmapper at the client's source address (`--portmap-port`) for the NLM port, then
//! calling that port. [`Portmapper`] answers GETPORT for NLM with the [`NlmListener`]'s port
//! and records every query; the listener records every call it receives.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brlock_native::nlm::{self, NLM_PROGRAM, NlmCall, NlmReply, NlmVersion, Res, Stat};
use brlock_native::nsm::NSM_PROGRAM;
use brlock_native::portmap::{
    Mapping, PMAP_PROGRAM, PMAP_VERSION, PmapProc, RPCBIND_VERSION_4, Rpcb, RpcbProc,
};
use brlock_native::rpc::{
    AcceptStat, CallHeader, RecordDecoder, Reply, decode_call, encode_record, encode_reply,
};
use brlock_native::xdr::{decode_exact, encode_to_vec};

use crate::client::{NlmClient, Transport};

/// Answers one decoded call; `None` sends no reply.
pub type Handler = dyn Fn(Transport, &CallHeader, &[u8]) -> Option<Reply> + Send + Sync;

/// A [`Handler`] that also sees the caller's address.
pub type PeerHandler =
    dyn Fn(Transport, SocketAddr, &CallHeader, &[u8]) -> Option<Reply> + Send + Sync;

/// An RPC server on one port (TCP and UDP), running until dropped.
pub struct RpcServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl RpcServer {
    pub fn spawn(handler: Arc<Handler>) -> io::Result<Self> {
        Self::spawn_with_peer(Arc::new(move |transport, _peer, header, args| {
            handler(transport, header, args)
        }))
    }

    /// A server whose handler sees each caller's address.
    pub fn spawn_with_peer(handler: Arc<PeerHandler>) -> io::Result<Self> {
        Self::serve(bind_pair()?, handler)
    }

    /// A server on `port` of 127.0.0.1 (TCP and UDP), e.g. a service that comes back on the port
    /// it had.
    pub fn spawn_on(port: u16, handler: Arc<PeerHandler>) -> io::Result<Self> {
        let tcp = TcpListener::bind(("127.0.0.1", port))?;
        let udp = UdpSocket::bind(("127.0.0.1", port))?;
        Self::serve((tcp, udp), handler)
    }

    fn serve((tcp, udp): (TcpListener, UdpSocket), handler: Arc<PeerHandler>) -> io::Result<Self> {
        let port = tcp.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        tcp.set_nonblocking(true)?;
        udp.set_read_timeout(Some(Duration::from_millis(50)))?;
        {
            let stop = Arc::clone(&stop);
            let handler = Arc::clone(&handler);
            std::thread::spawn(move || serve_udp(udp, handler, stop));
        }
        {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || serve_tcp(tcp, handler, stop));
        }
        Ok(RpcServer { port, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A TCP listener and a UDP socket on the same free port.
fn bind_pair() -> io::Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        match UdpSocket::bind(("127.0.0.1", port)) {
            Ok(udp) => return Ok((tcp, udp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free port pair")))
}

fn answer(
    handler: &PeerHandler,
    transport: Transport,
    peer: SocketAddr,
    record: &[u8],
) -> Option<Vec<u8>> {
    let reply = match decode_call(record) {
        Ok(call) => handler(transport, peer, &call.header, call.args)?,
        Err(e) => e.reply()?,
    };
    let mut out = Vec::new();
    encode_reply(&reply, &mut out).ok()?;
    Some(out)
}

fn serve_udp(socket: UdpSocket, handler: Arc<PeerHandler>, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        if let Some(out) = answer(&*handler, Transport::Udp, from, &buf[..n]) {
            let _ = socket.send_to(&out, from);
        }
    }
}

fn serve_tcp(listener: TcpListener, handler: Arc<PeerHandler>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let handler = Arc::clone(&handler);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || serve_connection(stream, peer, handler, stop));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: Arc<PeerHandler>,
    stop: Arc<AtomicBool>,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut decoder = RecordDecoder::new();
    let mut buf = [0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if decoder.push(&buf[..n]).is_err() {
                    return;
                }
                while let Some(record) = decoder.next_record() {
                    if let Some(out) = answer(&*handler, Transport::Tcp, peer, &record) {
                        let mut framed = Vec::new();
                        encode_record(&out, &mut framed);
                        if stream.write_all(&framed).is_err() {
                            return;
                        }
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// A SET or UNSET as the test rpcbind saw it: (`"set"`/`"unset"`, program, version).
pub type Change = (&'static str, u32, u32);

/// A portmapper (program 100000 v2) that maps NLM, every version and protocol, to one port
/// (which [`Portmapper::map_nlm_to`] changes, as a client host's lockd registering anew would), and
/// NSM to another ([`Portmapper::map_nsm_to`]; 0, unregistered, at first). It also takes rpcbind v4
/// SET/UNSET ([`Portmapper::rpcb_registrations`]).
pub struct Portmapper {
    pub server: RpcServer,
    nlm_port: Arc<AtomicU16>,
    nsm_port: Arc<AtomicU16>,
    /// Every rpcbind v4 SET and UNSET received (all answered `true`), in arrival order.
    pub rpcb: Arc<Mutex<Vec<(RpcbProc, Rpcb)>>>,
    /// Every SET and UNSET of either version, in arrival order: (`"set"`/`"unset"`, program,
    /// version).
    pub changes: Arc<Mutex<Vec<Change>>>,
    /// Every GETPORT query received, with the transport it came on.
    pub queries: Arc<Mutex<Vec<(Transport, Mapping)>>>,
    /// Every SET and UNSET received (all answered `true`), in arrival order.
    pub registrations: Arc<Mutex<Vec<(PmapProc, Mapping)>>>,
}

impl Portmapper {
    pub fn spawn(nlm_port: u16) -> io::Result<Self> {
        let queries = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&queries);
        let registrations = Arc::new(Mutex::new(Vec::new()));
        let sets = Arc::clone(&registrations);
        let nlm_port = Arc::new(AtomicU16::new(nlm_port));
        let mapped = Arc::clone(&nlm_port);
        let nsm_port = Arc::new(AtomicU16::new(0));
        let nsm_mapped = Arc::clone(&nsm_port);
        let rpcb = Arc::new(Mutex::new(Vec::new()));
        let rpcb_log = Arc::clone(&rpcb);
        let changes = Arc::new(Mutex::new(Vec::new()));
        let (changes_v2, changes_v4) = (Arc::clone(&changes), Arc::clone(&changes));
        let handler: Arc<Handler> = Arc::new(move |transport, header, args| {
            if header.program != PMAP_PROGRAM {
                return Some(Reply::accepted(header.xid, AcceptStat::ProgUnavail));
            }
            if header.version == RPCBIND_VERSION_4 {
                let procedure = match header.procedure {
                    0 => return Some(Reply::success(header.xid, Vec::new())),
                    p if p == RpcbProc::Set as u32 => RpcbProc::Set,
                    p if p == RpcbProc::Unset as u32 => RpcbProc::Unset,
                    _ => return Some(Reply::accepted(header.xid, AcceptStat::ProcUnavail)),
                };
                let Ok(r) = decode_exact::<Rpcb>(args) else {
                    return Some(Reply::accepted(header.xid, AcceptStat::GarbageArgs));
                };
                let what = if procedure == RpcbProc::Set {
                    "set"
                } else {
                    "unset"
                };
                changes_v4
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((what, r.prog, r.vers));
                rpcb_log
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((procedure, r));
                return Some(Reply::success(
                    header.xid,
                    encode_to_vec(&true).expect("bool encodes"),
                ));
            }
            if header.version != PMAP_VERSION {
                return Some(Reply::accepted(
                    header.xid,
                    AcceptStat::ProgMismatch { low: 2, high: 2 },
                ));
            }
            let results = match header.procedure {
                p if p == PmapProc::Null as u32 => Vec::new(),
                p if p == PmapProc::Set as u32 || p == PmapProc::Unset as u32 => {
                    let Ok(mapping) = decode_exact::<Mapping>(args) else {
                        return Some(Reply::accepted(header.xid, AcceptStat::GarbageArgs));
                    };
                    let procedure = if p == PmapProc::Set as u32 {
                        PmapProc::Set
                    } else {
                        PmapProc::Unset
                    };
                    let what = if procedure == PmapProc::Set {
                        "set"
                    } else {
                        "unset"
                    };
                    changes_v2.lock().unwrap_or_else(|e| e.into_inner()).push((
                        what,
                        mapping.prog,
                        mapping.vers,
                    ));
                    sets.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((procedure, mapping));
                    encode_to_vec(&true).expect("bool encodes")
                }
                p if p == PmapProc::Getport as u32 => {
                    let Ok(mapping) = decode_exact::<Mapping>(args) else {
                        return Some(Reply::accepted(header.xid, AcceptStat::GarbageArgs));
                    };
                    log.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((transport, mapping));
                    let port = if mapping.prog == NLM_PROGRAM {
                        u32::from(mapped.load(Ordering::SeqCst))
                    } else if mapping.prog == NSM_PROGRAM {
                        u32::from(nsm_mapped.load(Ordering::SeqCst))
                    } else {
                        0
                    };
                    encode_to_vec(&port).expect("u32 encodes")
                }
                _ => return Some(Reply::accepted(header.xid, AcceptStat::ProcUnavail)),
            };
            Some(Reply::success(header.xid, results))
        });
        Ok(Portmapper {
            server: RpcServer::spawn(handler)?,
            nlm_port,
            nsm_port,
            rpcb,
            changes,
            queries,
            registrations,
        })
    }

    /// Answers later GETPORTs for NSM (a host's statd) with `port` (0: none registered).
    pub fn map_nsm_to(&self, port: u16) {
        self.nsm_port.store(port, Ordering::SeqCst);
    }

    /// Every SET and UNSET (portmap v2 or rpcbind v4) so far, in arrival order.
    pub fn changes(&self) -> Vec<Change> {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every rpcbind v4 SET and UNSET received so far, in arrival order.
    pub fn rpcb_registrations(&self) -> Vec<(RpcbProc, Rpcb)> {
        self.rpcb.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What rpcbind would hold after the SETs and UNSETs received so far (v2 and v4 alike, as
    /// rpcbind keeps one table): (program, version, protocol) → universal address or port.
    pub fn table(&self) -> std::collections::BTreeMap<(u32, u32, &'static str), String> {
        // Arrival order across the two logs is lost; callers use one version per phase.
        let mut table = std::collections::BTreeMap::new();
        for (p, m) in self.registrations() {
            let prot = if m.prot == brlock_native::portmap::IPPROTO_TCP {
                "tcp"
            } else {
                "udp"
            };
            match p {
                PmapProc::Set => {
                    table.insert(
                        (m.prog, m.vers, prot),
                        format!("0.0.0.0.{}.{}", m.port >> 8, m.port & 0xff),
                    );
                }
                PmapProc::Unset => {
                    table.retain(|&(prog, vers, _), _| (prog, vers) != (m.prog, m.vers))
                }
                _ => {}
            }
        }
        for (p, r) in self.rpcb_registrations() {
            let prot: &'static str = if r.netid.starts_with("tcp") {
                "tcp"
            } else {
                "udp"
            };
            match p {
                RpcbProc::Set => {
                    table.insert((r.prog, r.vers, prot), r.addr.clone());
                }
                RpcbProc::Unset => table.retain(|&(prog, vers, n), _| {
                    (prog, vers) != (r.prog, r.vers) || (!r.netid.is_empty() && n != prot)
                }),
            }
        }
        table
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Answers later GETPORTs for NLM with `port`.
    pub fn map_nlm_to(&self, port: u16) {
        self.nlm_port.store(port, Ordering::SeqCst);
    }

    pub fn queries(&self) -> Vec<(Transport, Mapping)> {
        self.queries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every SET and UNSET received so far, in arrival order.
    pub fn registrations(&self) -> Vec<(PmapProc, Mapping)> {
        self.registrations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// One NLM call the listener received.
#[derive(Clone, Debug)]
pub struct Received {
    pub transport: Transport,
    pub version: u32,
    pub call: NlmCall,
}

/// A client host's NLM service: records every call; answers GRANTED with NLM_GRANTED
/// (echoing the cookie) and everything else with a void reply. When
/// [`NlmListener::answer_granted_msg_to`] is set, a GRANTED_MSG is also answered the
/// asynchronous way, with a GRANTED_RES call to that address.
pub struct NlmListener {
    pub server: RpcServer,
    calls: Receiver<Received>,
    answer_to: Arc<Mutex<Option<SocketAddr>>>,
}

impl NlmListener {
    pub fn spawn() -> io::Result<Self> {
        let (tx, calls): (Sender<Received>, _) = mpsc::channel();
        let tx = Mutex::new(tx);
        let answer_to: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let answer = Arc::clone(&answer_to);
        let handler: Arc<Handler> = Arc::new(move |transport, header, args| {
            if header.program != NLM_PROGRAM {
                return Some(Reply::accepted(header.xid, AcceptStat::ProgUnavail));
            }
            let Some(version) = NlmVersion::from_wire(header.version) else {
                return Some(Reply::accepted(
                    header.xid,
                    AcceptStat::ProgMismatch { low: 1, high: 4 },
                ));
            };
            let call = match nlm::decode_call(version, header.procedure, args) {
                Ok(call) => call,
                Err(nlm::NlmDecodeError::ProcUnavail(_)) => {
                    return Some(Reply::accepted(header.xid, AcceptStat::ProcUnavail));
                }
                Err(nlm::NlmDecodeError::Garbage(_)) => {
                    return Some(Reply::accepted(header.xid, AcceptStat::GarbageArgs));
                }
            };
            let reply = match &call {
                NlmCall::Granted(a) => NlmReply::Res(Res {
                    cookie: a.cookie.clone(),
                    stat: Stat::Granted,
                }),
                _ => NlmReply::Void,
            };
            if let NlmCall::GrantedMsg(a) = &call
                && let Some(server) = *answer.lock().unwrap_or_else(|e| e.into_inner())
            {
                let cookie = a.cookie.clone();
                std::thread::spawn(move || {
                    if let Ok(mut c) = NlmClient::connect(Transport::Tcp, server, version) {
                        let _ = c.res_call(
                            nlm::NlmProc::GrantedRes,
                            Res {
                                cookie,
                                stat: Stat::Granted,
                            },
                        );
                    }
                });
            }
            let _ = tx.lock().unwrap_or_else(|e| e.into_inner()).send(Received {
                transport,
                version: header.version,
                call,
            });
            let mut results = Vec::new();
            nlm::encode_reply(version, &reply, &mut results).ok()?;
            Some(Reply::success(header.xid, results))
        });
        Ok(NlmListener {
            server: RpcServer::spawn(handler)?,
            calls,
            answer_to,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Makes the listener answer GRANTED_MSG with a GRANTED_RES call to `server`.
    pub fn answer_granted_msg_to(&self, server: SocketAddr) {
        *self.answer_to.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
    }

    /// The next call received within `within`, if any.
    pub fn next_call(&self, within: Duration) -> Option<Received> {
        self.calls.recv_timeout(within).ok()
    }

    /// Waits up to `within` for a call matching `wanted`, returning it and every other call
    /// received before it.
    pub fn wait_for(
        &self,
        within: Duration,
        wanted: impl Fn(&NlmCall) -> bool,
    ) -> (Option<Received>, Vec<Received>) {
        let deadline = std::time::Instant::now() + within;
        let mut others = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.calls.recv_timeout(left) {
                Ok(r) if wanted(&r.call) => return (Some(r), others),
                Ok(r) => others.push(r),
                Err(_) => return (None, others),
            }
        }
    }
}

/// A listener and a portmapper pointing at it: one simulated client host.
pub struct ClientHost {
    pub listener: NlmListener,
    pub portmapper: Portmapper,
}

impl ClientHost {
    pub fn spawn() -> io::Result<Self> {
        let listener = NlmListener::spawn()?;
        let portmapper = Portmapper::spawn(listener.port())?;
        Ok(ClientHost {
            listener,
            portmapper,
        })
    }
}
