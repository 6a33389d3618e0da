//! A small blocking ONC RPC client over TCP or UDP, and an NLM client on top of it.
//!
//! Everything on the wire goes through `brlock_wire`'s codec (`rpc::encode_call`,
//! `rpc::decode_reply`, `nlm::encode_call`, `nlm::decode_reply`, record marking). The raw
//! entry points ([`RpcClient::call_raw`], [`RpcClient::send_bytes`]) exist so tests can send
//! what the codec refuses to produce: truncated arguments, oversized netobjs, bad headers.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use brlock_wire::nlm::{
    self, CancelArgs, Holder, Lock, LockArgs, NLM_PROGRAM, NlmCall, NlmProc, NlmReply, NlmVersion,
    NotifyArgs, Res, Share, ShareAccess, ShareArgs, ShareMode, ShareRes, Stat, TestArgs, TestRes,
    UnlockArgs,
};
use brlock_wire::rpc::{
    AcceptStat, Auth, AuthSys, CallHeader, RecordDecoder, Reply, ReplyBody, decode_reply,
    encode_call, encode_record,
};

/// How long one call waits for its reply before it counts as lost.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub const ALL: [Transport; 2] = [Transport::Tcp, Transport::Udp];
}

/// Why a call produced no usable answer.
#[derive(Debug)]
pub enum CallFailure {
    Io(io::Error),
    /// No reply within [`CALL_TIMEOUT`] (UDP: after all retransmissions).
    Timeout,
    /// The peer closed the TCP connection.
    Closed,
    /// The reply could not be decoded.
    BadReply(String),
    /// A reply arrived, but not MSG_ACCEPTED/SUCCESS.
    Rejected(ReplyBody),
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Io(e) => write!(f, "I/O error: {e}"),
            CallFailure::Timeout => write!(f, "no reply within {CALL_TIMEOUT:?}"),
            CallFailure::Closed => write!(f, "connection closed by the server"),
            CallFailure::BadReply(e) => write!(f, "undecodable reply: {e}"),
            CallFailure::Rejected(body) => write!(f, "call not successful: {body:?}"),
        }
    }
}

impl std::error::Error for CallFailure {}

impl From<io::Error> for CallFailure {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CallFailure::Timeout,
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => CallFailure::Closed,
            _ => CallFailure::Io(e),
        }
    }
}

enum Socket {
    Tcp {
        stream: TcpStream,
        decoder: RecordDecoder,
    },
    Udp(UdpSocket),
}

/// One connection (TCP) or one socket (UDP) to an RPC server.
pub struct RpcClient {
    socket: Socket,
    peer: SocketAddr,
    next_xid: u32,
    /// Credential sent with every call.
    pub cred: Auth,
}

impl RpcClient {
    pub fn connect(transport: Transport, peer: SocketAddr) -> io::Result<Self> {
        let socket = match transport {
            Transport::Tcp => {
                let stream = TcpStream::connect_timeout(&peer, CALL_TIMEOUT)?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(CALL_TIMEOUT))?;
                stream.set_write_timeout(Some(CALL_TIMEOUT))?;
                Socket::Tcp {
                    stream,
                    decoder: RecordDecoder::new(),
                }
            }
            Transport::Udp => {
                let local: SocketAddr = if peer.is_ipv4() {
                    ([127, 0, 0, 1], 0).into()
                } else {
                    (std::net::Ipv6Addr::LOCALHOST, 0).into()
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(peer)?;
                Socket::Udp(socket)
            }
        };
        // Distinct xids per client make a misrouted reply visible.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = std::process::id().wrapping_mul(0x9e37_79b9)
            ^ u32::from(peer.port()).rotate_left(16)
            ^ nanos;
        Ok(RpcClient {
            socket,
            peer,
            next_xid: seed,
            cred: Auth::Sys(AuthSys {
                stamp: 1,
                machine_name: b"brlock-testkit".to_vec(),
                uid: 0,
                gid: 0,
                gids: Vec::new(),
            }),
        })
    }

    /// A UDP client whose calls come from `local` (e.g. 127.0.0.2:0, or a privileged port).
    pub fn connect_udp_from(local: SocketAddr, peer: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(local)?;
        socket.connect(peer)?;
        let mut client = Self::connect(Transport::Udp, peer)?;
        client.socket = Socket::Udp(socket);
        Ok(client)
    }

