//! Connections and TTL-deferred release, FREE_ALL, GRANTED callbacks (release and retry policies),
//! waiter expiry.
mod common;
use brlock_core::*;
use common::*;

fn connect(t: &mut T, client: &str, adapter: &str, ttl: Duration) -> Vec<Action> {
    t.event(Event::ClientConnected {
        client: ClientId::from(client),
        adapter: adapter.into(),
        ttl,
    })
}

fn disconnect(t: &mut T, client: &str) -> Vec<Action> {
    t.event(Event::ClientDisconnected {
        client: ClientId::from(client),
    })
}

#[test]
fn disconnect_with_ttl_zero_releases_everything_at_once() {
    let mut t = T::new();
    connect(&mut t, "smb1", "smb", ms(0));
    t.lock("smb1/p", "f", 0, 10, X);
    t.lock("other", "g", 0, 10, X);
    t.lock_wait("smb1/p", "g", 0, 10, X);
    t.share("smb1/p", "k", ShareMode::Read, ShareMode::Write);
    disconnect(&mut t, "smb1");
    assert!(t.held("f").is_empty());
    assert!(t.queue("g").is_empty());
    assert!(t.core.shares(&FileId::from("k")).is_empty());
    assert_eq!(
        t.released(),
        [("p:0+10".to_string(), ReleaseReason::Disconnect)]
    );
    assert!(t.last.iter().any(|a| matches!(
        a,
        Action::WaiterRemoved {
            reason: WaiterRemovedReason::ClientGone,
            ..
        }
    )));
}

#[test]
fn disconnect_with_a_ttl_defers_the_release_to_the_deadline() {
    let mut t = T::new();
    connect(&mut t, "c", "nfs4", ms(5_000));
    t.lock("c/o", "f", 0, 10, X);
    disconnect(&mut t, "c");
    assert_eq!(t.core.poll_timeout(), Some(at(5_000)));
    t.advance(ms(4_999));
    assert_eq!(t.held("f"), ["o:X:0-9"]);
    t.advance(ms(1));
    assert!(t.held("f").is_empty());
    assert_eq!(
        t.released(),
        [("o:0+10".to_string(), ReleaseReason::Disconnect)]
    );
    assert_eq!(t.core.poll_timeout(), None);
}

#[test]
fn a_reconnect_before_the_deadline_cancels_the_release() {
    let mut t = T::new();
    connect(&mut t, "c", "smb", ms(5_000));
    t.lock("c/o", "f", 0, 10, X);
    disconnect(&mut t, "c");
    t.advance(ms(3_000));
    connect(&mut t, "c", "smb", ms(5_000));
    t.advance(ms(10_000));
    assert_eq!(t.held("f"), ["o:X:0-9"]);
}

#[test]
fn a_release_wakes_the_waiters_of_other_clients() {
    let mut t = T::new();
    connect(&mut t, "c", "smb", ms(0));
    t.lock("c/o", "f", 0, 10, X);
    let w = waiter_of(&t.lock_wait("d", "f", 0, 10, X));
    disconnect(&mut t, "c");
    assert_eq!(t.granted(), [(w, "d".to_string())]);
}

#[test]
fn a_connection_over_its_adapters_limit_is_refused() {
    let mut config = Config::default();
    config.limits.connections_per_adapter = 2;
    config.limits.connections_by_adapter = vec![("nfs4".into(), 1)];
    let mut t = T::with(config);
    assert!(connect(&mut t, "a", "smb", ms(0)).is_empty());
    assert!(connect(&mut t, "b", "smb", ms(0)).is_empty());
    assert_eq!(
        connect(&mut t, "c", "smb", ms(0)),
        [Action::ConnectionRefused {
            client: ClientId::from("c"),
            adapter: "smb".into(),
            limit: 2
        }]
    );
    assert!(connect(&mut t, "d", "nfs4", ms(0)).is_empty());
    assert!(matches!(
        connect(&mut t, "e", "nfs4", ms(0))[..],
        [Action::ConnectionRefused { limit: 1, .. }]
    ));
    disconnect(&mut t, "a");
    assert!(
        connect(&mut t, "c", "smb", ms(0)).is_empty(),
        "room after a disconnect"
    );
    assert_eq!(
        t.core.stats().clients_per_adapter,
        [("nfs4".to_string(), 1), ("smb".to_string(), 2)]
    );
}

