//! One RPC record in, from either transport: RPC-level checks (version, network, credential flavour,
//! program, version, procedure, arguments), the duplicate request cache, then the decoded NLM call
//! goes to the core task. Every refusal here is an RPC reply (or a silent drop when not even the xid
//! could be read); nothing in a record can panic the server.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::debug;

use super::drc::{DrcKey, Lookup};
use super::outbound::Transport;
use super::{CoreMsg, Shared};
use crate::nlm::{self, NLM_PROGRAM, NlmCall, NlmDecodeError, NlmProc, NlmReply, NlmVersion};
use crate::rpc::{
    AcceptStat, Auth, AuthStat, RejectStat, Reply, decode_call, encode_record, encode_reply,
};

/// Where a reply goes: a TCP connection's writer, or the UDP socket back to the sender.
#[derive(Clone, Debug)]
pub enum ReplyTo {
    Tcp(mpsc::UnboundedSender<Vec<u8>>),
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
            ReplyTo::Tcp(tx) => {
                let mut framed = Vec::with_capacity(record.len() + 4);
                encode_record(record, &mut framed);
                let _ = tx.send(framed);
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

/// Handles one record that arrived from `peer` at `local`.
pub(crate) fn on_record(
    shared: &Arc<Shared>,
    record: &[u8],
    peer: SocketAddr,
    local: IpAddr,
    transport: Transport,
    reply_to: &ReplyTo,
) {
    let received = Instant::now();
    let call = match decode_call(record) {
        Ok(call) => call,
        Err(e) => {
            debug!(%peer, error = %e, "refused RPC record");
            if let Some(reply) = e.reply() {
                let status = match reply.body {
                    crate::rpc::ReplyBody::Denied(RejectStat::RpcMismatch { .. }) => "rpc_mismatch",
                    _ => "auth_error",
                };
                shared.rpc_reply(reply_to, peer, None, reply, "none", status, received);
            }
            return;
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
        return;
    }
    // AUTH_NONE and AUTH_SYS only; any other flavour gets AUTH_BADCRED as from Linux's sunrpc.
    if !matches!(h.cred, Auth::None | Auth::Sys(_)) {
        debug!(%peer, xid = h.xid, "refused unsupported credential flavour");
        let reply = Reply::denied(h.xid, RejectStat::AuthError(AuthStat::BadCred));
        shared.rpc_reply(reply_to, peer, None, reply, "none", "auth_error", received);
        return;
    }
    if h.program == crate::nsm::NSM_PROGRAM && shared.nsm_builtin {
        super::nsm_service::on_call(shared, h, call.args, peer, reply_to, received);
        return;
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
        return;
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
        return;
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
                return;
            }
            Lookup::Replay(reply) => {
                debug!(%peer, xid = h.xid, "replayed cached reply");
                shared.send_reply(reply_to, peer, None, &reply);
                shared.metrics.observe_request(
                    &proc_name(h.procedure),
                    "replayed",
                    received.elapsed(),
                );
                return;
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
            return;
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
            return;
        }
    };
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
    };
    if let NlmCall::Null = nlm_call {
        shared.reply_nlm(&ctx, &NlmReply::Void, "ok");
        return;
    }
    if shared
        .core_tx
        .send(CoreMsg::Call {
            ctx: Box::new(ctx),
            call: nlm_call,
        })
        .is_err()
        && let Some(key) = drc
    {
        shared.drc_lock().forget(&key);
    }
}
