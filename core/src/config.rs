//! Every choice where the lock managers we learn from disagree is a field here, and the named profiles
//! are plain `Config` values, so a host can load one from a file and override single fields.

use alloc::string::String;
use alloc::vec::Vec;

use crate::cookie::CookieKey;
use crate::time::Duration;

/// Counting limits: every table a client can grow has one. Lock limits count held lock records after
/// merging; waiter limits count queued waiters and granted ones whose callback is pending; a request
/// that would pass a limit is refused with `Outcome::NoLocks` naming it, and nothing changes.
///
/// What the entries cost (`core/tests/memory.rs`, a counting allocator; x86-64): a held lock record
/// 127 bytes in its owner's file; an owner of its own adds ~127 bytes, a client host ~225, a file
/// ~238 (its tables' first nodes); a waiter ~634 bytes (~2.2 KB with an owner and client of its own);
/// a share reservation ~438 — plus the bytes of the ids each new file, owner and client brings
/// (stored once each), and of the waiter's cookie. Files, owners and clients are kept only while
/// something of theirs is (and up to 16 of each just emptied, for reuse), so their number is
/// bounded by the entries.
///
/// The worst case at these defaults — 100,000 locks, 10,000 waiters and 10,000 shares, each with a
/// file, owner and client of its own and every id as long as brlockd's intake lets it be (128-byte
/// file handle, 2,064-byte owner, 1,024-byte caller_name, 1,028-byte cookie) — measures 482 MiB,
/// ~4.2 KB an entry: within 1 GiB with room for the host's own tables. Raising a total limit costs
/// about that much per entry in the worst case.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Limits {
    /// Held lock records in one file, of all owners ([`Limit::PerFile`](crate::Limit::PerFile);
    /// default 1,000).
    pub locks_per_file: u64,
    /// Held lock records of one client's owners across files
    /// ([`Limit::PerClient`](crate::Limit::PerClient); default 10,000).
    pub locks_per_client: u64,
    /// Held lock records in the whole core ([`Limit::Total`](crate::Limit::Total); default 100,000).
    pub locks_total: u64,
    /// Queued waiters of one file ([`Limit::QueueLength`](crate::Limit::QueueLength); default 100).
    pub waiters_per_file: u64,
    /// How much of a file's queue (`waiters_per_file`) one client may fill, in percent (at least one
    /// waiter): a host that floods a busy file's queue leaves room for the others.
    /// ([`Limit::QueueShare`](crate::Limit::QueueShare); default 25; above 100 counts as 100.)
    pub client_queue_percent: u64,
    /// Waiters of one client's owners across files, queued or granted with the callback pending
    /// ([`Limit::WaitersPerClient`](crate::Limit::WaitersPerClient); default 1,000).
    pub waiters_per_client: u64,
    /// Waiters in the whole core, counted the same way
    /// ([`Limit::WaitersTotal`](crate::Limit::WaitersTotal); default 10,000).
    pub waiters_total: u64,
    /// Share reservations on one file ([`Limit::SharesPerFile`](crate::Limit::SharesPerFile);
    /// default 1,000).
    pub shares_per_file: u64,
    /// Share reservations of one client's owners
    /// ([`Limit::SharesPerClient`](crate::Limit::SharesPerClient); default 1,000).
    pub shares_per_client: u64,
    /// Share reservations in the whole core ([`Limit::SharesTotal`](crate::Limit::SharesTotal);
    /// default 10,000).
    pub shares_total: u64,
    /// Connected clients per adapter, unless `connections_by_adapter` names the adapter
    /// (`Action::ConnectionRefused` past it; default 10,000).
    pub connections_per_adapter: u64,
    /// Per-adapter exceptions to `connections_per_adapter`, as (adapter name, limit); the first
    /// entry with the name counts. Empty by default.
    pub connections_by_adapter: Vec<(String, u64)>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            locks_per_file: 1_000,
            locks_per_client: 10_000,
            locks_total: 100_000,
            waiters_per_file: 100,
            client_queue_percent: 25,
            waiters_per_client: 1_000,
            waiters_total: 10_000,
            shares_per_file: 1_000,
            shares_per_client: 1_000,
            shares_total: 10_000,
            connections_per_adapter: 10_000,
            connections_by_adapter: Vec::new(),
        }
    }
}

impl Limits {
    /// No limit at all: for benchmarks and tests that build states the defaults refuse.
    pub fn unlimited() -> Self {
        Self {
            locks_per_file: u64::MAX,
            locks_per_client: u64::MAX,
            locks_total: u64::MAX,
            waiters_per_file: u64::MAX,
            client_queue_percent: 100,
            waiters_per_client: u64::MAX,
            waiters_total: u64::MAX,
            shares_per_file: u64::MAX,
            shares_per_client: u64::MAX,
            shares_total: u64::MAX,
            connections_per_adapter: u64::MAX,
            connections_by_adapter: Vec::new(),
        }
    }

