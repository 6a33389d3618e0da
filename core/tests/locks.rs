//! Byte ranges, conflicts, POSIX replacement (split, merge, upgrade, downgrade), unlock and test.
mod common;
use brlock_core::*;
use common::*;

#[test]
fn shared_locks_of_two_owners_coexist() {
    let mut t = T::new();
    assert_eq!(t.lock("a", "f", 0, 10, S), Outcome::Granted);
    assert_eq!(t.lock("b", "f", 5, 10, S), Outcome::Granted);
    assert_eq!(t.held("f"), ["a:S:0-9", "b:S:5-14"]);
}

#[test]
fn exclusive_conflicts_with_any_lock_of_another_owner() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, S);
    assert_eq!(denied_by(&t.lock("b", "f", 9, 1, X)), "a:0+10");
    t.lock("c", "g", 0, 10, X);
    assert_eq!(denied_by(&t.lock("d", "g", 0, 1, S)), "c:0+10");
    assert_eq!(
        t.lock("d", "g", 10, 1, X),
        Outcome::Granted,
        "no overlap, no conflict"
    );
}

#[test]
fn an_owner_never_conflicts_with_itself() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    assert_eq!(t.lock("a", "f", 5, 10, X), Outcome::Granted);
    assert_eq!(t.held("f"), ["a:X:0-14"]);
}

#[test]
fn owners_of_different_protocols_conflict_like_any_two_owners() {
    let mut t = T::new();
    // An NLM owner (caller_name/svid+oh) and an SMB owner (session/pid): opaque bytes alike.
    assert_eq!(
        t.lock("nlm:client1/svid=7", "f", 0, 100, X),
        Outcome::Granted
    );
    assert_eq!(
        denied_by(&t.lock("smb:sess9/pid=42", "f", 50, 10, S)),
        "svid=7:0+100"
    );
    assert_eq!(
        denied_by(&t.lock("nfs4:cid3/lockowner", "f", 99, 1, X)),
        "svid=7:0+100"
    );
}

#[test]
fn owner_ids_are_opaque_bytes() {
    let mut t = T::new();
    let (client, _) = who("c");
    let lock = |owner: Vec<u8>, request| Event::Lock {
        request: RequestId(request),
        client: client.clone(),
        owner: OwnerId::new(owner),
        file: FileId::new(vec![0, 255, 0]),
        range: Range::new(0, 1),
        kind: X,
        wait: false,
        reclaim: false,
        cookie: vec![],
    };
    t.event(lock(vec![0, 1, 2], 1));
    assert_eq!(t.reply(), Outcome::Granted);
    t.event(lock(vec![0, 1, 3], 2));
    assert!(
        matches!(t.reply(), Outcome::Denied { .. }),
        "owners differing in one byte are different owners"
    );
    t.event(lock(vec![0, 1, 2], 3));
    assert_eq!(t.reply(), Outcome::Granted);
}

#[test]
fn the_same_owner_name_under_two_clients_is_two_owners() {
    let mut t = T::new();
    t.lock("host1/p1", "f", 0, 10, X);
    assert!(matches!(
        t.lock("host2/p1", "f", 0, 10, X),
        Outcome::Denied { .. }
    ));
}

#[test]
fn length_zero_locks_to_end_of_file() {
    let mut t = T::new();
    t.lock("a", "f", 100, 0, X);
    assert_eq!(t.held("f"), ["a:X:100-EOF"]);
    assert!(matches!(
        t.lock("b", "f", u64::MAX, 1, S),
        Outcome::Denied { .. }
    ));
    assert_eq!(t.lock("b", "f", 0, 100, S), Outcome::Granted);
}

#[test]
fn a_range_past_the_largest_offset_is_too_big() {
    let mut t = T::new();
    assert_eq!(t.lock("a", "f", u64::MAX, 2, X), Outcome::TooBig);
    assert_eq!(t.test("a", "f", 2, u64::MAX, X), Outcome::TooBig);
    assert_eq!(t.unlock("a", "f", u64::MAX, 5), Outcome::TooBig);
    let mut linux = T::with(Config::linux());
    assert_eq!(linux.lock("a", "f", i64::MAX as u64, 2, X), Outcome::TooBig);
    assert_eq!(
        linux.lock("a", "f", i64::MAX as u64, 1, X),
        Outcome::Granted
    );
    assert_eq!(linux.held("f"), [format!("a:X:{}-EOF", i64::MAX)]);
    assert!(
        t.core.files().is_empty(),
        "a refused request leaves nothing behind"
    );
}

