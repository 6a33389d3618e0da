//! A small NLM client and the peers a server test needs (a client's NLM callback listener and a
//! portmapper), built on the codec. For tests and tools; every call has a deadline.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::nlm::{
    self, CancelArgs, Lock, LockArgs, NLM_PROGRAM, NlmCall, NlmProc, NlmReply, NlmVersion,
    NotifyArgs, Res, Share, ShareAccess, ShareArgs, ShareMode, ShareRes, Stat, TestArgs, TestRes,
    UnlockArgs,
};
use crate::portmap::{Mapping, PMAP_PROGRAM, PmapProc};
use crate::rpc::{
    AcceptStat, Auth, CallHeader, RecordDecoder, Reply, ReplyBody, decode_call, decode_reply,
    encode_call, encode_record, encode_reply,
};
use crate::server::outbound::next_xid;
use crate::xdr::{decode_exact, encode_to_vec};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no reply in time")]
    Timeout,
    #[error("RPC error reply: {0:?}")]
    Rpc(ReplyBody),
    #[error("undecodable reply: {0}")]
    Decode(String),
}

enum Conn {
    Tcp(TcpStream, RecordDecoder),
    Udp(UdpSocket),
}

/// An NLM client over one TCP connection or UDP socket, speaking one version.
pub struct NlmClient {
    conn: Conn,
    pub version: NlmVersion,
    pub timeout: Duration,
    pub cred: Auth,
}

/// An `nlm_lock` for tests.
pub fn lock_of(caller: &str, fh: &str, svid: u32, offset: u64, len: u64) -> Lock {
    Lock {
        caller_name: caller.as_bytes().to_vec(),
        fh: fh.as_bytes().to_vec(),
        oh: format!("{caller}-{svid}").into_bytes(),
        svid,
        offset,
        len,
    }
}

/// A share reservation of `caller` (owner handle `oh`, as the tests use) on file handle `fh`.
pub fn share_of(caller: &str, fh: &str, access: ShareAccess, mode: ShareMode) -> Share {
    Share {
        caller_name: caller.as_bytes().to_vec(),
        fh: fh.as_bytes().to_vec(),
        oh: b"oh".to_vec(),
        mode,
        access,
    }
}