#[test]
fn free_all_releases_every_lock_waiter_and_share_of_the_client() {
    let mut t = T::new();
    t.lock("h/p1", "f", 0, 10, X);
    t.lock("h/p2", "g", 0, 10, S);
    t.lock("x", "k", 0, 10, X);
    t.lock_wait("h/p1", "k", 0, 10, X);
    let w = waiter_of(&t.lock_wait("y", "f", 0, 10, X));
    t.event(Event::FreeAll {
        client: ClientId::from("h"),
    });
    assert!(t.held("g").is_empty());
    assert_eq!(t.held("f"), ["y:X:0-9"]);
    assert_eq!(t.granted(), [(w, "y".to_string())]);
    let reasons: Vec<_> = t.released().into_iter().map(|(_, r)| r).collect();
    assert_eq!(reasons, [ReleaseReason::FreeAll, ReleaseReason::FreeAll]);
    assert_eq!(t.held("k"), ["x:X:0-9"], "other clients keep theirs");
}

/// A host forgets a client (brlockd unmonitors it) exactly when the core stops tracking it: nothing
/// held, queued or reserved, whichever way the last thing went.
#[test]
fn a_client_is_known_while_it_holds_waits_for_or_reserves_something() {
    let mut t = T::new();
    let known = |t: &T, c: &str| t.core.knows_client(&ClientId::from(c));
    t.lock("h/p", "f", 0, 10, X);
    assert!(known(&t, "h"));
    t.unlock("h/p", "f", 0, 10);
    assert!(!known(&t, "h"), "unlocked everything");

    t.lock("x", "f", 0, 10, X);
    t.lock("h/p", "f", 0, 10, X);
    assert!(!known(&t, "h"), "a refused lock leaves nothing behind");
    t.lock_wait("h/p", "f", 0, 10, X);
    assert!(known(&t, "h"), "a waiter");
    t.cancel("h/p", "f", 0, 10, X);
    assert!(!known(&t, "h"), "cancelled its only waiter");

    t.share("h/p", "k", ShareMode::Read, ShareMode::None);
    assert!(known(&t, "h"), "a share reservation");
    t.event(Event::FreeAll {
        client: ClientId::from("h"),
    });
    assert!(!known(&t, "h"), "freed");
    assert!(known(&t, "x"), "other clients stay");
}

fn granted_one(t: &mut T) -> WaiterId {
    t.lock("a", "f", 0, 10, X);
    let w = waiter_of(&t.lock_wait("b", "f", 0, 10, X));
    t.lock_wait("c", "f", 0, 10, X);
    t.unlock("a", "f", 0, 10);
    assert_eq!(t.granted(), [(w, "b".to_string())]);
    w
}

#[test]
fn a_lock_whose_callback_is_unanswered_counts_as_held() {
    let mut t = T::new();
    granted_one(&mut t);
    assert_eq!(t.held("f"), ["b:X:0-9"]);
    assert!(matches!(t.lock("z", "f", 0, 1, S), Outcome::Denied { .. }));
}

#[test]
fn a_delivered_callback_keeps_the_lock() {
    let mut t = T::new();
    let w = granted_one(&mut t);
    t.callback(w, CallbackResult::Delivered);
    assert_eq!(t.held("f"), ["b:X:0-9"]);
    assert!(t.core.pending_callbacks().is_empty());
}