#[test]
fn a_lock_of_the_other_kind_over_the_middle_splits_the_lock() {
    let mut t = T::new();
    t.lock("a", "f", 0, 100, X);
    t.lock("a", "f", 40, 20, S);
    assert_eq!(t.held("f"), ["a:X:0-39", "a:S:40-59", "a:X:60-99"]);
}

#[test]
fn same_kind_locks_that_overlap_or_touch_merge() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, S);
    t.lock("a", "f", 20, 10, S);
    assert_eq!(t.held("f"), ["a:S:0-9", "a:S:20-29"]);
    t.lock("a", "f", 10, 10, S);
    assert_eq!(
        t.held("f"),
        ["a:S:0-29"],
        "adjacent on both sides: one lock"
    );
    t.lock("a", "f", 25, 10, S);
    assert_eq!(t.held("f"), ["a:S:0-34"], "overlapping: one lock");
    t.lock("a", "f", 35, 5, X);
    assert_eq!(
        t.held("f"),
        ["a:S:0-34", "a:X:35-39"],
        "adjacent of another kind stays apart"
    );
}

#[test]
fn a_lock_spanning_several_of_its_owners_locks_replaces_them() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, S);
    t.lock("a", "f", 20, 10, X);
    t.lock("a", "f", 40, 10, S);
    t.lock("a", "f", 5, 40, X);
    assert_eq!(t.held("f"), ["a:S:0-4", "a:X:5-44", "a:S:45-49"]);
}

#[test]
fn upgrade_without_other_readers_is_granted_atomically() {
    let mut t = T::new();
    t.lock("a", "f", 0, 100, S);
    assert_eq!(t.lock("a", "f", 0, 100, X), Outcome::Granted);
    assert_eq!(t.held("f"), ["a:X:0-99"]);
}

#[test]
fn upgrade_with_another_reader_is_denied_and_keeps_the_shared_lock() {
    let mut t = T::new();
    t.lock("a", "f", 0, 100, S);
    t.lock("b", "f", 50, 10, S);
    assert_eq!(denied_by(&t.lock("a", "f", 0, 100, X)), "b:50+10");
    assert_eq!(t.held("f"), ["a:S:0-99", "b:S:50-59"]);
}

#[test]
fn upgrade_of_a_missing_lock_is_an_ordinary_lock() {
    let mut t = T::new();
    assert_eq!(t.lock("a", "f", 0, 10, X), Outcome::Granted);
    assert_eq!(t.held("f"), ["a:X:0-9"]);
}

#[test]
fn upgrading_an_exclusive_lock_changes_nothing_and_persists_nothing() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    assert_eq!(t.lock("a", "f", 2, 3, X), Outcome::Granted);
    assert_eq!(t.held("f"), ["a:X:0-9"]);
    assert!(!t.last.iter().any(|a| matches!(a, Action::Persist { .. })));
}

#[test]
fn downgrade_always_succeeds_and_wakes_the_readers_it_unblocks() {
    let mut t = T::new();
    t.lock("a", "f", 0, 100, X);
    let w = waiter_of(&t.lock_wait("b", "f", 10, 10, S));
    assert_eq!(t.lock("a", "f", 0, 100, S), Outcome::Granted);
    assert_eq!(t.granted(), [(w, "b".to_string())]);
    assert_eq!(t.held("f"), ["a:S:0-99", "b:S:10-19"]);
}

#[test]
fn unlock_splits_at_start_end_middle_and_handles_exact_larger_and_no_overlap() {
    let cases: &[(u64, u64, &[&str])] = &[
        (0, 10, &["a:X:10-99"]),              // start
        (90, 10, &["a:X:0-89"]),              // end
        (40, 20, &["a:X:0-39", "a:X:60-99"]), // middle
        (0, 100, &[]),                        // exact
        (0, 0, &[]),                          // larger (to EOF)
        (200, 10, &["a:X:0-99"]),             // no overlap
    ];
    for &(offset, length, expected) in cases {
        let mut t = T::new();
        t.lock("a", "f", 0, 100, X);
        assert_eq!(t.unlock("a", "f", offset, length), Outcome::Granted);
        assert_eq!(t.held("f"), expected, "unlock {offset}+{length}");
    }
}

