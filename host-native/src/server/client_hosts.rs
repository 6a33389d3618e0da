//! The client-host table: which address each caller_name is bound to (a caller_name is only taken
//! from the address that first used it), which hosts statd monitors for us and with what NSM state,
//! and the rows that keep both across a restart. Sans-io: the driver passes the time and whether the
//! core still tracks a host, and carries out the store writes and statd calls it queues.
//!
//! Keeping it small under hosts that come and go: a host that the request which bound it left
//! holding nothing (a DENIED or refused LOCK, a TEST) is forgotten at once instead of at the next
//! idle sweep, and the table has a bound, `--max-client-hosts`. A new host that finds it full first
//! makes room by forgetting every host that holds nothing (at most once per [`EVICTION_PAUSE`], so a
//! flood cannot make each request walk the table), else is refused with DENIED_NOLOCKS, like the
//! core's own limits. What an entry costs: its caller_name (at most 1,024 bytes) twice — the binding
//! and, for a monitored host, the monitoring entry — plus ~120 bytes of map entry, addresses and
//! times: at most ~2.2 KB, so 22 MiB at the default bound of 10,000 hosts.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use brlock_core::{ClientId, Core};
use foldhash::{HashMap, HashMapExt};
use tracing::{debug, info, warn};

use super::callbacks::StatdCall;
use super::intake;
use crate::nlm::Stat;
use crate::nsm::StatChange;
use crate::store::{ClientHost, HostWrite};

/// How long a full table waits between two attempts to make room.
pub(crate) const EVICTION_PAUSE: Duration = Duration::from_secs(1);

/// Where a caller_name's calls come from, and the address of ours they arrived at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bound {
    pub ip: IpAddr,
    pub local: IpAddr,
}

/// A client host statd monitors for us.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Monitored {
    /// The NSM state its latest monitored LOCK carried.
    pub state: u32,
    /// Its latest request naming a lock or share.
    pub last_seen: Instant,
    /// SM_MON for it went to the local statd (`--nsm statd`).
    pub statd: bool,
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so one host has one spelling.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The question `ClientHosts` asks before forgetting a host: does `core` still track it (locks
/// held, requests queued, shares)?
pub(crate) fn tracked_by(core: &Core) -> impl Fn(&[u8]) -> bool + '_ {
    |name| core.knows_client(&ClientId::new(name.to_vec()))
}

/// Bindings and monitoring of the client hosts, with the store writes and statd calls they need.
#[derive(Debug)]
pub(crate) struct ClientHosts {
    /// caller_name → the address it first called from (restored from the store after a restart).
    callers: HashMap<Vec<u8>, Bound>,
    /// Client hosts statd was asked to monitor (SM_MON), by caller_name.
    monitored: HashMap<Vec<u8>, Monitored>,
    /// Changes to `callers`/`monitored` for the store, written with the next persist batch.
    writes: Vec<HostWrite>,
    /// SM_MON/SM_UNMON calls for the local statd, if there is one.
    statd_calls: Vec<StatdCall>,
    has_statd: bool,
    /// `--max-client-hosts`.
    max_hosts: usize,
    /// `--unmonitor-idle`.
    unmonitor_idle: Duration,
    /// The host bound by the call being handled.
    fresh: Option<Vec<u8>>,
    /// When room was last made in a full table.
    last_eviction: Option<Instant>,
}

impl ClientHosts {
    pub(crate) fn new(max_hosts: usize, unmonitor_idle: Duration, has_statd: bool) -> Self {
        ClientHosts {
            callers: HashMap::new(),
            monitored: HashMap::new(),
            writes: Vec::new(),
            statd_calls: Vec::new(),
            has_statd,
            max_hosts,
            unmonitor_idle,
            fresh: None,
            last_eviction: None,
        }
    }

    /// Takes back the bindings and monitoring the store kept (after a restart).
    pub(crate) fn restore(&mut self, hosts: &[ClientHost], now: Instant) {
        for h in hosts {
            let bound = Bound {
                ip: h.address,
                local: h.local_address,
            };
            self.callers.insert(h.caller_name.clone(), bound);
            if let Some(state) = h.nsm_state {
                let monitored = Monitored {
                    state,
                    last_seen: now,
                    statd: h.statd_monitored,
                };
                self.monitored.insert(h.caller_name.clone(), monitored);
            }
        }
    }

