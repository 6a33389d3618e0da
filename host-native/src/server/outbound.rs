//! Calls the server makes: portmapper GETPORT/SET/UNSET, NSM SM_MON/SM_UNMON, and NLM callbacks
//! (GRANTED, GRANTED_MSG, *_RES). One call per socket, with a deadline; nothing here can hang the
//! server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

use crate::portmap::{IPPROTO_TCP, IPPROTO_UDP, Mapping, PMAP_PROGRAM, PMAP_VERSION, PmapProc};
use crate::rpc::{
    AcceptStat, Auth, CallHeader, RecordDecoder, ReplyBody, decode_reply, encode_call,
    encode_record,
};
use crate::xdr::{decode_exact, encode_to_vec};

/// The transport a request came on (and a callback goes out on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn ipproto(self) -> u32 {
        match self {
            Transport::Tcp => IPPROTO_TCP,
            Transport::Udp => IPPROTO_UDP,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// Why an outgoing call has no result.
#[derive(Debug, thiserror::Error)]
pub enum CallFailure {
    #[error("no answer within the deadline")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed reply: {0}")]
    Malformed(String),
    #[error("call rejected: {0:?}")]
    Rejected(ReplyBody),
    #[error("too many outbound calls in flight (--max-outbound-calls)")]
    Busy,
    /// Not sent: the leadership lease ran out (`call_while`).
    #[error("not sent: this instance no longer leads")]
    NotLeader,
}

static NEXT_XID: AtomicU32 = AtomicU32::new(0);

/// A fresh xid; the first is derived from the clock so a restarted server does not reuse the last
/// run's xids against a peer's reply cache.
pub fn next_xid() -> u32 {
    let mut xid = NEXT_XID.fetch_add(1, Ordering::Relaxed);
    if xid == 0 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u32)
            | 1;
        let _ = NEXT_XID.compare_exchange(
            1,
            seed.wrapping_add(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        xid = seed;
    }
    xid
}

fn call_record(program: u32, version: u32, procedure: u32, args: &[u8]) -> (u32, Vec<u8>) {
    let xid = next_xid();
    let header = CallHeader {
        xid,
        program,
        version,
        procedure,
        cred: Auth::None,
        verf: Auth::None,
    };
    let mut out = Vec::with_capacity(40 + args.len());
    encode_call(&header, args, &mut out).expect("AUTH_NONE always encodes");
    (xid, out)
}

/// A call record for (program, version, procedure) with AUTH_NONE and a fresh xid.
pub(crate) fn call_record_for(
    program: u32,
    version: u32,
    procedure: u32,
    args: &[u8],
) -> (u32, Vec<u8>) {
    call_record(program, version, procedure, args)
}

fn local_for(peer: SocketAddr) -> SocketAddr {
    let ip = match (peer.ip(), peer.ip().is_loopback()) {
        (IpAddr::V4(_), true) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (IpAddr::V4(_), false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (IpAddr::V6(_), true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (IpAddr::V6(_), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

pub(crate) fn results_of(xid: u32, record: &[u8]) -> Option<Result<Vec<u8>, CallFailure>> {
    let reply = match decode_reply(record) {
        Ok(r) => r,
        Err(e) => return Some(Err(CallFailure::Malformed(e.to_string()))),
    };
    if reply.xid != xid {
        return None;
    }
    Some(match reply.body {
        ReplyBody::Accepted {
            stat: AcceptStat::Success { results },
            ..
        } => Ok(results),
        other => Err(CallFailure::Rejected(other)),
    })
}

/// Makes one call and returns its encoded results. `expect_reply: false` sends a one-way call
/// (the `*_MSG`/`*_RES` style): UDP returns once sent; TCP waits for the reply until the deadline but
/// ignores what it says.
pub async fn call(
    transport: Transport,
    peer: SocketAddr,
    program: (u32, u32, u32),
    args: &[u8],
    timeout: Duration,
    expect_reply: bool,
) -> Result<Vec<u8>, CallFailure> {
    call_while(
        || true,
        transport,
        peer,
        program,
        args,
        timeout,
        expect_reply,
    )
    .await
}

/// [`call`], sending (and resending) only while `may_send()` says so, asked right before each send:
/// callbacks to clients check the leadership gate here.
pub async fn call_while(
    may_send: impl Fn() -> bool,
    transport: Transport,
    peer: SocketAddr,
    (program, version, procedure): (u32, u32, u32),
    args: &[u8],
    timeout: Duration,
    expect_reply: bool,
) -> Result<Vec<u8>, CallFailure> {
    let deadline = Instant::now() + timeout;
    let check = || {
        if may_send() {
            Ok(())
        } else {
            Err(CallFailure::NotLeader)
        }
    };
    let (xid, record) = call_record(program, version, procedure, args);
    match transport {
        Transport::Udp => {
            let socket = UdpSocket::bind(local_for(peer)).await?;
            socket.connect(peer).await?;
            check()?;
            socket.send(&record).await?;
            if !expect_reply {
                return Ok(Vec::new());
            }
            let mut buf = vec![0u8; 65_536];
            // Resend every half second until the deadline, like a UDP RPC client.
            loop {
                let resend = (Instant::now() + Duration::from_millis(500)).min(deadline);
                match timeout_at(resend, socket.recv(&mut buf)).await {
                    Ok(Ok(n)) => {
                        if let Some(result) = results_of(xid, &buf[..n]) {
                            return result;
                        }
                    }
                    // ICMP port unreachable shows up as a receive error.
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) if Instant::now() >= deadline => return Err(CallFailure::Timeout),
                    Err(_) => {
                        check()?;
                        socket.send(&record).await?;
                    }
                }
            }
        }
        Transport::Tcp => {
            let work = async {
                let mut stream = TcpStream::connect(peer).await?;
                let mut framed = Vec::with_capacity(record.len() + 4);
                encode_record(&record, &mut framed);
                check()?;
                stream.write_all(&framed).await?;
                let mut decoder = RecordDecoder::new();
                let mut buf = vec![0u8; 8192];
                loop {
                    let n = stream.read(&mut buf).await?;
                    if n == 0 {
                        return Err(CallFailure::Io(std::io::ErrorKind::UnexpectedEof.into()));
                    }
                    decoder
                        .push(&buf[..n])
                        .map_err(|e| CallFailure::Malformed(e.to_string()))?;
                    while let Some(rec) = decoder.next_record() {
                        if let Some(result) = results_of(xid, &rec) {
                            return result;
                        }
                    }
                }
            };
            match timeout_at(deadline, work).await {
                Ok(result) => result,
                Err(_) if !expect_reply => Ok(Vec::new()),
                Err(_) => Err(CallFailure::Timeout),
            }
        }
    }
}

/// Portmapper GETPORT over UDP: the port of (program, version, protocol) at `pmap`; 0 = not
/// registered.
pub async fn getport(
    pmap: SocketAddr,
    program: u32,
    version: u32,
    transport: Transport,
    timeout: Duration,
) -> Result<u16, CallFailure> {
    let (procedure, args) = getport_call(program, version, transport);
    let results = call(Transport::Udp, pmap, procedure, &args, timeout, true).await?;
    getport_port(&results)
}

/// The portmapper GETPORT call for (program, version, protocol): its (program, version, procedure)
/// and encoded arguments.
pub(crate) fn getport_call(
    program: u32,
    version: u32,
    transport: Transport,
) -> ((u32, u32, u32), Vec<u8>) {
    let args = encode_to_vec(&Mapping {
        prog: program,
        vers: version,
        prot: transport.ipproto(),
        port: 0,
    })
    .expect("a mapping always encodes");
    ((PMAP_PROGRAM, PMAP_VERSION, PmapProc::Getport as u32), args)
}

/// The port a GETPORT reply's results name.
pub(crate) fn getport_port(results: &[u8]) -> Result<u16, CallFailure> {
    let port: u32 = decode_exact(results).map_err(|e| CallFailure::Malformed(e.to_string()))?;
    u16::try_from(port).map_err(|_| CallFailure::Malformed(format!("port {port}")))
}

/// Portmapper SET (`set: true`) or UNSET of one mapping; the portmapper's boolean answer.
pub async fn pmap_set(
    pmap: SocketAddr,
    mapping: Mapping,
    set: bool,
    timeout: Duration,
) -> Result<bool, CallFailure> {
    let args = encode_to_vec(&mapping).expect("a mapping always encodes");
    let procedure = if set { PmapProc::Set } else { PmapProc::Unset };
    let results = call(
        Transport::Udp,
        pmap,
        (PMAP_PROGRAM, PMAP_VERSION, procedure as u32),
        &args,
        timeout,
        true,
    )
    .await?;
    decode_exact(&results).map_err(|e| CallFailure::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A callback whose leadership gate has shut is not sent at all, on either transport.
    #[tokio::test]
    async fn nothing_is_sent_once_may_send_says_no() {
        let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = peer.local_addr().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp_addr = listener.local_addr().unwrap();
        for (transport, to) in [(Transport::Udp, addr), (Transport::Tcp, tcp_addr)] {
            let result = call_while(
                || false,
                transport,
                to,
                (100021, 4, 5),
                &[],
                Duration::from_millis(200),
                true,
            )
            .await;
            assert!(matches!(result, Err(CallFailure::NotLeader)), "{result:?}");
        }
        let mut buf = [0u8; 64];
        let received =
            tokio::time::timeout(Duration::from_millis(100), peer.recv_from(&mut buf)).await;
        assert!(received.is_err(), "a datagram left: {received:?}");
        // The TCP connection was made (the check comes right before the write) but carried nothing.
        let (mut stream, _) = listener.accept().await.unwrap();
        let read = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0))), "bytes arrived: {read:?}");
    }
}
