//! Blocking requests: FIFO queues, fairness, retransmissions, cancel, and exact deadlock detection.
mod common;
use brlock_core::*;
use common::*;

#[test]
fn a_conflicting_request_that_asks_to_wait_is_blocked_and_queued() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    let w = waiter_of(&t.lock_wait("b", "f", 0, 10, X));
    assert_eq!(t.queue("f"), ["b"]);
    t.unlock("a", "f", 0, 10);
    assert_eq!(t.granted(), [(w, "b".to_string())]);
    assert_eq!(t.held("f"), ["b:X:0-9"]);
    assert!(t.queue("f").is_empty());
}

#[test]
fn the_grant_is_persisted_before_the_callback_is_sent() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    t.lock_wait("b", "f", 0, 10, X);
    let actions = t.event(Event::Unlock {
        request: RequestId(99),
        client: ClientId::from("a"),
        owner: OwnerId::from("a"),
        file: FileId::from("f"),
        range: Range::new(0, 10),
    });
    let position = |pred: &dyn Fn(&Action) -> bool| actions.iter().position(pred).unwrap();
    let put_b = position(
        &|a| matches!(a, Action::Persist { op: PersistOp::Put(r), .. } if r.owner == OwnerId::from("b")),
    );
    let send = position(&|a| matches!(a, Action::SendGranted { .. }));
    assert!(put_b < send, "{actions:#?}");
}

#[test]
fn waiters_are_granted_in_queue_order() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    let wb = waiter_of(&t.lock_wait("b", "f", 0, 10, X));
    let wc = waiter_of(&t.lock_wait("c", "f", 0, 10, X));
    t.unlock("a", "f", 0, 10);
    assert_eq!(t.granted(), [(wb, "b".to_string())]);
    t.callback(wb, CallbackResult::Delivered);
    t.unlock("b", "f", 0, 10);
    assert_eq!(t.granted(), [(wc, "c".to_string())]);
}

#[test]
fn compatible_waiters_behind_a_blocked_one_still_proceed() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    t.lock("z", "f", 100, 10, S);
    waiter_of(&t.lock_wait("b", "f", 0, 10, S));
    waiter_of(&t.lock_wait("c", "f", 100, 10, X)); // blocked by z
    waiter_of(&t.lock_wait("d", "f", 5, 1, S));
    t.unlock("a", "f", 0, 10);
    let owners: Vec<_> = t.granted().into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        owners,
        ["b", "d"],
        "readers of 0..10 go; the writer on 100..110 still waits for z"
    );
    assert_eq!(t.queue("f"), ["c"]);
}

#[test]
fn a_conflicting_request_never_overtakes_a_queued_one() {
    // Readers keep arriving while a writer waits: they queue behind it instead of starving it.
    let mut t = T::new();
    t.lock("r1", "f", 0, 10, S);
    let w = waiter_of(&t.lock_wait("w", "f", 0, 10, X));
    assert!(matches!(
        t.lock_wait("r2", "f", 0, 10, S),
        Outcome::Blocked { .. }
    ));
    t.unlock("r1", "f", 0, 10);
    assert_eq!(t.granted(), [(w, "w".to_string())]);
    assert_eq!(t.queue("f"), ["r2"]);
}

#[test]
fn non_blocking_requests_are_judged_against_held_locks_only() {
    let mut t = T::new();
    t.lock("r1", "f", 0, 10, S);
    t.lock_wait("w", "f", 0, 10, X);
    assert_eq!(
        t.lock("r2", "f", 0, 10, S),
        Outcome::Granted,
        "POSIX: F_SETLK ignores sleepers"
    );
}

#[test]
fn fair_nonblocking_refuses_requests_that_conflict_with_a_queued_waiter() {
    let mut t = T::with(Config {
        fair_nonblocking: true,
        ..Config::default()
    });
    t.lock("r1", "f", 0, 10, S);
    t.lock_wait("w", "f", 0, 10, X);
    match t.lock("r2", "f", 0, 10, S) {
        Outcome::Denied { holder } => {
            assert!(holder.queued);
            assert_eq!(holder.owner, OwnerId::from("w"));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.lock("r2", "f", 20, 10, S), Outcome::Granted);
}

#[test]
fn a_retransmitted_wait_request_keeps_its_place() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    let wb = waiter_of(&t.lock_wait("b", "f", 0, 10, X));
    t.lock_wait("c", "f", 0, 10, X);
    assert_eq!(waiter_of(&t.lock_wait("b", "f", 0, 10, X)), wb);
    assert_eq!(t.queue("f"), ["b", "c"]);
}

