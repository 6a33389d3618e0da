//! One RPC record in, from either transport: RPC-level checks (version, network, credential flavour,
//! program, version, procedure, arguments), the duplicate request cache, then the decoded NLM call
//! goes to the core task. Every refusal here is an RPC reply (or a silent drop when not even the xid
//! could be read); nothing in a record can panic the server.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::error::TrySendError;
use tracing::debug;

use super::drc::{DrcKey, Lookup};
use super::flow::TcpReplies;
use super::outbound::Transport;
use super::shared::{CoreMsg, Shared};
use crate::nlm::{self, NLM_PROGRAM, NlmCall, NlmDecodeError, NlmProc, NlmReply, NlmVersion};
use crate::rpc::{
    AcceptStat, Auth, AuthStat, RejectStat, Reply, decode_call, encode_record, encode_reply,
};

/// Where a reply goes: a TCP connection's writer, or the UDP socket back to the sender.
#[derive(Clone, Debug)]
pub enum ReplyTo {
    Tcp(TcpReplies),
    Udp(Arc<UdpSocket>),
}

/// Everything about one call that its reply needs.
#[derive(Debug)]
pub struct CallCtx {
    pub xid: u32,
    pub version: NlmVersion,
    pub procedure: NlmProc,
    pub peer: SocketAddr,
    /// The address of ours the call arrived at (unspecified when listening on a wildcard over UDP:
    /// see [`local_for`]).
    pub local: IpAddr,
    pub transport: Transport,
    pub reply_to: ReplyTo,
    pub drc: Option<DrcKey>,
    pub received: Instant,
    /// Who asked about what, for the log lines (set by the core task).
    pub what: Option<super::request_log::RequestSummary>,
    /// This call's place among the calls in flight (`flow.rs`), given back when the context goes.
    pub in_flight: Option<OwnedSemaphorePermit>,
}

impl CallCtx {
    /// A second context for the same call, for a reply sent ahead of its result (a `*_MSG` call's
    /// empty reply): it holds no place among the calls in flight; the original keeps that.
    pub(crate) fn echo(&self) -> CallCtx {
        CallCtx {
            xid: self.xid,
            version: self.version,
            procedure: self.procedure,
            peer: self.peer,
            local: self.local,
            transport: self.transport,
            reply_to: self.reply_to.clone(),
            drc: self.drc,
            received: self.received,
            what: None,
            in_flight: None,
        }
    }
}

impl Shared {
    /// Sends an unframed reply record to `peer` (and remembers it in the DRC under `drc`).
    pub(crate) fn send_reply(
        &self,
        reply_to: &ReplyTo,
        peer: SocketAddr,
        drc: Option<&DrcKey>,
        record: &[u8],
    ) {
        if let Some(key) = drc {
            self.drc_lock().complete(key, record);
        }
        match reply_to {
            ReplyTo::Tcp(replies) => {
                let mut framed = Vec::with_capacity(record.len() + 4);
                encode_record(record, &mut framed);
                replies.send(framed);
            }
            ReplyTo::Udp(socket) => {
                // The leadership gate, at the moment of sending (TCP: in the writer task).
                if !self.gate.is_open() {
                    debug!(%peer, "reply dropped: the leadership lease has run out");
                    return;
                }
                if let Err(e) = socket.try_send_to(record, peer) {
                    debug!(%peer, error = %e, "UDP reply not sent");
                }
            }
        }
    }

    /// Answers with an RPC-level reply (no NLM results), counting it in the metrics.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rpc_reply(
        &self,
        reply_to: &ReplyTo,
        peer: SocketAddr,
        drc: Option<&DrcKey>,
        reply: Reply,
        procedure: &str,
        status: &str,
        received: Instant,
    ) {
        let mut out = Vec::with_capacity(32);
        if encode_reply(&reply, &mut out).is_ok() {
            self.send_reply(reply_to, peer, drc, &out);
        }
        self.metrics
            .observe_request(procedure, status, received.elapsed());
    }
}

