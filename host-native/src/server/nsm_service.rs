//! `--nsm builtin`: brlockd answers NSM (program 100024 version 1) on its own port, so that a host
//! serving only brlockd needs no rpc.statd. It monitors for brlockd alone: the hosts it watches are
//! the NLM clients brlockd keeps in its store, so SM_MON from another program is answered
//! `stat_fail`. What matters is SM_NOTIFY: a client host that rebooted tells us, and the core task
//! frees that host's locks — only when the notice comes from the host's bound address (see
//! `ClientHosts::rebooted`). SM_STAT answers brlockd's own state number.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use super::intake::ReplyTo;
use super::shared::{CoreMsg, Shared};
use crate::nsm::{
    MonId, MyId, NSM_VERSION, NsmProc, SmName, SmResult, SmStat, SmStatRes, StatChange,
};
use crate::rpc::{AcceptStat, CallHeader, Reply};
use crate::xdr::{decode_exact, encode_to_vec};

/// Answers one NSM call (the caller has checked the network and credential flavour).
pub(crate) fn on_call(
    shared: &Arc<Shared>,
    header: &CallHeader,
    args: &[u8],
    peer: SocketAddr,
    reply_to: &ReplyTo,
    received: Instant,
) {
    let xid = header.xid;
    let answer = |reply: Reply, procedure: &str, status: &str| {
        shared.rpc_reply(reply_to, peer, None, reply, procedure, status, received);
    };
    if header.version != NSM_VERSION {
        return answer(
            Reply::accepted(
                xid,
                AcceptStat::ProgMismatch {
                    low: NSM_VERSION,
                    high: NSM_VERSION,
                },
            ),
            "nsm",
            "prog_mismatch",
        );
    }
    let state = shared.nsm_state;
    let encoded = |value: &dyn Fn() -> Result<Vec<u8>, crate::xdr::XdrError>| match value() {
        Ok(results) => Reply::success(xid, results),
        Err(_) => Reply::accepted(xid, AcceptStat::SystemErr),
    };
    let (reply, procedure) = match header.procedure {
        p if p == NsmProc::Null as u32 => (Reply::success(xid, Vec::new()), "sm_null"),
        p if p == NsmProc::Stat as u32 => match decode_exact::<SmName>(args) {
            Ok(_) => (
                encoded(&|| {
                    encode_to_vec(&SmStatRes {
                        result: SmResult::Success,
                        state,
                    })
                }),
                "sm_stat",
            ),
            Err(_) => garbage(xid, "sm_stat"),
        },
        p if p == NsmProc::Mon as u32 => match decode_exact::<crate::nsm::Mon>(args) {
            Ok(mon) => {
                debug!(%peer, host = %String::from_utf8_lossy(&mon.mon_id.mon_name),
                    "SM_MON refused: the built-in NSM monitors for brlockd only");
                (
                    encoded(&|| {
                        encode_to_vec(&SmStatRes {
                            result: SmResult::Failure,
                            state,
                        })
                    }),
                    "sm_mon",
                )
            }
            Err(_) => garbage(xid, "sm_mon"),
        },
        p if p == NsmProc::Unmon as u32 => match decode_exact::<MonId>(args) {
            Ok(_) => (encoded(&|| encode_to_vec(&SmStat { state })), "sm_unmon"),
            Err(_) => garbage(xid, "sm_unmon"),
        },
        p if p == NsmProc::UnmonAll as u32 => match decode_exact::<MyId>(args) {
            Ok(_) => (
                encoded(&|| encode_to_vec(&SmStat { state })),
                "sm_unmon_all",
            ),
            Err(_) => garbage(xid, "sm_unmon_all"),
        },
        p if p == NsmProc::SimuCrash as u32 => {
            debug!(%peer, "SM_SIMU_CRASH ignored");
            (Reply::success(xid, Vec::new()), "sm_simu_crash")
        }
        p if p == NsmProc::Notify as u32 => match decode_exact::<StatChange>(args) {
            Ok(notice) => {
                // A full queue drops the notice like a lost datagram: statd sends it again.
                let _ = shared
                    .core_tx
                    .try_send(CoreMsg::ClientRebooted { peer, notice });
                (Reply::success(xid, Vec::new()), "sm_notify")
            }
            Err(_) => garbage(xid, "sm_notify"),
        },
        _ => (Reply::accepted(xid, AcceptStat::ProcUnavail), "nsm"),
    };
    let status = match &reply.body {
        crate::rpc::ReplyBody::Accepted {
            stat: AcceptStat::Success { .. },
            ..
        } => "ok",
        crate::rpc::ReplyBody::Accepted {
            stat: AcceptStat::GarbageArgs,
            ..
        } => "garbage_args",
        _ => "proc_unavail",
    };
    answer(reply, procedure, status);
}

fn garbage(xid: u32, procedure: &'static str) -> (Reply, &'static str) {
    (Reply::accepted(xid, AcceptStat::GarbageArgs), procedure)
}
