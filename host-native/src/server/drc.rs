//! Duplicate request cache: a retransmitted call (same client address, xid, program, version,
//! procedure and argument bytes) gets the reply already sent instead of running again, so a retried
//! LOCK or UNLOCK cannot act twice. Keyed by IP without the port, as Linux's `rpc_cmp_addr`, so a
//! retry over a new TCP connection is caught too; and, like Linux nfsd's reply cache, by a checksum of
//! the arguments, so two clients behind one address that happen to pick the same xid never get each
//! other's replies. Bounded, oldest entry first out.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use std::net::IpAddr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DrcKey {
    pub ip: IpAddr,
    pub xid: u32,
    pub program: u32,
    pub version: u32,
    pub procedure: u32,
    /// [`args_checksum`] of the call's argument bytes.
    pub args: u64,
}

/// FNV-1a over the argument bytes: a retransmission repeats them exactly; another call with the
/// same xid almost never does.
pub fn args_checksum(args: &[u8]) -> u64 {
    args.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Entry {
    InFlight,
    /// The reply record as sent, unframed.
    Done(Vec<u8>),
}

/// What to do with an incoming call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// First time seen: run it (now recorded as in flight).
    New,
    /// Still running: drop the duplicate.
    InFlight,
    /// Answered before: send this reply again.
    Replay(Vec<u8>),
}

#[derive(Debug)]
pub struct Drc {
    capacity: usize,
    entries: HashMap<DrcKey, Entry>,
    order: VecDeque<DrcKey>,
}

impl Drc {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn lookup(&mut self, key: DrcKey) -> Lookup {
        if self.capacity == 0 {
            return Lookup::New;
        }
        match self.entries.get(&key) {
            Some(Entry::InFlight) => Lookup::InFlight,
            Some(Entry::Done(reply)) => Lookup::Replay(reply.clone()),
            None => {
                while self.order.len() >= self.capacity {
                    if let Some(old) = self.order.pop_front() {
                        self.entries.remove(&old);
                    }
                }
                self.entries.insert(key, Entry::InFlight);
                self.order.push_back(key);
                Lookup::New
            }
        }
    }

    /// Records the reply of a call `lookup` said was new (a no-op if it was evicted meanwhile).
    pub fn complete(&mut self, key: &DrcKey, reply: &[u8]) {
        if let Some(entry) = self.entries.get_mut(key) {
            *entry = Entry::Done(reply.to_vec());
        }
    }

    /// Forgets a call that got no reply, so a retransmission runs it.
    pub fn forget(&mut self, key: &DrcKey) {
        if self.entries.get(key) == Some(&Entry::InFlight) {
            self.entries.remove(key);
            self.order.retain(|k| k != key);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(xid: u32) -> DrcKey {
        DrcKey {
            ip: "127.0.0.1".parse().unwrap(),
            xid,
            program: 100_021,
            version: 4,
            procedure: 2,
            args: args_checksum(b"lock args"),
        }
    }

    #[test]
    fn the_same_xid_with_other_arguments_is_a_new_call() {
        let mut drc = Drc::new(8);
        assert_eq!(drc.lookup(key(7)), Lookup::New);
        drc.complete(&key(7), &[1]);
        let other_args = DrcKey {
            args: args_checksum(b"another owner's lock"),
            ..key(7)
        };
        assert_eq!(drc.lookup(other_args), Lookup::New);
        assert_eq!(drc.lookup(key(7)), Lookup::Replay(vec![1]));
    }

    #[test]
    fn a_duplicate_in_flight_is_dropped_and_a_finished_one_replayed() {
        let mut drc = Drc::new(8);
        assert_eq!(drc.lookup(key(1)), Lookup::New);
        assert_eq!(drc.lookup(key(1)), Lookup::InFlight);
        drc.complete(&key(1), b"reply");
        assert_eq!(drc.lookup(key(1)), Lookup::Replay(b"reply".to_vec()));
        let other_proc = DrcKey {
            procedure: 4,
            ..key(1)
        };
        assert_eq!(drc.lookup(other_proc), Lookup::New);
    }

    #[test]
    fn the_oldest_entry_goes_first_when_full() {
        let mut drc = Drc::new(2);
        for xid in 1..=3 {
            assert_eq!(drc.lookup(key(xid)), Lookup::New);
            drc.complete(&key(xid), &[xid as u8]);
        }
        assert_eq!(drc.len(), 2);
        assert_eq!(drc.lookup(key(1)), Lookup::New);
        assert_eq!(drc.lookup(key(3)), Lookup::Replay(vec![3]));
    }
}