impl NlmClient {
    pub async fn connect_tcp(addr: SocketAddr, version: NlmVersion) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self::with(Conn::Tcp(stream, RecordDecoder::new()), version))
    }

    pub async fn connect_udp(addr: SocketAddr, version: NlmVersion) -> std::io::Result<Self> {
        let local: SocketAddr = if addr.is_ipv4() {
            "127.0.0.1:0".parse().expect("valid")
        } else {
            "[::1]:0".parse().expect("valid")
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        Ok(Self::with(Conn::Udp(socket), version))
    }

    /// A UDP client sending from `local` (e.g. another loopback address).
    pub async fn connect_udp_from(
        local: SocketAddr,
        addr: SocketAddr,
        version: NlmVersion,
    ) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(local).await?;
        socket.connect(addr).await?;
        Ok(Self::with(Conn::Udp(socket), version))
    }

    fn with(conn: Conn, version: NlmVersion) -> Self {
        Self {
            conn,
            version,
            timeout: Duration::from_secs(5),
            cred: Auth::None,
        }
    }

    /// Sends raw bytes (a TCP client must frame them itself).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.conn {
            Conn::Tcp(s, _) => s.write_all(bytes).await,
            Conn::Udp(s) => s.send(bytes).await.map(|_| ()),
        }
    }

    /// The next reply record, whatever its xid.
    pub async fn recv_reply(&mut self) -> Result<Reply, ClientError> {
        let record = tokio::time::timeout(self.timeout, self.recv_record())
            .await
            .map_err(|_| ClientError::Timeout)??;
        decode_reply(&record).map_err(|e| ClientError::Decode(e.to_string()))
    }

    async fn recv_record(&mut self) -> Result<Vec<u8>, ClientError> {
        match &mut self.conn {
            Conn::Udp(s) => {
                let mut buf = vec![0u8; 65_536];
                let n = s.recv(&mut buf).await?;
                buf.truncate(n);
                Ok(buf)
            }
            Conn::Tcp(s, decoder) => loop {
                if let Some(r) = decoder.next_record() {
                    return Ok(r);
                }
                let mut buf = [0u8; 8192];
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
                decoder
                    .push(&buf[..n])
                    .map_err(|e| ClientError::Decode(e.to_string()))?;
            },
        }
    }

    /// Encodes a call record (unframed) with the given header fields.
    pub fn call_record(
        &self,
        xid: u32,
        program: u32,
        version: u32,
        procedure: u32,
        args: &[u8],
    ) -> Vec<u8> {
        let header = CallHeader {
            xid,
            program,
            version,
            procedure,
            cred: self.cred.clone(),
            verf: Auth::None,
        };
        let mut out = Vec::new();
        encode_call(&header, args, &mut out).expect("credential fits");
        out
    }

    /// Sends one call record with `xid` and waits for the reply with that xid.
    pub async fn call_with_xid(
        &mut self,
        xid: u32,
        program: u32,
        version: u32,
        procedure: u32,
        args: &[u8],
    ) -> Result<Reply, ClientError> {
        let record = self.call_record(xid, program, version, procedure, args);
        let bytes = match self.conn {
            Conn::Tcp(..) => {
                let mut framed = Vec::new();
                encode_record(&record, &mut framed);
                framed
            }
            Conn::Udp(_) => record,
        };
        self.send_raw(&bytes).await?;
        loop {
            let reply = self.recv_reply().await?;
            if reply.xid == xid {
                return Ok(reply);
            }
        }
    }

    /// Any RPC call; the whole reply.
    pub async fn call_rpc(
        &mut self,
        program: u32,
        version: u32,
        procedure: u32,
        args: &[u8],
    ) -> Result<Reply, ClientError> {
        self.call_with_xid(next_xid(), program, version, procedure, args)
            .await
    }

    /// An NLM call in this client's version; the decoded result.
    /// A file handle shorter than 32 bytes is zero-padded in v1/v3 (`nlm::fh_for`), the only size
    /// those versions carry.
    pub async fn call(&mut self, call: &NlmCall) -> Result<NlmReply, ClientError> {
        let mut call = call.clone();
        if let Some(fh) = call.fh_mut() {
            *fh = nlm::fh_for(self.version, fh);
        }
        let call = &call;
        let mut args = Vec::new();
        nlm::encode_call(self.version, call, &mut args)
            .map_err(|e| ClientError::Decode(e.to_string()))?;
        let procedure = call.procedure();
        let reply = self
            .call_rpc(NLM_PROGRAM, self.version as u32, procedure as u32, &args)
            .await?;
        match reply.body {
            ReplyBody::Accepted {
                stat: AcceptStat::Success { results },
                ..
            } => nlm::decode_reply(self.version, procedure, &results)
                .map_err(|e| ClientError::Decode(e.to_string())),
            other => Err(ClientError::Rpc(other)),
        }
    }

    pub async fn null(&mut self) -> Result<(), ClientError> {
        self.call(&NlmCall::Null).await.map(|_| ())
    }

    pub async fn test(&mut self, lock: &Lock, exclusive: bool) -> Result<TestRes, ClientError> {
        match self
            .call(&NlmCall::Test(TestArgs {
                cookie: b"test".to_vec(),
                exclusive,
                lock: lock.clone(),
            }))
            .await?
        {
            NlmReply::Test(r) => Ok(r),
            other => Err(ClientError::Decode(format!("{other:?}"))),
        }
    }

    pub fn lock_args(lock: &Lock, exclusive: bool, block: bool) -> LockArgs {
        LockArgs {
            cookie: b"lock".to_vec(),
            block,
            exclusive,
            lock: lock.clone(),
            reclaim: false,
            state: 1,
        }
    }

    pub async fn lock(
        &mut self,
        lock: &Lock,
        exclusive: bool,
        block: bool,
    ) -> Result<Res, ClientError> {
        self.res(&NlmCall::Lock(Self::lock_args(lock, exclusive, block)))
            .await
    }

    pub async fn nm_lock(&mut self, lock: &Lock, exclusive: bool) -> Result<Res, ClientError> {
        self.res(&NlmCall::NmLock(Self::lock_args(lock, exclusive, false)))
            .await
    }

    pub async fn unlock(&mut self, lock: &Lock) -> Result<Res, ClientError> {
        self.res(&NlmCall::Unlock(UnlockArgs {
            cookie: b"unlock".to_vec(),
            lock: lock.clone(),
        }))
        .await
    }

    pub async fn cancel(
        &mut self,
        lock: &Lock,
        exclusive: bool,
        block: bool,
    ) -> Result<Res, ClientError> {
        self.res(&NlmCall::Cancel(CancelArgs {
            cookie: b"cancel".to_vec(),
            block,
            exclusive,
            lock: lock.clone(),
        }))
        .await
    }

    async fn res(&mut self, call: &NlmCall) -> Result<Res, ClientError> {
        match self.call(call).await? {
            NlmReply::Res(r) => Ok(r),
            other => Err(ClientError::Decode(format!("{other:?}"))),
        }
    }

    pub async fn share(&mut self, share: &Share) -> Result<ShareRes, ClientError> {
        self.share_call(NlmCall::Share(ShareArgs {
            cookie: b"share".to_vec(),
            share: share.clone(),
            reclaim: false,
        }))
        .await
    }

    pub async fn unshare(&mut self, share: &Share) -> Result<ShareRes, ClientError> {
        self.share_call(NlmCall::Unshare(ShareArgs {
            cookie: b"unshare".to_vec(),
            share: share.clone(),
            reclaim: false,
        }))
        .await
    }

    async fn share_call(&mut self, call: NlmCall) -> Result<ShareRes, ClientError> {
        match self.call(&call).await? {
            NlmReply::Share(r) => Ok(r),
            other => Err(ClientError::Decode(format!("{other:?}"))),
        }
    }

    pub async fn free_all(&mut self, name: &str, state: u32) -> Result<(), ClientError> {
        self.call(&NlmCall::FreeAll(NotifyArgs {
            name: name.as_bytes().to_vec(),
            state,
        }))
        .await
        .map(|_| ())
    }
}