#[test]
fn release_policy_releases_on_failure_and_grants_the_next_waiter() {
    let mut t = T::with(Config::ganesha());
    let w = granted_one(&mut t);
    t.callback(w, CallbackResult::Failed);
    assert_eq!(
        t.released(),
        [("b:0+10".to_string(), ReleaseReason::CallbackFailed)]
    );
    assert_eq!(t.held("f"), ["c:X:0-9"]);
}

#[test]
fn retry_policy_resends_every_interval_then_releases_when_attempts_run_out() {
    let mut t = T::with(Config {
        callback: CallbackPolicy::Retry {
            interval: ms(10_000),
            attempts: 3,
        },
        callback_deadline: None,
        ..Config::default()
    });
    let w = granted_one(&mut t);
    t.callback(w, CallbackResult::Failed);
    assert!(t.released().is_empty());
    assert_eq!(t.core.poll_timeout(), Some(at(10_000)));
    t.advance(ms(10_000));
    assert!(matches!(
        t.last[..],
        [Action::SendGranted { attempt: 2, .. }]
    ));
    t.callback(w, CallbackResult::Failed);
    t.advance(ms(10_000));
    assert!(matches!(
        t.last[..],
        [Action::SendGranted { attempt: 3, .. }]
    ));
    t.callback(w, CallbackResult::Failed);
    assert_eq!(
        t.released(),
        [("b:0+10".to_string(), ReleaseReason::CallbackFailed)]
    );
    assert_eq!(t.held("f"), ["c:X:0-9"]);
}

#[test]
fn retry_policy_releases_at_once_when_the_client_refuses() {
    let mut t = T::new();
    let w = granted_one(&mut t);
    t.callback(w, CallbackResult::Refused);
    assert_eq!(t.held("f"), ["c:X:0-9"]);
}

#[test]
fn a_stale_callback_outcome_is_ignored() {
    let mut t = T::new();
    let w = granted_one(&mut t);
    t.callback(w, CallbackResult::Delivered);
    t.callback(w, CallbackResult::Refused);
    assert_eq!(t.held("f"), ["b:X:0-9"]);
    t.callback(WaiterId(999), CallbackResult::Failed);
    assert!(t.last.is_empty());
}

#[test]
fn an_outcome_while_a_retry_is_scheduled_is_ignored() {
    let mut t = T::new();
    let w = granted_one(&mut t);
    t.callback(w, CallbackResult::Failed);
    t.callback(w, CallbackResult::Refused);
    assert_eq!(
        t.held("f"),
        ["b:X:0-9"],
        "no send is outstanding, so nothing is answered"
    );
}

#[test]
fn a_waiter_not_granted_within_the_blocking_timeout_expires() {
    let mut t = T::with(Config {
        blocking_timeout: Some(ms(30_000)),
        ..Config::default()
    });
    t.lock("a", "f", 0, 10, X);
    let w = waiter_of(&t.lock_wait("b", "f", 0, 10, X));
    t.advance(ms(29_999));
    assert_eq!(t.queue("f"), ["b"]);
    t.advance(ms(1));
    assert!(
        matches!(&t.last[..], [Action::WaiterRemoved { waiter, reason: WaiterRemovedReason::Expired, .. }] if *waiter == w)
    );
    assert!(t.queue("f").is_empty());
}

#[test]
fn a_granted_waiter_does_not_expire() {
    let mut t = T::with(Config {
        blocking_timeout: Some(ms(30_000)),
        callback_deadline: None,
        ..Config::default()
    });
    t.lock("a", "f", 0, 10, X);
    t.lock_wait("b", "f", 0, 10, X);
    t.unlock("a", "f", 0, 10);
    assert_eq!(t.core.poll_timeout(), None);
    t.advance(ms(60_000));
    assert_eq!(t.held("f"), ["b:X:0-9"]);
}

#[test]
fn an_early_or_repeated_tick_does_nothing() {
    let mut t = T::with(Config {
        blocking_timeout: Some(ms(30_000)),
        ..Config::default()
    });
    t.lock("a", "f", 0, 10, X);
    t.lock_wait("b", "f", 0, 10, X);
    assert!(t.advance(ms(10)).is_empty());
    assert!(t.advance(ms(0)).is_empty());
    assert_eq!(t.queue("f"), ["b"]);
}

