//! The scenario files: `scenarios/NAME.jsonl` (a commented trace) replayed through the same code as
//! `brlock replay`, compared with `scenarios/NAME.expected.jsonl` (each step's expected actions, with
//! the rule that produces them in a comment), and `check_invariants` after every event.

use std::path::Path;

use brlock_conformance::{StepOutput, compare, parse_expected, parse_jsonl};
use brlock_core::Replay;

fn run_scenario(path: &Path) -> Result<(), String> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let trace = parse_jsonl(&text).map_err(|e| format!("{name}: {e}"))?;
    let expected_path = path.with_extension("expected.jsonl");
    let expected_text = std::fs::read_to_string(&expected_path)
        .map_err(|e| format!("{}: {e}", expected_path.display()))?;
    let expected =
        parse_expected(&expected_text).map_err(|e| format!("{}: {e}", expected_path.display()))?;

    let mut replay = Replay::start(&trace.header).map_err(|e| format!("{name}: {e}"))?;
    let mut outputs = Vec::new();
    if !replay.initial.is_empty() {
        outputs.push(StepOutput {
            step: 0,
            actions: replay.initial.clone(),
        });
    }
    for (i, step) in trace.steps.iter().enumerate() {
        let actions = replay.step(step).map_err(|e| format!("{name}: {e}"))?;
        replay
            .core
            .check_invariants()
            .map_err(|e| format!("{name}: step {}: invariant broken: {e}", i + 1))?;
        outputs.push(StepOutput {
            step: i as u64 + 1,
            actions,
        });
    }
    // The library's replay (what `brlock replay` and the guest run) must agree with the stepped one.
    assert_eq!(
        brlock_conformance::replay(&trace).map_err(|e| e.to_string())?,
        outputs,
        "{name}"
    );
    compare(&expected, &outputs).map_err(|d| {
        format!(
            "{}: {d}\n(see the actual output with `brlock replay {name}`)",
            expected_path.display()
        )
    })
}

#[test]
fn every_scenario_gives_its_expected_actions() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .expect("conformance/scenarios")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "jsonl")
                && !p.to_string_lossy().ends_with(".expected.jsonl")
        })
        .collect();
    names.sort();
    let failures: Vec<String> = names.iter().filter_map(|p| run_scenario(p).err()).collect();
    assert!(
        names.len() >= 13,
        "expected the 13 scenarios, found {}",
        names.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed:\n{}",
        failures.len(),
        names.len(),
        failures.join("\n\n")
    );
}

/// Each rule the issue names has its scenario.
#[test]
fn the_scenarios_cover_the_named_rules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    for name in [
        "split",
        "merge",
        "upgrade",
        "downgrade",
        "deadlock",
        "fifo",
        "grace-reclaim",
        "disconnect-ttl",
        "callbacks",
        "limits",
        "shares",
    ] {
        assert!(
            dir.join(format!("{name}.jsonl")).exists(),
            "missing scenario {name}"
        );
        assert!(
            dir.join(format!("{name}.expected.jsonl")).exists(),
            "missing expected output of {name}"
        );
    }
}

/// A wrong expectation is caught: the comparison is not vacuous.
#[test]
fn a_changed_expectation_is_reported_with_its_step_and_line() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let trace = parse_jsonl(&std::fs::read_to_string(dir.join("split.jsonl")).unwrap()).unwrap();
    let text = std::fs::read_to_string(dir.join("split.expected.jsonl")).unwrap();
    let changed = text.replacen(
        r#""offset":45,"length":10"#,
        r#""offset":45,"length":11"#,
        1,
    );
    assert_ne!(changed, text);
    let outputs = brlock_conformance::replay(&trace).unwrap();
    let difference = compare(&parse_expected(&changed).unwrap(), &outputs).unwrap_err();
    assert_eq!(difference.step, 3);
    assert!(difference.line.is_some_and(|l| l > 3), "{difference}");
    assert!(difference.to_string().contains("action 1"), "{difference}");
}
