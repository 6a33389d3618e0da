//! Reboot notices: after every start brlockd tells each client host it kept in its store that it
//! restarted — NSM SM_NOTIFY (100024 v1 procedure 6, `stat_chge{mon_name, state}`) to the host's
//! statd, found through the host's portmapper — so that the host's lockd reclaims its locks in the
//! grace period. This is what nfs-utils' `sm-notify` does for a kernel NFS server, and with the same
//! schedule (utils/statd/sm-notify.c): all hosts at once; a host that does not answer is asked again
//! after 2 s, then 4, 8, … up to 120 s, for 15 minutes; every fourth retry asks its portmapper again
//! (its statd may have restarted); a portmapper that knows no statd is asked again after the longest
//! wait. Notices leave from a privileged port of the address the host's calls arrived at, like
//! sm-notify's `bindresvport`.
//!
//! Which `mon_name`: a Linux client (`nsm_use_hostnames=0`, the default) monitors the server by the
//! address it mounted, and its statd (`sm_notify_1_svc`) takes a notice whose `mon_name` or sender
//! address matches a host it monitors and whose state differs from the one it last saw. So the
//! default `mon_name` is that address — the local address the host's calls arrived at — and the
//! notice is sent from it; `--notify-name` overrides the name.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};
use tracing::{debug, info, warn};

use super::outbound::{Transport, call_record_for, getport, results_of};
use crate::config::NoticeTiming;
use crate::metrics::Metrics;
use crate::nsm::{NSM_PROGRAM, NSM_VERSION, NsmProc, StatChange};
use crate::store::ClientHost;
use crate::xdr::encode_to_vec;

/// Notices in flight at once; the rest wait their turn (sm-notify sends at most 10 per round).
const IN_FLIGHT: usize = 64;

/// One host to tell: its address, the `mon_name` it knows us by, and the address to send from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub host: IpAddr,
    pub mon_name: Vec<u8>,
    pub from: IpAddr,
    /// The caller_names this notice covers (for the log).
    pub callers: Vec<String>,
}

/// The notices `hosts` need: one per (host address, mon_name), whatever the number of caller_names
/// calling from that address.
pub fn targets(hosts: &[ClientHost], notify_name: Option<&str>) -> Vec<Target> {
    let mut by_key: BTreeMap<(IpAddr, Vec<u8>), Target> = BTreeMap::new();
    for h in hosts {
        let mon_name = match notify_name {
            Some(name) => name.as_bytes().to_vec(),
            None => h.local_address.to_string().into_bytes(),
        };
        by_key
            .entry((h.address, mon_name.clone()))
            .or_insert_with(|| Target {
                host: h.address,
                mon_name,
                from: h.local_address,
                callers: Vec::new(),
            })
            .callers
            .push(String::from_utf8_lossy(&h.caller_name).into_owned());
    }
    by_key.into_values().collect()
}

/// sm-notify's retry schedule, as waits: how long each attempt waits for its answer.
#[derive(Clone, Debug)]
pub struct Schedule {
    next: Duration,
    max: Duration,
    attempts: u32,
}

impl Schedule {
    pub fn new(timing: &NoticeTiming) -> Self {
        Schedule {
            next: timing.first_wait,
            max: timing.max_wait,
            attempts: 0,
        }
    }

    /// The wait for the next attempt, and whether that attempt should ask the portmapper again
    /// first (the first one, and every fourth after it).
    pub fn next_attempt(&mut self) -> (Duration, bool) {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        let lookup = self.attempts.is_multiple_of(4);
        self.attempts += 1;
        (wait, lookup)
    }

    /// The portmapper knows no statd: wait the longest before asking again.
    pub fn no_statd(&mut self) -> Duration {
        self.next = self.max;
        self.max
    }
}

/// What became of one notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeResult {
    Delivered,
    GaveUp,
}

impl NoticeResult {
    pub fn label(self) -> &'static str {
        match self {
            NoticeResult::Delivered => "delivered",
            NoticeResult::GaveUp => "gave_up",
        }
    }
}

/// Sends every notice in its own task (at most [`IN_FLIGHT`] at once) and returns at once.
pub fn spawn(
    targets: Vec<Target>,
    state: u32,
    portmap_port: u16,
    timing: NoticeTiming,
    metrics: Arc<Metrics>,
) {
    if targets.is_empty() {
        info!("reboot notices: no client host to tell");
        return;
    }
    info!(
        hosts = targets.len(),
        state, "reboot notices: telling every client host brlockd kept that it restarted"
    );
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    for target in targets {
        let permits = permits.clone();
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let result = notify(&target, state, portmap_port, &timing).await;
            let callers = target.callers.join(",");
            let mon_name = String::from_utf8_lossy(&target.mon_name);
            match result {
                NoticeResult::Delivered => {
                    info!(host = %target.host, %mon_name, %callers, state, "reboot notice delivered")
                }
                NoticeResult::GaveUp => warn!(
                    host = %target.host, %mon_name, %callers,
                    "reboot notice: no answer; gave up (the host will not reclaim until its \
                     statd hears of us: run sm-notify -f for it)"
                ),
            }
            metrics.observe_reboot_notice(result.label());
        });
    }
}

