//! A fake portmapper (program 100000): what brlockd asks to find a client's NLM service and
//! statd, and what it registers with at start and unregisters from at shutdown.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use brlock_wire::nlm::NLM_PROGRAM;
use brlock_wire::nsm::NSM_PROGRAM;
use brlock_wire::portmap::{
    IPPROTO_TCP, Mapping, PMAP_PROGRAM, PMAP_VERSION, PmapProc, RPCBIND_VERSION_4, Rpcb, RpcbProc,
};
use brlock_wire::rpc::{AcceptStat, CallHeader, Reply};
use brlock_wire::xdr::{decode_exact, encode_to_vec};

use crate::client::Transport;
use crate::rpc_server::{CallLog, Handler, RpcServer};

/// A SET or UNSET as the fake saw it: (`"set"`/`"unset"`, program, version).
pub type Change = (&'static str, u32, u32);

/// A portmapper (v2, and rpcbind v4 SET/UNSET) on one port, TCP and UDP. GETPORT maps NLM, every
/// version and protocol, to one port ([`Portmapper::map_nlm_to`] changes it, as a client host's
/// lockd registering anew would) and NSM to another ([`Portmapper::map_nsm_to`]; 0, unregistered,
/// at first); every other program to 0. SETs and UNSETs are answered `true` and recorded, not
/// looked up: the mappings a test plays are the ones it set itself.
pub struct Portmapper {
    pub server: RpcServer,
    state: Arc<Seen>,
}

/// The mapped ports and every call recorded, shared with the server's threads.
struct Seen {
    nlm_port: AtomicU16,
    nsm_port: AtomicU16,
    /// Every SET and UNSET of either version, in arrival order.
    changes: CallLog<Change>,
    /// Every GETPORT, with the transport it came on.
    queries: CallLog<(Transport, Mapping)>,
    /// Every portmap v2 SET and UNSET.
    registrations: CallLog<(PmapProc, Mapping)>,
    /// Every rpcbind v4 SET and UNSET.
    rpcb: CallLog<(RpcbProc, Rpcb)>,
}

impl Seen {
    fn answer(&self, transport: Transport, header: &CallHeader, args: &[u8]) -> Reply {
        let xid = header.xid;
        if header.program != PMAP_PROGRAM {
            return Reply::accepted(xid, AcceptStat::ProgUnavail);
        }
        let results = match header.version {
            RPCBIND_VERSION_4 => self.rpcbind_v4(header.procedure, args),
            PMAP_VERSION => self.portmap_v2(transport, header.procedure, args),
            _ => Err(AcceptStat::ProgMismatch {
                low: PMAP_VERSION,
                high: PMAP_VERSION,
            }),
        };
        match results {
            Ok(results) => Reply::success(xid, results),
            Err(stat) => Reply::accepted(xid, stat),
        }
    }

    fn rpcbind_v4(&self, procedure: u32, args: &[u8]) -> Result<Vec<u8>, AcceptStat> {
        let (procedure, what) = match procedure {
            0 => return Ok(Vec::new()),
            p if p == RpcbProc::Set as u32 => (RpcbProc::Set, "set"),
            p if p == RpcbProc::Unset as u32 => (RpcbProc::Unset, "unset"),
            _ => return Err(AcceptStat::ProcUnavail),
        };
        let r = decode_exact::<Rpcb>(args).map_err(|_| AcceptStat::GarbageArgs)?;
        self.changes.push((what, r.prog, r.vers));
        self.rpcb.push((procedure, r));
        Ok(encode_to_vec(&true).expect("bool encodes"))
    }

    fn portmap_v2(
        &self,
        transport: Transport,
        procedure: u32,
        args: &[u8],
    ) -> Result<Vec<u8>, AcceptStat> {
        let procedure = match procedure {
            p if p == PmapProc::Null as u32 => return Ok(Vec::new()),
            p if p == PmapProc::Set as u32 => PmapProc::Set,
            p if p == PmapProc::Unset as u32 => PmapProc::Unset,
            p if p == PmapProc::Getport as u32 => PmapProc::Getport,
            _ => return Err(AcceptStat::ProcUnavail),
        };
        let mapping = decode_exact::<Mapping>(args).map_err(|_| AcceptStat::GarbageArgs)?;
        if procedure == PmapProc::Getport {
            self.queries.push((transport, mapping));
            let port = match mapping.prog {
                NLM_PROGRAM => self.nlm_port.load(Ordering::SeqCst),
                NSM_PROGRAM => self.nsm_port.load(Ordering::SeqCst),
                _ => 0,
            };
            return Ok(encode_to_vec(&u32::from(port)).expect("u32 encodes"));
        }
        let what = if procedure == PmapProc::Set {
            "set"
        } else {
            "unset"
        };
        self.changes.push((what, mapping.prog, mapping.vers));
        self.registrations.push((procedure, mapping));
        Ok(encode_to_vec(&true).expect("bool encodes"))
    }
}

impl Portmapper {
    /// A portmapper mapping NLM to `nlm_port` (0: not registered).
    pub fn spawn(nlm_port: u16) -> io::Result<Self> {
        let state = Arc::new(Seen {
            nlm_port: AtomicU16::new(nlm_port),
            nsm_port: AtomicU16::new(0),
            changes: CallLog::new(),
            queries: CallLog::new(),
            registrations: CallLog::new(),
            rpcb: CallLog::new(),
        });
        let seen = Arc::clone(&state);
        let handler: Arc<Handler> =
            Arc::new(move |transport, header, args| Some(seen.answer(transport, header, args)));
        Ok(Portmapper {
            server: RpcServer::spawn(handler)?,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Answers later GETPORTs for NLM with `port`.
    pub fn map_nlm_to(&self, port: u16) {
        self.state.nlm_port.store(port, Ordering::SeqCst);
    }

    /// Answers later GETPORTs for NSM (a host's statd) with `port` (0: none registered).
    pub fn map_nsm_to(&self, port: u16) {
        self.state.nsm_port.store(port, Ordering::SeqCst);
    }

    /// Every GETPORT received so far, with the transport it came on.
    pub fn queries(&self) -> Vec<(Transport, Mapping)> {
        self.state.queries.all()
    }

    /// Every portmap v2 SET and UNSET received so far, in arrival order.
    pub fn registrations(&self) -> Vec<(PmapProc, Mapping)> {
        self.state.registrations.all()
    }

    /// Every rpcbind v4 SET and UNSET received so far, in arrival order.
    pub fn rpcb_registrations(&self) -> Vec<(RpcbProc, Rpcb)> {
        self.state.rpcb.all()
    }

    /// Every SET and UNSET (portmap v2 or rpcbind v4) so far, in arrival order.
    pub fn changes(&self) -> Vec<Change> {
        self.state.changes.all()
    }

    /// What rpcbind would hold after the SETs and UNSETs received so far (v2 and v4 alike, as
    /// rpcbind keeps one table): (program, version, protocol) → universal address or port.
    pub fn table(&self) -> BTreeMap<(u32, u32, &'static str), String> {
        // Arrival order across the two logs is lost; callers use one version per phase.
        let mut table = BTreeMap::new();
        for (p, m) in self.registrations() {
            let prot = if m.prot == IPPROTO_TCP { "tcp" } else { "udp" };
            match p {
                PmapProc::Set => {
                    table.insert(
                        (m.prog, m.vers, prot),
                        format!("0.0.0.0.{}.{}", m.port >> 8, m.port & 0xff),
                    );
                }
                PmapProc::Unset => {
                    table.retain(|&(prog, vers, _), _| (prog, vers) != (m.prog, m.vers))
                }
                _ => {}
            }
        }
        for (p, r) in self.rpcb_registrations() {
            let prot: &'static str = if r.netid.starts_with("tcp") {
                "tcp"
            } else {
                "udp"
            };
            match p {
                RpcbProc::Set => {
                    table.insert((r.prog, r.vers, prot), r.addr.clone());
                }
                RpcbProc::Unset => table.retain(|&(prog, vers, n), _| {
                    (prog, vers) != (r.prog, r.vers) || (!r.netid.is_empty() && n != prot)
                }),
            }
        }
        table
    }
}
