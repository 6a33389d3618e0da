//! Calls to clients: NLM_GRANTED / NLM_GRANTED_MSG for a granted waiter, the `*_RES` answer to a
//! `*_MSG` request, and SM_MON / SM_UNMON to the local statd. Each runs in a task of its own (the
//! statd calls in one task, in order) under a deadline and reports back to the core task as a
//! message; none can block the core task.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use brlock_core::{CallbackResult, WaiterId};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::dispatch::GrantCookie;
use super::outbound::Transport;
use super::shared::{CoreMsg, Shared};
use crate::nlm::{self, NLM_PROGRAM, NlmCall, NlmProc, NlmReply, NlmVersion, Stat, TestArgs};
use crate::nsm::{Mon, MonId, MyId, NSM_PROGRAM, NSM_VERSION, NsmProc, SmResult, SmStatRes};
use crate::xdr::{decode_exact, encode_to_vec};

/// Where `ip`'s NLM service of `version` over `transport` listens, via its portmapper.
async fn client_nlm(
    shared: &Shared,
    ip: IpAddr,
    version: NlmVersion,
    transport: Transport,
) -> Result<SocketAddr, String> {
    let pmap = SocketAddr::new(ip, shared.config.portmap_port);
    let port = shared
        .outbound
        .getport(
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

/// One GRANTED callback: which grant, which send of it, and the NLM cookie that names it (the
/// core's `callback_cookie`, which a GRANTED_RES must carry back).
#[derive(Clone, Debug)]
pub(crate) struct Callback {
    pub waiter: WaiterId,
    pub attempt: u32,
    pub nlm_cookie: Vec<u8>,
}

/// Sends GRANTED (and reports its outcome) or GRANTED_MSG (whose outcome arrives as GRANTED_RES or
/// times out) for `callback.waiter`.
pub(crate) async fn send_granted(
    shared: Arc<Shared>,
    ip: IpAddr,
    callback: Callback,
    grant: GrantCookie,
    mut args: TestArgs,
) {
    let Callback {
        waiter,
        attempt,
        nlm_cookie,
    } = callback;
    let started = Instant::now();
    let timeout = shared.config.callback_timeout;
    let procedure = if grant.msg {
        NlmProc::GrantedMsg
    } else {
        NlmProc::Granted
    };
    let work = async {
        let addr = client_nlm(&shared, ip, grant.version, grant.transport).await?;
        args.cookie = nlm_cookie;
        let nlm_call = if grant.msg {
            NlmCall::GrantedMsg(args)
        } else {
            NlmCall::Granted(args)
        };
        let mut encoded = Vec::new();
        nlm::encode_call(grant.version, &nlm_call, &mut encoded).map_err(|e| e.to_string())?;
        let results = shared
            .outbound
            .call_while(
                || shared.gate.is_open(),
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
                let _ = tx
                    .send(CoreMsg::GrantedMsgExpired { waiter, attempt })
                    .await;
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
    if result == CallbackResult::Delivered && attempt > 1 {
        info!(waiter = waiter.0, attempt, "GRANTED delivered on a retry");
    }
    shared
        .metrics
        .observe_callback(&format!("{result:?}").to_lowercase(), started.elapsed());
    let _ = shared
        .core_tx
        .send(CoreMsg::CallbackOutcome {
            waiter,
            result,
            attempt,
        })
        .await;
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
        shared
            .outbound
            .call_while(
                || shared.gate.is_open(),
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

/// A call to the local statd.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StatdCall {
    /// SM_MON: watch this host and tell us (NLM procedure 16) when it reboots.
    Mon(Vec<u8>),
    /// SM_UNMON: stop watching it.
    Unmon(Vec<u8>),
}

/// Starts the task that sends SM_MON and SM_UNMON to `statd` one at a time, in the order asked: an
/// SM_UNMON and the next SM_MON for the same host must not swap on the way (statd would then stop
/// watching a host that holds locks). The task ends when the returned sender is dropped.
/// The queue holds at most [`STATD_QUEUE`] calls; one more is dropped (and logged): statd then
/// watches a host a little longer, or not at all, which costs a missed reboot notice, never a lock.
pub(crate) fn statd_calls(shared: Arc<Shared>, statd: SocketAddr) -> mpsc::Sender<StatdCall> {
    let (tx, mut rx) = mpsc::channel(STATD_QUEUE);
    tokio::spawn(async move {
        while let Some(request) = rx.recv().await {
            call_statd(&shared, statd, request).await;
        }
    });
    tx
}

/// SM_MON/SM_UNMON calls waiting for statd.
pub(crate) const STATD_QUEUE: usize = 1024;

/// Who statd calls back on a reboot, the same in SM_MON and SM_UNMON (statd matches the pair):
/// NLM procedure 16 on this host, as Linux lockd registers it.
fn my_id() -> MyId {
    MyId {
        my_name: b"127.0.0.1".to_vec(),
        my_prog: NLM_PROGRAM,
        my_vers: 3,
        my_proc: NlmProc::NsmNotify as u32,
    }
}

async fn call_statd(shared: &Shared, statd: SocketAddr, request: StatdCall) {
    let (procedure, mon_name, args) = match request {
        StatdCall::Mon(mon_name) => {
            let mon = Mon {
                mon_id: MonId {
                    mon_name: mon_name.clone(),
                    my_id: my_id(),
                },
                private: [0; crate::nsm::PRIVATE_SIZE],
            };
            (NsmProc::Mon, mon_name, encode_to_vec(&mon))
        }
        StatdCall::Unmon(mon_name) => {
            let mon_id = MonId {
                mon_name: mon_name.clone(),
                my_id: my_id(),
            };
            (NsmProc::Unmon, mon_name, encode_to_vec(&mon_id))
        }
    };
    let host = String::from_utf8_lossy(&mon_name);
    let args = match args {
        Ok(args) => args,
        Err(e) => {
            // A caller_name longer than SM_MAXSTRLEN: statd could not take it anyway.
            info!(%host, ?procedure, error = %e, "not sent to statd");
            return;
        }
    };
    let sent = shared
        .outbound
        .call(
            Transport::Udp,
            statd,
            (NSM_PROGRAM, NSM_VERSION, procedure as u32),
            &args,
            shared.config.callback_timeout,
            true,
        )
        .await;
    match (procedure, sent) {
        (NsmProc::Mon, Ok(results)) => match decode_exact::<SmStatRes>(&results) {
            Ok(SmStatRes {
                result: SmResult::Success,
                ..
            }) => debug!(%host, "SM_MON sent"),
            _ => info!(%host, "statd refused SM_MON; locks stay, reboots go unnoticed"),
        },
        (NsmProc::Mon, Err(e)) => {
            info!(%host, error = %e, "SM_MON failed; locks stay, reboots go unnoticed")
        }
        (_, Ok(_)) => debug!(%host, "SM_UNMON sent"),
        (_, Err(e)) => info!(%host, error = %e, "SM_UNMON failed"),
    }
}
