#!/usr/bin/env bash
# Bounded fuzzing: the core under arbitrary event sequences, with check_invariants after every step.
# Seconds: $1 (default 60). CI runs this; the RPC/NLM decoder's target (host-native/fuzz, rpc_decode)
# builds all of brlockd under the sanitizer, so it is run by hand, and its no-panic properties run in
# every `cargo test`:  (cd host-native/fuzz && cargo +nightly fuzz run rpc_decode -- -max_total_time=N)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
(cd conformance/fuzz && cargo +nightly fuzz run core_events -- -max_total_time="$seconds")