/// A client host's NLM service: receives GRANTED, GRANTED_MSG and *_RES calls on TCP and UDP (same
/// port) and answers GRANTED with `granted_stat`. Stops when dropped.
pub struct NlmCallbackListener {
    addr: SocketAddr,
    calls: mpsc::Receiver<(NlmVersion, NlmCall)>,
    tasks: Vec<JoinHandle<()>>,
}

/// Callback calls a listener keeps for its test to read.
const CALLS_KEPT: usize = 1024;

fn answer_call(
    record: &[u8],
    granted_stat: Stat,
    tx: &mpsc::Sender<(NlmVersion, NlmCall)>,
) -> Option<Vec<u8>> {
    let call = decode_call(record).ok()?;
    let version = NlmVersion::from_wire(call.header.version)?;
    let nlm_call = nlm::decode_call(version, call.header.procedure, call.args).ok()?;
    let reply = match &nlm_call {
        NlmCall::Granted(a) => NlmReply::Res(Res {
            cookie: a.cookie.clone(),
            stat: granted_stat,
        }),
        _ => NlmReply::Void,
    };
    // A test reads what it expects; calls past the bound are answered but not recorded.
    let _ = tx.try_send((version, nlm_call));
    let mut results = Vec::new();
    nlm::encode_reply(version, &reply, &mut results).ok()?;
    let mut out = Vec::new();
    encode_reply(&Reply::success(call.header.xid, results), &mut out).ok()?;
    Some(out)
}

