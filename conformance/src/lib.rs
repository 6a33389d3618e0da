//! `brlock-conformance`: the brlock trace format and the tools around it.
//!
//! A trace is a run of the core written down: a header (format version, configuration, epoch, records to
//! restore), then one event per step with its `now`. This crate reads and writes traces as JSON lines
//! (for people and other tools) and as postcard (compact, for wasm and fuzzing), replays them through
//! [`brlock_core::Replay`], and compares a replay's actions with recorded ones (`brlock replay --check`).
//! The format itself is documented in `docs/trace-format.md`.
//!
//! The library stays light and wasm32-compatible (core, serde, serde_json, postcard): `host-wasm` and
//! the wasm guest use it to parse traces. The suites that need the kernel, wasmtime or quickcheck live
//! in `tests/`, `benches/` and `fuzz/`.

mod binary;
mod check;
mod jsonl;
mod replay;

pub use binary::{
    decode_outputs, decode_replayed, decode_trace, encode_outputs, encode_replayed, encode_trace,
    replay_postcard,
};
pub use check::{Difference, Expected, compare, parse_expected};
pub use jsonl::{
    AnnotatedTrace, ParseError, parse_jsonl, parse_jsonl_annotated, parse_jsonl_lines, write_jsonl,
    write_jsonl_annotated, write_outputs_jsonl,
};
pub use replay::{Replayed, StepOutput, replay};
