//! Time is the host's: an event whose `now` is earlier than one the core has already seen is handled
//! as if it came at that latest moment — no panic, no step back, nothing else changed.
mod common;
use brlock_core::*;
use common::*;

fn lock(request: u64, owner: &str, wait: bool) -> Event {
    let (client, owner) = who(owner);
    Event::Lock {
        request: RequestId(request),
        client,
        owner,
        file: FileId::from("f"),
        range: Range::new(0, 10),
        kind: X,
        wait,
        reclaim: false,
        cookie: vec![],
    }
}

#[test]
fn an_earlier_now_is_taken_as_the_latest_moment() {
    // A one-second blocking timeout: the waiter's expiry shows which moment the core used.
    let mut core = Core::new(Config {
        blocking_timeout: Some(ms(1_000)),
        ..Config::default()
    });
    core.step(at(10_000), lock(1, "a", false));
    let actions = core.step(at(3_000), lock(2, "b", true));
    assert_eq!(
        actions,
        [Action::Reply {
            request: RequestId(2),
            outcome: Outcome::Blocked {
                waiter: WaiterId(1)
            }
        }]
    );
    assert_eq!(core.now(), at(10_000), "the clock did not step back");
    assert_eq!(core.waiters(&FileId::from("f"))[0].since, at(10_000));
    assert_eq!(
        core.poll_timeout(),
        Some(at(11_000)),
        "expiry counts from 10 s"
    );
    // A tick from before the start is just an early tick.
    assert_eq!(core.step(Instant::ZERO, Event::Tick), []);
    assert_eq!(core.step(at(10_999), Event::Tick), []);
    assert!(matches!(
        core.step(at(11_000), Event::Tick)[..],
        [Action::WaiterRemoved {
            reason: WaiterRemovedReason::Expired,
            ..
        }]
    ));
}

/// Everything a host can see of a core.
fn observe(core: &Core) -> String {
    let file = FileId::from("f");
    format!(
        "now {:?} next {:?}\nheld {:?}\nqueued {:?}\npending {:?}\nrecords {:?}\nstats {:?}",
        core.now(),
        core.poll_timeout(),
        core.held_locks(&file),
        core.waiters(&file),
        core.pending_callbacks(),
        core.records(),
        core.stats()
    )
}

/// Random runs whose clock often jumps back give exactly the actions and state of a twin that is
/// handed the latest moment instead.
#[test]
fn a_run_with_earlier_nows_matches_its_twin_at_the_latest_moments() {
    let config = Config {
        blocking_timeout: Some(ms(5_000)),
        ..Config::default()
    };
    for seed in 0..200u64 {
        let mut rng = Rng(seed);
        let (mut jumpy, mut steady) = (Core::new(config.clone()), Core::new(config.clone()));
        let mut latest = 0;
        for request in 1..=60 {
            let now = if latest > 0 && rng.chance(30) {
                rng.below(latest)
            } else {
                latest + rng.below(3_000)
            };
            latest = latest.max(now);
            let owner = ["a", "b", "c"][rng.below(3) as usize];
            let event = match rng.below(6) {
                0 | 1 => lock(request, owner, rng.chance(70)),
                2 => {
                    let (client, owner) = who(owner);
                    Event::Unlock {
                        request: RequestId(request),
                        client,
                        owner,
                        file: FileId::from("f"),
                        range: Range::new(0, 10),
                    }
                }
                3 => Event::CallbackOutcome {
                    waiter: WaiterId(rng.below(8)),
                    result: [CallbackResult::Delivered, CallbackResult::Failed]
                        [rng.below(2) as usize],
                },
                4 => Event::ClientConnected {
                    client: ClientId::from(owner),
                    adapter: "smb".into(),
                    ttl: ms(rng.below(4_000)),
                },
                _ => Event::ClientDisconnected {
                    client: ClientId::from(owner),
                },
            };
            let got = jumpy.step(at(now), event.clone());
            let want = steady.step(at(latest), event);
            let context = format!("seed {seed}, request {request}, now {now} after {latest}");
            assert_eq!(got, want, "{context}");
            assert_eq!(observe(&jumpy), observe(&steady), "{context}");
            jumpy
                .check_invariants()
                .unwrap_or_else(|e| panic!("{context}: {e}"));
        }
    }
}
