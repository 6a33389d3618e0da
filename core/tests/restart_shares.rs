//! Share reservations across a restart: persisted like locks, restored into grace, reclaimed only
//! by their owner with the modes they had; and the grace period a host that kept nothing opens.
mod common;
use ShareMode::{Both, None as NoMode, Read, Write};
use brlock_core::*;
use common::*;

fn share_record(owner: &str, file: &str, access: ShareMode, deny: ShareMode) -> ShareRecord {
    let (client, owner) = who(owner);
    ShareRecord {
        file: FileId::from(file),
        client,
        owner,
        access,
        deny,
    }
}

fn lock_record(owner: &str, file: &str, offset: u64, length: u64) -> LockRecord {
    let (client, owner) = who(owner);
    LockRecord {
        file: FileId::from(file),
        client,
        owner,
        kind: LockKind::Exclusive,
        range: Range::new(offset, length),
    }
}

fn share_reclaim(
    t: &mut T,
    owner: &str,
    file: &str,
    access: ShareMode,
    deny: ShareMode,
) -> Outcome {
    let (client, owner) = who(owner);
    t.event(Event::Share {
        request: RequestId(900),
        client,
        owner,
        file: FileId::from(file),
        access,
        deny,
        reclaim: true,
    });
    t.reply()
}

fn restored(locks: Vec<LockRecord>, shares: Vec<ShareRecord>) -> T {
    let (core, _) =
        Core::restore_with_shares(Config::default(), Instant::ZERO, 2, locks, shares).unwrap();
    let t = T::from_core(core);
    t.core.check_invariants().unwrap();
    t
}

