//! Native = wasm: every trace — the scenarios, kernel-oracle traces and simulation runs — gives
//! byte-identical postcard output natively and in the wasm guest under wasmtime. Needs the guest
//! built first: `conformance/guest/build.sh`.
//!
//! `BRLOCK_SEED=S` starts the generated traces at seed S (default: a fixed seed, so CI checks the same
//! traces every run); `BRLOCK_CASES=N` sets how many of each kind (default 300).

#[path = "common/kernel_trace.rs"]
mod kernel_trace;
#[path = "common/sim_trace.rs"]
mod sim_trace;
#[path = "common/wasm.rs"]
mod wasm;

use brlock_conformance::{decode_replayed, encode_trace, parse_jsonl, replay_postcard};
use brlock_core::Trace;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

/// Runs `trace` both ways; returns how many steps replayed (so a suite that only met errors shows).
fn same_bytes(guest: &mut wasm::Guest, name: &str, trace: &Trace) -> usize {
    let bytes = encode_trace(trace);
    let native = replay_postcard(&bytes);
    let wasm = guest.replay(&bytes);
    if native != wasm {
        let show = |b: &[u8]| format!("{:?}", decode_replayed(b));
        panic!(
            "{name}: wasm output differs from native\nnative: {}\nwasm:   {}",
            show(&native),
            show(&wasm)
        );
    }
    decode_replayed(&native)
        .expect("own encoding")
        .map_or(0, |outputs| outputs.len())
}

#[test]
fn every_trace_gives_the_same_bytes_natively_and_in_wasm() {
    let mut guest = wasm::Guest::load();
    let first = env_u64("BRLOCK_SEED").unwrap_or(0x5eed);
    let cases = env_u64("BRLOCK_CASES").unwrap_or(300);

    let mut scenarios = 0;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
    for entry in std::fs::read_dir(dir).expect("conformance/scenarios") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !name.ends_with(".jsonl") || name.ends_with(".expected.jsonl") {
            continue;
        }
        let trace = parse_jsonl(&std::fs::read_to_string(&path).expect("read scenario"))
            .expect("scenario parses");
        assert!(
            same_bytes(&mut guest, &name, &trace) > 0,
            "{name}: replayed nothing"
        );
        scenarios += 1;
    }
    assert!(scenarios >= 10, "found only {scenarios} scenarios in {dir}");

    let mut steps = 0;
    for seed in first..first + cases {
        let kernel = kernel_trace::KernelTrace::from_seed(seed, 40).to_trace();
        steps += same_bytes(&mut guest, &format!("kernel trace, seed {seed}"), &kernel);
        let sim = sim_trace::sim_trace(seed, 120);
        steps += same_bytes(&mut guest, &format!("simulation run, seed {seed}"), &sim);
    }
    eprintln!(
        "native = wasm: {scenarios} scenarios, {cases} kernel traces and {cases} simulation runs from seed {first}, {steps} generated steps"
    );
}
