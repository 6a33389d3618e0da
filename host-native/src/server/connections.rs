//! The open NLM TCP connections (issue 13, rows 2 and 3): at most `--max-connections` (Linux:
//! `nlm_max_connections`, 1024). A new connection that finds the table full closes the connection
//! that has been idle longest — nothing half-read, no reply owed — so a new client is served; when
//! every connection is busy the new one is closed instead. The bytes held in partial records over
//! all connections are bounded too ([`PartialBytes`], `--max-partial-record-bytes`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use foldhash::{HashMap, HashMapExt};
use tokio::sync::Notify;
use tracing::info;

/// What a connection last did, written by its own task without taking the table's lock (a
/// connection notes activity on every read; the table reads it only when it is full).
#[derive(Debug, Default)]
struct Activity {
    /// Milliseconds since the table's epoch.
    last_active: AtomicU64,
    busy: AtomicBool,
}

struct Entry {
    peer: SocketAddr,
    activity: Arc<Activity>,
    close: Arc<Notify>,
}

struct Inner {
    next_id: u64,
    open: HashMap<u64, Entry>,
}

/// Every open NLM TCP connection, by id.
pub(crate) struct ConnectionTable {
    max: usize,
    epoch: Instant,
    inner: Mutex<Inner>,
}

/// What a new connection found.
pub(crate) enum Admission {
    /// Served; the handle leaves the table when dropped.
    Admitted(ConnectionHandle),
    /// The table is full of busy connections.
    Full,
}

impl ConnectionTable {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(ConnectionTable {
            max: max.max(1),
            epoch: Instant::now(),
            inner: Mutex::new(Inner {
                next_id: 0,
                open: HashMap::new(),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `peer`, first closing the longest-idle one if the table is full.
    pub(crate) fn admit(self: &Arc<Self>, peer: SocketAddr, now: Instant) -> Admission {
        let mut inner = self.lock();
        if inner.open.len() >= self.max {
            let oldest_idle = inner
                .open
                .iter()
                .filter(|(_, e)| !e.activity.busy.load(Ordering::Relaxed))
                .min_by_key(|(id, e)| (e.activity.last_active.load(Ordering::Relaxed), **id))
                .map(|(id, _)| *id);
            let Some(id) = oldest_idle else {
                return Admission::Full;
            };
            let victim = inner.open.remove(&id).expect("found above");
            info!(peer = %victim.peer, new = %peer, "connection table full (--max-connections): closing the longest-idle connection");
            victim.close.notify_one();
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let close = Arc::new(Notify::new());
        let activity = Arc::new(Activity::default());
        activity
            .last_active
            .store(self.millis(now), Ordering::Relaxed);
        inner.open.insert(
            id,
            Entry {
                peer,
                activity: activity.clone(),
                close: close.clone(),
            },
        );
        Admission::Admitted(ConnectionHandle {
            id,
            table: self.clone(),
            activity,
            close,
        })
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().open.len()
    }
}

/// One admitted connection's place in the table.
pub(crate) struct ConnectionHandle {
    id: u64,
    table: Arc<ConnectionTable>,
    activity: Arc<Activity>,
    close: Arc<Notify>,
}

impl ConnectionHandle {
    /// The connection did something at `now`; `busy` while it is mid-record or owes replies.
    pub(crate) fn active(&self, now: Instant, busy: bool) {
        self.activity
            .last_active
            .store(self.table.millis(now), Ordering::Relaxed);
        self.activity.busy.store(busy, Ordering::Relaxed);
    }

    /// What the table notifies (`notify_one`) when it closes this connection to make room.
    pub(crate) fn close_signal(&self) -> Arc<Notify> {
        self.close.clone()
    }
}

impl Drop for ConnectionHandle {
    fn drop(&mut self) {
        self.table.lock().open.remove(&self.id);
    }
}

/// The bytes held in partial records, over all connections, and their cap.
#[derive(Debug)]
pub(crate) struct PartialBytes {
    max: usize,
    held: AtomicUsize,
}

impl PartialBytes {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(PartialBytes {
            max,
            held: AtomicUsize::new(0),
        })
    }

    /// One connection's partial record went from `before` to `after` bytes: false when that takes
    /// the total over the cap (the caller closes the connection, and gives its bytes back).
    pub(crate) fn change(&self, before: usize, after: usize) -> bool {
        if after >= before {
            let total = self.held.fetch_add(after - before, Ordering::Relaxed) + (after - before);
            total <= self.max
        } else {
            self.held.fetch_sub(before - after, Ordering::Relaxed);
            true
        }
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn peer(n: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, n], 1000))
    }

    #[test]
    fn a_full_table_closes_the_longest_idle_connection_and_never_a_busy_one() {
        let table = ConnectionTable::new(2);
        let t0 = Instant::now();
        let Admission::Admitted(a) = table.admit(peer(1), t0) else {
            panic!("room")
        };
        let Admission::Admitted(b) = table.admit(peer(2), t0) else {
            panic!("room")
        };
        b.active(t0 + Duration::from_secs(1), false);
        a.active(t0 + Duration::from_secs(2), true);
        // a is busy, b idle: b makes room.
        let Admission::Admitted(c) = table.admit(peer(3), t0 + Duration::from_secs(3)) else {
            panic!("b is idle")
        };
        assert_eq!(table.len(), 2);
        c.active(t0 + Duration::from_secs(3), true);
        assert!(matches!(
            table.admit(peer(4), t0 + Duration::from_secs(4)),
            Admission::Full
        ));
        drop(b); // its task ends after being closed: nothing more to remove
        assert_eq!(table.len(), 2);
        drop(a);
        assert_eq!(table.len(), 1);
    }

    #[tokio::test]
    async fn the_closed_connection_is_told() {
        let table = ConnectionTable::new(1);
        let Admission::Admitted(a) = table.admit(peer(1), Instant::now()) else {
            panic!("room")
        };
        let _b = table.admit(peer(2), Instant::now());
        tokio::time::timeout(Duration::from_secs(1), a.close_signal().notified())
            .await
            .expect("a was told to close");
    }

    #[test]
    fn partial_bytes_have_a_cap() {
        let p = PartialBytes::new(100);
        assert!(p.change(0, 60));
        assert!(!p.change(0, 50));
        assert!(p.change(50, 0));
        assert!(p.change(60, 0));
        assert_eq!(p.held(), 0);
    }
}
