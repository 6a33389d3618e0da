//! Calls to clients: NLM_GRANTED / NLM_GRANTED_MSG for a granted waiter, the `*_RES` answer to a
//! `*_MSG` request, and SM_MON to the local statd. Each runs in its own task under a deadline and
//! reports back to the core task as a message; none can block the core task.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use brlock_core::{CallbackResult, WaiterId};
use tracing::{debug, info};

use super::dispatch::{GrantCookie, waiter_cookie};
use super::outbound::{Transport, call, getport};
use super::{CoreMsg, Shared};
use crate::nlm::{self, NLM_PROGRAM, NlmCall, NlmProc, NlmReply, NlmVersion, Stat, TestArgs};
use crate::nsm::{Mon, MonId, MyId, NSM_PROGRAM, NSM_VERSION, NsmProc};
use crate::xdr::encode_to_vec;

/// Where `ip`'s NLM service of `version` over `transport` listens, via its portmapper.
async fn client_nlm(
    shared: &Shared,
    ip: IpAddr,
    version: NlmVersion,
    transport: Transport,
) -> Result<SocketAddr, String> {
    let pmap = SocketAddr::new(ip, shared.config.portmap_port);
    let port = getport(
        pmap,
        NLM_PROGRAM,
        version as u32,
        transport,
        shared.config.callback_timeout,
    )
    .await
    .map_err(|e| format!("portmapper at {pmap}: {e}"))?;
    if port == 0 {
        return Err(format!(
            "no NLM v{} {} registered at {pmap}",
            version as u32,
            transport.name()
        ));
    }
    Ok(SocketAddr::new(ip, port))
}

/// Sends GRANTED (and reports its outcome) or GRANTED_MSG (whose outcome arrives as GRANTED_RES or
/// times out) for `waiter`.
pub(crate) async fn send_granted(
    shared: Arc<Shared>,
    ip: IpAddr,
    waiter: WaiterId,
    attempt: u32,
    grant: GrantCookie,
    mut args: TestArgs,
) {
    let started = Instant::now();
    let timeout = shared.config.callback_timeout;
    let procedure = if grant.msg {
        NlmProc::GrantedMsg
    } else {
        NlmProc::Granted
    };
    let work = async {
        let addr = client_nlm(&shared, ip, grant.version, grant.transport).await?;
        let nlm_call = if grant.msg {
            args.cookie = waiter_cookie(waiter);
            NlmCall::GrantedMsg(args)
        } else {
            args.cookie = grant.nlm_cookie.clone();
            NlmCall::Granted(args)
        };
        let mut encoded = Vec::new();
        nlm::encode_call(grant.version, &nlm_call, &mut encoded).map_err(|e| e.to_string())?;
        let results = call(
            grant.transport,
            addr,
            (NLM_PROGRAM, grant.version as u32, procedure as u32),
            &encoded,
            timeout,
            !grant.msg,
        )
        .await
        .map_err(|e| format!("{procedure:?} to {addr}: {e}"))?;
        if grant.msg {
            return Ok(None);
        }
        match nlm::decode_reply(grant.version, NlmProc::Granted, &results) {
            Ok(NlmReply::Res(res)) if res.stat == Stat::Granted => {
                Ok(Some(CallbackResult::Delivered))
            }
            Ok(_) => Ok(Some(CallbackResult::Refused)),
            Err(e) => Err(format!("GRANTED reply from {addr}: {e}")),
        }
    };
    let result = match tokio::time::timeout(timeout, work).await {
        Ok(Ok(Some(result))) => result,
        Ok(Ok(None)) => {
            // GRANTED_MSG is out; GRANTED_RES settles it, or this deadline does.
            let tx = shared.core_tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timeout).await;
                let _ = tx.send(CoreMsg::GrantedMsgExpired { waiter, attempt });
            });
            return;
        }
        Ok(Err(e)) => {
            info!(waiter = waiter.0, attempt, error = %e, "GRANTED callback failed");
            CallbackResult::Failed
        }
        Err(_) => {
            info!(waiter = waiter.0, attempt, "GRANTED callback timed out");
            CallbackResult::Failed
        }
    };
    shared
        .metrics
        .observe_callback(&format!("{result:?}").to_lowercase(), started.elapsed());
    let _ = shared.core_tx.send(CoreMsg::CallbackOutcome {
        waiter,
        result,
        attempt,
    });
}

/// Sends the `*_RES` call answering a `*_MSG` request to the client's NLM service (one-way).
pub(crate) async fn send_res(
    shared: Arc<Shared>,
    ip: IpAddr,
    version: NlmVersion,
    transport: Transport,
    res: NlmCall,
) {
    let procedure = res.procedure();
    let work = async {
        let addr = client_nlm(&shared, ip, version, transport).await?;
        let mut encoded = Vec::new();
        nlm::encode_call(version, &res, &mut encoded).map_err(|e| e.to_string())?;
        call(
            transport,
            addr,
            (NLM_PROGRAM, version as u32, procedure as u32),
            &encoded,
            shared.config.callback_timeout,
            false,
        )
        .await
        .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(shared.config.callback_timeout, work).await {
        Ok(Ok(_)) => debug!(%ip, ?procedure, "sent"),
        Ok(Err(e)) => info!(%ip, ?procedure, error = %e, "callback not sent"),
        Err(_) => info!(%ip, ?procedure, "callback timed out"),
    }
}

/// Asks statd to monitor `mon_name` and call NLM procedure 16 when it reboots (as Linux lockd does).
pub(crate) async fn sm_mon(shared: Arc<Shared>, statd: SocketAddr, mon_name: Vec<u8>) {
    let mon = Mon {
        mon_id: MonId {
            mon_name: mon_name.clone(),
            my_id: MyId {
                my_name: b"127.0.0.1".to_vec(),
                my_prog: NLM_PROGRAM,
                my_vers: 3,
                my_proc: NlmProc::NsmNotify as u32,
            },
        },
        private: [0; crate::nsm::PRIVATE_SIZE],
    };
    let Ok(args) = encode_to_vec(&mon) else {
        return;
    };
    let name = String::from_utf8_lossy(&mon_name).into_owned();
    match call(
        Transport::Udp,
        statd,
        (NSM_PROGRAM, NSM_VERSION, NsmProc::Mon as u32),
        &args,
        shared.config.callback_timeout,
        true,
    )
    .await
    {
        Ok(_) => debug!(host = %name, "SM_MON sent"),
        Err(e) => {
            info!(host = %name, error = %e, "SM_MON failed; locks stay, reboots go unnoticed")
        }
    }
}