    /// Binds `caller` to the address of its first request (and notes the address of ours it
    /// reached, `local`); DENIED when it comes from another, DENIED_NOLOCKS when the table is full
    /// even after forgetting the hosts `holds` says hold nothing. A binding survives a restart (the
    /// store keeps it) until the host is freed or forgotten.
    pub(crate) fn admit(
        &mut self,
        caller: &[u8],
        peer: SocketAddr,
        local: IpAddr,
        now: Instant,
        holds: impl Fn(&[u8]) -> bool,
    ) -> Result<(), Stat> {
        let ip = canonical(peer.ip());
        match self.callers.get(caller).copied() {
            Some(bound) if bound.ip != ip => {
                info!(%peer, caller = %String::from_utf8_lossy(caller), bound = %bound.ip, "refused: caller_name bound to another address");
                Err(Stat::Denied)
            }
            Some(_) => Ok(()),
            None if !self.room_for_new_host(now, holds) => {
                debug!(%peer, caller = %String::from_utf8_lossy(caller), "refused: client-host table full (--max-client-hosts)");
                Err(Stat::DeniedNolocks)
            }
            None => {
                let local = canonical(intake::local_for(local, peer.ip()));
                self.callers.insert(caller.to_vec(), Bound { ip, local });
                self.fresh = Some(caller.to_vec());
                self.sync(caller);
                Ok(())
            }
        }
    }

    /// Whether one more host may be bound; makes room if the table is full.
    fn room_for_new_host(&mut self, now: Instant, holds: impl Fn(&[u8]) -> bool) -> bool {
        if self.callers.len() < self.max_hosts {
            return true;
        }
        let paused = self
            .last_eviction
            .is_some_and(|t| now.saturating_duration_since(t) < EVICTION_PAUSE);
        if !paused {
            self.last_eviction = Some(now);
            let idle: Vec<Vec<u8>> = self
                .callers
                .keys()
                .filter(|name| !holds(name))
                .cloned()
                .collect();
            info!(
                hosts = self.callers.len(),
                forgotten = idle.len(),
                "client-host table full (--max-client-hosts): forgetting the hosts that hold nothing"
            );
            for name in idle {
                self.forget(&name);
            }
        }
        self.callers.len() < self.max_hosts
    }

    /// `caller` sent a request naming a lock or share (its monitoring stays fresh).
    pub(crate) fn seen(&mut self, caller: &[u8], now: Instant) {
        if let Some(m) = self.monitored.get_mut(caller) {
            m.last_seen = now;
        }
    }

    /// A monitored LOCK from `name` carrying NSM state `state`: statd is asked to watch the host
    /// (SM_MON, once), and the state is kept for telling its reboot from a repeated notice.
    pub(crate) fn monitor(&mut self, name: &[u8], state: u32, now: Instant) {
        let before = self.monitored.get(name).map(|m| (m.state, m.statd));
        let statd = match before {
            Some((_, true)) => true,
            _ if self.has_statd => {
                self.statd_calls.push(StatdCall::Mon(name.to_vec()));
                true
            }
            _ => false,
        };
        let seen = Monitored {
            state,
            last_seen: now,
            statd,
        };
        self.monitored.insert(name.to_vec(), seen);
        if before != Some((state, statd)) {
            self.sync(name);
        }
    }

    /// Forgets client host `name`: no binding, no monitoring (SM_UNMON to statd), nothing stored.
    pub(crate) fn forget(&mut self, name: &[u8]) {
        self.unmonitor(name);
        self.callers.remove(name);
        self.sync(name);
    }

    /// After a call: the host it bound is forgotten again if it holds nothing (the request was
    /// refused, denied, or only asked). Nothing of it needs to survive a restart, and a flood of
    /// fresh caller_names costs nothing after each request.
    pub(crate) fn forget_fresh_if_idle(&mut self, holds: impl Fn(&[u8]) -> bool) {
        let Some(name) = self.fresh.take() else {
            return;
        };
        if self.callers.contains_key(&name) && !holds(&name) {
            debug!(host = %String::from_utf8_lossy(&name), "new host holds nothing: forgotten");
            self.forget(&name);
        }
    }