    /// Queued waiters one client may have in one file: `client_queue_percent` of `waiters_per_file`,
    /// rounded down, and at least one.
    pub fn client_queue_share(&self) -> u64 {
        let percent = self.client_queue_percent.min(100);
        // Widened so that u64::MAX waiters per file times 100 cannot overflow.
        let share = u128::from(self.waiters_per_file) * u128::from(percent) / 100;
        (share as u64).max(1)
    }

    /// The connection limit of `adapter`: its `connections_by_adapter` entry, else
    /// `connections_per_adapter`.
    pub fn connections_for(&self, adapter: &str) -> u64 {
        self.connections_by_adapter
            .iter()
            .find(|(name, _)| name == adapter)
            .map_or(self.connections_per_adapter, |&(_, limit)| limit)
    }
}

/// What happens when a GRANTED callback fails
/// ([`CallbackResult::Failed`](crate::CallbackResult::Failed)). A refused callback always undoes the
/// grant.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum CallbackPolicy {
    /// Release the lock and grant the next waiters (NFS-Ganesha, FreeBSD, DittoFS).
    Release,
    /// Resend every `interval` up to `attempts` sends in all; release only when the client refuses or
    /// the attempts run out (Linux lockd resends every 10 s).
    Retry {
        /// How long (ms) after a failed send the next one goes out (the core asks for a `Tick` then).
        interval: Duration,
        /// Sends in all, the first included; the failure of the last one undoes the grant.
        attempts: u32,
    },
}

/// The lock manager's configuration. Fixed for a core's life. Deserialising fills every missing field
/// from [`Config::default`] (the brlock profile), so a file only names what it changes. All times are
/// [`Duration`]s, written in a file as whole milliseconds.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Config {
    /// Largest byte offset a lock may reach; "to end of file" means up to here, and a range past it is
    /// refused `TooBig`. `u64::MAX` (NLM v4's full range) by default; `i64::MAX` in the Linux profile
    /// (OFFSET_MAX).
    pub max_offset: u64,
    /// Also refuse a non-blocking request that conflicts with a queued waiter (NFS-Ganesha).
    /// Off: non-blocking requests are judged against held locks only (POSIX, Linux).
    pub fair_nonblocking: bool,
    /// The bound of every table a client can grow.
    pub limits: Limits,
    /// Length of the grace period after a restart (ms; 90 s by default, 50 s in the Linux profile).
    /// It may end earlier, once every client with restored state has reclaimed it (or said it is
    /// done).
    pub grace: Duration,
    /// Answer TEST during grace (otherwise `DeniedGrace`; refused in the Linux profile).
    pub test_in_grace: bool,
    /// Answer UNLOCK and UNSHARE during grace (otherwise `DeniedGrace`; refused by Linux and DittoFS).
    pub unlock_in_grace: bool,
    /// Answer CANCEL during grace (otherwise `DeniedGrace`; refused by Linux, Ganesha and DittoFS).
    pub cancel_in_grace: bool,
    /// Accept reclaims after the grace period (DittoFS). Linux and Ganesha refuse them.
    pub late_reclaim: bool,
    /// A reclaim must match a lock its owner held in the previous epoch (or a share with the same
    /// modes), else `NotReclaimable`. On in the brlock profile; off in the others, which take any
    /// reclaim that conflicts with nothing, as their servers do.
    pub verify_reclaims: bool,
    /// What a failed GRANTED callback leads to (by default 3 sends in all, 2 s apart).
    pub callback: CallbackPolicy,
    /// A grant no client has confirmed this long after it was granted is undone (released, and the
    /// waiters behind it go on), whatever send is out: a client that never answers GRANTED cannot pin
    /// a range for longer, however slowly its sends fail. None: only `callback` decides.
    pub callback_deadline: Option<Duration>,
    /// The secret that makes callback cookies unguessable (`Action::SendGranted::callback_cookie`).
    /// The host draws it from the operating system's random source at start; the zero default is
    /// for tests and traces, where the same key must give the same cookies.
    pub cookie_key: CookieKey,
    /// A waiter not granted within this long (ms, from when it queued) is removed
    /// (`WaiterRemoved { reason: Expired }`). None (the default in every profile): waiters wait until
    /// granted, cancelled or their client goes.
    pub blocking_timeout: Option<Duration>,
}

