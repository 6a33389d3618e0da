//! Registration with rpcbind: each program and version brlockd serves, on tcp and udp.
//!
//! A crashed instance leaves its mappings behind, and rpcbind refuses a SET over an existing
//! mapping, so every registration first UNSETs what it is about to SET. The SET names the address
//! actually listened on: rpcbind v4 SET with its universal address (`127.0.0.2.16.205`) when brlockd
//! listens on one address — a portmap v2 SET has no address and reads as `0.0.0.0` — and the v2 SET
//! when it listens on a wildcard or rpcbind speaks only v2. A refused SET is an error: clients will
//! not find the service.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::{debug, error, info, warn};

use super::outbound::{self, CallFailure, Transport};
use crate::portmap::{Mapping, PMAP_PROGRAM, RPCBIND_VERSION_4, Rpcb, RpcbProc, universal_address};
use crate::rpc::{AcceptStat, ReplyBody};
use crate::xdr::{decode_exact, encode_to_vec};

const TIMEOUT: Duration = Duration::from_secs(1);

/// What one instance registers: (program, versions).
pub type Programs = Vec<(u32, Vec<u32>)>;

fn netid(transport: Transport, addr: SocketAddr) -> &'static str {
    match (transport, addr.is_ipv4()) {
        (Transport::Tcp, true) => "tcp",
        (Transport::Udp, true) => "udp",
        (Transport::Tcp, false) => "tcp6",
        (Transport::Udp, false) => "udp6",
    }
}

/// UNSETs, then SETs every (program, version) on each of `transports` at `local`. Returns whether
/// rpcbind answered at all.
pub async fn register(
    rpcbind: SocketAddr,
    local: SocketAddr,
    programs: &Programs,
    transports: &[Transport],
) -> bool {
    if !unset(rpcbind, programs).await {
        return false;
    }
    let mut v4 = !local.ip().is_unspecified();
    let mut refused = 0;
    for (prog, versions) in programs {
        for &vers in versions {
            for &transport in transports {
                let result = if v4 {
                    match set_v4(rpcbind, *prog, vers, transport, local).await {
                        Err(CallFailure::Rejected(ReplyBody::Accepted {
                            stat: AcceptStat::ProgMismatch { .. } | AcceptStat::ProcUnavail,
                            ..
                        })) => {
                            warn!(%rpcbind, %local, "rpcbind speaks only portmap v2: registered \
                                without an address (clients see 0.0.0.0)");
                            v4 = false;
                            set_v2(rpcbind, *prog, vers, transport, local).await
                        }
                        other => other,
                    }
                } else {
                    set_v2(rpcbind, *prog, vers, transport, local).await
                };
                match result {
                    Ok(true) => {}
                    Ok(false) => {
                        refused += 1;
                        error!(%rpcbind, program = prog, version = vers, transport = transport.name(),
                            "rpcbind refused the registration: clients will not find this service")
                    }
                    Err(e) => {
                        error!(%rpcbind, error = %e, "rpcbind stopped answering during registration");
                        return false;
                    }
                }
            }
        }
    }
    if refused == 0 {
        info!(%rpcbind, address = %local, universal_address = v4, "registered with rpcbind");
    }
    true
}

/// UNSETs every (program, version) (portmap v2 UNSET removes every protocol of a version).
pub async fn unset(rpcbind: SocketAddr, programs: &Programs) -> bool {
    for (prog, versions) in programs {
        for &vers in versions {
            let mapping = Mapping {
                prog: *prog,
                vers,
                prot: 0,
                port: 0,
            };
            match outbound::pmap_set(rpcbind, mapping, false, TIMEOUT).await {
                Ok(removed) => {
                    debug!(%rpcbind, program = prog, version = vers, removed, "rpcbind UNSET")
                }
                Err(e) => {
                    info!(%rpcbind, error = %e, "rpcbind not reachable: serving without registration");
                    return false;
                }
            }
        }
    }
    true
}

async fn set_v2(
    rpcbind: SocketAddr,
    prog: u32,
    vers: u32,
    transport: Transport,
    local: SocketAddr,
) -> Result<bool, CallFailure> {
    let mapping = Mapping {
        prog,
        vers,
        prot: transport.ipproto(),
        port: u32::from(local.port()),
    };
    outbound::pmap_set(rpcbind, mapping, true, TIMEOUT).await
}

async fn set_v4(
    rpcbind: SocketAddr,
    prog: u32,
    vers: u32,
    transport: Transport,
    local: SocketAddr,
) -> Result<bool, CallFailure> {
    let rpcb = Rpcb {
        prog,
        vers,
        netid: netid(transport, local).into(),
        addr: universal_address(local),
        // rpcbind sets the owner from the caller's credentials; this is only informative.
        owner: "brlockd".into(),
    };
    let args = encode_to_vec(&rpcb).map_err(|e| CallFailure::Malformed(e.to_string()))?;
    let results = outbound::call(
        Transport::Udp,
        rpcbind,
        (PMAP_PROGRAM, RPCBIND_VERSION_4, RpcbProc::Set as u32),
        &args,
        TIMEOUT,
        true,
    )
    .await?;
    decode_exact(&results).map_err(|e| CallFailure::Malformed(e.to_string()))
}
