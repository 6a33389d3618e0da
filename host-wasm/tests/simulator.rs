//! The Simulator's Rust API: examples replay to the outcomes their comments promise, stepping back and
//! forth gives the same state, and a trace survives a download and a reload.

use brlock_core::*;
use brlock_wasm::{Simulator, bindings::js_json, examples::EXAMPLES};
use serde_json::{Value, json};

/// Everything the page draws, as one comparable value.
fn state(sim: &Simulator) -> Value {
    let core = sim.core();
    let files: Vec<Value> = sim
        .files_seen()
        .iter()
        .map(|f| json!({ "file": f, "held": core.held_locks(f), "waiters": core.waiters(f), "shares": core.shares(f) }))
        .collect();
    json!({
        "files": files,
        "graph": core.wait_for_graph(),
        "grace": core.grace(),
        "stats": core.stats(),
        "now": core.now(),
        "timeout": core.poll_timeout(),
        "callbacks": core.pending_callbacks(),
    })
}

/// The reply of step `index` (from 1), as the outcome's name: "granted", "denied", "deadlock", ...
fn outcome(sim: &Simulator, index: usize) -> String {
    let actions = sim.actions(index - 1).expect("a step");
    let reply = actions.iter().find_map(|a| match a {
        Action::Reply { outcome, .. } => Some(outcome),
        _ => None,
    });
    match serde_json::to_value(reply.expect("a reply")).unwrap() {
        Value::String(name) => name,
        Value::Object(map) => map.keys().next().unwrap().clone(),
        other => panic!("{other}"),
    }
}

fn held(sim: &Simulator, file: &str) -> Vec<String> {
    sim.core()
        .held_locks(&FileId::from(file))
        .iter()
        .map(|l| {
            format!(
                "{}:{}:{}+{}",
                l.owner,
                if l.kind == LockKind::Shared { "S" } else { "X" },
                l.range.offset,
                l.range.length
            )
        })
        .collect()
}

#[test]
fn every_example_steps_forward_and_back_to_the_same_states() {
    for example in EXAMPLES {
        let mut sim =
            Simulator::example(example.name).unwrap_or_else(|e| panic!("{}: {e}", example.name));
        assert!(
            sim.len() >= 5,
            "{} is a story, not a single step",
            example.name
        );
        assert!(
            !sim.description().is_empty(),
            "{} explains itself",
            example.name
        );
        let mut forward = vec![state(&sim)];
        for position in 1..=sim.len() {
            sim.seek(position).unwrap();
            assert!(
                !sim.note(position - 1).is_empty(),
                "{} step {position} has a note",
                example.name
            );
            forward.push(state(&sim));
        }
        for position in (0..=sim.len()).rev() {
            sim.seek(position).unwrap();
            assert_eq!(
                state(&sim),
                forward[position],
                "{} at step {position}, stepping back",
                example.name
            );
        }
        // Jumps in both directions, across checkpoints.
        for &position in &[sim.len(), 1, sim.len() / 2, 0, sim.len()] {
            sim.seek(position).unwrap();
            assert_eq!(
                state(&sim),
                forward[position],
                "{} jumping to {position}",
                example.name
            );
        }
    }
}