#[test]
fn a_retransmitted_request_after_its_grant_is_granted() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    t.lock_wait("b", "f", 0, 10, X);
    t.unlock("a", "f", 0, 10);
    assert_eq!(t.lock_wait("b", "f", 0, 10, X), Outcome::Granted);
    assert!(
        t.core.pending_callbacks().is_empty(),
        "the retransmission confirms the grant"
    );
}

#[test]
fn cancel_removes_the_owners_matching_waiter() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    let w = waiter_of(&t.lock_wait("b", "f", 0, 10, X));
    assert_eq!(t.cancel("b", "f", 0, 10, X), Outcome::Granted);
    assert!(t.last.iter().any(|a| matches!(a, Action::WaiterRemoved { waiter, reason: WaiterRemovedReason::Cancelled, .. } if *waiter == w)));
    assert!(t.queue("f").is_empty());
    t.unlock("a", "f", 0, 10);
    assert!(t.granted().is_empty());
}

#[test]
fn cancel_of_what_is_not_queued_is_granted_like_linux_lockd() {
    let mut t = T::new();
    assert_eq!(t.cancel("b", "f", 0, 10, X), Outcome::Granted);
    t.lock("a", "f", 0, 10, X);
    t.lock_wait("b", "f", 0, 10, X);
    assert_eq!(
        t.cancel("b", "f", 0, 10, S),
        Outcome::Granted,
        "kind differs: nothing cancelled"
    );
    assert_eq!(t.queue("f"), ["b"]);
}

#[test]
fn cancel_after_the_grant_but_before_the_callback_undoes_the_grant() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    t.lock_wait("b", "f", 0, 10, X);
    t.lock_wait("c", "f", 0, 10, X);
    t.unlock("a", "f", 0, 10);
    t.cancel("b", "f", 0, 10, X);
    assert_eq!(
        t.held("f"),
        ["c:X:0-9"],
        "b's grant is undone and c goes next"
    );
}

#[test]
fn cancelling_a_waiter_lets_compatible_requests_behind_it_through() {
    let mut t = T::new();
    t.lock("r1", "f", 0, 10, S);
    t.lock_wait("w", "f", 0, 10, X);
    let r2 = waiter_of(&t.lock_wait("r2", "f", 0, 10, S));
    t.cancel("w", "f", 0, 10, X);
    assert_eq!(t.granted(), [(r2, "r2".to_string())]);
}

#[test]
fn unlock_also_cancels_the_owners_waiter_for_the_same_range() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    t.lock("b", "f", 20, 10, S);
    t.lock_wait("b", "f", 0, 10, X);
    t.unlock("b", "f", 0, 10);
    assert!(t.queue("f").is_empty());
    assert!(t.last.iter().any(|a| matches!(
        a,
        Action::WaiterRemoved {
            reason: WaiterRemovedReason::Unlocked,
            ..
        }
    )));
}

#[test]
fn a_deadlock_between_two_owners_is_refused_with_the_cycle() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    t.lock("b", "g", 0, 10, X);
    t.lock_wait("a", "g", 0, 10, X);
    let outcome = t.lock_wait("b", "f", 0, 10, X);
    assert_eq!(cycle_of(&outcome), ["b", "a"]);
    assert_eq!(
        t.queue("f"),
        Vec::<String>::new(),
        "a refused request does not queue"
    );
}

#[test]
fn a_chain_of_waiters_without_a_cycle_is_no_deadlock() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    t.lock("b", "g", 0, 10, X);
    t.lock_wait("b", "f", 0, 10, X); // b waits for a
    assert!(matches!(
        t.lock_wait("c", "g", 0, 10, X),
        Outcome::Blocked { .. }
    )); // c waits for b
}

#[test]
fn a_triangle_is_detected() {
    let mut t = T::new();
    t.lock("a", "f1", 0, 1, X);
    t.lock("b", "f2", 0, 1, X);
    t.lock("c", "f3", 0, 1, X);
    t.lock_wait("a", "f2", 0, 1, X);
    t.lock_wait("b", "f3", 0, 1, X);
    assert_eq!(cycle_of(&t.lock_wait("c", "f1", 0, 1, X)), ["c", "a", "b"]);
}

#[test]
fn a_cycle_longer_than_linuxs_ten_hops_is_detected() {
    let mut t = T::new();
    let n = 25;
    for i in 0..n {
        t.lock(&format!("o{i}"), &format!("f{i}"), 0, 1, X);
    }
    for i in 0..n - 1 {
        assert!(matches!(
            t.lock_wait(&format!("o{i}"), &format!("f{}", i + 1), 0, 1, X),
            Outcome::Blocked { .. }
        ));
    }
    let cycle = cycle_of(&t.lock_wait(&format!("o{}", n - 1), "f0", 0, 1, X));
    assert_eq!(cycle.len(), n);
}

