//! Restart, grace period and reclaim; persistence actions and the epoch.
mod common;
use brlock_core::*;
use common::*;

fn record(owner: &str, file: &str, offset: u64, length: u64, kind: LockKind) -> LockRecord {
    let (client, owner) = who(owner);
    LockRecord {
        file: FileId::from(file),
        client,
        owner,
        kind,
        range: Range::new(offset, length),
    }
}

fn restored(config: Config, records: Vec<LockRecord>) -> T {
    let (core, actions) = Core::restore(config, Instant::ZERO, 2, records).expect("restore");
    assert!(
        actions
            .iter()
            .all(|a| matches!(a, Action::Persist { .. } | Action::GraceEnded { .. }))
    );
    let t = T::from_core(core);
    t.core.check_invariants().unwrap();
    t
}

fn two_clients() -> Vec<LockRecord> {
    vec![
        record("h1/p", "f", 0, 10, X),
        record("h2/q", "f", 20, 10, S),
        record("h2/q", "g", 0, 0, X),
    ]
}

#[test]
fn a_fresh_core_starts_out_of_grace() {
    let mut t = T::new();
    assert!(t.core.grace().is_none());
    assert_eq!(t.lock("a", "f", 0, 1, X), Outcome::Granted);
}

#[test]
fn restored_locks_are_held_and_grace_blocks_new_locks() {
    let mut t = restored(Config::default(), two_clients());
    assert_eq!(t.held("f"), ["p:X:0-9", "q:S:20-29"]);
    assert_eq!(t.lock("new", "k", 0, 1, X), Outcome::DeniedGrace);
    let grace = t.core.grace().unwrap();
    assert_eq!((grace.expected, grace.remaining), (2, ms(90_000)));
}

#[test]
fn grace_allows_reclaims_of_what_was_held() {
    let mut t = restored(Config::default(), two_clients());
    assert_eq!(t.reclaim("h1/p", "f", 0, 10, X), Outcome::Granted);
    assert_eq!(
        t.reclaim("h1/p", "f", 0, 10, X),
        Outcome::Granted,
        "a retransmitted reclaim too"
    );
    assert_eq!(t.core.stats().reclaims, 2);
}

#[test]
fn a_reclaim_of_a_lock_never_held_is_refused() {
    let mut t = restored(Config::default(), two_clients());
    assert_eq!(
        t.reclaim("h1/p", "f", 0, 11, X),
        Outcome::NotReclaimable,
        "more than was held"
    );
    assert_eq!(
        t.reclaim("h2/q", "f", 20, 10, X),
        Outcome::NotReclaimable,
        "another kind"
    );
    assert_eq!(
        t.reclaim("h1/intruder", "f", 0, 10, X),
        Outcome::NotReclaimable,
        "another owner"
    );
    assert_eq!(
        t.reclaim("h1/p", "k", 0, 1, X),
        Outcome::NotReclaimable,
        "another file"
    );
    assert_eq!(
        t.reclaim("h1/p", "f", 2, 3, X),
        Outcome::Granted,
        "a part of what was held"
    );
}

#[test]
fn reclaim_verification_can_be_turned_off() {
    let mut t = restored(
        Config {
            verify_reclaims: false,
            ..Config::default()
        },
        two_clients(),
    );
    assert_eq!(t.reclaim("h3/r", "k", 0, 1, X), Outcome::Granted);
    assert!(
        matches!(t.reclaim("h3/r", "f", 0, 1, X), Outcome::Denied { .. }),
        "still no conflicting grants"
    );
}

#[test]
fn tests_in_grace_follow_the_profile() {
    let mut linux = restored(Config::linux(), two_clients());
    assert_eq!(linux.test("x", "f", 0, 1, S), Outcome::DeniedGrace);
    assert_eq!(linux.unlock("h1/p", "f", 0, 10), Outcome::DeniedGrace);
    assert_eq!(linux.cancel("h1/p", "f", 0, 10, X), Outcome::DeniedGrace);
    let mut ganesha = restored(Config::ganesha(), two_clients());
    assert!(matches!(
        ganesha.test("x", "f", 0, 1, S),
        Outcome::Denied { .. }
    ));
    assert_eq!(ganesha.unlock("x", "f", 0, 10), Outcome::Granted);
    assert_eq!(ganesha.cancel("x", "f", 0, 10, X), Outcome::DeniedGrace);
    let mut dittofs = restored(Config::dittofs(), two_clients());
    assert_eq!(dittofs.test("x", "k", 0, 1, S), Outcome::Granted);
}

#[test]
fn grace_expires_at_its_deadline_and_releases_what_nobody_reclaimed() {
    let mut t = restored(Config::default(), two_clients());
    t.reclaim("h1/p", "f", 0, 10, X);
    t.advance(ms(89_999));
    assert!(t.core.grace().is_some());
    t.advance(ms(1));
    assert!(t.core.grace().is_none());
    assert_eq!(t.held("f"), ["p:X:0-9"]);
    assert!(t.held("g").is_empty());
    let released: Vec<_> = t.released();
    assert_eq!(
        released,
        [
            ("q:20+10".to_string(), ReleaseReason::GraceExpired),
            ("q:0+0".to_string(), ReleaseReason::GraceExpired)
        ]
    );
    assert!(t.last.contains(&Action::GraceEnded { released: 2 }));
    assert_eq!(t.lock("new", "g", 0, 1, X), Outcome::Granted);
}

