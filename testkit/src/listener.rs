//! A client host's NLM service: where brlockd sends NLM_GRANTED for a blocked lock and the
//! `*_RES` answers to `*_MSG` calls, having asked the host's portmapper for its port.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brlock_wire::nlm::{self, NLM_PROGRAM, NlmCall, NlmProc, NlmReply, NlmVersion, Res, Stat};
use brlock_wire::rpc::{AcceptStat, CallHeader, Reply};

use crate::client::{NlmClient, Transport};
use crate::portmapper::Portmapper;
use crate::rpc_server::{CALLS_KEPT, Handler, RpcServer};

/// One NLM call the listener received.
#[derive(Clone, Debug)]
pub struct Received {
    pub transport: Transport,
    pub version: u32,
    pub call: NlmCall,
}

/// A client host's NLM service: records every call (the first [`CALLS_KEPT`] a test has not
/// read yet; later ones are answered but dropped); answers GRANTED with NLM_GRANTED (echoing the
/// cookie) and everything else with a void reply. When [`NlmListener::answer_granted_msg_to`] is
/// set, a GRANTED_MSG is also answered the asynchronous way, with a GRANTED_RES call to that
/// address.
pub struct NlmListener {
    pub server: RpcServer,
    calls: Receiver<Received>,
    answer_to: Arc<Mutex<Option<SocketAddr>>>,
}

/// What the listener's threads share: where to record calls and where to send GRANTED_RES.
struct Service {
    calls: SyncSender<Received>,
    answer_to: Arc<Mutex<Option<SocketAddr>>>,
}

impl Service {
    fn answer(&self, transport: Transport, header: &CallHeader, args: &[u8]) -> Option<Reply> {
        let xid = header.xid;
        if header.program != NLM_PROGRAM {
            return Some(Reply::accepted(xid, AcceptStat::ProgUnavail));
        }
        let Some(version) = NlmVersion::from_wire(header.version) else {
            return Some(Reply::accepted(
                xid,
                AcceptStat::ProgMismatch { low: 1, high: 4 },
            ));
        };
        let call = match nlm::decode_call(version, header.procedure, args) {
            Ok(call) => call,
            Err(nlm::NlmDecodeError::ProcUnavail(_)) => {
                return Some(Reply::accepted(xid, AcceptStat::ProcUnavail));
            }
            Err(nlm::NlmDecodeError::Garbage(_)) => {
                return Some(Reply::accepted(xid, AcceptStat::GarbageArgs));
            }
        };
        let reply = match &call {
            NlmCall::Granted(a) => NlmReply::Res(Res {
                cookie: a.cookie.clone(),
                stat: Stat::Granted,
            }),
            _ => NlmReply::Void,
        };
        if let NlmCall::GrantedMsg(a) = &call
            && let Some(server) = *self.answer_to.lock().unwrap_or_else(|e| e.into_inner())
        {
            let cookie = a.cookie.clone();
            std::thread::spawn(move || {
                if let Ok(mut c) = NlmClient::connect(Transport::Tcp, server, version) {
                    let res = Res {
                        cookie,
                        stat: Stat::Granted,
                    };
                    let _ = c.res_call(NlmProc::GrantedRes, res);
                }
            });
        }
        // A test reads what it expects; a full queue drops the call, never the reply.
        let _ = self.calls.try_send(Received {
            transport,
            version: header.version,
            call,
        });
        let mut results = Vec::new();
        nlm::encode_reply(version, &reply, &mut results).ok()?;
        Some(Reply::success(xid, results))
    }
}

impl NlmListener {
    pub fn spawn() -> io::Result<Self> {
        let (tx, calls) = mpsc::sync_channel(CALLS_KEPT);
        let answer_to = Arc::new(Mutex::new(None));
        let service = Service {
            calls: tx,
            answer_to: Arc::clone(&answer_to),
        };
        let handler: Arc<Handler> =
            Arc::new(move |transport, header, args| service.answer(transport, header, args));
        Ok(NlmListener {
            server: RpcServer::spawn(handler)?,
            calls,
            answer_to,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Makes the listener answer GRANTED_MSG with a GRANTED_RES call to `server`.
    pub fn answer_granted_msg_to(&self, server: SocketAddr) {
        *self.answer_to.lock().unwrap_or_else(|e| e.into_inner()) = Some(server);
    }

    /// The next call received within `within`, if any.
    pub fn next_call(&self, within: Duration) -> Option<Received> {
        self.calls.recv_timeout(within).ok()
    }

    /// Waits up to `within` for a call matching `wanted`, returning it and every other call
    /// received before it.
    pub fn wait_for(
        &self,
        within: Duration,
        wanted: impl Fn(&NlmCall) -> bool,
    ) -> (Option<Received>, Vec<Received>) {
        let deadline = Instant::now() + within;
        let mut others = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.calls.recv_timeout(left) {
                Ok(r) if wanted(&r.call) => return (Some(r), others),
                Ok(r) => others.push(r),
                Err(_) => return (None, others),
            }
        }
    }
}

/// A listener and a portmapper pointing at it: one simulated client host.
pub struct ClientHost {
    pub listener: NlmListener,
    pub portmapper: Portmapper,
}

impl ClientHost {
    pub fn spawn() -> io::Result<Self> {
        let listener = NlmListener::spawn()?;
        let portmapper = Portmapper::spawn(listener.port())?;
        Ok(ClientHost {
            listener,
            portmapper,
        })
    }
}
