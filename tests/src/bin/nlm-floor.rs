//! `nlm-floor`: a do-nothing NLM v4 responder, the floor brlockd's hot path is measured against.
//!
//! ```text
//! nlm-floor [--listen HOST:PORT]        # default 127.0.0.1:0; prints "listening on ADDR"
//! ```
//!
//! One thread, one epoll loop, TCP (record marking) and UDP on one port. It decodes only what it
//! must to answer — the RPC header (xid, program, version, procedure) and, for LOCK, UNLOCK, TEST
//! and CANCEL, the cookie that starts their arguments — and answers every such call NLM4_GRANTED
//! with the cookie echoed; NULL gets the empty reply, any other NLM v4 procedure PROC_UNAVAIL
//! (another program PROG_UNAVAIL, another NLM version PROG_MISMATCH 4–4, as RFC 5531 asks). It
//! keeps no lock state. Replies are encoded with brlockd's own codec (`brlock-wire`), so they
//! have the same shape and size as brlockd's, and a load generator cannot tell the two apart.
//!
//! What is left is what no NLM server can avoid: the kernel's socket work, one epoll wake-up,
//! reads and writes, header decode and reply encode. `scripts/bench-floor.sh` runs brlockd, this
//! responder and NFS-Ganesha under the same `brlock-bench` load; the figures are in
//! `tests/BENCH.md`.
//!
//! Per TCP readiness event it reads until the socket is drained (mio is edge-triggered; a short
//! read counts as drained, so an event costs no EAGAIN read), answers every complete call in what
//! it read — pipelined calls, records split across reads and multi-fragment records alike — and
//! writes all the replies in one `write`. Replies a client does not read are held up to [`MAX_UNSENT`] bytes; past that the connection is not read until
//! the socket drains. A client that closes, resets or sends a record over [`MAX_RECORD`] bytes
//! loses its connection and nothing else.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use brlock_wire::nlm::{self, MAX_NETOBJ, NLM_PROGRAM, NlmProc, NlmReply, NlmVersion, Res, Stat};
use brlock_wire::nlm::{ReplyShape, TestRes};
use brlock_wire::rpc::{
    AcceptStat, Auth, RecordDecoder, Reply, decode_call, encode_record, encode_reply,
    encode_success_header,
};
use brlock_wire::xdr::XdrReader;
use clap::Parser;
// mio rather than raw `libc::epoll`: it is the same single epoll instance underneath (already in
// the build through tokio, so no new code is compiled), and it gives safe non-blocking sockets and
// readiness events instead of a page of `unsafe` fd handling — which would only add risk to the
// thing being measured, not speed.
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token};