    /// SM_NOTIFY to the built-in NSM: the hosts named `mon_name` (or, as statd matches, bound to
    /// an address spelled `mon_name`) whose bound address is the sender's and whose NSM state
    /// differs rebooted; they are returned, sorted, for their locks to be freed. A notice from any
    /// other address frees nothing.
    pub(crate) fn rebooted(&self, peer: SocketAddr, notice: &StatChange) -> Vec<Vec<u8>> {
        let sender = canonical(peer.ip());
        let name = String::from_utf8_lossy(&notice.mon_name);
        let by_address = name.parse::<IpAddr>().ok().map(canonical);
        let mut matched: Vec<(&Vec<u8>, IpAddr)> = self
            .callers
            .iter()
            .filter(|(caller, bound)| {
                caller.as_slice() == notice.mon_name.as_slice() || Some(bound.ip) == by_address
            })
            .map(|(caller, bound)| (caller, bound.ip))
            .collect();
        matched.sort();
        if matched.is_empty() {
            debug!(%peer, host = %name, "reboot notice for a host brlockd does not know");
        }
        let mut rebooted = Vec::new();
        for (caller, bound) in matched {
            let caller_text = String::from_utf8_lossy(caller);
            if bound != sender {
                warn!(%peer, host = %caller_text, %bound,
                    "reboot notice refused: it does not come from the host's bound address");
            } else if self.knows_state(caller, notice.state) {
                debug!(host = %caller_text, state = notice.state, "reboot notice with the state we know: not a reboot");
            } else {
                info!(host = %caller_text, state = notice.state, "client rebooted (SM_NOTIFY): freeing its locks");
                rebooted.push(caller.clone());
            }
        }
        rebooted
    }

    /// A reboot notice relayed by the local statd (NLM procedure 16): whether `name` is monitored
    /// with another NSM state, so it rebooted.
    pub(crate) fn rebooted_by_statd(&self, name: &[u8], state: u32) -> bool {
        self.monitored.get(name).is_some_and(|m| m.state != state)
    }

    fn knows_state(&self, name: &[u8], state: u32) -> bool {
        self.monitored.get(name).is_some_and(|m| m.state == state)
    }

    /// Tells statd to stop watching `name` (SM_UNMON) and forgets it, so that its next monitored
    /// LOCK sends SM_MON again.
    fn unmonitor(&mut self, name: &[u8]) {
        if let Some(m) = self.monitored.remove(name) {
            if m.statd {
                self.statd_calls.push(StatdCall::Unmon(name.to_vec()));
            }
            self.sync(name);
        }
    }