#[test]
fn timers_due_before_an_event_run_before_it() {
    let mut t = T::with(Config {
        blocking_timeout: Some(ms(1_000)),
        ..Config::default()
    });
    t.lock("a", "f", 0, 10, X);
    t.lock_wait("b", "f", 0, 10, X);
    t.now += ms(5_000);
    // No tick came; the next request still sees b's waiter gone.
    t.lock_wait("c", "f", 0, 10, X);
    assert_eq!(t.queue("f"), ["c"]);
}

#[test]
fn a_grant_confirmed_after_its_lock_is_gone_leaves_nothing_behind() {
    // Found by the simulation (seed 1796050460135375): the owner unlocks its granted range before
    // the GRANTED callback is confirmed; the confirmation must not leave the owner behind.
    let mut t = T::new();
    let w = granted_one(&mut t);
    t.unlock("b", "f", 0, 10);
    t.callback(w, CallbackResult::Delivered);
    assert!(
        !t.core.knows_client(&ClientId::from("b")),
        "b holds nothing"
    );
    assert_eq!(t.held("f"), ["c:X:0-9"]);
}

#[test]
fn an_unconfirmed_grant_is_undone_at_the_callback_deadline() {
    // The host never reports how the send ended: the deadline alone gives the range back.
    let mut t = T::new();
    granted_one(&mut t);
    t.advance(ms(9_999));
    assert_eq!(t.held("f"), ["b:X:0-9"]);
    t.advance(ms(1));
    assert_eq!(
        t.released(),
        [("b:0+10".to_string(), ReleaseReason::CallbackFailed)]
    );
    assert_eq!(t.held("f"), ["c:X:0-9"], "the next waiter is granted");
    assert_eq!(t.core.stats().callbacks_unconfirmed, 1);
}

#[test]
fn by_default_a_grant_whose_sends_all_time_out_is_undone_within_10_s() {
    // brlockd gives each send 5 s; the schedule resends 2 s after a failure.
    let mut t = T::new();
    let w = granted_one(&mut t);
    t.advance(ms(5_000));
    t.callback(w, CallbackResult::Failed);
    t.advance(ms(2_000));
    assert!(matches!(
        t.last[..],
        [Action::SendGranted { attempt: 2, .. }]
    ));
    t.advance(ms(2_999));
    assert_eq!(t.held("f"), ["b:X:0-9"]);
    t.advance(ms(1));
    assert_eq!(
        t.released(),
        [("b:0+10".to_string(), ReleaseReason::CallbackFailed)]
    );
    assert_eq!(
        t.core.poll_timeout(),
        Some(at(20_000)),
        "c's grant has its own deadline"
    );
}

#[test]
fn by_default_sends_that_fail_at_once_give_the_range_back_after_the_third() {
    let mut t = T::new();
    let w = granted_one(&mut t);
    for attempt in 2..=3 {
        t.callback(w, CallbackResult::Failed);
        t.advance(ms(2_000));
        assert!(
            matches!(t.last[..], [Action::SendGranted { attempt: a, .. }] if a == attempt),
            "{:?}",
            t.last
        );
    }
    t.callback(w, CallbackResult::Failed);
    assert_eq!(t.now, at(4_000));
    assert_eq!(t.held("f"), ["c:X:0-9"]);
}

#[test]
fn a_confirmed_grant_outlives_the_callback_deadline() {
    let mut t = T::new();
    let w = granted_one(&mut t);
    t.advance(ms(9_000));
    t.callback(w, CallbackResult::Delivered);
    assert_eq!(t.core.poll_timeout(), None, "its deadline went with it");
    t.advance(ms(60_000));
    assert_eq!(t.held("f"), ["b:X:0-9"]);
}

