//! The listings of `/locks`, `/waiters`, `/shares` and `/grace`: collected from the core's own
//! views on the core task (`*Entry`), turned into rows for people afterwards, off it (`*Row`).

use brlock_core::{
    ClientId, Core, FileId, HeldLockView, Instant, LockKind, OwnerId, Range, ShareMode, ShareView,
    WaiterView,
};
use serde::Serialize;

use super::filter::{Capped, Filter};
use crate::server::request_log::owner_text;

/// A file handle as lowercase hex (the spelling the `file` filter takes).
pub fn file_hex(file: &FileId) -> String {
    file.as_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The inclusive last byte of `range` as a decimal string, or `EOF`.
pub fn end_text(range: Range) -> String {
    match range.length {
        0 => "EOF".into(),
        n => range.offset.saturating_add(n - 1).to_string(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct OwnerRow {
    pub client: String,
    /// `caller_name/svid/oh` for an NLM owner.
    pub owner: String,
}

impl OwnerRow {
    pub(super) fn new(client: &ClientId, owner: &OwnerId) -> Self {
        OwnerRow {
            client: client.to_string(),
            owner: owner_text(owner),
        }
    }
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct LockRow {
    pub file: String,
    #[serde(flatten)]
    pub owner: OwnerRow,
    pub kind: LockKind,
    pub start: String,
    pub end: String,
    /// Restored after a restart and not reclaimed yet.
    pub unreclaimed: bool,
    /// Since when the owner has held these bytes, in ms since the server started (a restored lock:
    /// since the restore).
    pub since_ms: u64,
    pub held_ms: u64,
}

/// A held lock as collected on the core task.
pub struct LockEntry {
    pub file: FileId,
    pub lock: HeldLockView,
    pub held_ms: u64,
}

impl LockEntry {
    pub fn row(self) -> LockRow {
        let lock = self.lock;
        LockRow {
            file: file_hex(&self.file),
            owner: OwnerRow::new(&lock.client, &lock.owner),
            kind: lock.kind,
            start: lock.range.offset.to_string(),
            end: end_text(lock.range),
            unreclaimed: lock.unreclaimed,
            since_ms: lock.since.as_millis(),
            held_ms: self.held_ms,
        }
    }
}

/// Held locks, by file name, then in range order. `now` is the host clock (`CoreView::now`).
pub fn locks(core: &Core, now: Instant, filter: &Filter, limit: usize) -> Capped<LockEntry> {
    let mut out = Capped::new();
    let mut matcher = filter.matcher();
    'files: for file in filter.files(core) {
        for lock in core.held_locks(&file) {
            if !matcher.keeps(&lock.client, &lock.owner) {
                continue;
            }
            let file = file.clone();
            let held_ms = (now - lock.since).as_millis();
            if !out.offer(limit, || LockEntry {
                file,
                lock,
                held_ms,
            }) {
                break 'files;
            }
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct WaiterRow {
    pub file: String,
    /// 1 for the head of the file's queue.
    pub position: u64,
    pub waiter: u64,
    #[serde(flatten)]
    pub owner: OwnerRow,
    pub kind: LockKind,
    pub start: String,
    pub end: String,
    /// When it queued, in ms since the server started.
    pub since_ms: u64,
    pub waiting_ms: u64,
}

/// A queued waiter as collected on the core task.
pub struct WaiterEntry {
    pub file: FileId,
    /// 1 for the head of the queue.
    pub position: u64,
    pub waiter: WaiterView,
    pub waiting_ms: u64,
}

impl WaiterEntry {
    pub fn row(self) -> WaiterRow {
        let w = self.waiter;
        WaiterRow {
            file: file_hex(&self.file),
            position: self.position,
            waiter: w.waiter.0,
            owner: OwnerRow::new(&w.client, &w.owner),
            kind: w.kind,
            start: w.range.offset.to_string(),
            end: end_text(w.range),
            since_ms: w.since.as_millis(),
            waiting_ms: self.waiting_ms,
        }
    }
}

/// Queued blocking requests, by file name, then in queue order. `now` as for [`locks`].
pub fn waiters(core: &Core, now: Instant, filter: &Filter, limit: usize) -> Capped<WaiterEntry> {
    let mut out = Capped::new();
    let mut matcher = filter.matcher();
    'files: for file in filter.files(core) {
        for (i, waiter) in core.waiters(&file).into_iter().enumerate() {
            if !matcher.keeps(&waiter.client, &waiter.owner) {
                continue;
            }
            let entry = || WaiterEntry {
                file: file.clone(),
                position: i as u64 + 1,
                waiting_ms: (now - waiter.since).as_millis(),
                waiter,
            };
            if !out.offer(limit, entry) {
                break 'files;
            }
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct ShareRow {
    pub file: String,
    #[serde(flatten)]
    pub owner: OwnerRow,
    pub access: ShareMode,
    pub deny: ShareMode,
}

/// A share reservation as collected on the core task.
pub struct ShareEntry {
    pub file: FileId,
    pub share: ShareView,
}

impl ShareEntry {
    pub fn row(self) -> ShareRow {
        ShareRow {
            file: file_hex(&self.file),
            owner: OwnerRow::new(&self.share.client, &self.share.owner),
            access: self.share.access,
            deny: self.share.deny,
        }
    }
}

/// Share reservations, by file name, then client and owner.
pub fn shares(core: &Core, filter: &Filter, limit: usize) -> Capped<ShareEntry> {
    let mut out = Capped::new();
    let mut matcher = filter.matcher();
    'files: for file in filter.files(core) {
        for share in core.shares(&file) {
            if !matcher.keeps(&share.client, &share.owner) {
                continue;
            }
            let file = file.clone();
            if !out.offer(limit, || ShareEntry { file, share }) {
                break 'files;
            }
        }
    }
    out
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct GraceRow {
    pub in_grace: bool,
    pub remaining_ms: u64,
    /// Client hosts that held locks before the restart.
    pub expected_clients: u64,
    /// Those that still have locks to reclaim, by name.
    pub pending_clients: Vec<String>,
}

/// The grace period after a restart (the pending list is as long as the clients the store kept).
pub fn grace(core: &Core) -> GraceRow {
    match core.grace() {
        Some(g) => GraceRow {
            in_grace: true,
            remaining_ms: g.remaining.as_millis(),
            expected_clients: g.expected,
            pending_clients: g.pending.iter().map(ToString::to_string).collect(),
        },
        None => GraceRow {
            in_grace: false,
            remaining_ms: 0,
            expected_clients: 0,
            pending_clients: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::admin::world::World;
    use brlock_core::{Config, Profile};

    #[test]
    fn locks_are_listed_for_people_and_filtered() {
        let mut w = World::new();
        w.lock("host-a", 7, b"\x01\xab", 0, 0, false);
        w.lock("host-b", 8, b"\x02", (1 << 53) + 1, 10, false);
        w.lock("host-b", 9, b"\x02", 10, 5, false);
        let all =
            locks(&w.core, Instant::from_millis(100), &Filter::default(), 100).map(LockEntry::row);
        assert!(!all.truncated);
        assert_eq!(
            all.rows[0],
            LockRow {
                file: "01ab".into(),
                owner: OwnerRow {
                    client: "host-a".into(),
                    owner: "host-a/7/oh".into()
                },
                kind: LockKind::Exclusive,
                start: "0".into(),
                end: "EOF".into(),
                unreclaimed: false,
                since_ms: 2,
                held_ms: 98,
            }
        );
        // Exact offsets past 2^53 (a JSON number would round 2^53 + 1 down), in range order.
        let ends: Vec<_> = all
            .rows
            .iter()
            .map(|r| (r.start.as_str(), r.end.as_str()))
            .collect();
        assert_eq!(
            ends,
            [
                ("0", "EOF"),
                ("10", "14"),
                ("9007199254740993", "9007199254741002")
            ]
        );
        let count = |f: Filter| {
            locks(&w.core, Instant::from_millis(100), &f, 100)
                .rows
                .len()
        };
        assert_eq!(
            count(Filter {
                file: Some(FileId::from(&b"\x02"[..])),
                ..Filter::default()
            }),
            2
        );
        assert_eq!(
            count(Filter {
                file: Some(FileId::from("none")),
                ..Filter::default()
            }),
            0
        );
        assert_eq!(
            count(Filter {
                client: Some("host-b".into()),
                ..Filter::default()
            }),
            2
        );
        for (owner, n) in [
            ("host-b/9/oh", 1),
            ("host-b/9", 1),
            ("host-b", 2),
            ("host-b/", 0),
            ("host-b/9/o", 0),
        ] {
            let f = Filter {
                owner: Some(owner.into()),
                ..Filter::default()
            };
            assert_eq!(count(f), n, "owner filter {owner:?}");
        }
    }

    #[test]
    fn listings_stop_at_the_limit_and_say_so() {
        let mut w = World::new();
        for i in 0..5 {
            w.lock("host-a", 1, format!("f{i}").as_bytes(), 0, 1, false);
        }
        let capped = locks(&w.core, Instant::from_millis(100), &Filter::default(), 3);
        assert_eq!((capped.rows.len(), capped.truncated), (3, true));
        let exact = locks(&w.core, Instant::from_millis(100), &Filter::default(), 5);
        assert_eq!((exact.rows.len(), exact.truncated), (5, false));
    }

    #[test]
    fn waiters_show_their_queue_position_and_how_long_they_wait() {
        let mut w = World::new();
        w.lock("host-a", 1, b"f", 0, 100, false);
        w.lock("host-b", 2, b"f", 50, 10, true); // queued at now = 3
        w.lock("host-c", 3, b"f", 0, 0, true); // queued at now = 4
        let rows = waiters(&w.core, Instant::from_millis(1_004), &Filter::default(), 10)
            .map(WaiterEntry::row)
            .rows;
        let summary: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.position,
                    r.owner.owner.as_str(),
                    r.start.as_str(),
                    r.end.as_str(),
                    r.waiting_ms,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (1, "host-b/2/oh", "50", "59", 1_001),
                (2, "host-c/3/oh", "0", "EOF", 1_000)
            ]
        );
        let only_c = Filter {
            client: Some("host-c".into()),
            ..Filter::default()
        };
        let rows = waiters(&w.core, Instant::from_millis(5), &only_c, 10)
            .map(WaiterEntry::row)
            .rows;
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].position, 2,
            "the position is in the whole queue, not the listing"
        );
    }

    #[test]
    fn grace_and_ids_are_shown_plainly() {
        let w = World::new();
        assert_eq!(
            grace(&w.core),
            GraceRow {
                in_grace: false,
                remaining_ms: 0,
                expected_clients: 0,
                pending_clients: vec![]
            }
        );
        let (core, _) = Core::open_grace(
            Config {
                grace: brlock_core::Duration::from_secs(5),
                ..Profile::Brlock.config()
            },
            Instant::from_millis(1_000),
            1,
        );
        let g = grace(&core);
        assert!(g.in_grace);
        assert_eq!(g.remaining_ms, 5_000);
        assert_eq!(file_hex(&FileId::from(&[0u8, 0xff, 0x10][..])), "00ff10");
        assert_eq!(end_text(Range::new(u64::MAX, 1)), u64::MAX.to_string());
    }
}