    /// The periodic sweep (every half `--unmonitor-idle`).
    ///
    /// Linux lockd's host garbage collection (`nlm_gc_hosts`, then `nsm_unmonitor`): a host that
    /// holds nothing (nothing held, queued or reserved: it unlocked, cancelled, was freed, lost a
    /// grant or was never granted anything) and that has sent no lock request for
    /// `unmonitor_idle` is unmonitored. Never sooner: a host that still holds locks must stay on
    /// statd's list, which is who sm-notify tells to reclaim after our own reboot; and waiting
    /// keeps a host that locks and unlocks in turn from costing statd a disk write per lock.
    ///
    /// Then the binding of every host that holds nothing and that statd no longer watches is
    /// dropped: it holds nothing a spoofer could take over, and without this the map would grow
    /// with every host that ever called.
    pub(crate) fn sweep(&mut self, now: Instant, holds: impl Fn(&[u8]) -> bool) {
        let idle = self.unmonitor_idle;
        let quiet: Vec<Vec<u8>> = self
            .monitored
            .iter()
            .filter(|(name, m)| now.saturating_duration_since(m.last_seen) >= idle && !holds(name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in quiet {
            debug!(host = %String::from_utf8_lossy(&name), "idle: unmonitoring");
            self.unmonitor(&name);
        }
        let monitored = &self.monitored;
        let unbound: Vec<Vec<u8>> = self
            .callers
            .keys()
            .filter(|name| !monitored.contains_key(*name) && !holds(name))
            .cloned()
            .collect();
        for name in unbound {
            self.callers.remove(&name);
            self.sync(&name);
        }
    }

    /// The address `name` is bound to: where its callbacks go.
    pub(crate) fn address_of(&self, name: &[u8]) -> Option<IpAddr> {
        self.callers.get(name).map(|b| b.ip)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }

    pub(crate) fn callers(&self) -> &HashMap<Vec<u8>, Bound> {
        &self.callers
    }

    pub(crate) fn monitored(&self) -> &HashMap<Vec<u8>, Monitored> {
        &self.monitored
    }

    /// The store row of client host `name`, if it is bound.
    fn row(&self, name: &[u8]) -> Option<ClientHost> {
        let bound = self.callers.get(name)?;
        let monitored = self.monitored.get(name);
        Some(ClientHost {
            caller_name: name.to_vec(),
            address: bound.ip,
            local_address: bound.local,
            nsm_state: monitored.map(|m| m.state),
            statd_monitored: monitored.is_some_and(|m| m.statd),
        })
    }

    /// Queues the store write that makes `name`'s row match the table.
    fn sync(&mut self, name: &[u8]) {
        let write = match self.row(name) {
            Some(row) => HostWrite::Put(row),
            None => HostWrite::Delete(name.to_vec()),
        };
        self.writes.push(write);
    }

    /// Queues every binding's row again (the writes of failed batches were lost with them).
    pub(crate) fn rewrite_all(&mut self) {
        let names: Vec<Vec<u8>> = self.callers.keys().cloned().collect();
        for name in names {
            self.sync(&name);
        }
    }

    /// Whether store writes are queued.
    pub(crate) fn has_writes(&self) -> bool {
        !self.writes.is_empty()
    }

    /// The store writes queued since the last call, for the next persist batch.
    pub(crate) fn take_writes(&mut self) -> Vec<HostWrite> {
        std::mem::take(&mut self.writes)
    }

    /// The statd calls queued since the last call.
    pub(crate) fn take_statd_calls(&mut self) -> Vec<StatdCall> {
        std::mem::take(&mut self.statd_calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 700)
    }

    fn local() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    fn nothing_held(_: &[u8]) -> bool {
        false
    }

    fn all_held(_: &[u8]) -> bool {
        true
    }

    #[test]
    fn a_caller_name_is_bound_to_the_address_that_first_used_it() {
        let mut hosts = ClientHosts::new(10, IDLE, false);
        let now = Instant::now();
        assert_eq!(
            hosts.admit(b"a", peer("127.0.0.2"), local(), now, all_held),
            Ok(())
        );
        // The same host spelled as an IPv4-mapped IPv6 address is the same host.
        let mapped = peer("::ffff:127.0.0.2");
        assert_eq!(hosts.admit(b"a", mapped, local(), now, all_held), Ok(()));
        let other = peer("127.0.0.3");
        assert_eq!(
            hosts.admit(b"a", other, local(), now, all_held),
            Err(Stat::Denied)
        );
        assert_eq!(hosts.address_of(b"a"), Some("127.0.0.2".parse().unwrap()));
        let writes = hosts.take_writes();
        assert!(matches!(&writes[..], [HostWrite::Put(row)] if row.caller_name == b"a"));
        assert!(!hosts.has_writes());
    }

    #[test]
    fn a_full_table_forgets_the_hosts_that_hold_nothing_at_most_once_per_pause() {
        let mut hosts = ClientHosts::new(2, IDLE, false);
        let t0 = Instant::now();
        hosts
            .admit(b"a", peer("127.0.0.2"), local(), t0, all_held)
            .unwrap();
        hosts
            .admit(b"b", peer("127.0.0.3"), local(), t0, all_held)
            .unwrap();
        // Everyone holds something: no room.
        let c = peer("127.0.0.4");
        assert_eq!(
            hosts.admit(b"c", c, local(), t0, all_held),
            Err(Stat::DeniedNolocks)
        );
        // Within the pause nothing is tried again, even though "a" now holds nothing.
        let soon = t0 + EVICTION_PAUSE / 2;
        let holds_b = |name: &[u8]| name == b"b";
        assert_eq!(
            hosts.admit(b"c", c, local(), soon, holds_b),
            Err(Stat::DeniedNolocks)
        );
        let later = t0 + EVICTION_PAUSE;
        assert_eq!(hosts.admit(b"c", c, local(), later, holds_b), Ok(()));
        assert_eq!(hosts.address_of(b"a"), None);
        assert!(hosts.address_of(b"b").is_some());
    }

    #[test]
    fn the_host_a_call_bound_is_forgotten_at_once_if_it_holds_nothing() {
        let mut hosts = ClientHosts::new(10, IDLE, false);
        let now = Instant::now();
        hosts
            .admit(b"test-only", peer("127.0.0.2"), local(), now, nothing_held)
            .unwrap();
        hosts.forget_fresh_if_idle(nothing_held);
        assert!(hosts.is_empty());
        hosts
            .admit(b"locker", peer("127.0.0.2"), local(), now, nothing_held)
            .unwrap();
        hosts.forget_fresh_if_idle(all_held);
        assert!(hosts.address_of(b"locker").is_some());
        // Only the call that bound it counts: a later call finds no fresh host.
        hosts.forget_fresh_if_idle(nothing_held);
        assert!(hosts.address_of(b"locker").is_some());
    }

    #[test]
    fn statd_is_asked_to_monitor_once_and_to_stop_when_the_host_is_forgotten() {
        let mut hosts = ClientHosts::new(10, IDLE, true);
        let now = Instant::now();
        hosts
            .admit(b"a", peer("127.0.0.2"), local(), now, all_held)
            .unwrap();
        hosts.monitor(b"a", 7, now);
        hosts.monitor(b"a", 7, now);
        assert_eq!(hosts.take_statd_calls(), [StatdCall::Mon(b"a".to_vec())]);
        hosts.forget(b"a");
        assert_eq!(hosts.take_statd_calls(), [StatdCall::Unmon(b"a".to_vec())]);
        assert!(
            matches!(hosts.take_writes().last(), Some(HostWrite::Delete(name)) if name == b"a")
        );
    }

    #[test]
    fn without_statd_monitoring_is_kept_here_only() {
        let mut hosts = ClientHosts::new(10, IDLE, false);
        let now = Instant::now();
        hosts
            .admit(b"a", peer("127.0.0.2"), local(), now, all_held)
            .unwrap();
        hosts.monitor(b"a", 7, now);
        assert!(hosts.take_statd_calls().is_empty());
        assert!(hosts.monitored()[&b"a".to_vec()].state == 7);
    }

    #[test]
    fn a_reboot_notice_counts_only_from_the_bound_address_with_a_new_state() {
        let mut hosts = ClientHosts::new(10, IDLE, false);
        let now = Instant::now();
        hosts
            .admit(b"a", peer("127.0.0.2"), local(), now, all_held)
            .unwrap();
        hosts.monitor(b"a", 7, now);
        let notice = |name: &str, state| StatChange {
            mon_name: name.as_bytes().to_vec(),
            state,
        };
        assert!(
            hosts
                .rebooted(peer("127.0.0.9"), &notice("a", 9))
                .is_empty()
        );
        assert!(
            hosts
                .rebooted(peer("127.0.0.2"), &notice("a", 7))
                .is_empty()
        );
        assert_eq!(
            hosts.rebooted(peer("127.0.0.2"), &notice("a", 9)),
            [b"a".to_vec()]
        );
        // statd may name the host by its address.
        assert_eq!(
            hosts.rebooted(peer("127.0.0.2"), &notice("127.0.0.2", 9)),
            [b"a".to_vec()]
        );
        assert!(hosts.rebooted_by_statd(b"a", 9));
        assert!(!hosts.rebooted_by_statd(b"a", 7));
        assert!(!hosts.rebooted_by_statd(b"unknown", 1));
    }

    #[test]
    fn the_sweep_unmonitors_quiet_hosts_that_hold_nothing_then_drops_their_binding() {
        let mut hosts = ClientHosts::new(10, IDLE, true);
        let t0 = Instant::now();
        for (name, ip) in [(b"quiet", "127.0.0.2"), (b"holds", "127.0.0.3")] {
            hosts.admit(name, peer(ip), local(), t0, all_held).unwrap();
            hosts.monitor(name, 1, t0);
        }
        hosts.take_statd_calls();
        let holds = |name: &[u8]| name == b"holds";
        // Not quiet long enough: nothing happens to a monitored host.
        hosts.sweep(t0 + IDLE / 2, holds);
        assert_eq!(hosts.callers().len(), 2);
        hosts.sweep(t0 + IDLE, holds);
        assert_eq!(
            hosts.take_statd_calls(),
            [StatdCall::Unmon(b"quiet".to_vec())]
        );
        assert_eq!(hosts.address_of(b"quiet"), None);
        assert!(hosts.address_of(b"holds").is_some());
    }

    #[test]
    fn restored_rows_come_back_and_are_rewritten_on_request() {
        let mut hosts = ClientHosts::new(10, IDLE, false);
        let row = ClientHost {
            caller_name: b"a".to_vec(),
            address: "127.0.0.2".parse().unwrap(),
            local_address: local(),
            nsm_state: Some(3),
            statd_monitored: false,
        };
        hosts.restore(std::slice::from_ref(&row), Instant::now());
        assert!(!hosts.has_writes());
        hosts.rewrite_all();
        assert!(matches!(&hosts.take_writes()[..], [HostWrite::Put(r)] if *r == row));
    }
}