/// A do-nothing NLM v4 responder: every LOCK, UNLOCK, TEST and CANCEL is GRANTED.
#[derive(Parser)]
#[command(name = "nlm-floor", version)]
struct Args {
    /// TCP and UDP address to answer on (port 0: any port free for both).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// Largest record accepted on TCP; a longer one closes the connection. NLM calls are a few KiB
/// at most (four 1024-byte netobjs/strings and a credential).
const MAX_RECORD: usize = 64 * 1024;
/// Replies held for a TCP client that does not read them before its connection stops being read.
const MAX_UNSENT: usize = 1 << 20;
/// One read's worth; also the largest UDP datagram.
const READ_BUFFER: usize = 64 * 1024;

const LISTENER: Token = Token(0);
const UDP: Token = Token(1);
const STOP: Token = Token(2);
/// Connection `i` is registered as `Token(FIRST_CONNECTION + i)`.
const FIRST_CONNECTION: usize = 3;

fn main() -> ExitCode {
    let args = Args::parse();
    let floor = match Floor::bind(args.listen) {
        Ok(floor) => floor,
        Err(e) => {
            eprintln!("nlm-floor: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    // The bench scripts read the port from this line, as they do brlockd's.
    println!("listening on {}", floor.local_addr);
    let _ = io::stdout().flush();
    match floor.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nlm-floor: event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Appends the reply to one RPC record to `reply` (unframed). Returns `false`, with `reply`
/// unchanged, when the record is not a call whose xid can be read: it is dropped unanswered.
fn answer(record: &[u8], reply: &mut Vec<u8>) -> bool {
    let start = reply.len();
    let call = match decode_call(record) {
        Ok(call) => call,
        Err(e) => {
            return match e.reply() {
                Some(r) => encode_reply(&r, reply).is_ok(),
                None => false,
            };
        }
    };
    let xid = call.header.xid;
    let refusal = if call.header.program != NLM_PROGRAM {
        Some(AcceptStat::ProgUnavail)
    } else if call.header.version != NlmVersion::V4 as u32 {
        Some(AcceptStat::ProgMismatch { low: 4, high: 4 })
    } else {
        None
    };
    let result = match (
        refusal,
        NlmProc::from_wire(NlmVersion::V4, call.header.procedure),
    ) {
        (Some(stat), _) => encode_reply(&Reply::accepted(xid, stat), reply).map_err(|_| ()),
        (None, Some(NlmProc::Null)) => {
            encode_success_header(xid, &Auth::None, reply).map_err(|_| ())
        }
        (None, Some(p @ (NlmProc::Lock | NlmProc::Unlock | NlmProc::Test | NlmProc::Cancel))) => {
            // Every one of these starts its arguments with the cookie; nothing else is read.
            match XdrReader::new(call.args).get_opaque(MAX_NETOBJ) {
                Ok(cookie) => {
                    let cookie = cookie.to_vec();
                    let result = if p.reply_shape() == ReplyShape::Test {
                        NlmReply::Test(TestRes {
                            cookie,
                            stat: Stat::Granted,
                            holder: None,
                        })
                    } else {
                        NlmReply::Res(Res {
                            cookie,
                            stat: Stat::Granted,
                        })
                    };
                    encode_success_header(xid, &Auth::None, reply)
                        .map_err(|_| ())
                        .and_then(|()| {
                            nlm::encode_reply(NlmVersion::V4, &result, reply).map_err(|_| ())
                        })
                }
                Err(_) => encode_reply(&Reply::accepted(xid, AcceptStat::GarbageArgs), reply)
                    .map_err(|_| ()),
            }
        }
        (None, _) => {
            encode_reply(&Reply::accepted(xid, AcceptStat::ProcUnavail), reply).map_err(|_| ())
        }
    };
    // Encoding fails only on an over-long verifier or cookie, which cannot come from what was
    // decoded above; should it happen, drop the call rather than send half a reply.
    if result.is_err() {
        reply.truncate(start);
        return false;
    }
    true
}

/// One TCP client.
struct Connection {
    stream: TcpStream,
    records: RecordDecoder,
    /// Framed replies not yet written.
    unsent: Vec<u8>,
    /// Registered for writability too (only while `unsent` is not empty).
    awaiting_writable: bool,
}

/// What a connection's readiness event left it as.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    KeepOpen,
    Close,
}

impl Connection {
    fn new(stream: TcpStream) -> Self {
        Connection {
            stream,
            records: RecordDecoder::with_max_record(MAX_RECORD),
            unsent: Vec::new(),
            awaiting_writable: false,
        }
    }

    /// Handles one readiness event: reads all there is, answers every complete call, and
    /// writes all replies at once. `peer_closed`: the event says the client shut its side.
    fn on_ready(&mut self, buf: &mut [u8], scratch: &mut Vec<u8>, peer_closed: bool) -> Next {
        // Replies left over from a full socket go first: this may be the writable event.
        if self.flush() == Next::Close {
            return Next::Close;
        }
        let mut finished = false;
        while self.unsent.len() < MAX_UNSENT {
            match self.stream.read(buf) {
                Ok(0) => {
                    finished = true;
                    break;
                }
                Ok(n) => {
                    let framing = self.records.push(&buf[..n]);
                    while let Some(record) = self.records.next_record() {
                        scratch.clear();
                        if answer(&record, scratch) {
                            encode_record(scratch, &mut self.unsent);
                        }
                    }
                    if framing.is_err() {
                        finished = true;
                        break;
                    }
                    // A short read drained the socket (epoll(7)), so skip the read that would
                    // only say EAGAIN — unless the client closed: then read on to the EOF, as
                    // no later event will come for it.
                    if n < buf.len() && !peer_closed {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        match self.flush() {
            Next::KeepOpen if !finished => Next::KeepOpen,
            _ => Next::Close,
        }
    }

    /// Writes as much of `unsent` as the socket takes (normally all of it, in one `write`).
    fn flush(&mut self) -> Next {
        let mut written = 0;
        while written < self.unsent.len() {
            match self.stream.write(&self.unsent[written..]) {
                Ok(0) => return Next::Close,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        self.unsent.drain(..written);
        Next::KeepOpen
    }
}

/// The responder: a TCP listener and a UDP socket on one port, and its TCP clients.
struct Floor {
    poll: Poll,
    local_addr: SocketAddr,
    listener: TcpListener,
    udp: UdpSocket,
    /// Connection `i` has token `FIRST_CONNECTION + i`; closed slots are reused.
    connections: Vec<Option<Connection>>,
    free: Vec<usize>,
}

impl Floor {
    /// Binds TCP and UDP on `addr`; for port 0, retries until a port free for both is found.
    fn bind(addr: SocketAddr) -> io::Result<Floor> {
        let attempts = if addr.port() == 0 { 20 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let listener = TcpListener::bind(addr)?;
            let bound = listener.local_addr()?;
            match UdpSocket::bind(bound) {
                Ok(udp) => return Floor::new(listener, udp, bound),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no bind attempt")))
    }

    fn new(
        mut listener: TcpListener,
        mut udp: UdpSocket,
        local_addr: SocketAddr,
    ) -> io::Result<Floor> {
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        poll.registry()
            .register(&mut udp, UDP, Interest::READABLE)?;
        Ok(Floor {
            poll,
            local_addr,
            listener,
            udp,
            connections: Vec::new(),
            free: Vec::new(),
        })
    }

    /// Answers calls until [`Floor::stopper`]'s waker is woken (the binary runs until killed).
    fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; READ_BUFFER];
        let mut scratch = Vec::with_capacity(256);
        loop {
            match self.poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                match event.token() {
                    STOP => return Ok(()),
                    LISTENER => self.accept(),
                    UDP => self.on_udp(&mut buf, &mut scratch),
                    Token(t) => {
                        let closed = event.is_read_closed() || event.is_error();
                        self.on_connection(t - FIRST_CONNECTION, &mut buf, &mut scratch, closed);
                    }
                }
            }
        }
    }

    /// A waker that makes [`Floor::run`] return (for tests; mio allows one per poll).
    #[cfg(test)]
    fn stopper(&self) -> io::Result<mio::Waker> {
        mio::Waker::new(self.poll.registry(), STOP)
    }

    fn accept(&mut self) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // E.g. out of file descriptors: the waiting client is retried on the next
                    // connection attempt; the ones already connected keep being served.
                    eprintln!("nlm-floor: accept: {e}");
                    return;
                }
            };
            // Replies go out as soon as they are written, as brlockd's do.
            let _ = stream.set_nodelay(true);
            let slot = self.free.pop().unwrap_or_else(|| {
                self.connections.push(None);
                self.connections.len() - 1
            });
            let token = Token(FIRST_CONNECTION + slot);
            // Writability is asked for only while replies wait (see `on_connection`): asked for
            // always, every ACK that frees send buffer would wake the loop for nothing.
            if let Err(e) = self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE)
            {
                eprintln!("nlm-floor: register connection: {e}");
                self.free.push(slot);
                continue;
            }
            self.connections[slot] = Some(Connection::new(stream));
        }
    }

    fn on_connection(
        &mut self,
        slot: usize,
        buf: &mut [u8],
        scratch: &mut Vec<u8>,
        peer_closed: bool,
    ) {
        let Some(Some(connection)) = self.connections.get_mut(slot) else {
            return; // an event for a connection closed earlier in the same batch
        };
        let mut next = connection.on_ready(buf, scratch, peer_closed);
        let blocked = !connection.unsent.is_empty();
        if next == Next::KeepOpen && blocked != connection.awaiting_writable {
            let interest = if blocked {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let token = Token(FIRST_CONNECTION + slot);
            match self
                .poll
                .registry()
                .reregister(&mut connection.stream, token, interest)
            {
                Ok(()) => connection.awaiting_writable = blocked,
                Err(_) => next = Next::Close,
            }
        }
        if next == Next::Close {
            let _ = self.poll.registry().deregister(&mut connection.stream);
            self.connections[slot] = None;
            self.free.push(slot);
        }
    }

    /// Answers every datagram waiting, each with one datagram.
    fn on_udp(&mut self, buf: &mut [u8], scratch: &mut Vec<u8>) {
        loop {
            let (n, peer) = match self.udp.recv_from(buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // E.g. an ICMP error from an earlier reply's peer: that datagram is gone, the
                // others are not.
                Err(_) => continue,
            };
            scratch.clear();
            if answer(&buf[..n], scratch) {
                // A full send buffer drops the reply; the UDP client retransmits, as with any
                // lost datagram.
                let _ = self.udp.send_to(scratch, peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brlock_testkit::client::{NlmClient, Owner, RpcClient, TestOutcome, Transport};
    use brlock_wire::nlm::{NlmCall, UnlockArgs};
    use brlock_wire::rpc::{ReplyBody, decode_reply, record::encode_record_fragmented};
    use std::thread::JoinHandle;
    use std::time::Duration;

    /// How long a test waits for a reply that never comes before it fails.
    const TEST_TIMEOUT: Duration = Duration::from_secs(5);

    /// A responder on 127.0.0.1 in its own thread, stopped and joined on drop.
    struct Running {
        addr: SocketAddr,
        stop: mio::Waker,
        thread: Option<JoinHandle<io::Result<()>>>,
    }

    impl Running {
        fn start() -> Running {
            let floor = Floor::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
            let addr = floor.local_addr;
            let stop = floor.stopper().expect("waker");
            let thread = Some(std::thread::spawn(move || floor.run()));
            Running { addr, stop, thread }
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.stop.wake();
            if let Some(t) = self.thread.take() {
                let result = t.join().expect("responder thread panicked");
                if !std::thread::panicking() {
                    result.expect("event loop failed");
                }
            }
        }
    }

    fn owner() -> Owner {
        Owner::new("floor-test", 7, "floor-owner")
    }

    #[test]
    fn lock_unlock_test_cancel_are_granted_with_their_cookie_over_tcp_and_udp() {
        let floor = Running::start();
        for transport in Transport::ALL {
            let mut c = NlmClient::connect(transport, floor.addr, NlmVersion::V4).unwrap();
            let o = owner();
            // NlmClient checks that each reply carries the cookie its call sent.
            assert_eq!(
                c.lock(&o, b"fh", true, 0, 10, false).unwrap(),
                Stat::Granted
            );
            assert_eq!(c.unlock(&o, b"fh", 0, 10).unwrap(), Stat::Granted);
            assert_eq!(
                c.cancel(&o, b"fh", true, 0, 10, true).unwrap(),
                Stat::Granted
            );
            assert_eq!(
                c.test(&o, b"fh", true, 0, 10).unwrap(),
                TestOutcome::Granted,
                "{transport:?}"
            );
            c.null().unwrap();
        }
    }

    #[test]
    fn a_long_cookie_is_echoed_whole() {
        let floor = Running::start();
        let mut c = NlmClient::connect(Transport::Tcp, floor.addr, NlmVersion::V4).unwrap();
        let mut args = c.lock_args(&owner(), b"fh", true, 0, 1, false);
        args.cookie = (0..=255u8).cycle().take(1024).collect();
        assert_eq!(c.lock_with(args).unwrap(), Stat::Granted);
    }

    #[test]
    fn other_procedures_versions_and_programs_are_refused_as_rpc_says() {
        let floor = Running::start();
        let mut c = RpcClient::connect(Transport::Tcp, floor.addr).unwrap();
        let accepted = |reply: Reply| match reply.body {
            ReplyBody::Accepted { stat, .. } => stat,
            other => panic!("not accepted: {other:?}"),
        };
        // SHARE exists in v4 but a do-nothing responder does not serve it.
        let share = c
            .call_raw(NLM_PROGRAM, 4, NlmProc::Share as u32, &[])
            .unwrap();
        assert_eq!(accepted(share), AcceptStat::ProcUnavail);
        let unknown = c.call_raw(NLM_PROGRAM, 4, 99, &[]).unwrap();
        assert_eq!(accepted(unknown), AcceptStat::ProcUnavail);
        let v3 = c
            .call_raw(NLM_PROGRAM, 3, NlmProc::Lock as u32, &[])
            .unwrap();
        assert_eq!(accepted(v3), AcceptStat::ProgMismatch { low: 4, high: 4 });
        let nfs = c.call_raw(100_003, 3, 0, &[]).unwrap();
        assert_eq!(accepted(nfs), AcceptStat::ProgUnavail);
        // A LOCK without even a cookie.
        let garbage = c
            .call_raw(NLM_PROGRAM, 4, NlmProc::Lock as u32, &[0, 0])
            .unwrap();
        assert_eq!(accepted(garbage), AcceptStat::GarbageArgs);
    }

    /// Reads `count` replies from `stream` and returns them.
    fn read_replies(stream: &mut std::net::TcpStream, count: usize) -> Vec<Reply> {
        stream.set_read_timeout(Some(TEST_TIMEOUT)).unwrap();
        let mut records = RecordDecoder::new();
        let mut replies = Vec::new();
        let mut buf = [0u8; 4096];
        while replies.len() < count {
            let n = stream.read(&mut buf).expect("reply within the timeout");
            assert!(n > 0, "closed after {} of {count} replies", replies.len());
            records.push(&buf[..n]).unwrap();
            while let Some(r) = records.next_record() {
                replies.push(decode_reply(&r).unwrap());
            }
        }
        replies
    }

    /// `count` LOCK (even) and UNLOCK (odd) calls, framed; returns the bytes and each call's
    /// (xid, cookie).
    fn pipelined_calls(
        c: &mut NlmClient,
        count: usize,
        fragment: usize,
        cookie_len: usize,
    ) -> (Vec<u8>, Vec<(u32, Vec<u8>)>) {
        let o = owner();
        let mut wire = Vec::new();
        let mut sent = Vec::new();
        for i in 0..count as u64 {
            // The client's 8-byte cookies keep them distinct; padding makes them longer.
            let mut cookie = c.cookie();
            cookie.resize(cookie_len.max(cookie.len()), 0xab);
            let call = if i % 2 == 0 {
                let mut args = c.lock_args(&o, b"fh", true, i, 1, false);
                args.cookie = cookie.clone();
                NlmCall::Lock(args)
            } else {
                NlmCall::Unlock(UnlockArgs {
                    cookie: cookie.clone(),
                    lock: o.lock(b"fh", i - 1, 1),
                })
            };
            let args = c.encode_args(&call);
            let (xid, msg) = c.rpc.encode(NLM_PROGRAM, 4, call.procedure() as u32, &args);
            encode_record_fragmented(&msg, fragment, &mut wire);
            sent.push((xid, cookie));
        }
        (wire, sent)
    }

    fn assert_all_granted(replies: Vec<Reply>, sent: &[(u32, Vec<u8>)]) {
        assert_eq!(replies.len(), sent.len());
        for (reply, (xid, cookie)) in replies.into_iter().zip(sent) {
            // One thread answers in order.
            assert_eq!(reply.xid, *xid);
            let ReplyBody::Accepted {
                stat: AcceptStat::Success { results },
                ..
            } = reply.body
            else {
                panic!("xid {xid:#x}: {:?}", reply.body);
            };
            let res = nlm::decode_reply(NlmVersion::V4, NlmProc::Lock, &results).unwrap();
            assert_eq!(
                res,
                NlmReply::Res(Res {
                    cookie: cookie.clone(),
                    stat: Stat::Granted
                })
            );
        }
    }

    #[test]
    fn pipelined_calls_in_one_write_are_all_answered() {
        let floor = Running::start();
        let mut c = NlmClient::connect(Transport::Tcp, floor.addr, NlmVersion::V4).unwrap();
        let (wire, sent) = pipelined_calls(&mut c, 256, usize::MAX, 8);
        let mut stream = std::net::TcpStream::connect(floor.addr).unwrap();
        stream.write_all(&wire).unwrap();
        assert_all_granted(read_replies(&mut stream, sent.len()), &sent);
    }

    #[test]
    fn a_client_slow_to_read_its_replies_still_gets_every_one() {
        let floor = Running::start();
        let mut c = NlmClient::connect(Transport::Tcp, floor.addr, NlmVersion::V4).unwrap();
        // ~4 MiB of replies (1 KiB cookies), written while the client is not reading: the
        // responder's replies back up and it must hold them, stop reading, and resume.
        let (wire, sent) = pipelined_calls(&mut c, 4000, usize::MAX, 1024);
        let mut stream = std::net::TcpStream::connect(floor.addr).unwrap();
        stream.set_write_timeout(Some(TEST_TIMEOUT)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let writing = std::thread::spawn(move || writer.write_all(&wire));
        std::thread::sleep(Duration::from_millis(300));
        assert_all_granted(read_replies(&mut stream, sent.len()), &sent);
        writing.join().unwrap().unwrap();
    }

    #[test]
    fn calls_then_a_shutdown_are_answered_and_the_connection_closed() {
        let floor = Running::start();
        let mut c = NlmClient::connect(Transport::Tcp, floor.addr, NlmVersion::V4).unwrap();
        let (wire, sent) = pipelined_calls(&mut c, 3, usize::MAX, 8);
        let mut stream = std::net::TcpStream::connect(floor.addr).unwrap();
        stream.write_all(&wire).unwrap();
        stream.shutdown(std::net::Shutdown::Write).unwrap();
        assert_all_granted(read_replies(&mut stream, sent.len()), &sent);
        let mut rest = Vec::new();
        stream
            .read_to_end(&mut rest)
            .expect("EOF within the timeout");
        assert!(rest.is_empty());
    }

    #[test]
    fn calls_split_anywhere_and_in_fragments_are_answered_once_whole() {
        let floor = Running::start();
        let mut c = NlmClient::connect(Transport::Tcp, floor.addr, NlmVersion::V4).unwrap();
        // 13-byte fragments: every record has several, and no read ends on a boundary.
        let (wire, sent) = pipelined_calls(&mut c, 20, 13, 8);
        let mut stream = std::net::TcpStream::connect(floor.addr).unwrap();
        stream.set_nodelay(true).unwrap();
        for chunk in wire.chunks(7) {
            stream.write_all(chunk).unwrap();
        }
        assert_all_granted(read_replies(&mut stream, sent.len()), &sent);
    }

    #[test]
    fn clients_that_close_or_misbehave_lose_only_their_own_connection() {
        let floor = Running::start();
        let mut c = NlmClient::connect(Transport::Tcp, floor.addr, NlmVersion::V4).unwrap();
        let (wire, _) = pipelined_calls(&mut c, 1, usize::MAX, 8);
        // Half a record, then gone.
        let mut half = std::net::TcpStream::connect(floor.addr).unwrap();
        half.write_all(&wire[..wire.len() / 2]).unwrap();
        drop(half);
        // A record longer than any NLM call: closed by the responder.
        let mut huge = RpcClient::connect(Transport::Tcp, floor.addr).unwrap();
        huge.send_bytes(&(0x8000_0000u32 | (MAX_RECORD as u32 + 1)).to_be_bytes())
            .unwrap();
        assert!(huge.wait_closed(TEST_TIMEOUT).unwrap());
        // Garbage that is not even an RPC header: dropped, the connection still serves.
        let mut framed = Vec::new();
        encode_record(&[1, 2, 3], &mut framed);
        c.rpc.send_bytes(&framed).unwrap();
        // Many connections at once, each answered.
        let mut many: Vec<NlmClient> = (0..64)
            .map(|_| NlmClient::connect(Transport::Tcp, floor.addr, NlmVersion::V4).unwrap())
            .collect();
        for m in &mut many {
            assert_eq!(
                m.lock(&owner(), b"fh", true, 0, 1, false).unwrap(),
                Stat::Granted
            );
        }
        assert_eq!(
            c.lock(&owner(), b"fh", true, 0, 1, false).unwrap(),
            Stat::Granted
        );
    }

    #[test]
    fn unreadable_records_are_dropped_unanswered() {
        let mut reply = vec![9];
        assert!(!answer(&[0, 0, 0], &mut reply));
        // A reply where a call belongs: nothing to answer either.
        assert!(!answer(&[0, 0, 0, 1, 0, 0, 0, 1], &mut reply));
        assert_eq!(reply, [9]);
    }
}