    pub fn transport(&self) -> Transport {
        match self.socket {
            Socket::Tcp { .. } => Transport::Tcp,
            Socket::Udp(_) => Transport::Udp,
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The local address of the socket (the "client's source address" the server sees).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match &self.socket {
            Socket::Tcp { stream, .. } => stream.local_addr(),
            Socket::Udp(s) => s.local_addr(),
        }
    }

    pub fn fresh_xid(&mut self) -> u32 {
        self.next_xid = self.next_xid.wrapping_add(1);
        self.next_xid
    }

    /// Encodes a call header with this client's credential and `args` (already XDR).
    pub fn encode(
        &mut self,
        program: u32,
        version: u32,
        procedure: u32,
        args: &[u8],
    ) -> (u32, Vec<u8>) {
        let xid = self.fresh_xid();
        let header = CallHeader {
            xid,
            program,
            version,
            procedure,
            cred: self.cred.clone(),
            verf: Auth::None,
        };
        let mut msg = Vec::new();
        encode_call(&header, args, &mut msg).expect("credential fits 400 bytes");
        (xid, msg)
    }

    /// Sends one call and returns the whole reply, whatever its kind.
    pub fn call_raw(
        &mut self,
        program: u32,
        version: u32,
        procedure: u32,
        args: &[u8],
    ) -> Result<Reply, CallFailure> {
        let (xid, msg) = self.encode(program, version, procedure, args);
        self.exchange(xid, &msg)
    }

    /// Sends an already-encoded RPC message (unframed) and waits for the reply with `xid`.
    /// UDP retransmits the same datagram twice more if no answer comes.
    pub fn exchange(&mut self, xid: u32, msg: &[u8]) -> Result<Reply, CallFailure> {
        self.send_message(msg)?;
        match &mut self.socket {
            Socket::Tcp { .. } => loop {
                let record = self.recv_record()?;
                let reply =
                    decode_reply(&record).map_err(|e| CallFailure::BadReply(e.to_string()))?;
                if reply.xid == xid {
                    return Ok(reply);
                }
            },
            Socket::Udp(socket) => {
                let per_try = CALL_TIMEOUT / 3;
                socket.set_read_timeout(Some(per_try))?;
                let mut buf = vec![0u8; 65536];
                for attempt in 0..3 {
                    if attempt > 0 {
                        socket.send(msg)?;
                    }
                    loop {
                        match socket.recv(&mut buf) {
                            Ok(n) => {
                                let reply = decode_reply(&buf[..n])
                                    .map_err(|e| CallFailure::BadReply(e.to_string()))?;
                                if reply.xid == xid {
                                    return Ok(reply);
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                ) =>
                            {
                                break;
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Err(CallFailure::Timeout)
            }
        }
    }

    /// Sends one unframed RPC message (framed as one record on TCP, one datagram on UDP)
    /// without waiting for anything.
    pub fn send_message(&mut self, msg: &[u8]) -> Result<(), CallFailure> {
        match &mut self.socket {
            Socket::Tcp { stream, .. } => {
                let mut framed = Vec::with_capacity(msg.len() + 4);
                encode_record(msg, &mut framed);
                stream.write_all(&framed)?;
            }
            Socket::Udp(socket) => {
                socket.send(msg)?;
            }
        }
        Ok(())
    }

    /// Writes raw bytes: to the TCP stream with no framing added, or as one UDP datagram.
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.socket {
            Socket::Tcp { stream, .. } => stream.write_all(bytes),
            Socket::Udp(socket) => socket.send(bytes).map(|_| ()),
        }
    }

    /// The next complete record on a TCP connection, or the next datagram on UDP.
    pub fn recv_record(&mut self) -> Result<Vec<u8>, CallFailure> {
        let (stream, decoder) = match &mut self.socket {
            Socket::Tcp { stream, decoder } => (stream, decoder),
            Socket::Udp(socket) => {
                socket.set_read_timeout(Some(CALL_TIMEOUT))?;
                let mut buf = vec![0u8; 65536];
                let n = socket.recv(&mut buf)?;
                buf.truncate(n);
                return Ok(buf);
            }
        };
        let mut buf = [0u8; 8192];
        loop {
            if let Some(record) = decoder.next_record() {
                return Ok(record);
            }
            let n = stream.read(&mut buf)?;
            if n == 0 {
                return Err(CallFailure::Closed);
            }
            decoder
                .push(&buf[..n])
                .map_err(|e| CallFailure::BadReply(e.to_string()))?;
        }
    }

    /// Waits until the server closes this TCP connection; `Ok(true)` if it did within
    /// `within`, `Ok(false)` if it is still open then. Any bytes that arrive are discarded.
    /// A UDP socket has no connection to close: `Unsupported`.
    pub fn wait_closed(&mut self, within: Duration) -> io::Result<bool> {
        let Socket::Tcp { stream, .. } = &mut self.socket else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "wait_closed is for TCP connections",
            ));
        };
        stream.set_read_timeout(Some(within))?;
        let mut buf = [0u8; 4096];
        let deadline = std::time::Instant::now() + within;
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(_) => {
                    if std::time::Instant::now() > deadline {
                        return Ok(false);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    return Ok(true);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The results of a successful reply, or why there are none.
pub fn success_results(reply: Reply) -> Result<Vec<u8>, CallFailure> {
    match reply.body {
        ReplyBody::Accepted {
            stat: AcceptStat::Success { results },
            ..
        } => Ok(results),
        body => Err(CallFailure::Rejected(body)),
    }
}

/// An NLM client of one version over one [`RpcClient`].
pub struct NlmClient {
    pub rpc: RpcClient,
    pub version: NlmVersion,
    next_cookie: u64,
}

/// Who holds or asks for a lock: (caller_name, svid, oh), as NLM identifies an owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub caller: Vec<u8>,
    pub svid: u32,
    pub oh: Vec<u8>,
}

impl Owner {
    pub fn new(caller: &str, svid: u32, oh: &str) -> Self {
        Owner {
            caller: caller.as_bytes().to_vec(),
            svid,
            oh: oh.as_bytes().to_vec(),
        }
    }

    pub fn lock(&self, fh: &[u8], offset: u64, len: u64) -> Lock {
        Lock {
            caller_name: self.caller.clone(),
            fh: fh.to_vec(),
            oh: self.oh.clone(),
            svid: self.svid,
            offset,
            len,
        }
    }
}

impl NlmClient {
    pub fn connect(
        transport: Transport,
        peer: SocketAddr,
        version: NlmVersion,
    ) -> io::Result<Self> {
        Ok(NlmClient {
            rpc: RpcClient::connect(transport, peer)?,
            version,
            next_cookie: 0,
        })
    }

    /// An NLM client over UDP whose calls come from `local`.
    pub fn connect_udp_from(
        local: SocketAddr,
        peer: SocketAddr,
        version: NlmVersion,
    ) -> io::Result<Self> {
        Ok(NlmClient {
            rpc: RpcClient::connect_udp_from(local, peer)?,
            version,
            next_cookie: 0,
        })
    }

    /// A fresh 8-byte cookie, as the rpcgen client sends.
    pub fn cookie(&mut self) -> Vec<u8> {
        self.next_cookie += 1;
        self.next_cookie.to_be_bytes().to_vec()
    }

    /// Encodes `call` for this client's version. Panics if the codec refuses (a test bug).
    /// A file handle the tests name with a short string is zero-padded to 32 bytes in v1/v3
    /// (`nlm::fh_for`), the only size those versions carry.
    pub fn encode_args(&self, call: &NlmCall) -> Vec<u8> {
        let mut call = call.clone();
        if let Some(fh) = call.fh_mut() {
            *fh = nlm::fh_for(self.version, fh);
        }
        let call = &call;
        let mut args = Vec::new();
        nlm::encode_call(self.version, call, &mut args)
            .unwrap_or_else(|e| panic!("cannot encode {call:?} for {:?}: {e}", self.version));
        args
    }

    /// One synchronous NLM call; the reply decoded as `call`'s procedure answers.
    pub fn call(&mut self, call: &NlmCall) -> Result<NlmReply, CallFailure> {
        let procedure = call.procedure();
        let args = self.encode_args(call);
        let reply = self
            .rpc
            .call_raw(NLM_PROGRAM, self.version as u32, procedure as u32, &args)?;
        let results = success_results(reply)?;
        nlm::decode_reply(self.version, procedure, &results)
            .map_err(|e| CallFailure::BadReply(format!("{procedure:?} results: {e}")))
    }

    /// Sends `call` and does not wait for a reply (for `*_MSG`, `*_RES` and FREE_ALL as
    /// one-way messages). Returns the xid used.
    pub fn send(&mut self, call: &NlmCall) -> Result<u32, CallFailure> {
        let args = self.encode_args(call);
        let (xid, msg) = self.rpc.encode(
            NLM_PROGRAM,
            self.version as u32,
            call.procedure() as u32,
            &args,
        );
        self.rpc.send_message(&msg)?;
        Ok(xid)
    }

    pub fn null(&mut self) -> Result<(), CallFailure> {
        match self.call(&NlmCall::Null)? {
            NlmReply::Void => Ok(()),
            other => Err(CallFailure::BadReply(format!("NULL answered {other:?}"))),
        }
    }

    fn expect_res(&mut self, call: &NlmCall, cookie: &[u8]) -> Result<Stat, CallFailure> {
        match self.call(call)? {
            NlmReply::Res(Res { cookie: c, stat }) if c == cookie => Ok(stat),
            other => Err(CallFailure::BadReply(format!(
                "{:?} answered {other:?} (sent cookie {cookie:02x?})",
                call.procedure()
            ))),
        }
    }

    pub fn lock_args(
        &mut self,
        owner: &Owner,
        fh: &[u8],
        exclusive: bool,
        offset: u64,
        len: u64,
        block: bool,
    ) -> LockArgs {
        LockArgs {
            cookie: self.cookie(),
            block,
            exclusive,
            lock: owner.lock(fh, offset, len),
            reclaim: false,
            state: 1,
        }
    }

    pub fn lock(
        &mut self,
        owner: &Owner,
        fh: &[u8],
        exclusive: bool,
        offset: u64,
        len: u64,
        block: bool,
    ) -> Result<Stat, CallFailure> {
        let args = self.lock_args(owner, fh, exclusive, offset, len, block);
        let cookie = args.cookie.clone();
        self.expect_res(&NlmCall::Lock(args), &cookie)
    }

    pub fn lock_with(&mut self, args: LockArgs) -> Result<Stat, CallFailure> {
        let cookie = args.cookie.clone();
        self.expect_res(&NlmCall::Lock(args), &cookie)
    }

    pub fn nm_lock(
        &mut self,
        owner: &Owner,
        fh: &[u8],
        exclusive: bool,
        offset: u64,
        len: u64,
    ) -> Result<Stat, CallFailure> {
        let mut args = self.lock_args(owner, fh, exclusive, offset, len, false);
        args.state = 0;
        let cookie = args.cookie.clone();
        self.expect_res(&NlmCall::NmLock(args), &cookie)
    }

    pub fn unlock(
        &mut self,
        owner: &Owner,
        fh: &[u8],
        offset: u64,
        len: u64,
    ) -> Result<Stat, CallFailure> {
        let cookie = self.cookie();
        let call = NlmCall::Unlock(UnlockArgs {
            cookie: cookie.clone(),
            lock: owner.lock(fh, offset, len),
        });
        self.expect_res(&call, &cookie)
    }

    pub fn cancel(
        &mut self,
        owner: &Owner,
        fh: &[u8],
        exclusive: bool,
        offset: u64,
        len: u64,
        block: bool,
    ) -> Result<Stat, CallFailure> {
        let cookie = self.cookie();
        let call = NlmCall::Cancel(CancelArgs {
            cookie: cookie.clone(),
            block,
            exclusive,
            lock: owner.lock(fh, offset, len),
        });
        self.expect_res(&call, &cookie)
    }

    /// TEST: `Ok(None)` when granted, `Ok(Some(holder))` when denied, `Err(stat)` inside
    /// `Ok` is not possible: other statuses come back as [`TestOutcome::Other`].
    pub fn test(
        &mut self,
        owner: &Owner,
        fh: &[u8],
        exclusive: bool,
        offset: u64,
        len: u64,
    ) -> Result<TestOutcome, CallFailure> {
        let cookie = self.cookie();
        let call = NlmCall::Test(TestArgs {
            cookie: cookie.clone(),
            exclusive,
            lock: owner.lock(fh, offset, len),
        });
        match self.call(&call)? {
            NlmReply::Test(TestRes {
                cookie: c,
                stat,
                holder,
            }) if c == cookie => Ok(match (stat, holder) {
                (Stat::Granted, _) => TestOutcome::Granted,
                (Stat::Denied, Some(h)) => TestOutcome::Denied(h),
                (stat, _) => TestOutcome::Other(stat),
            }),
            other => Err(CallFailure::BadReply(format!(
                "TEST answered {other:?} (sent cookie {cookie:02x?})"
            ))),
        }
    }

    pub fn share(
        &mut self,
        unshare: bool,
        caller: &str,
        oh: &str,
        fh: &[u8],
        mode: ShareMode,
        access: ShareAccess,
    ) -> Result<Stat, CallFailure> {
        let cookie = self.cookie();
        let args = ShareArgs {
            cookie: cookie.clone(),
            share: Share {
                caller_name: caller.as_bytes().to_vec(),
                fh: fh.to_vec(),
                oh: oh.as_bytes().to_vec(),
                mode,
                access,
            },
            reclaim: false,
        };
        let call = if unshare {
            NlmCall::Unshare(args)
        } else {
            NlmCall::Share(args)
        };
        match self.call(&call)? {
            NlmReply::Share(ShareRes {
                cookie: c, stat, ..
            }) if c == cookie => Ok(stat),
            other => Err(CallFailure::BadReply(format!(
                "{:?} answered {other:?}",
                call.procedure()
            ))),
        }
    }

    /// SHARE with `reclaim` set, as after a server restart.
    pub fn share_reclaim(
        &mut self,
        caller: &str,
        oh: &str,
        fh: &[u8],
        mode: ShareMode,
        access: ShareAccess,
    ) -> Result<Stat, CallFailure> {
        let cookie = self.cookie();
        let call = NlmCall::Share(ShareArgs {
            cookie: cookie.clone(),
            share: Share {
                caller_name: caller.as_bytes().to_vec(),
                fh: fh.to_vec(),
                oh: oh.as_bytes().to_vec(),
                mode,
                access,
            },
            reclaim: true,
        });
        match self.call(&call)? {
            NlmReply::Share(ShareRes {
                cookie: c, stat, ..
            }) if c == cookie => Ok(stat),
            other => Err(CallFailure::BadReply(format!("SHARE answered {other:?}"))),
        }
    }

    /// FREE_ALL, waiting for its (void) reply.
    pub fn free_all(&mut self, name: &str, state: u32) -> Result<(), CallFailure> {
        let call = NlmCall::FreeAll(NotifyArgs {
            name: name.as_bytes().to_vec(),
            state,
        });
        match self.call(&call)? {
            NlmReply::Void => Ok(()),
            other => Err(CallFailure::BadReply(format!(
                "FREE_ALL answered {other:?}"
            ))),
        }
    }

    /// A `*_RES` call (e.g. GRANTED_RES) waiting for its void reply.
    pub fn res_call(&mut self, procedure: NlmProc, res: Res) -> Result<(), CallFailure> {
        let call = match procedure {
            NlmProc::LockRes => NlmCall::LockRes(res),
            NlmProc::CancelRes => NlmCall::CancelRes(res),
            NlmProc::UnlockRes => NlmCall::UnlockRes(res),
            NlmProc::GrantedRes => NlmCall::GrantedRes(res),
            other => {
                return Err(CallFailure::Io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{other:?} is not a *_RES procedure taking nlm_res"),
                )));
            }
        };
        match self.call(&call)? {
            NlmReply::Void => Ok(()),
            other => Err(CallFailure::BadReply(format!(
                "{procedure:?} answered {other:?}"
            ))),
        }
    }
}

/// What a TEST said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestOutcome {
    Granted,
    Denied(Holder),
    Other(Stat),
}