#[test]
fn grace_ends_early_once_every_client_has_reclaimed() {
    let mut t = restored(Config::default(), two_clients());
    t.reclaim("h2/q", "f", 20, 10, S);
    t.reclaim("h1/p", "f", 0, 10, X);
    assert!(t.core.grace().is_some(), "h2 still has g to reclaim");
    t.reclaim("h2/q", "g", 0, 0, X);
    assert!(t.core.grace().is_none());
    assert!(t.last.contains(&Action::GraceEnded { released: 0 }));
}

#[test]
fn a_client_reclaiming_in_pieces_counts_when_the_pieces_cover_its_lock() {
    let mut t = restored(Config::default(), vec![record("h/p", "f", 0, 100, X)]);
    t.reclaim("h/p", "f", 0, 50, X);
    assert!(t.core.grace().is_some());
    t.reclaim("h/p", "f", 50, 50, X);
    assert!(t.core.grace().is_none());
    assert_eq!(t.held("f"), ["p:X:0-99"]);
}

#[test]
fn free_all_of_an_expected_client_releases_its_locks_and_can_end_grace() {
    let mut t = restored(Config::default(), two_clients());
    t.reclaim("h1/p", "f", 0, 10, X);
    t.event(Event::FreeAll {
        client: ClientId::from("h2"),
    });
    assert!(t.core.grace().is_none());
    assert_eq!(t.held("f"), ["p:X:0-9"]);
}

#[test]
fn reclaim_complete_releases_the_rest_of_that_client_at_once() {
    let mut t = restored(Config::default(), two_clients());
    t.reclaim("h2/q", "g", 0, 0, X);
    t.event(Event::ReclaimComplete {
        client: ClientId::from("h2"),
    });
    assert_eq!(
        t.released(),
        [("q:20+10".to_string(), ReleaseReason::GraceExpired)]
    );
    assert_eq!(t.core.grace().unwrap().pending, [ClientId::from("h1")]);
}

#[test]
fn a_reclaim_after_grace_is_refused_unless_the_profile_allows_late_reclaims() {
    let mut t = restored(Config::default(), two_clients());
    t.advance(ms(90_000));
    assert_eq!(t.reclaim("h1/p", "f", 0, 10, X), Outcome::DeniedGrace);
    let mut late = restored(Config::dittofs(), two_clients());
    late.advance(ms(90_000));
    assert_eq!(late.reclaim("h1/p", "f", 0, 10, X), Outcome::Granted);
}

#[test]
fn a_reclaim_outside_any_grace_period_is_refused() {
    let mut t = T::new();
    assert_eq!(t.reclaim("a", "f", 0, 1, X), Outcome::DeniedGrace);
}

#[test]
fn restoring_nothing_ends_grace_at_once() {
    let (core, actions) = Core::restore(Config::default(), Instant::ZERO, 2, vec![]).unwrap();
    assert_eq!(actions, [Action::GraceEnded { released: 0 }]);
    assert!(core.grace().is_none());
}

#[test]
fn restored_records_that_merge_are_rewritten_in_the_store() {
    let (core, actions) = Core::restore(
        Config::default(),
        Instant::ZERO,
        7,
        vec![record("a", "f", 0, 10, X), record("a", "f", 10, 10, X)],
    )
    .unwrap();
    assert_eq!(
        actions,
        [
            Action::Persist {
                epoch: 7,
                seq: 0,
                op: PersistOp::Delete(record("a", "f", 10, 10, X))
            },
            Action::Persist {
                epoch: 7,
                seq: 1,
                op: PersistOp::Put(record("a", "f", 0, 20, X))
            },
        ]
    );
    assert_eq!(core.records(), [record("a", "f", 0, 20, X)]);
}

#[test]
fn restoring_conflicting_records_is_an_error_naming_the_record() {
    let err = Core::restore(
        Config::default(),
        Instant::ZERO,
        2,
        vec![record("a", "f", 0, 10, X), record("b", "f", 5, 1, S)],
    )
    .unwrap_err();
    assert_eq!(err.index, 1);
    assert!(err.to_string().contains("conflicts"), "{err}");
    let err = Core::restore(
        Config::linux(),
        Instant::ZERO,
        2,
        vec![record("a", "f", u64::MAX - 1, 1, X)],
    )
    .unwrap_err();
    assert!(err.to_string().contains("too big"), "{err}");
}

#[test]
fn persist_actions_carry_the_epoch_and_a_sequence_growing_by_one() {
    let mut t = T::from_core(Core::with_epoch(Config::default(), 5));
    let mut seen = Vec::new();
    for step in 0..4 {
        match step {
            0 => t.lock("a", "f", 0, 10, X),
            1 => t.lock("a", "f", 20, 10, X),
            2 => t.lock("a", "f", 10, 10, X), // merges three into one: a delete and a put
            _ => t.unlock("a", "f", 5, 1),    // splits: the put at 0 replaces, one more put
        };
        for a in &t.last {
            if let Action::Persist { epoch, seq, op } = a {
                let what = match op {
                    PersistOp::Put(r) => format!("put {}+{}", r.range.offset, r.range.length),
                    PersistOp::Delete(r) => format!("delete {}+{}", r.range.offset, r.range.length),
                    other => format!("{other:?}"),
                };
                seen.push((*epoch, *seq, what));
            }
        }
    }
    let expected = [
        (5, 0, "put 0+10"),
        (5, 1, "put 20+10"),
        (5, 2, "delete 20+10"),
        (5, 3, "put 0+30"),
        (5, 4, "put 0+5"),
        (5, 5, "put 6+24"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|&(e, s, w)| (e, s, w.to_string()))
        .collect();
    assert_eq!(seen, expected);
}