#[test]
fn the_examples_show_what_their_titles_promise() {
    let at_end = |name: &str| {
        let mut sim = Simulator::example(name).unwrap();
        sim.seek(sim.len()).unwrap();
        sim
    };
    let split = at_end("split");
    assert_eq!(outcome(&split, 4), "denied");
    assert_eq!(
        held(&split, "report.txt"),
        [
            "alice:X:0+400",
            "bob:S:400+200",
            "carol:S:450+100",
            "alice:S:600+200",
            "alice:X:800+200"
        ]
    );

    let upgrade = at_end("upgrade");
    assert_eq!(outcome(&upgrade, 4), "blocked");
    assert_eq!(held(&upgrade, "db"), ["alice:X:0+1000"]);

    let deadlock = at_end("deadlock");
    assert_eq!(outcome(&deadlock, 6), "deadlock");
    assert_eq!(held(&deadlock, "index"), ["bob:X:0+100"]);

    let fifo = at_end("fifo");
    assert_eq!(
        outcome(&fifo, 3),
        "blocked",
        "a compatible reader does not overtake a queued writer"
    );
    assert_eq!(
        outcome(&fifo, 4),
        "granted",
        "a non-blocking reader is judged against held locks only"
    );
    assert_eq!(held(&fifo, "queue.dat"), ["carol:S:0+1000"]);

    let grace = at_end("grace");
    assert_eq!(outcome(&grace, 1), "denied_grace");
    assert_eq!(outcome(&grace, 2), "granted");
    assert_eq!(outcome(&grace, 3), "not_reclaimable");
    assert!(
        grace
            .actions(5)
            .unwrap()
            .iter()
            .any(|a| matches!(a, Action::GraceEnded { released: 2 }))
    );
    assert_eq!(
        held(&grace, "shared.db"),
        ["alice:X:0+100", "carol:X:500+100"]
    );
    assert!(held(&grace, "build.log").is_empty());

    let disconnect = at_end("disconnect");
    assert!(disconnect.actions(5).unwrap().iter().any(|a| matches!(
        a,
        Action::Released {
            reason: ReleaseReason::Disconnect,
            ..
        }
    )));
    assert_eq!(held(&disconnect, "deck.pptx"), ["bob:X:4096+8192"]);

    let shares = at_end("shares");
    assert_eq!(outcome(&shares, 2), "share_denied", "alice denies write");
    assert_eq!(outcome(&shares, 4), "share_denied", "alice and carol read");
    assert_eq!(outcome(&shares, 6), "granted", "once alice has gone");
    let file = FileId::from("report.docx");
    let now: Vec<(String, ShareMode, ShareMode)> = shares
        .core()
        .shares(&file)
        .into_iter()
        .map(|s| (s.owner.to_string(), s.access, s.deny))
        .collect();
    assert_eq!(
        now,
        [
            ("bob".to_string(), ShareMode::Write, ShareMode::None),
            ("carol".to_string(), ShareMode::Read, ShareMode::None)
        ]
    );
    assert_eq!(held(&shares, "report.docx"), ["bob:X:0+4096"]);
}

#[test]
fn a_downloaded_trace_reloads_to_the_same_steps_and_comments() {
    for example in EXAMPLES {
        let sim = Simulator::example(example.name).unwrap();
        let text = sim.to_jsonl();
        let again = Simulator::from_jsonl(&text).unwrap();
        assert_eq!(again.header(), sim.header());
        assert_eq!(again.steps(), sim.steps());
        assert_eq!(again.description(), sim.description());
        assert_eq!(
            again.to_jsonl(),
            text,
            "{}: writing is stable",
            example.name
        );
    }
}

fn lock(request: u64, owner: &str, offset: u64, length: u64, kind: LockKind, wait: bool) -> Event {
    Event::Lock {
        request: RequestId(request),
        client: ClientId::from(owner),
        owner: OwnerId::from(owner),
        file: FileId::from("f"),
        range: Range::new(offset, length),
        kind,
        wait,
        reclaim: false,
        cookie: vec![],
    }
}

#[test]
fn a_new_event_while_looking_at_the_past_replaces_the_later_steps() {
    let mut sim = Simulator::from_profile("linux").unwrap();
    sim.step(
        Instant::from_millis(0),
        lock(1, "a", 0, 10, LockKind::Exclusive, false),
    )
    .unwrap();
    sim.step(
        Instant::from_millis(1),
        lock(2, "b", 0, 10, LockKind::Exclusive, false),
    )
    .unwrap();
    assert_eq!(outcome(&sim, 2), "denied");
    sim.seek(1).unwrap();
    sim.step(
        Instant::from_millis(1),
        lock(3, "b", 20, 10, LockKind::Exclusive, false),
    )
    .unwrap();
    assert_eq!(sim.len(), 2);
    assert_eq!(outcome(&sim, 2), "granted");
    assert_eq!(held(&sim, "f"), ["a:X:0+10", "b:X:20+10"]);
    let reloaded = Simulator::from_jsonl(&sim.to_jsonl()).unwrap();
    assert_eq!(reloaded.header().config, Config::linux());
}

#[test]
fn many_steps_seek_back_across_checkpoints() {
    let mut sim = Simulator::new(Config::default());
    for i in 0..100 {
        sim.step(
            Instant::from_millis(i),
            lock(i + 1, "a", i * 10, 5, LockKind::Shared, false),
        )
        .unwrap();
    }
    let end = state(&sim);
    sim.seek(33).unwrap();
    assert_eq!(sim.core().held_locks(&FileId::from("f")).len(), 33);
    sim.seek(100).unwrap();
    assert_eq!(state(&sim), end);
}

