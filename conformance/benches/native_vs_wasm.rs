//! The same trace replayed natively and in the wasm guest under wasmtime (postcard in, postcard out,
//! both ways). Goal: wasm within 2× of native. Needs `conformance/guest/build.sh` first.
//!
//! `cargo bench -p brlock-conformance --bench native_vs_wasm` runs criterion, then prints the ratio
//! of the two medians.

#[path = "../tests/common/sim_trace.rs"]
mod sim_trace;
#[path = "../tests/common/wasm.rs"]
mod wasm;

use std::time::{Duration, Instant};

use brlock_conformance::{encode_trace, replay_postcard};
use criterion::Criterion;

/// A long simulation run (all event kinds, several clients and files) under a fixed seed.
fn workload() -> Vec<u8> {
    let trace = sim_trace::sim_trace(42, 20_000);
    eprintln!(
        "workload: {} events, {} bytes of postcard",
        trace.steps.len(),
        encode_trace(&trace).len()
    );
    encode_trace(&trace)
}

fn median(mut f: impl FnMut(), runs: usize) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let trace = workload();
    let mut guest = wasm::Guest::load();
    assert_eq!(
        guest.replay(&trace),
        replay_postcard(&trace),
        "native and wasm disagree"
    );

    let mut c = Criterion::default().configure_from_args().sample_size(20);
    let mut group = c.benchmark_group("replay");
    group.bench_function("native", |b| {
        b.iter(|| replay_postcard(std::hint::black_box(&trace)))
    });
    group.bench_function("wasmtime", |b| {
        b.iter(|| guest.replay(std::hint::black_box(&trace)))
    });
    group.finish();
    c.final_summary();

    let native = median(|| drop(replay_postcard(&trace)), 31);
    let wasm = median(|| drop(guest.replay(&trace)), 31);
    println!(
        "native {native:?}, wasmtime {wasm:?}: wasm/native = {:.2} (goal ≤ 2.00)",
        wasm.as_secs_f64() / native.as_secs_f64()
    );
}
