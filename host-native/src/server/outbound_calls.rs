//! The server's own calls to clients and to statd (issue 13, row 8): GRANTED and GRANTED_MSG, the
//! `*_RES` answers, portmap GETPORT and SM_MON/SM_UNMON. Over UDP they share one socket per address
//! family, whose receive task hands each reply to the call waiting for its xid — and only if it
//! comes from the address called; over TCP each call has its own connection. At most
//! `--max-outbound-calls` are in flight, each under its deadline; one more fails at once
//! ([`CallFailure::Busy`]), so nothing here grows with the number of replies clients leave unsent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use foldhash::{HashMap, HashMapExt};
use tokio::net::UdpSocket;
use tokio::sync::{OnceCell, Semaphore, oneshot};
use tokio::task::AbortHandle;
use tokio::time::{Instant, timeout_at};
use tracing::debug;

use super::outbound::{self, CallFailure, Transport, call_record_for, results_of};

/// How often a UDP call is sent again while no reply has come (as a UDP RPC client does).
const RESEND: Duration = Duration::from_millis(500);

/// The calls waiting for a UDP reply: xid → (where the call went, who waits).
type WaitingMap = HashMap<u32, (SocketAddr, oneshot::Sender<Vec<u8>>)>;
type Waiting = Arc<Mutex<WaitingMap>>;

fn lock(waiting: &Waiting) -> MutexGuard<'_, WaitingMap> {
    waiting.lock().unwrap_or_else(|e| e.into_inner())
}

/// One family's shared socket and the calls waiting on it.
struct Family {
    socket: Arc<UdpSocket>,
    waiting: Waiting,
    receiver: AbortHandle,
}

impl Drop for Family {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

impl Family {
    async fn bind(any: IpAddr) -> std::io::Result<Family> {
        let socket = Arc::new(UdpSocket::bind(SocketAddr::new(any, 0)).await?);
        let waiting: Waiting = Arc::new(Mutex::new(HashMap::new()));
        let receiver = tokio::spawn(receive(socket.clone(), waiting.clone())).abort_handle();
        Ok(Family {
            socket,
            waiting,
            receiver,
        })
    }
}

/// Hands every reply on `socket` to the call waiting for its xid, if it came from where that call
/// went.
async fn receive(socket: Arc<UdpSocket>, waiting: Waiting) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // ICMP errors of earlier sends show up here; the calls time out on their own.
            Err(e) => {
                debug!(error = %e, "outbound UDP receive failed");
                continue;
            }
        };
        let Some(xid) = buf[..n].first_chunk::<4>().map(|b| u32::from_be_bytes(*b)) else {
            continue;
        };
        let mut waiting = lock(&waiting);
        if waiting.get(&xid).is_some_and(|(to, _)| *to == from) {
            let (_, tx) = waiting.remove(&xid).expect("checked");
            let _ = tx.send(buf[..n].to_vec());
        } else {
            debug!(%from, xid, "outbound UDP reply for no call of ours from there: dropped");
        }
    }
}

/// Removes a call's entry however the call ends.
struct Registered<'a> {
    waiting: &'a Waiting,
    xid: u32,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(self.waiting).remove(&self.xid);
    }
}

/// The server's outbound calls: the shared UDP sockets and the bound on calls in flight.
pub(crate) struct OutboundCalls {
    in_flight: Arc<Semaphore>,
    v4: OnceCell<Family>,
    v6: OnceCell<Family>,
}

impl OutboundCalls {
    pub(crate) fn new(max_in_flight: usize) -> Self {
        OutboundCalls {
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
            v4: OnceCell::new(),
            v6: OnceCell::new(),
        }
    }