#[test]
fn unlocking_what_is_not_held_succeeds() {
    let mut t = T::new();
    assert_eq!(t.unlock("a", "nothing", 0, 10), Outcome::Granted);
    t.lock("b", "f", 0, 10, X);
    assert_eq!(t.unlock("a", "f", 0, 10), Outcome::Granted);
    assert_eq!(
        t.held("f"),
        ["b:X:0-9"],
        "another owner's lock is untouched"
    );
}

#[test]
fn unlock_announces_what_was_released() {
    let mut t = T::new();
    t.lock("a", "f", 0, 100, X);
    t.unlock("a", "f", 40, 20);
    assert_eq!(
        t.released(),
        [("a:40+20".to_string(), ReleaseReason::Explicit)]
    );
}

#[test]
fn unlock_spanning_several_locks_releases_each_piece() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, S);
    t.lock("a", "f", 20, 10, X);
    t.unlock("a", "f", 5, 20);
    assert_eq!(t.held("f"), ["a:S:0-4", "a:X:25-29"]);
    assert_eq!(
        t.released(),
        [
            ("a:5+5".to_string(), ReleaseReason::Explicit),
            ("a:20+5".to_string(), ReleaseReason::Explicit)
        ]
    );
}

#[test]
fn test_reports_a_holder_that_really_conflicts() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, S);
    t.lock("b", "f", 20, 10, X);
    assert_eq!(
        t.test("c", "f", 0, 100, S),
        Outcome::Denied {
            holder: Holder {
                client: ClientId::from("b"),
                owner: OwnerId::from("b"),
                kind: X,
                range: Range::new(20, 10),
                queued: false
            }
        }
    );
    assert_eq!(
        denied_by(&t.test("c", "f", 0, 100, X)),
        "a:0+10",
        "the first conflicting lock in range order"
    );
    assert_eq!(t.test("c", "f", 0, 10, S), Outcome::Granted);
    assert_eq!(
        t.test("a", "f", 0, 10, X),
        Outcome::Granted,
        "own lock is no conflict"
    );
    assert_eq!(
        t.held("f"),
        ["a:S:0-9", "b:X:20-29"],
        "test changes nothing"
    );
}

#[test]
fn test_of_an_unknown_file_or_owner_is_granted_and_leaves_nothing() {
    let mut t = T::new();
    assert_eq!(t.test("a", "f", 0, 10, X), Outcome::Granted);
    assert!(t.core.files().is_empty());
    assert_eq!(t.core.stats().owners, 0);
}

#[test]
fn whole_file_reported_back_as_length_zero() {
    let mut t = T::new();
    t.lock("a", "f", 0, 0, X);
    match t.test("b", "f", 7, 1, S) {
        Outcome::Denied { holder } => assert_eq!(holder.range, Range::new(0, 0)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_lock_is_held_since_it_was_granted_and_splits_and_merges_keep_the_earliest_moment() {
    let mut t = T::new();
    let since = |t: &T| -> Vec<(u64, Instant)> {
        t.core
            .held_locks(&FileId::from("f"))
            .iter()
            .map(|l| (l.range.offset, l.since))
            .collect()
    };
    t.now = at(1_000);
    assert_eq!(t.lock("a", "f", 0, 10, X), Outcome::Granted);
    t.now = at(5_000);
    assert_eq!(t.lock("a", "f", 10, 10, X), Outcome::Granted); // merges into 0-19
    assert_eq!(since(&t), vec![(0, at(1_000))]);
    t.now = at(9_000);
    assert_eq!(t.unlock("a", "f", 5, 5), Outcome::Granted); // splits into 0-4 and 10-19
    assert_eq!(since(&t), vec![(0, at(1_000)), (10, at(1_000))]);
    assert_eq!(t.lock("b", "f", 30, 5, S), Outcome::Granted);
    assert_eq!(
        since(&t),
        vec![(0, at(1_000)), (10, at(1_000)), (30, at(9_000))]
    );
    // A downgrade replaces the kind: the shared record is new coverage of its own kind.
    t.now = at(12_000);
    assert_eq!(t.lock("a", "f", 0, 5, S), Outcome::Granted);
    assert_eq!(
        since(&t),
        vec![(0, at(12_000)), (10, at(1_000)), (30, at(9_000))]
    );
}