#[test]
fn refusals_are_errors_with_a_message_not_panics() {
    let mut sim = Simulator::new(Config::default());
    sim.step(Instant::from_millis(10), Event::Tick).unwrap();
    let late = sim.step(Instant::from_millis(5), Event::Tick).unwrap_err();
    assert_eq!(late.message, "time goes backwards: now 5 after 10");
    assert_eq!(sim.len(), 1, "a refused event is not recorded");
    assert!(sim.seek(2).unwrap_err().message.contains("has 1 steps"));
    assert!(
        Simulator::from_profile("nope")
            .unwrap_err()
            .message
            .contains("known: brlock, linux")
    );
    assert!(Simulator::example("nope").is_err());

    let header = r#"{"brlock_trace":1}"#;
    assert!(
        Simulator::from_jsonl("")
            .unwrap_err()
            .message
            .contains("empty trace")
    );
    assert!(
        Simulator::from_jsonl(r#"{"brlock_trace":2}"#)
            .unwrap_err()
            .message
            .contains("unsupported trace version 2")
    );
    let bad_event = format!("{header}\n# a comment\n{{\"now\":0,\"event\":\"jump\"}}\n");
    assert!(
        Simulator::from_jsonl(&bad_event)
            .unwrap_err()
            .message
            .starts_with("line 3: unknown variant `jump`")
    );
    let backwards =
        format!("{header}\n{{\"now\":5,\"event\":\"tick\"}}\n{{\"now\":1,\"event\":\"tick\"}}\n");
    assert_eq!(
        Simulator::from_jsonl(&backwards).unwrap_err().message,
        "line 3: time goes backwards: now 1 after 5"
    );
}

/// JS numbers hold integers exactly up to 2^53 − 1; above that the page gets decimal strings, so an
/// offset of 2^53 + 1 is not rounded to 2^53 on its way out of the core.
#[test]
fn integers_beyond_2_pow_53_cross_to_js_as_decimal_strings() {
    assert_eq!(
        js_json(&Range::new((1 << 53) + 1, 1)).unwrap(),
        r#"{"offset":"9007199254740993","length":1}"#
    );
    assert_eq!(
        js_json(&[Range::new((1 << 53) - 1, u64::MAX)]).unwrap(),
        r#"[{"offset":9007199254740991,"length":"18446744073709551615"}]"#
    );
    assert_eq!(
        js_json(&[i64::MIN, -1]).unwrap(),
        r#"["-9223372036854775808",-1]"#
    );
    // A map key is already a string, and a string is written as it is.
    let keyed = std::collections::BTreeMap::from([(u64::MAX, "18446744073709551615")]);
    assert_eq!(
        js_json(&keyed).unwrap(),
        r#"{"18446744073709551615":"18446744073709551615"}"#
    );
    let mut sim = Simulator::new(Config::default());
    sim.step(
        Instant::ZERO,
        lock(1, "a", (1 << 53) + 1, 1, LockKind::Exclusive, false),
    )
    .unwrap();
    let held = js_json(&sim.core().held_locks(&FileId::from("f"))).unwrap();
    assert!(
        held.contains(r#""range":{"offset":"9007199254740993","length":1}"#),
        "{held}"
    );
}

/// A live server's stream (what brlockd's `/events` sends): a trace header with a snapshot, then each
/// step with the actions the server's core gave. The page follows it to the same state, wherever it
/// is looking meanwhile, and a step whose actions differ from the server's is refused.
#[test]
fn following_a_live_stream_reaches_the_servers_state_and_refuses_a_divergence() {
    let server_trace = brlock_conformance::parse_jsonl(EXAMPLES[0].text).unwrap();
    let mut server = Replay::start(&server_trace.header).unwrap();
    let (before, after) = server_trace.steps.split_at(server_trace.steps.len() / 2);
    for step in before {
        server.step(step).unwrap();
    }
    let header = Trace {
        header: TraceHeader::from_snapshot(&server.core),
        steps: Vec::new(),
    };
    let mut page = Simulator::from_jsonl(&brlock_conformance::write_jsonl(&header)).unwrap();
    for (i, step) in after.iter().enumerate() {
        let actions = server.step(step).unwrap();
        if i == 1 {
            page.seek(0).unwrap(); // someone looks back while the server goes on
        }
        assert_eq!(
            page.follow(step.clone(), |a| a == actions).unwrap(),
            actions
        );
    }
    assert_eq!(page.position(), after.len());
    assert_eq!(page.core(), &server.core);

    let wrong = page.follow(
        TraceStep {
            now: server.core.now(),
            event: Event::Tick,
        },
        |a| a == [Action::GraceEnded { released: 9 }],
    );
    assert!(wrong.unwrap_err().message.contains("other actions"));
    assert_eq!(page.len(), after.len(), "the diverging step is not kept");
}