    async fn family(&self, peer: SocketAddr) -> std::io::Result<&Family> {
        match peer {
            SocketAddr::V4(_) => {
                self.v4
                    .get_or_try_init(|| Family::bind(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
                    .await
            }
            SocketAddr::V6(_) => {
                self.v6
                    .get_or_try_init(|| Family::bind(IpAddr::V6(Ipv6Addr::UNSPECIFIED)))
                    .await
            }
        }
    }

    /// Makes one call and returns its encoded results, as [`outbound::call`] does, within the bound.
    pub(crate) async fn call(
        &self,
        transport: Transport,
        peer: SocketAddr,
        procedure: (u32, u32, u32),
        args: &[u8],
        timeout: Duration,
        expect_reply: bool,
    ) -> Result<Vec<u8>, CallFailure> {
        self.call_while(
            || true,
            transport,
            peer,
            procedure,
            args,
            timeout,
            expect_reply,
        )
        .await
    }

    /// [`OutboundCalls::call`], sending (and resending) only while `may_send()` says so, asked right
    /// before each send: callbacks to clients check the leadership gate here
    /// ([`outbound::call_while`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call_while(
        &self,
        may_send: impl Fn() -> bool,
        transport: Transport,
        peer: SocketAddr,
        procedure: (u32, u32, u32),
        args: &[u8],
        timeout: Duration,
        expect_reply: bool,
    ) -> Result<Vec<u8>, CallFailure> {
        let Ok(_permit) = self.in_flight.try_acquire() else {
            return Err(CallFailure::Busy);
        };
        match transport {
            Transport::Tcp => {
                outbound::call_while(
                    may_send,
                    transport,
                    peer,
                    procedure,
                    args,
                    timeout,
                    expect_reply,
                )
                .await
            }
            Transport::Udp => {
                self.call_udp(&may_send, peer, procedure, args, timeout, expect_reply)
                    .await
            }
        }
    }

    async fn call_udp(
        &self,
        may_send: &impl Fn() -> bool,
        peer: SocketAddr,
        (program, version, procedure): (u32, u32, u32),
        args: &[u8],
        timeout: Duration,
        expect_reply: bool,
    ) -> Result<Vec<u8>, CallFailure> {
        let deadline = Instant::now() + timeout;
        let family = self.family(peer).await?;
        let (xid, record) = call_record_for(program, version, procedure, args);
        let check = || {
            if may_send() {
                Ok(())
            } else {
                Err(CallFailure::NotLeader)
            }
        };
        if !expect_reply {
            check()?;
            family.socket.send_to(&record, peer).await?;
            return Ok(Vec::new());
        }
        let (tx, mut rx) = oneshot::channel();
        lock(&family.waiting).insert(xid, (peer, tx));
        let _registered = Registered {
            waiting: &family.waiting,
            xid,
        };
        loop {
            check()?;
            family.socket.send_to(&record, peer).await?;
            let resend = (Instant::now() + RESEND).min(deadline);
            match timeout_at(resend, &mut rx).await {
                Ok(Ok(reply)) => {
                    return results_of(xid, &reply)
                        .unwrap_or_else(|| Err(CallFailure::Malformed("xid changed".into())));
                }
                Ok(Err(_)) => return Err(CallFailure::Timeout),
                Err(_) if Instant::now() >= deadline => return Err(CallFailure::Timeout),
                Err(_) => {}
            }
        }
    }

    /// Portmapper GETPORT over UDP (see [`outbound::getport`]), within the bound.
    pub(crate) async fn getport(
        &self,
        pmap: SocketAddr,
        program: u32,
        version: u32,
        transport: Transport,
        timeout: Duration,
    ) -> Result<u16, CallFailure> {
        let (procedure, args) = outbound::getport_call(program, version, transport);
        let results = self
            .call(Transport::Udp, pmap, procedure, &args, timeout, true)
            .await?;
        outbound::getport_port(&results)
    }

    /// Calls waiting for a UDP reply now (tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.v4.get().map_or(0, |f| lock(&f.waiting).len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::{Reply, decode_call, encode_reply};

    /// A UDP server that answers every call with SUCCESS and the call's own arguments, after
    /// `delay`.
    async fn echo(delay: Duration) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let call = decode_call(&buf[..n]).unwrap();
                let mut out = Vec::new();
                encode_reply(
                    &Reply::success(call.header.xid, call.args.to_vec()),
                    &mut out,
                )
                .unwrap();
                tokio::time::sleep(delay).await;
                let _ = socket.send_to(&out, from).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn calls_share_one_socket_and_get_their_own_replies() {
        let calls = Arc::new(OutboundCalls::new(64));
        let server = echo(Duration::ZERO).await;
        let mut tasks = Vec::new();
        for i in 0..32u32 {
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                let args = i.to_be_bytes();
                let got = calls
                    .call(
                        Transport::Udp,
                        server,
                        (1, 1, 1),
                        &args,
                        Duration::from_secs(5),
                        true,
                    )
                    .await
                    .unwrap();
                assert_eq!(got, args);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(calls.waiting(), 0);
    }

    #[tokio::test]
    async fn calls_past_the_bound_fail_at_once_and_time_outs_free_their_place() {
        let calls = Arc::new(OutboundCalls::new(2));
        // Nobody answers on this port.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = silent.local_addr().unwrap();
        let slow = |calls: Arc<OutboundCalls>| async move {
            calls
                .call(
                    Transport::Udp,
                    to,
                    (1, 1, 1),
                    &[],
                    Duration::from_millis(300),
                    true,
                )
                .await
        };
        let a = tokio::spawn(slow(calls.clone()));
        let b = tokio::spawn(slow(calls.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(matches!(slow(calls.clone()).await, Err(CallFailure::Busy)));
        assert!(matches!(a.await.unwrap(), Err(CallFailure::Timeout)));
        assert!(matches!(b.await.unwrap(), Err(CallFailure::Timeout)));
        assert_eq!(calls.waiting(), 0);
        // Room again.
        assert!(matches!(
            slow(calls.clone()).await,
            Err(CallFailure::Timeout)
        ));
    }

    #[tokio::test]
    async fn a_reply_from_another_address_is_not_taken() {
        let calls = OutboundCalls::new(4);
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = silent.local_addr().unwrap();
        let call = calls.call(
            Transport::Udp,
            to,
            (1, 1, 1),
            &[],
            Duration::from_millis(800),
            true,
        );
        let forge = async {
            // Read the call at the silent peer, then answer it from elsewhere.
            let mut buf = vec![0u8; 1024];
            let (n, from) = silent.recv_from(&mut buf).await.unwrap();
            let xid = decode_call(&buf[..n]).unwrap().header.xid;
            let mut out = Vec::new();
            encode_reply(&Reply::success(xid, vec![]), &mut out).unwrap();
            let other = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            other.send_to(&out, from).await.unwrap();
        };
        let (result, ()) = tokio::join!(call, forge);
        assert!(matches!(result, Err(CallFailure::Timeout)));
    }
}
