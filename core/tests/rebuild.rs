//! `Core::rebuild`: what survives a store failure (the rules are in core/src/recovery.rs; the
//! simulation exercises them at random, these cases one at a time).

mod common;
use brlock_core::*;
use common::*;

/// The records a store holding exactly the core's current locks would give back.
fn store_of(t: &T) -> (Vec<LockRecord>, Vec<ShareRecord>) {
    (t.core.records(), t.core.share_records())
}

fn rebuild(t: &mut T, store: &(Vec<LockRecord>, Vec<ShareRecord>)) -> Vec<Action> {
    let (core, actions) = t
        .core
        .rebuild(t.now, store.0.clone(), store.1.clone())
        .expect("the store's records load");
    core.check_invariants()
        .expect("invariants after the rebuild");
    t.core = core;
    t.last = actions.clone();
    actions
}

fn blocked(outcome: Outcome) -> WaiterId {
    match outcome {
        Outcome::Blocked { waiter } => waiter,
        other => panic!("expected Blocked, got {other:?}"),
    }
}

#[test]
fn a_grant_the_store_lost_queues_again_under_its_id_and_is_granted_again() {
    let mut t = T::new();
    assert_eq!(t.lock("a", "f", 0, 10, X), Outcome::Granted);
    let w = blocked(t.lock_wait("b", "f", 0, 10, X));
    let store = store_of(&t);
    // a's UNLOCK and b's grant are in the batch that fails.
    assert_eq!(t.unlock("a", "f", 0, 10), Outcome::Granted);
    assert_eq!(t.granted(), vec![(w, "b".to_string())]);
    let actions = rebuild(&mut t, &store);
    assert!(actions.is_empty(), "nothing to do yet: {actions:?}");
    assert_eq!(t.held("f"), vec!["a:X:0-9"]);
    assert_eq!(t.queue("f"), vec!["b"]);
    assert_eq!(t.core.waiters(&FileId::from("f"))[0].waiter, w);
    // a's client, told its UNLOCK failed, sends it again: b is granted under the same waiter id.
    assert_eq!(t.unlock("a", "f", 0, 10), Outcome::Granted);
    assert_eq!(t.granted(), vec![(w, "b".to_string())]);
}

#[test]
fn a_waiter_the_store_no_longer_blocks_is_granted_by_the_rebuild() {
    let mut t = T::new();
    let empty = store_of(&t);
    // a's lock never became durable; b queued behind it.
    assert_eq!(t.lock("a", "f", 0, 10, X), Outcome::Granted);
    let w = blocked(t.lock_wait("b", "f", 5, 10, S));
    let actions = rebuild(&mut t, &empty);
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::SendGranted { waiter, .. } if *waiter == w)),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .position(|a| matches!(a, Action::Persist { .. }))
            < actions
                .iter()
                .position(|a| matches!(a, Action::SendGranted { .. })),
        "the grant is persisted before its GRANTED: {actions:?}"
    );
    assert_eq!(t.held("f"), vec!["b:S:5-14"]);
}

#[test]
fn a_durable_grant_keeps_its_pending_callback() {
    let mut t = T::new();
    assert_eq!(t.lock("a", "f", 0, 10, X), Outcome::Granted);
    let w = blocked(t.lock_wait("b", "f", 0, 10, X));
    assert_eq!(t.unlock("a", "f", 0, 10), Outcome::Granted);
    let store = store_of(&t);
    let actions = rebuild(&mut t, &store);
    assert!(actions.is_empty(), "no second GRANTED: {actions:?}");
    let pending: Vec<WaiterId> = t
        .core
        .pending_callbacks()
        .iter()
        .map(|w| w.waiter)
        .collect();
    assert_eq!(pending, vec![w]);
    assert_eq!(
        t.core
            .waiter_of_cookie(&t.core.config().cookie_key.cookie(w)),
        Some(w)
    );
    t.callback(w, CallbackResult::Delivered);
    assert!(t.core.pending_callbacks().is_empty());
    assert_eq!(t.held("f"), vec!["b:X:0-9"]);
}

