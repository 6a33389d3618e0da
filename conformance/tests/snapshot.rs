//! Snapshots: a trace that starts from a snapshot taken after any step of a scenario, written out as
//! JSON lines (or postcard) and read back, replays the rest of the scenario with exactly the actions
//! the uninterrupted run gave — waiter ids, persist sequence numbers, timers, grace and all. This is
//! what lets `brlock replay` reproduce a trace captured from a live brlockd (`GET /events`).

use std::path::Path;

use brlock_conformance::{decode_trace, encode_trace, parse_jsonl, write_jsonl};
use brlock_core::{Replay, Trace, TraceHeader};

fn scenarios() -> Vec<(String, Trace)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".jsonl") && !name.ends_with(".expected.jsonl") {
            let text = std::fs::read_to_string(&path).unwrap();
            found.push((name, parse_jsonl(&text).unwrap()));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        found.len() >= 10,
        "scenarios not found in {}",
        dir.display()
    );
    found
}

#[test]
fn a_trace_from_a_snapshot_after_any_step_replays_the_rest_identically() {
    let mut cuts = 0;
    for (name, trace) in scenarios() {
        let (_, outputs) = trace.run().unwrap();
        for cut in 0..=trace.steps.len() {
            let mut replay = Replay::start(&trace.header).unwrap();
            for step in &trace.steps[..cut] {
                replay.step(step).unwrap();
            }
            let rest = Trace {
                header: TraceHeader::from_snapshot(&replay.core),
                steps: trace.steps[cut..].to_vec(),
            };
            for (form, read) in [
                ("json lines", parse_jsonl(&write_jsonl(&rest)).unwrap()),
                ("postcard", decode_trace(&encode_trace(&rest)).unwrap()),
            ] {
                assert_eq!(read, rest, "{name} cut after step {cut}: {form} round trip");
                let (initial, continued) = read.run().unwrap();
                assert!(initial.is_empty());
                assert_eq!(
                    continued,
                    outputs[cut..],
                    "{name}: from a snapshot after step {cut} ({form})"
                );
            }
            cuts += 1;
        }
    }
    assert!(cuts > 100, "only {cuts} cuts");
}

#[test]
fn a_damaged_snapshot_is_refused_not_replayed() {
    let (_, trace) = scenarios()
        .into_iter()
        .find(|(name, _)| name == "deadlock.jsonl")
        .unwrap();
    let mut replay = Replay::start(&trace.header).unwrap();
    for step in &trace.steps[..2] {
        replay.step(step).unwrap();
    }
    let text = write_jsonl(&Trace {
        header: TraceHeader::from_snapshot(&replay.core),
        steps: Vec::new(),
    });
    let header = text.lines().next().unwrap();
    assert!(header.contains("\"total_locks\":"), "{header}");
    for (what, damaged) in [
        (
            "a count",
            header.replace("\"total_locks\":", "\"total_locks\":7"),
        ),
        ("the time", header.replacen("\"start\":", "\"start\":9", 1)),
        (
            "a restore beside it",
            header.replace("\"restore\":null", "\"restore\":[]"),
        ),
    ] {
        let error = match parse_jsonl(&damaged) {
            Err(e) => e.to_string(),
            Ok(trace) => Replay::start(&trace.header)
                .err()
                .unwrap_or_else(|| panic!("{what}: damaged snapshot replayed"))
                .to_string(),
        };
        assert!(!error.is_empty(), "{what}");
    }
}
