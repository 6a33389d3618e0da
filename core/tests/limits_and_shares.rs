//! Limits (per file, per client, total, queue length) and share reservations.
mod common;
use brlock_core::*;
use common::*;

fn limited(per_file: u64, per_client: u64, total: u64, waiters: u64) -> T {
    T::with(Config {
        limits: Limits {
            locks_per_file: per_file,
            locks_per_client: per_client,
            locks_total: total,
            waiters_per_file: waiters,
            ..Limits::default()
        },
        ..Config::default()
    })
}

#[test]
fn the_per_file_limit_refuses_a_new_record_and_changes_nothing() {
    let mut t = limited(2, 100, 100, 10);
    t.lock("a", "f", 0, 1, X);
    t.lock("b", "f", 10, 1, X);
    assert_eq!(
        t.lock("c", "f", 20, 1, X),
        Outcome::NoLocks {
            limit: Limit::PerFile
        }
    );
    assert_eq!(t.held("f"), ["a:X:0-0", "b:X:10-10"]);
    assert_eq!(
        t.lock("c", "g", 20, 1, X),
        Outcome::Granted,
        "another file has room"
    );
    assert_eq!(t.core.stats().limit_per_file, 1);
}

#[test]
fn limits_count_records_after_merging() {
    let mut t = limited(1, 100, 100, 10);
    t.lock("a", "f", 0, 10, X);
    assert_eq!(
        t.lock("a", "f", 10, 10, X),
        Outcome::Granted,
        "merges into the one record"
    );
    assert_eq!(
        t.lock("a", "f", 5, 1, S),
        Outcome::NoLocks {
            limit: Limit::PerFile
        },
        "a split needs two more"
    );
    assert_eq!(t.held("f"), ["a:X:0-19"]);
}

#[test]
fn the_per_client_limit_counts_all_of_a_clients_owners_and_files() {
    let mut t = limited(100, 2, 100, 10);
    t.lock("h/p1", "f", 0, 1, X);
    t.lock("h/p2", "g", 0, 1, X);
    assert_eq!(
        t.lock("h/p3", "k", 0, 1, X),
        Outcome::NoLocks {
            limit: Limit::PerClient
        }
    );
    assert_eq!(t.lock("other/p1", "k", 0, 1, X), Outcome::Granted);
}

#[test]
fn the_total_limit_counts_every_record() {
    let mut t = limited(100, 100, 2, 10);
    t.lock("a", "f", 0, 1, X);
    t.lock("b", "g", 0, 1, X);
    assert_eq!(
        t.lock("c", "k", 0, 1, X),
        Outcome::NoLocks {
            limit: Limit::Total
        }
    );
    t.unlock("a", "f", 0, 1);
    assert_eq!(
        t.lock("c", "k", 0, 1, X),
        Outcome::Granted,
        "room again after an unlock"
    );
}

#[test]
fn an_unlock_that_would_split_past_a_limit_is_refused() {
    let mut t = limited(1, 100, 100, 10);
    t.lock("a", "f", 0, 100, X);
    assert_eq!(
        t.unlock("a", "f", 40, 10),
        Outcome::NoLocks {
            limit: Limit::PerFile
        }
    );
    assert_eq!(t.held("f"), ["a:X:0-99"]);
    assert_eq!(
        t.unlock("a", "f", 0, 10),
        Outcome::Granted,
        "trimming an end needs no new record"
    );
}

#[test]
fn the_queue_length_limit_refuses_one_more_waiter() {
    let mut t = limited(100, 100, 100, 2);
    t.lock("a", "f", 0, 1, X);
    t.lock_wait("b", "f", 0, 1, X);
    t.lock_wait("c", "f", 0, 1, X);
    assert_eq!(
        t.lock_wait("d", "f", 0, 1, X),
        Outcome::NoLocks {
            limit: Limit::QueueLength
        }
    );
    assert_eq!(t.queue("f"), ["b", "c"]);
}

#[test]
fn limits_not_hit_grant_and_queue_normally() {
    let mut t = limited(3, 3, 3, 1);
    for (i, o) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(t.lock(o, "f", i as u64 * 10, 1, X), Outcome::Granted);
    }
    assert!(
        matches!(t.lock_wait("d", "f", 0, 1, X), Outcome::Blocked { .. }),
        "one waiter fits"
    );
}

#[test]
fn a_share_is_refused_when_its_access_meets_anothers_deny() {
    let mut t = T::new();
    assert_eq!(
        t.share("a", "f", ShareMode::Read, ShareMode::Write),
        Outcome::Granted
    );
    assert!(matches!(
        t.share("b", "f", ShareMode::Write, ShareMode::None),
        Outcome::ShareDenied { .. }
    ));
    assert_eq!(
        t.share("b", "f", ShareMode::Read, ShareMode::None),
        Outcome::Granted
    );
}

