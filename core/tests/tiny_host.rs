//! The tiny host example (`core/examples/tiny_host/`), run on its demo script with a scripted clock:
//! what it prints is what the example's docs promise, and its store follows the core after every line.
#[path = "../examples/tiny_host/commands.rs"]
mod commands;
#[path = "../examples/tiny_host/host.rs"]
mod host;

use brlock_core::{Event, Instant};
use commands::Command;
use host::TinyHost;

/// Runs `script` as the example's loop does, but in virtual time: a `sleep` jumps from one of the
/// core's timers to the next, ticking at each, as the real loop would wake.
fn run(script: &str) -> Vec<String> {
    let mut host = TinyHost::new(host::demo_config());
    let mut now = Instant::ZERO;
    let mut printed = Vec::new();
    for (i, text) in script.lines().enumerate() {
        let line_no = i as u64 + 1;
        match commands::parse(line_no, text) {
            Ok(None) => {}
            Ok(Some(Command::Event(event))) => printed.extend(host.handle(now, event)),
            Ok(Some(Command::Sleep(span))) => {
                let until = now + span;
                while let Some(at) = host.next_wakeup().filter(|&at| at <= until) {
                    now = at;
                    printed.extend(host.handle(now, Event::Tick));
                }
                now = until;
            }
            Err(e) => printed.push(format!("line {line_no}: error: {e}")),
        }
        host.check_store()
            .unwrap_or_else(|e| panic!("after line {line_no}: {e}"));
    }
    printed
}

#[test]
fn the_demo_script_prints_the_contract_in_action() {
    let printed = run(include_str!("../examples/tiny_host/demo.txt"));
    assert_eq!(
        printed,
        [
            "  store: put alice/1: data [0+100] w",
            "line 3: granted",
            "line 4: blocked, waiter 1",
            "line 5: denied, held by alice/1 ([0+100] w)",
            // The unlock's whole transaction (alice's record out, bob's in) commits before its reply
            // and before bob hears of his grant.
            "  store: delete alice/1: data [0+100] w",
            "  store: put bob/1: data [50+10] r",
            "released alice/1: data [0+100] w (Explicit)",
            "line 7: granted",
            "GRANTED to bob/1: data [50+10] r (waiter 1, send 1; answer `ok 1` or `fail 1`)",
            "line 10: blocked, waiter 2",
            "  store: delete bob/1: data [50+10] r",
            "  store: put alice/1: data [0..EOF] w",
            "released bob/1: data [50+10] r (Explicit)",
            "line 11: granted",
            "GRANTED to alice/1: data [0..EOF] w (waiter 2, send 1; answer `ok 2` or `fail 2`)",
            // `fail 2`, then the sleep: resent after 500 ms, undone at the 2 s deadline.
            "GRANTED to alice/1: data [0..EOF] w (waiter 2, send 2; answer `ok 2` or `fail 2`)",
            "  store: delete alice/1: data [0..EOF] w",
            "released alice/1: data [0..EOF] w (CallbackFailed)",
            "line 16: error: too few words",
            "line 17: granted",
        ]
    );
}

#[test]
fn bad_lines_are_answered_and_the_host_keeps_serving() {
    let printed = run("lock a/1 f 0 10 x\n\
         lock a/1 f zero 10 w\n\
         lock a f 0 10 w\n\
         lock a/1 f 0 10 w later\n\
         ok\n\
         frobnicate\n\
         # a comment, then a blank line\n\
         \n\
         lock a/1 f 0 10 w\n");
    assert_eq!(
        printed,
        [
            "line 1: error: kind is r or w",
            "line 2: error: \"zero\" is not a number",
            "line 3: error: owner is CLIENT/OWNER",
            "line 4: error: \"later\": only \"wait\" may follow the kind",
            "line 5: error: too few words",
            "line 6: error: unknown command \"frobnicate\"",
            "  store: put a/1: f [0+10] w",
            "line 9: granted",
        ]
    );
}

#[test]
fn a_client_that_confirms_keeps_its_lock_past_the_deadline() {
    let printed = run("lock a/1 f 0 10 w\n\
         lock b/1 f 0 10 w wait\n\
         unlock a/1 f 0 10\n\
         ok 1\n\
         sleep 5000\n\
         test c/1 f 0 10 r\n");
    assert_eq!(
        printed.last().map(String::as_str),
        Some("line 6: denied, held by b/1 ([0+10] w)"),
        "{printed:#?}"
    );
    assert!(
        !printed.iter().any(|l| l.contains("CallbackFailed")),
        "{printed:#?}"
    );
}