#[test]
fn a_cycle_through_one_of_several_paths_is_detected() {
    let mut t = T::new();
    // d waits for a, b and c (three readers); only c waits (through e) for d.
    for o in ["a", "b", "c"] {
        t.lock(o, "f", 0, 10, S);
    }
    t.lock("d", "g", 0, 10, X);
    t.lock("e", "h", 0, 10, X);
    t.lock_wait("d", "f", 0, 10, X);
    t.lock_wait("c", "h", 0, 10, X); // c waits for e
    t.lock_wait("a", "i", 0, 1, X); // unrelated
    assert_eq!(cycle_of(&t.lock_wait("e", "g", 0, 10, X)), ["e", "d", "c"]);
}

#[test]
fn an_upgrade_race_between_two_readers_is_a_deadlock() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, S);
    t.lock("b", "f", 0, 10, S);
    assert!(matches!(
        t.lock_wait("a", "f", 0, 10, X),
        Outcome::Blocked { .. }
    ));
    assert_eq!(cycle_of(&t.lock_wait("b", "f", 0, 10, X)), ["b", "a"]);
}

#[test]
fn owners_of_different_protocols_deadlock_with_each_other() {
    let mut t = T::new();
    t.lock("nlm-host/svid1", "f", 0, 10, X);
    t.lock("smb-sess/pid9", "g", 0, 10, X);
    t.lock_wait("nlm-host/svid1", "g", 0, 10, X);
    assert_eq!(
        cycle_of(&t.lock_wait("smb-sess/pid9", "f", 0, 10, X)),
        ["pid9", "svid1"]
    );
}

#[test]
fn cancelling_a_waiter_breaks_the_cycle() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    t.lock("b", "g", 0, 10, X);
    t.lock_wait("a", "g", 0, 10, X);
    t.cancel("a", "g", 0, 10, X);
    assert!(matches!(
        t.lock_wait("b", "f", 0, 10, X),
        Outcome::Blocked { .. }
    ));
}

#[test]
fn removing_an_owner_breaks_the_cycle() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    t.lock("b", "g", 0, 10, X);
    t.lock_wait("a", "g", 0, 10, X);
    t.event(Event::FreeAll {
        client: ClientId::from("a"),
    });
    assert_eq!(t.lock_wait("b", "f", 0, 10, X), Outcome::Granted);
}

#[test]
fn granting_a_waiter_removes_its_edges() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, X);
    let w = waiter_of(&t.lock_wait("b", "f", 0, 10, X));
    assert_eq!(t.core.wait_for_graph().len(), 1);
    t.unlock("a", "f", 0, 10);
    t.callback(w, CallbackResult::Delivered);
    assert!(t.core.wait_for_graph().is_empty());
}

#[test]
fn the_wait_for_graph_lists_held_and_queued_blockers() {
    let mut t = T::new();
    t.lock("a", "f", 0, 10, S);
    t.lock_wait("b", "f", 0, 10, X);
    t.lock_wait("c", "f", 0, 10, S);
    let edges: Vec<_> = t
        .core
        .wait_for_graph()
        .iter()
        .map(|e| format!("{}->{}", e.from.owner, e.to.owner))
        .collect();
    assert_eq!(edges, ["b->a", "c->b"]);
}

#[test]
fn a_cycle_closed_by_a_non_blocking_grant_is_broken_at_the_waiter_behind_the_new_edge() {
    // Linux lets this hang: b waits for a; a waits on g behind c; b then takes part of g without
    // queueing (non-blocking requests are judged against held locks only), so a waits for b too.
    let mut t = T::new();
    assert_eq!(t.lock("a", "f", 0, 10, X), Outcome::Granted);
    assert_eq!(t.lock("c", "g", 0, 4, X), Outcome::Granted);
    let wb = match t.lock_wait("b", "f", 0, 10, X) {
        Outcome::Blocked { waiter } => waiter,
        other => panic!("{other:?}"),
    };
    let wa = match t.lock_wait("a", "g", 0, 10, X) {
        Outcome::Blocked { waiter } => waiter,
        other => panic!("{other:?}"),
    };
    assert_eq!(t.lock("b", "g", 5, 5, X), Outcome::Granted);
    assert!(
        t.last.iter().any(|a| matches!(
            a,
            Action::WaiterRemoved { waiter, reason: WaiterRemovedReason::Deadlock, .. } if *waiter == wa
        )),
        "{:?}",
        t.last
    );
    assert!(t.core.wait_for_graph().iter().all(|e| e.waiter == wb));
    assert_eq!(t.queue("f"), vec!["b"]);
    assert!(t.queue("g").is_empty());
    assert_eq!(t.core.stats().waiters_deadlocked, 1);
    // a's client retries its blocked LOCK and is told of the deadlock, as Linux would have been.
    assert_eq!(cycle_of(&t.lock_wait("a", "g", 0, 10, X)), ["a", "b"]);
}
