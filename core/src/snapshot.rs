//! Snapshots: a core's whole state at one moment, so that a trace can start where a running server
//! is (brlockd's `GET /events`) and its replay go on exactly as the server does. A summary (held
//! locks, waiters, shares) would not do: later actions name waiter ids and persist sequence numbers
//! the core draws from counters, ties between owners are broken by the order their keys were
//! interned in, and timers, limits and grace bookkeeping all shape what comes next. So the snapshot
//! is the state itself, keys and counters included; its serde form follows the core's own types and
//! is read by the same brlock version that wrote it (docs/trace-format.md, "Snapshots").

use alloc::string::String;

use crate::state::Core;

/// A core's whole state, taken with [`Core::snapshot`]; [`Snapshot::into_core`] gives it back.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct Snapshot(Core);

impl Core {
    /// The whole state now. Costs a clone of the core (every table), so a host takes it once per
    /// subscriber, not per event.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot(self.clone())
    }
}

impl Snapshot {
    /// The core the snapshot was taken of, to read views from.
    pub fn core(&self) -> &Core {
        &self.0
    }

    /// The core to continue from. A snapshot read from a file may have been damaged or written by
    /// hand, so its state is checked first (`check_invariants`, compiled in with the `invariants`
    /// feature, which `serde` — the only way to read a snapshot from outside — turns on).
    pub fn into_core(self) -> Result<Core, String> {
        #[cfg(any(test, feature = "invariants"))]
        self.0.check_invariants()?;
        // What the invariants do not cover because a running core cannot break it: the counters
        // ahead of what they numbered, and the files waiting for room being live.
        let core = &self.0;
        if core
            .waiters
            .keys()
            .next_back()
            .is_some_and(|last| last.0 >= core.next_waiter)
        {
            return Err(String::from("next_waiter is not past every waiter"));
        }
        if core
            .limit_blocked
            .iter()
            .any(|&fk| core.files.try_get(fk).is_none())
        {
            return Err(String::from("limit_blocked names a dead file"));
        }
        Ok(self.0)
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        ClientId, Config, Core, Event, FileId, Instant, LockKind, OwnerId, Range, RequestId,
    };

    fn lock(request: u64, owner: &str, wait: bool) -> Event {
        Event::Lock {
            request: RequestId(request),
            client: ClientId::from(owner),
            owner: OwnerId::from(owner),
            file: FileId::from("f"),
            range: Range::new(0, 10),
            kind: LockKind::Exclusive,
            wait,
            reclaim: false,
            cookie: alloc::vec![],
        }
    }

    fn at(request: u64, owner: &str, offset: u64, kind: LockKind, wait: bool) -> Event {
        Event::Lock {
            request: RequestId(request),
            client: ClientId::from(owner),
            owner: OwnerId::from(owner),
            file: FileId::from("f"),
            range: Range::new(offset, 10),
            kind,
            wait,
            reclaim: false,
            cookie: alloc::vec![],
        }
    }

    /// A file that grew past the small form and shrank again is read back in the small form: the
    /// two must answer alike from then on (denials name the same holder, grants go the same way).
    #[test]
    fn a_core_read_back_goes_on_as_the_original_whatever_form_its_tables_are_in() {
        use alloc::format;
        let mut core = Core::new(Config::default());
        for i in 0..24u64 {
            core.step(
                Instant::from_millis(i),
                at(i, &format!("o{i:02}"), (i % 6) * 5, LockKind::Shared, false),
            );
        }
        for i in 0..20u64 {
            let owner = format!("o{i:02}");
            core.step(
                Instant::from_millis(100 + i),
                Event::Unlock {
                    request: RequestId(100 + i),
                    client: ClientId::from(owner.as_str()),
                    owner: OwnerId::from(owner.as_str()),
                    file: FileId::from("f"),
                    range: Range::new(0, 0),
                },
            );
        }
        let mut copy = core.snapshot().into_core().unwrap();
        for (n, event) in [
            at(200, "x", 0, LockKind::Exclusive, false),
            at(201, "y", 12, LockKind::Exclusive, true),
            at(202, "z", 3, LockKind::Exclusive, true),
        ]
        .into_iter()
        .enumerate()
        {
            let now = Instant::from_millis(300 + n as u64);
            assert_eq!(copy.step(now, event.clone()), core.step(now, event));
        }
        assert_eq!(copy, core);
    }

    #[test]
    fn a_snapshot_gives_back_the_same_core_and_refuses_a_counter_behind_its_waiters() {
        let mut core = Core::new(Config::default());
        core.step(Instant::from_millis(1), lock(1, "a", false));
        core.step(Instant::from_millis(2), lock(2, "b", true));
        let snapshot = core.snapshot();
        assert_eq!(snapshot.clone().into_core().unwrap(), core);

        let mut damaged = snapshot;
        damaged.0.next_waiter = 1;
        assert!(damaged.into_core().unwrap_err().contains("next_waiter"));
    }
}

/// A map whose keys are not strings (JSON object keys must be), written as a list of pairs.
#[cfg(feature = "serde")]
pub(crate) mod pairs {
    use alloc::collections::BTreeMap;
    use alloc::vec::Vec;

    pub fn serialize<K, V, S>(map: &BTreeMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: serde::Serialize,
        V: serde::Serialize,
        S: serde::Serializer,
    {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: serde::Deserialize<'de> + Ord,
        V: serde::Deserialize<'de>,
        D: serde::Deserializer<'de>,
    {
        let pairs: Vec<(K, V)> = serde::Deserialize::deserialize(d)?;
        Ok(pairs.into_iter().collect())
    }
}