/// One host's notice, retried until answered or until `timing.give_up`.
pub async fn notify(
    target: &Target,
    state: u32,
    portmap_port: u16,
    timing: &NoticeTiming,
) -> NoticeResult {
    let give_up = Instant::now() + timing.give_up;
    let args = match encode_to_vec(&StatChange {
        mon_name: target.mon_name.clone(),
        state,
    }) {
        Ok(args) => args,
        Err(e) => {
            warn!(host = %target.host, error = %e, "reboot notice cannot be encoded");
            return NoticeResult::GaveUp;
        }
    };
    let mut schedule = Schedule::new(timing);
    let mut statd: Option<SocketAddr> = None;
    let pmap = SocketAddr::new(target.host, portmap_port);
    while Instant::now() < give_up {
        let (wait, lookup) = schedule.next_attempt();
        let deadline = (Instant::now() + wait).min(give_up);
        if lookup || statd.is_none() {
            match getport(pmap, NSM_PROGRAM, NSM_VERSION, Transport::Udp, wait).await {
                Ok(0) => {
                    let wait = schedule.no_statd();
                    debug!(host = %target.host, "reboot notice: no statd registered; asking again later");
                    tokio::time::sleep_until((Instant::now() + wait).min(give_up)).await;
                    continue;
                }
                Ok(port) => statd = Some(SocketAddr::new(target.host, port)),
                Err(e) => {
                    debug!(host = %target.host, error = %e, "reboot notice: portmapper did not answer");
                    tokio::time::sleep_until(deadline).await;
                    continue;
                }
            }
        }
        let Some(to) = statd else { continue };
        match send_notify(target.from, to, &args, deadline).await {
            Ok(()) => return NoticeResult::Delivered,
            Err(e) => {
                debug!(host = %target.host, %to, error = %e, "reboot notice not answered; retrying");
                tokio::time::sleep_until(deadline).await;
            }
        }
    }
    NoticeResult::GaveUp
}

/// One SM_NOTIFY from `from` to `to`, waiting for its (void) answer until `deadline`.
async fn send_notify(
    from: IpAddr,
    to: SocketAddr,
    args: &[u8],
    deadline: Instant,
) -> Result<(), String> {
    let socket = reserved_socket(from, to).map_err(|e| format!("socket: {e}"))?;
    let (xid, record) = call_record_for(NSM_PROGRAM, NSM_VERSION, NsmProc::Notify as u32, args);
    socket.send(&record).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1024];
    loop {
        match timeout_at(deadline, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => match results_of(xid, &buf[..n]) {
                Some(Ok(_)) => return Ok(()),
                Some(Err(e)) => return Err(e.to_string()),
                None => continue,
            },
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no answer in time".into()),
        }
    }
}

/// A UDP socket connected to `to`, bound to `from` (when it is one of ours) on a privileged port
/// when we may bind one (sm-notify's `bindresvport`; some statds only take notices from one), else
/// on any port.
fn reserved_socket(from: IpAddr, to: SocketAddr) -> std::io::Result<UdpSocket> {
    let bind_ip = if from.is_unspecified() || from.is_ipv4() != to.is_ipv4() {
        match to {
            SocketAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
            SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
        }
    } else {
        from
    };
    // bindresvport's range, walked from a start that differs between processes.
    let start = (std::process::id() % 400) as u16;
    let mut socket = None;
    for i in 0..16u16 {
        let port = 600 + (start + i * 23) % 424;
        match StdUdpSocket::bind(SocketAddr::new(bind_ip, port)) {
            Ok(s) => {
                socket = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => break,
            Err(_) => {}
        }
    }
    let socket = match socket {
        Some(s) => s,
        None => match StdUdpSocket::bind(SocketAddr::new(bind_ip, 0)) {
            Ok(s) => s,
            // Not an address of this host (any more): let the kernel choose.
            Err(_) => StdUdpSocket::bind(SocketAddr::new(
                match to {
                    SocketAddr::V4(_) => IpAddr::from([0, 0, 0, 0]),
                    SocketAddr::V6(_) => IpAddr::from([0u16; 8]),
                },
                0,
            ))?,
        },
    };
    socket.set_nonblocking(true)?;
    socket.connect(to)?;
    UdpSocket::from_std(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: &str, local: &str) -> ClientHost {
        ClientHost {
            caller_name: name.as_bytes().to_vec(),
            address: address.parse().unwrap(),
            local_address: local.parse().unwrap(),
            nsm_state: Some(3),
            statd_monitored: false,
        }
    }

    #[test]
    fn one_notice_per_address_named_by_the_address_it_mounted() {
        let hosts = [
            host("a", "127.0.0.5", "127.0.0.1"),
            host("a-too", "127.0.0.5", "127.0.0.1"),
            host("b", "127.0.0.6", "127.0.0.2"),
        ];
        let t = targets(&hosts, None);
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].host, "127.0.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(t[0].mon_name, b"127.0.0.1");
        assert_eq!(t[0].from, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(t[0].callers, ["a", "a-too"]);
        assert_eq!(t[1].mon_name, b"127.0.0.2");
        let named = targets(&hosts, Some("nfs-server"));
        assert!(named.iter().all(|t| t.mon_name == b"nfs-server"));
    }

    #[test]
    fn the_schedule_doubles_to_its_cap_and_looks_statd_up_every_fourth_attempt() {
        let timing = NoticeTiming {
            first_wait: Duration::from_secs(2),
            max_wait: Duration::from_secs(120),
            give_up: Duration::from_secs(900),
        };
        let mut s = Schedule::new(&timing);
        let attempts: Vec<(u64, bool)> = (0..9)
            .map(|_| {
                let (wait, lookup) = s.next_attempt();
                (wait.as_secs(), lookup)
            })
            .collect();
        assert_eq!(
            attempts,
            [
                (2, true),
                (4, false),
                (8, false),
                (16, false),
                (32, true),
                (64, false),
                (120, false),
                (120, false),
                (120, true)
            ]
        );
        let mut s = Schedule::new(&timing);
        assert_eq!(s.no_statd(), Duration::from_secs(120));
        assert_eq!(s.next_attempt().0, Duration::from_secs(120));
    }
}