#[test]
fn a_share_is_refused_when_its_deny_meets_anothers_access() {
    let mut t = T::new();
    t.share("a", "f", ShareMode::Write, ShareMode::None);
    match t.share("b", "f", ShareMode::Read, ShareMode::Write) {
        Outcome::ShareDenied { owner } => assert_eq!(owner.owner, OwnerId::from("a")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unshare_removes_the_reservation_and_shares_ignore_byte_ranges() {
    let mut t = T::new();
    t.share("a", "f", ShareMode::Both, ShareMode::Both);
    assert_eq!(
        t.lock("b", "f", 0, 10, X),
        Outcome::Granted,
        "shares and byte ranges are independent"
    );
    assert!(matches!(
        t.share("b", "f", ShareMode::Read, ShareMode::None),
        Outcome::ShareDenied { .. }
    ));
    assert_eq!(t.unshare("a", "f"), Outcome::Granted);
    assert_eq!(
        t.share("b", "f", ShareMode::Read, ShareMode::None),
        Outcome::Granted
    );
    assert_eq!(t.unshare("nobody", "f"), Outcome::Granted);
}

#[test]
fn an_owners_second_share_replaces_its_first() {
    let mut t = T::new();
    t.share("a", "f", ShareMode::Read, ShareMode::Both);
    t.share("a", "f", ShareMode::Read, ShareMode::None);
    assert_eq!(
        t.share("b", "f", ShareMode::Both, ShareMode::None),
        Outcome::Granted
    );
    assert_eq!(t.core.shares(&FileId::from("f")).len(), 2);
}

#[test]
fn a_waiter_held_back_by_a_client_limit_is_granted_when_its_client_frees_room_elsewhere() {
    let mut t = limited(100, 2, 100, 10);
    t.lock("h/p", "f", 0, 1, X);
    t.lock("other", "g", 0, 1, X);
    let w = waiter_of(&t.lock_wait("h/p", "g", 0, 1, X));
    t.lock("h/p", "k", 0, 1, X); // h now holds 2: its waiter could not be granted
    t.unlock("other", "g", 0, 1);
    assert!(t.granted().is_empty(), "over h's limit: stays queued");
    t.unlock("h/p", "f", 0, 1);
    assert_eq!(
        t.granted(),
        [(w, "p".to_string())],
        "room in another file lets it through"
    );
}

fn waiters_limited(per_file: u64, percent: u64, per_client: u64, total: u64) -> T {
    T::with(Config {
        limits: Limits {
            waiters_per_file: per_file,
            client_queue_percent: percent,
            waiters_per_client: per_client,
            waiters_total: total,
            ..Limits::default()
        },
        ..Config::default()
    })
}

#[test]
fn one_client_fills_at_most_its_share_of_a_files_queue() {
    // 25 % of 8 places: two per client.
    let mut t = waiters_limited(8, 25, 100, 100);
    t.lock("holder", "f", 0, 1, X);
    t.lock_wait("h/p1", "f", 0, 1, X);
    t.lock_wait("h/p2", "f", 0, 1, X);
    assert_eq!(
        t.lock_wait("h/p3", "f", 0, 1, X),
        Outcome::NoLocks {
            limit: Limit::QueueShare
        }
    );
    assert_eq!(t.queue("f"), ["p1", "p2"], "nothing changed");
    assert!(
        matches!(t.lock_wait("real", "f", 0, 1, X), Outcome::Blocked { .. }),
        "another client still gets a place"
    );
    t.lock("holder", "g", 0, 1, X);
    assert!(
        matches!(t.lock_wait("h/p3", "g", 0, 1, X), Outcome::Blocked { .. }),
        "the share is per file"
    );
    t.cancel("h/p1", "f", 0, 1, X);
    assert!(matches!(
        t.lock_wait("h/p3", "f", 0, 1, X),
        Outcome::Blocked { .. }
    ));
    assert_eq!(t.core.stats().limit_queue_share, 1);
}

#[test]
fn a_queue_share_is_at_least_one_waiter() {
    let mut t = waiters_limited(2, 25, 100, 100);
    t.lock("holder", "f", 0, 1, X);
    assert!(matches!(
        t.lock_wait("h/p1", "f", 0, 1, X),
        Outcome::Blocked { .. }
    ));
    assert_eq!(
        t.lock_wait("h/p2", "f", 0, 1, X),
        Outcome::NoLocks {
            limit: Limit::QueueShare
        }
    );
}

#[test]
fn the_per_client_waiter_limit_counts_pending_callbacks_across_files() {
    let mut t = waiters_limited(100, 100, 2, 100);
    t.lock("holder", "f", 0, 1, X);
    t.lock("holder", "g", 0, 1, X);
    t.lock("holder", "k", 0, 1, X);
    t.lock_wait("h/p1", "f", 0, 1, X);
    t.lock_wait("h/p2", "g", 0, 1, X);
    assert_eq!(
        t.lock_wait("h/p3", "k", 0, 1, X),
        Outcome::NoLocks {
            limit: Limit::WaitersPerClient
        }
    );
    // p1 is granted; until its client confirms the callback the waiter still counts.
    t.unlock("holder", "f", 0, 1);
    let (waiter, _) = t.granted()[0].clone();
    assert_eq!(
        t.lock_wait("h/p3", "k", 0, 1, X),
        Outcome::NoLocks {
            limit: Limit::WaitersPerClient
        }
    );
    t.callback(waiter, CallbackResult::Delivered);
    assert!(matches!(
        t.lock_wait("h/p3", "k", 0, 1, X),
        Outcome::Blocked { .. }
    ));
    assert!(
        matches!(t.lock_wait("other", "k", 0, 1, X), Outcome::Blocked { .. }),
        "other clients are not counted"
    );
    assert_eq!(t.core.stats().limit_waiters_per_client, 2);
}

#[test]
fn the_total_waiter_limit_counts_every_clients_waiters() {
    let mut t = waiters_limited(100, 100, 100, 2);
    t.lock("holder", "f", 0, 1, X);
    t.lock_wait("a", "f", 0, 1, X);
    t.lock_wait("b", "f", 0, 1, X);
    assert_eq!(
        t.lock_wait("c", "f", 0, 1, X),
        Outcome::NoLocks {
            limit: Limit::WaitersTotal
        }
    );
    assert_eq!(t.queue("f").len(), 2);
    assert_eq!(t.core.stats().limit_waiters_total, 1);
}

#[test]
fn a_waiter_limit_is_checked_before_the_deadlock_search() {
    // a waits for b; b's request would close the cycle, but b may not queue at all.
    let mut t = waiters_limited(100, 100, 1, 100);
    t.lock("a", "f", 0, 1, X);
    t.lock("b", "g", 0, 1, X);
    t.lock_wait("a", "g", 0, 1, X);
    t.lock("b", "k", 0, 1, X);
    t.lock("c", "m", 0, 1, X);
    t.lock_wait("b", "m", 0, 1, X);
    assert_eq!(
        t.lock_wait("b", "f", 0, 1, X),
        Outcome::NoLocks {
            limit: Limit::WaitersPerClient
        }
    );
}

fn shares_limited(per_file: u64, per_client: u64, total: u64) -> T {
    T::with(Config {
        limits: Limits {
            shares_per_file: per_file,
            shares_per_client: per_client,
            shares_total: total,
            ..Limits::default()
        },
        ..Config::default()
    })
}

const R: ShareMode = ShareMode::Read;
const NONE: ShareMode = ShareMode::None;

#[test]
fn the_per_file_share_limit_refuses_a_new_reservation_but_not_a_replacement() {
    let mut t = shares_limited(2, 100, 100);
    assert_eq!(t.share("a", "f", R, NONE), Outcome::Granted);
    assert_eq!(t.share("b", "f", R, NONE), Outcome::Granted);
    assert_eq!(
        t.share("c", "f", R, NONE),
        Outcome::NoLocks {
            limit: Limit::SharesPerFile
        }
    );
    assert_eq!(t.core.shares(&FileId::from("f")).len(), 2);
    assert!(
        !t.core.knows_client(&ClientId::from("c")),
        "nothing kept of c"
    );
    assert_eq!(
        t.share("a", "f", ShareMode::Both, NONE),
        Outcome::Granted,
        "a's second share replaces its first"
    );
    t.unshare("b", "f");
    assert_eq!(t.share("c", "f", R, NONE), Outcome::Granted);
    assert_eq!(t.core.stats().limit_shares_per_file, 1);
}

#[test]
fn the_per_client_share_limit_counts_all_of_a_clients_owners_and_files() {
    let mut t = shares_limited(100, 2, 100);
    t.share("h/p1", "f", R, NONE);
    t.share("h/p2", "g", R, NONE);
    assert_eq!(
        t.share("h/p3", "k", R, NONE),
        Outcome::NoLocks {
            limit: Limit::SharesPerClient
        }
    );
    assert_eq!(t.share("other", "k", R, NONE), Outcome::Granted);
    // FREE_ALL gives the client's reservations back.
    t.event(Event::FreeAll {
        client: ClientId::from("h"),
    });
    assert_eq!(t.share("h/p3", "k", R, NONE), Outcome::Granted);
}

#[test]
fn the_total_share_limit_counts_every_reservation() {
    let mut t = shares_limited(100, 100, 2);
    t.share("a", "f", R, NONE);
    t.share("b", "g", R, NONE);
    assert_eq!(
        t.share("c", "k", R, NONE),
        Outcome::NoLocks {
            limit: Limit::SharesTotal
        }
    );
    assert_eq!(t.core.stats().limit_shares_total, 1);
}