impl NlmCallbackListener {
    pub async fn start(granted_stat: Stat) -> std::io::Result<Self> {
        let (tcp, udp) = loop {
            let tcp = TcpListener::bind("127.0.0.1:0").await?;
            if let Ok(udp) = UdpSocket::bind(tcp.local_addr()?).await {
                break (tcp, udp);
            }
        };
        let addr = tcp.local_addr()?;
        let (tx, calls) = mpsc::channel(CALLS_KEPT);
        let utx = tx.clone();
        let udp_task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                if let Some(out) = answer_call(&buf[..n], granted_stat, &utx) {
                    let _ = udp.send_to(&out, peer).await;
                }
            }
        });
        let tcp_task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut decoder = RecordDecoder::new();
                    let mut buf = [0u8; 8192];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || decoder.push(&buf[..n]).is_err() {
                            break;
                        }
                        while let Some(rec) = decoder.next_record() {
                            if let Some(out) = answer_call(&rec, granted_stat, &tx) {
                                let mut framed = Vec::new();
                                encode_record(&out, &mut framed);
                                let _ = stream.write_all(&framed).await;
                            }
                        }
                    }
                });
            }
        });
        Ok(Self {
            addr,
            calls,
            tasks: vec![udp_task, tcp_task],
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The next call received, or `None` after `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<(NlmVersion, NlmCall)> {
        tokio::time::timeout(timeout, self.calls.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next call of `procedure`, skipping others.
    pub async fn recv_proc(&mut self, procedure: NlmProc, timeout: Duration) -> Option<NlmCall> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (_, call) = self.recv(left).await?;
            if call.procedure() == procedure {
                return Some(call);
            }
        }
    }
}

impl Drop for NlmCallbackListener {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// (program, version, protocol) → port.
type PortMap = HashMap<(u32, u32, u32), u32>;

/// A portmapper (program 100000 v2) over UDP on 127.0.0.1: GETPORT, SET, UNSET, NULL.
pub struct TestPortmapper {
    addr: SocketAddr,
    map: Arc<Mutex<PortMap>>,
    task: JoinHandle<()>,
}

impl TestPortmapper {
    pub async fn start() -> std::io::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let map: Arc<Mutex<PortMap>> = Arc::default();
        let m = map.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let Ok(call) = decode_call(&buf[..n]) else {
                    continue;
                };
                let h = &call.header;
                let results = if h.program != PMAP_PROGRAM {
                    Err(AcceptStat::ProgUnavail)
                } else {
                    let mapping = decode_exact::<Mapping>(call.args);
                    let mut map = m.lock().unwrap_or_else(|e| e.into_inner());
                    match (h.procedure, mapping) {
                        (0, _) => Ok(Vec::new()),
                        (p, Ok(mp)) if p == PmapProc::Getport as u32 => Ok(encode_to_vec(
                            map.get(&(mp.prog, mp.vers, mp.prot)).unwrap_or(&0),
                        )
                        .expect("u32")),
                        (p, Ok(mp)) if p == PmapProc::Set as u32 => {
                            let fresh = !map.contains_key(&(mp.prog, mp.vers, mp.prot));
                            if fresh {
                                map.insert((mp.prog, mp.vers, mp.prot), mp.port);
                            }
                            Ok(encode_to_vec(&fresh).expect("bool"))
                        }
                        (p, Ok(mp)) if p == PmapProc::Unset as u32 => {
                            let before = map.len();
                            map.retain(|k, _| !(k.0 == mp.prog && k.1 == mp.vers));
                            Ok(encode_to_vec(&(map.len() != before)).expect("bool"))
                        }
                        (_, Ok(_)) => Err(AcceptStat::ProcUnavail),
                        (_, Err(_)) => Err(AcceptStat::GarbageArgs),
                    }
                };
                let reply = match results {
                    Ok(r) => Reply::success(h.xid, r),
                    Err(stat) => Reply::accepted(h.xid, stat),
                };
                let mut out = Vec::new();
                if encode_reply(&reply, &mut out).is_ok() {
                    let _ = socket.send_to(&out, peer).await;
                }
            }
        });
        Ok(Self { addr, map, task })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Registers (prog, vers, prot) at `port`.
    pub fn set(&self, prog: u32, vers: u32, prot: u32, port: u16) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((prog, vers, prot), u32::from(port));
    }

    /// The registered port of (prog, vers, prot), if any.
    pub fn get(&self, prog: u32, vers: u32, prot: u32) -> Option<u32> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(prog, vers, prot))
            .copied()
    }

    /// Registers `listener` for NLM v1, v3 and v4 on tcp and udp.
    pub fn register_nlm(&self, listener: &NlmCallbackListener) {
        for v in [1, 3, 4] {
            for prot in [crate::portmap::IPPROTO_TCP, crate::portmap::IPPROTO_UDP] {
                self.set(NLM_PROGRAM, v, prot, listener.port());
            }
        }
    }
}

impl Drop for TestPortmapper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The text of `GET /metrics` from a brlockd metrics address, status line and headers included.
pub async fn scrape_metrics(addr: SocketAddr) -> Result<String, ClientError> {
    let scrape = async {
        let mut http = TcpStream::connect(addr).await?;
        http.write_all(b"GET /metrics HTTP/1.1\r\nHost: brlockd\r\n\r\n")
            .await?;
        let mut text = String::new();
        http.read_to_string(&mut text).await?;
        Ok(text)
    };
    tokio::time::timeout(Duration::from_secs(5), scrape)
        .await
        .map_err(|_| ClientError::Timeout)?
}

/// The value of the sample `name` (with its labels exactly as exposed, e.g.
/// `brlock_store_failures_total{kind="error"}`) in a metrics page, if it is there.
pub fn metric_value(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}