fn persisted(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Persist {
                op: PersistOp::PutShare(r),
                ..
            } => Some(format!("put {} {:?}/{:?}", r.owner, r.access, r.deny)),
            Action::Persist {
                op: PersistOp::DeleteShare(r),
                ..
            } => Some(format!("delete {}", r.owner)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_share_is_persisted_before_its_reply_and_unshare_deletes_it() {
    let mut t = T::new();
    assert_eq!(t.share("h1/p", "f", Read, Write), Outcome::Granted);
    assert_eq!(persisted(&t.last), ["put p Read/Write"]);
    let persist_at = t
        .last
        .iter()
        .position(|a| matches!(a, Action::Persist { .. }));
    let reply_at = t
        .last
        .iter()
        .position(|a| matches!(a, Action::Reply { .. }));
    assert!(
        persist_at < reply_at,
        "the share's persist must come before its reply: {:?}",
        t.last
    );
    // Replacing it persists the new modes; a refused one persists nothing.
    assert_eq!(t.share("h1/p", "f", Both, NoMode), Outcome::Granted);
    assert_eq!(persisted(&t.last), ["put p Both/None"]);
    assert!(matches!(
        t.share("h2/q", "f", Read, Read),
        Outcome::ShareDenied { .. }
    ));
    assert!(persisted(&t.last).is_empty());
    assert_eq!(t.unshare("h1/p", "f"), Outcome::Granted);
    assert_eq!(persisted(&t.last), ["delete p"]);
    assert_eq!(t.unshare("h1/p", "f"), Outcome::Granted);
    assert!(persisted(&t.last).is_empty(), "nothing to delete twice");
}

#[test]
fn free_all_deletes_the_clients_stored_shares() {
    let mut t = T::new();
    assert_eq!(t.share("h1/p", "f", Read, NoMode), Outcome::Granted);
    assert_eq!(t.share("h1/p", "g", Read, NoMode), Outcome::Granted);
    let actions = t.event(Event::FreeAll {
        client: ClientId::from("h1"),
    });
    assert_eq!(persisted(&actions), ["delete p", "delete p"]);
    assert!(t.core.share_records().is_empty());
}

#[test]
fn restored_shares_are_held_in_grace_and_only_their_owner_reclaims_them() {
    let mut t = restored(vec![], vec![share_record("h1/p", "f", Read, Write)]);
    assert_eq!(
        t.core.share_records(),
        [share_record("h1/p", "f", Read, Write)]
    );
    // A conflicting SHARE waits for grace to end, like any new request.
    assert_eq!(t.share("h2/q", "f", Write, NoMode), Outcome::DeniedGrace);
    // A share nobody held, or held with other modes, is not reclaimable.
    assert_eq!(
        share_reclaim(&mut t, "h2/q", "f", Write, NoMode),
        Outcome::NotReclaimable
    );
    assert_eq!(
        share_reclaim(&mut t, "h1/p", "f", Read, NoMode),
        Outcome::NotReclaimable
    );
    assert_eq!(
        share_reclaim(&mut t, "h1/p", "g", Read, Write),
        Outcome::NotReclaimable
    );
    // The owner's reclaim is granted; it was the last thing to reclaim, so grace ends.
    assert_eq!(
        share_reclaim(&mut t, "h1/p", "f", Read, Write),
        Outcome::Granted
    );
    assert!(
        t.core.grace().is_none(),
        "everything reclaimed: grace ends early"
    );
    assert!(matches!(
        t.share("h2/q", "f", Write, NoMode),
        Outcome::ShareDenied { .. }
    ));
    assert_eq!(
        t.core.share_records(),
        [share_record("h1/p", "f", Read, Write)]
    );
}

#[test]
fn grace_waits_for_shares_as_for_locks_and_releases_unreclaimed_ones_at_its_end() {
    let mut t = restored(
        vec![lock_record("h1/p", "f", 0, 10)],
        vec![
            share_record("h1/p", "f", Read, Write),
            share_record("h2/q", "g", Both, Both),
        ],
    );
    assert_eq!(t.core.grace().unwrap().expected, 2);
    assert_eq!(t.reclaim("h1/p", "f", 0, 10, X), Outcome::Granted);
    assert_eq!(
        t.core.grace().unwrap().pending,
        [ClientId::from("h1"), ClientId::from("h2")],
        "h1 still has its share to reclaim"
    );
    assert_eq!(
        share_reclaim(&mut t, "h1/p", "f", Read, Write),
        Outcome::Granted
    );
    assert_eq!(t.core.grace().unwrap().pending, [ClientId::from("h2")]);
    let actions = t.advance(ms(90_000));
    assert!(t.core.grace().is_none());
    assert_eq!(
        persisted(&actions),
        ["delete q"],
        "the unreclaimed share goes"
    );
    assert_eq!(t.share("h3/r", "g", Write, NoMode), Outcome::Granted);
    t.core.check_invariants().unwrap();
}

#[test]
fn unsharing_a_restored_share_in_grace_stops_the_wait_for_it() {
    let config = Config {
        unlock_in_grace: true,
        ..Config::default()
    };
    let (core, _) = Core::restore_with_shares(
        config,
        Instant::ZERO,
        2,
        vec![],
        vec![share_record("h1/p", "f", Read, Write)],
    )
    .unwrap();
    let mut t = T::from_core(core);
    assert_eq!(t.unshare("h1/p", "f"), Outcome::Granted);
    assert_eq!(persisted(&t.last), ["delete p"]);
    assert!(t.core.grace().is_none(), "nothing left to wait for");
    t.core.check_invariants().unwrap();
}

#[test]
fn a_core_that_kept_nothing_opens_grace_and_takes_reclaims_unverified() {
    let mut config = Config {
        verify_reclaims: false,
        ..Config::default()
    };
    let (core, actions) = Core::open_grace(config.clone(), Instant::ZERO, 1);
    assert!(actions.is_empty());
    let mut t = T::from_core(core);
    assert_eq!(t.lock("h2/q", "f", 0, 10, X), Outcome::DeniedGrace);
    assert_eq!(t.reclaim("h1/p", "f", 0, 10, X), Outcome::Granted);
    assert_eq!(
        share_reclaim(&mut t, "h1/p", "f", Read, NoMode),
        Outcome::Granted
    );
    assert!(
        t.core.grace().is_some(),
        "nothing to wait for: grace runs to its deadline"
    );
    t.advance(ms(90_000));
    assert!(t.core.grace().is_none());
    assert_eq!(t.held("f"), ["p:X:0-9"], "what was reclaimed stays");
    assert_eq!(t.lock("h2/q", "f", 20, 10, X), Outcome::Granted);

    config.grace = Duration::ZERO;
    let (core, actions) = Core::open_grace(config, Instant::ZERO, 1);
    assert_eq!(actions, [Action::GraceEnded { released: 0 }]);
    assert!(core.grace().is_none(), "a zero grace ends at once");
}
