//! A small RPC server on one free 127.0.0.1 port serving both TCP and UDP, a thread per
//! socket: the shape of every peer brlockd calls (a portmapper, a client's NLM service, a statd).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use brlock_wire::rpc::{
    CallHeader, RecordDecoder, Reply, decode_call, encode_record, encode_reply,
};

use crate::client::Transport;

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
        // The threads look at `stop` this often: a dropped server is gone within 50-100 ms.
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

/// Calls a fake keeps for its test to read. Later ones are still answered but not recorded, so
/// a caller that never stops cannot grow a test's memory without bound.
pub const CALLS_KEPT: usize = 1024;

/// What a fake saw, in arrival order, at most [`CALLS_KEPT`] entries.
pub(crate) struct CallLog<T>(Mutex<Vec<T>>);

impl<T: Clone> CallLog<T> {
    pub(crate) fn new() -> Self {
        CallLog(Mutex::new(Vec::new()))
    }

    pub(crate) fn push(&self, entry: T) {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() < CALLS_KEPT {
            log.push(entry);
        }
    }

    pub(crate) fn all(&self) -> Vec<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