#[test]
fn a_waiter_that_would_close_a_cycle_through_a_kept_lock_is_removed() {
    let mut t = T::new();
    assert_eq!(t.lock("a", "f1", 0, 10, X), Outcome::Granted);
    assert_eq!(t.lock("b", "f2", 0, 10, X), Outcome::Granted);
    let wa = blocked(t.lock_wait("a", "f2", 0, 10, X));
    let store = store_of(&t);
    // b's UNLOCK of f2 (granting a) fails to persist; meanwhile b queues behind a on f1.
    assert_eq!(t.unlock("b", "f2", 0, 10), Outcome::Granted);
    let wb = blocked(t.lock_wait("b", "f1", 0, 10, X));
    let actions = rebuild(&mut t, &store);
    // With b's f2 lock back, a waits for b again, and b's wait for a would close the cycle.
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::WaiterRemoved { waiter, reason: WaiterRemovedReason::Deadlock, .. } if *waiter == wb
        )),
        "{actions:?}"
    );
    assert_eq!(t.queue("f2"), vec!["a"]);
    assert_eq!(t.core.waiters(&FileId::from("f2"))[0].waiter, wa);
    assert!(t.queue("f1").is_empty());
    assert_eq!(t.core.stats().waiters_deadlocked, 1);
    // b's client retries its blocked LOCK and is told of the deadlock.
    assert!(matches!(
        t.lock_wait("b", "f1", 0, 10, X),
        Outcome::Deadlock { .. }
    ));
}

#[test]
fn grace_goes_on_with_the_same_deadline_and_the_same_reclaims_outstanding() {
    let records = vec![
        LockRecord {
            file: FileId::from("f"),
            client: ClientId::from("a"),
            owner: OwnerId::from("a"),
            kind: X,
            range: Range::new(0, 10),
        },
        LockRecord {
            file: FileId::from("g"),
            client: ClientId::from("b"),
            owner: OwnerId::from("b"),
            kind: X,
            range: Range::new(0, 10),
        },
    ];
    let (core, _) = Core::restore(Config::default(), at(1_000), 2, records.clone()).unwrap();
    let ends_at = core.grace().unwrap().ends_at;
    let mut t = T::from_core(core);
    t.now = at(1_000);
    assert_eq!(t.reclaim("a", "f", 0, 10, X), Outcome::Granted);
    t.now = at(5_000);
    let actions = rebuild(&mut t, &(records, Vec::new()));
    assert!(actions.is_empty(), "{actions:?}");
    let grace = t.core.grace().expect("still in grace");
    assert_eq!(grace.ends_at, ends_at);
    assert_eq!(grace.pending, vec![ClientId::from("b")]);
    let unreclaimed = |file: &str| t.core.held_locks(&FileId::from(file))[0].unreclaimed;
    assert!(!unreclaimed("f"), "a's reclaim survives the rebuild");
    assert!(unreclaimed("g"));
    // b's reclaim is still verified against what was restored, and ends grace early.
    assert_eq!(t.reclaim("b", "g", 0, 10, X), Outcome::Granted);
    assert!(t.core.grace().is_none());
}

#[test]
fn numbering_and_counters_carry_on() {
    let mut t = T::new();
    assert_eq!(t.lock("a", "f", 0, 10, X), Outcome::Granted);
    let store = store_of(&t);
    let seq_before = t
        .last
        .iter()
        .find_map(|a| match a {
            Action::Persist { seq, .. } => Some(*seq),
            _ => None,
        })
        .unwrap();
    let replies_before = t.core.stats().lock_replies;
    rebuild(&mut t, &store);
    assert_eq!(t.core.stats().lock_replies, replies_before);
    assert_eq!(t.lock("a", "f", 20, 10, X), Outcome::Granted);
    let seq_after = t
        .last
        .iter()
        .find_map(|a| match a {
            Action::Persist { seq, .. } => Some(*seq),
            _ => None,
        })
        .unwrap();
    assert!(seq_after > seq_before, "{seq_after} after {seq_before}");
}

#[test]
fn connections_and_their_pending_disconnects_survive() {
    let mut t = T::new();
    t.event(Event::ClientConnected {
        client: ClientId::from("smb1"),
        adapter: "smb".into(),
        ttl: ms(5_000),
    });
    assert_eq!(t.lock("smb1/o", "f", 0, 10, X), Outcome::Granted);
    t.event(Event::ClientDisconnected {
        client: ClientId::from("smb1"),
    });
    let store = store_of(&t);
    rebuild(&mut t, &store);
    assert_eq!(t.core.poll_timeout(), Some(at(5_000)));
    let actions = t.advance(ms(5_000));
    assert!(
        actions.iter().any(|a| matches!(a, Action::Released { .. })),
        "the TTL still runs out: {actions:?}"
    );
    assert!(t.held("f").is_empty());
}