#[test]
fn the_linux_profile_resends_every_10_s_with_no_deadline() {
    let mut t = T::with(Config::linux());
    let w = granted_one(&mut t);
    for attempt in 2..=6 {
        t.callback(w, CallbackResult::Failed);
        t.advance(ms(10_000));
        assert!(matches!(t.last[..], [Action::SendGranted { attempt: a, .. }] if a == attempt));
    }
    assert_eq!(t.held("f"), ["b:X:0-9"], "still b's after 50 s");
    t.callback(w, CallbackResult::Failed);
    assert_eq!(t.held("f"), ["c:X:0-9"]);
}

fn callback_cookie(actions: &[Action]) -> [u8; COOKIE_LEN] {
    actions
        .iter()
        .find_map(|a| match a {
            Action::SendGranted {
                callback_cookie, ..
            } => Some(*callback_cookie),
            _ => None,
        })
        .expect("a SendGranted")
}

fn keyed(key: &[u8; 16]) -> T {
    T::with(Config {
        cookie_key: CookieKey::new(*key),
        ..Config::default()
    })
}

#[test]
fn only_the_cookie_a_grant_was_sent_with_names_it() {
    let mut t = keyed(b"server-secret-16");
    let w = granted_one(&mut t);
    let cookie = callback_cookie(&t.last);
    assert_eq!(t.core.waiter_of_cookie(&cookie), Some(w));
    // What an attacker could try: the old "brlk" + number, the cookie this number would have under
    // another key, and the real cookie with one bit changed.
    let mut old_style = b"brlk".to_vec();
    old_style.extend_from_slice(&w.0.to_be_bytes());
    assert_eq!(t.core.waiter_of_cookie(&old_style), None);
    let other_key = CookieKey::new(*b"guessed-secret!!").cookie(w);
    assert_eq!(t.core.waiter_of_cookie(&other_key), None);
    let mut flipped = cookie;
    flipped[3] ^= 0x10;
    assert_eq!(t.core.waiter_of_cookie(&flipped), None);
    // A retry carries the same cookie; once confirmed, the cookie names nothing.
    t.callback(w, CallbackResult::Failed);
    t.advance(ms(2_000));
    assert_eq!(callback_cookie(&t.last), cookie);
    t.callback(w, CallbackResult::Delivered);
    assert_eq!(t.core.waiter_of_cookie(&cookie), None);
}

#[test]
fn a_queued_waiters_cookie_names_nothing_until_it_is_granted() {
    let mut t = keyed(b"server-secret-16");
    t.lock("a", "f", 0, 10, X);
    let w = waiter_of(&t.lock_wait("b", "f", 0, 10, X));
    let cookie = CookieKey::new(*b"server-secret-16").cookie(w);
    assert_eq!(t.core.waiter_of_cookie(&cookie), None);
    t.unlock("a", "f", 0, 10);
    assert_eq!(callback_cookie(&t.last), cookie);
    assert_eq!(t.core.waiter_of_cookie(&cookie), Some(w));
}

#[test]
fn the_same_key_gives_the_same_actions_and_another_key_other_cookies() {
    let run = |key: &[u8; 16]| {
        let mut t = keyed(key);
        granted_one(&mut t);
        t.last.clone()
    };
    let (a, b, other) = (
        run(b"0123456789abcdef"),
        run(b"0123456789abcdef"),
        run(b"fedcba9876543210"),
    );
    assert_eq!(a, b);
    assert_ne!(callback_cookie(&a), callback_cookie(&other));
    let without_cookie = |actions: &[Action]| -> Vec<Action> {
        actions
            .iter()
            .cloned()
            .map(|mut a| {
                if let Action::SendGranted {
                    callback_cookie, ..
                } = &mut a
                {
                    *callback_cookie = [0; COOKIE_LEN];
                }
                a
            })
            .collect()
    };
    assert_eq!(
        without_cookie(&a),
        without_cookie(&other),
        "the key changes nothing else"
    );
}