/// The address of ours that `peer` reached, given the socket's own `local` address: itself, or
/// for a wildcard socket the source address the kernel would answer `peer` from (on a single
/// subnet, the address the peer sent to).
pub(crate) fn local_for(local: IpAddr, peer: IpAddr) -> IpAddr {
    if !local.is_unspecified() {
        return local;
    }
    let any = match peer {
        IpAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
        IpAddr::V6(_) => IpAddr::from([0u16; 8]),
    };
    std::net::UdpSocket::bind(SocketAddr::new(any, 0))
        .and_then(|s| {
            s.connect(SocketAddr::new(peer, 9))?;
            s.local_addr()
        })
        .map_or(local, |a| a.ip())
}

/// Handles one record that arrived from `peer` at `local`: false when no reply will follow (the
/// record was dropped). Over TCP it waits for room among the calls in flight; over UDP a call that
/// finds none is dropped.
pub(crate) async fn on_record(
    shared: &Arc<Shared>,
    record: &[u8],
    peer: SocketAddr,
    local: IpAddr,
    transport: Transport,
    reply_to: &ReplyTo,
) -> bool {
    let received = Instant::now();
    let call = match decode_call(record) {
        Ok(call) => call,
        Err(e) => {
            debug!(%peer, error = %e, "refused RPC record");
            let Some(reply) = e.reply() else {
                return false;
            };
            let status = match reply.body {
                crate::rpc::ReplyBody::Denied(RejectStat::RpcMismatch { .. }) => "rpc_mismatch",
                _ => "auth_error",
            };
            shared.rpc_reply(reply_to, peer, None, reply, "none", status, received);
            return true;
        }
    };
    let h = &call.header;
    let proc_name = |p: u32| {
        NlmVersion::from_wire(h.version)
            .and_then(|v| NlmProc::from_wire(v, p))
            .map_or_else(|| format!("proc_{p}"), |p| format!("{p:?}").to_lowercase())
    };
    // Outside the allowed networks: AUTH_TOOWEAK, "the caller's credentials are not enough here"
    // (RFC 5531), rather than AUTH_REJECTEDCRED, which asks the client to get new credentials.
    if !shared.config.allows(peer.ip()) {
        debug!(%peer, xid = h.xid, "refused call from outside the allowed networks");
        let reply = Reply::denied(h.xid, RejectStat::AuthError(AuthStat::TooWeak));
        shared.rpc_reply(reply_to, peer, None, reply, "none", "auth_error", received);
        return true;
    }
    // AUTH_NONE and AUTH_SYS only; any other flavour gets AUTH_BADCRED as from Linux's sunrpc.
    if !matches!(h.cred, Auth::None | Auth::Sys(_)) {
        debug!(%peer, xid = h.xid, "refused unsupported credential flavour");
        let reply = Reply::denied(h.xid, RejectStat::AuthError(AuthStat::BadCred));
        shared.rpc_reply(reply_to, peer, None, reply, "none", "auth_error", received);
        return true;
    }
    if h.program == crate::nsm::NSM_PROGRAM && shared.nsm_builtin {
        super::nsm_service::on_call(shared, h, call.args, peer, reply_to, received);
        return true;
    }
    if h.program != NLM_PROGRAM {
        debug!(%peer, xid = h.xid, program = h.program, "refused: program unavailable");
        let reply = Reply::accepted(h.xid, AcceptStat::ProgUnavail);
        shared.rpc_reply(
            reply_to,
            peer,
            None,
            reply,
            "none",
            "prog_unavail",
            received,
        );
        return true;
    }
    let Some(version) = NlmVersion::from_wire(h.version) else {
        debug!(%peer, xid = h.xid, version = h.version, "refused: NLM version mismatch");
        let reply = Reply::accepted(
            h.xid,
            AcceptStat::ProgMismatch {
                low: NlmVersion::LOWEST,
                high: NlmVersion::HIGHEST,
            },
        );
        shared.rpc_reply(
            reply_to,
            peer,
            None,
            reply,
            "none",
            "prog_mismatch",
            received,
        );
        return true;
    };
    let drc = (h.procedure != NlmProc::Null as u32).then_some(DrcKey {
        ip: peer.ip(),
        xid: h.xid,
        program: h.program,
        version: h.version,
        procedure: h.procedure,
        args: super::drc::args_checksum(call.args),
    });
    if let Some(key) = drc {
        let lookup = shared.drc_lock().lookup(key);
        match lookup {
            Lookup::New => {}
            Lookup::InFlight => {
                debug!(%peer, xid = h.xid, "dropped duplicate of a call in progress");
                return false;
            }
            Lookup::Replay(reply) => {
                debug!(%peer, xid = h.xid, "replayed cached reply");
                shared.send_reply(reply_to, peer, None, &reply);
                shared.metrics.observe_request(
                    &proc_name(h.procedure),
                    "replayed",
                    received.elapsed(),
                );
                return true;
            }
        }
    }
    let nlm_call = match nlm::decode_call(version, h.procedure, call.args) {
        Ok(c) => c,
        Err(NlmDecodeError::ProcUnavail(p)) => {
            debug!(%peer, xid = h.xid, procedure = p, "refused: procedure unavailable");
            let reply = Reply::accepted(h.xid, AcceptStat::ProcUnavail);
            let name = format!("proc_{p}");
            shared.rpc_reply(
                reply_to,
                peer,
                drc.as_ref(),
                reply,
                &name,
                "proc_unavail",
                received,
            );
            return true;
        }
        Err(NlmDecodeError::Garbage(e)) => {
            debug!(%peer, xid = h.xid, error = %e, "refused: garbage arguments");
            let reply = Reply::accepted(h.xid, AcceptStat::GarbageArgs);
            let name = proc_name(h.procedure);
            shared.rpc_reply(
                reply_to,
                peer,
                drc.as_ref(),
                reply,
                &name,
                "garbage_args",
                received,
            );
            return true;
        }
    };
    // Linux lockd refuses a file handle of the wrong size while decoding (GARBAGE_ARGS): 32 bytes
    // exactly in v1/v3, at most 128 in v4. Nothing longer reaches the core or the store.
    if let Some(fh) = nlm_call.fh().filter(|fh| !version.takes_fh(fh.len())) {
        debug!(%peer, xid = h.xid, len = fh.len(), ?version, "refused: file handle of the wrong size");
        let reply = Reply::accepted(h.xid, AcceptStat::GarbageArgs);
        let name = proc_name(h.procedure);
        shared.rpc_reply(
            reply_to,
            peer,
            drc.as_ref(),
            reply,
            &name,
            "garbage_args",
            received,
        );
        return true;
    }
    let ctx = CallCtx {
        xid: h.xid,
        version,
        procedure: nlm_call.procedure(),
        peer,
        local,
        transport,
        reply_to: reply_to.clone(),
        drc,
        received,
        what: None,
        in_flight: None,
    };
    if let NlmCall::Null = nlm_call {
        shared.reply_nlm(&ctx, &NlmReply::Void, "ok");
        return true;
    }
    let forget = |shared: &Shared| {
        if let Some(key) = drc {
            shared.drc_lock().forget(&key);
        }
    };
    let mut ctx = Box::new(ctx);
    let msg = |ctx| CoreMsg::Call {
        ctx,
        call: nlm_call,
    };
    let sent = match transport {
        Transport::Tcp => {
            ctx.in_flight = shared.calls_in_flight.acquire().await;
            shared.core_tx.send(msg(ctx)).await.is_ok()
        }
        Transport::Udp => {
            ctx.in_flight = shared.calls_in_flight.try_acquire();
            if ctx.in_flight.is_none() {
                debug!(%peer, xid = h.xid, "dropped: --max-calls-in-flight reached (UDP)");
                shared.metrics.udp_dropped.inc();
                forget(shared);
                return false;
            }
            match shared.core_tx.try_send(msg(ctx)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    debug!(%peer, xid = h.xid, "dropped: the core's queue is full (UDP)");
                    shared.metrics.udp_dropped.inc();
                    false
                }
                Err(TrySendError::Closed(_)) => false,
            }
        }
    };
    if !sent {
        forget(shared);
    }
    sent
}