/// The named presets: where the lock managers brlock learns from disagree, each profile behaves as
/// its namesake does. A host offers them by name (brlockd's `--profile`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Profile {
    /// brlock's default; see [`Config::brlock`].
    Brlock,
    /// Linux lockd; see [`Config::linux`].
    Linux,
    /// NFS-Ganesha; see [`Config::ganesha`].
    Ganesha,
    /// DittoFS; see [`Config::dittofs`].
    Dittofs,
}

impl Profile {
    /// Every profile, the default first.
    pub const ALL: [Profile; 4] = [
        Profile::Brlock,
        Profile::Linux,
        Profile::Ganesha,
        Profile::Dittofs,
    ];

    /// The profile's name: "brlock", "linux", "ganesha" or "dittofs".
    pub fn name(self) -> &'static str {
        match self {
            Profile::Brlock => "brlock",
            Profile::Linux => "linux",
            Profile::Ganesha => "ganesha",
            Profile::Dittofs => "dittofs",
        }
    }

    /// The profile called `name` (exactly as [`Profile::name`] spells it), if any.
    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The profile's configuration, with default limits and a zero cookie key.
    pub fn config(self) -> Config {
        match self {
            Profile::Brlock => Config::brlock(),
            Profile::Linux => Config::linux(),
            Profile::Ganesha => Config::ganesha(),
            Profile::Dittofs => Config::dittofs(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::brlock()
    }
}

impl Config {
    /// The default. POSIX semantics over NLM v4's full 64-bit range, a 90 s grace period (the seeds'
    /// figure: long enough for statd's reboot notifications and the clients' reclaim retries), and
    /// verified reclaims. TEST, UNLOCK and CANCEL are allowed during grace: none of them can take a
    /// lock a reclaimer needs, and refusing them only makes clients spin.
    ///
    /// Callbacks: a lost GRANTED packet should not cost a client its lock, but a client that never
    /// confirms must not pin the range for long either (issue 13: squatters held grants ~60 s under
    /// Linux's 6 × 10 s). So GRANTED is resent 2 s after a failed send, 3 sends in all, and a grant
    /// still unconfirmed 10 s after it was made is undone: sends that fail at once end it after ~4 s,
    /// sends that time out (brlockd's 5 s callback timeout) meet the 10 s deadline.
    pub fn brlock() -> Self {
        Self {
            max_offset: u64::MAX,
            fair_nonblocking: false,
            limits: Limits::default(),
            grace: Duration::from_secs(90),
            test_in_grace: true,
            unlock_in_grace: true,
            cancel_in_grace: true,
            late_reclaim: false,
            verify_reclaims: true,
            callback: CallbackPolicy::Retry {
                interval: Duration::from_secs(2),
                attempts: 3,
            },
            callback_deadline: Some(Duration::from_secs(10)),
            cookie_key: CookieKey::default(),
            blocking_timeout: None,
        }
    }

    /// Linux lockd: TEST, UNLOCK and CANCEL refused in grace (50 s), late reclaims refused, GRANTED resent
    /// every 10 s (fs/lockd/svclock.c retries a failed callback after 10 s; brlock stops after six
    /// sends, as it always did for this profile) with no overall deadline, offsets up to i64::MAX
    /// (OFFSET_MAX).
    pub fn linux() -> Self {
        Self {
            max_offset: i64::MAX as u64,
            callback: CallbackPolicy::Retry {
                interval: Duration::from_secs(10),
                attempts: 6,
            },
            callback_deadline: None,
            grace: Duration::from_secs(50),
            test_in_grace: false,
            unlock_in_grace: false,
            cancel_in_grace: false,
            verify_reclaims: false,
            ..Self::brlock()
        }
    }

    /// NFS-Ganesha: TEST and UNLOCK allowed in grace, CANCEL refused, a failed callback releases the
    /// lock (and nothing else does: no deadline of its own), non-blocking requests may not overtake
    /// queued ones.
    pub fn ganesha() -> Self {
        Self {
            fair_nonblocking: true,
            test_in_grace: true,
            unlock_in_grace: true,
            cancel_in_grace: false,
            verify_reclaims: false,
            callback: CallbackPolicy::Release,
            callback_deadline: None,
            ..Self::brlock()
        }
    }

    /// DittoFS: TEST allowed in grace, late reclaims accepted, a failed callback releases the lock.
    pub fn dittofs() -> Self {
        Self {
            test_in_grace: true,
            unlock_in_grace: false,
            cancel_in_grace: false,
            late_reclaim: true,
            verify_reclaims: false,
            callback: CallbackPolicy::Release,
            callback_deadline: None,
            ..Self::brlock()
        }
    }
}
