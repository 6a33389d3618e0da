#!/usr/bin/env bash
# Bounded fuzzing; CI runs this. Two cargo-fuzz targets, each its own workspace (nightly, sanitizer):
# - core_events (conformance/fuzz): bytes read as event sequences into the core, with
#   check_invariants after every step;
# - rpc_decode (host-native/wire/fuzz): bytes from a TCP connection through record marking, the RPC
#   call and reply headers and every NLM procedure of every version; nothing may panic and whatever
#   decodes must re-encode. It builds the codec crate brlock-wire alone (no tokio, no sqlx): ~35 s
#   cold on 2 cores, most of it libFuzzer itself.
# Usage: fuzz.sh [SECONDS] [TARGET]. SECONDS (default 60) of fuzzing in all, two thirds to
# core_events and one third to rpc_decode (the builds come on top); naming a TARGET (core_events or
# rpc_decode) gives it all of SECONDS. CARGO_TARGET_DIR is honoured; unset, each fuzz crate builds in
# its own fuzz/target.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
only="${2:-}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: SECONDS must be a positive integer, not '$seconds'" >&2
  exit 2
fi
# Never 0: libFuzzer reads -max_total_time=0 as "no limit".
case "$only" in
  "")
    core=$((seconds * 2 / 3)); ((core >= 1)) || core=1
    wire=$((seconds - core)); ((wire >= 1)) || wire=1
    ;;
  core_events) core="$seconds"; wire=0 ;;
  rpc_decode) core=0; wire="$seconds" ;;
  *)
    echo "fuzz.sh: unknown target '$only' (core_events or rpc_decode)" >&2
    exit 2
    ;;
esac
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
if ((core > 0)); then
  (cd conformance/fuzz && cargo +nightly fuzz run core_events -- -max_total_time="$core")
fi
if ((wire > 0)); then
  (cd host-native/wire/fuzz && cargo +nightly fuzz run rpc_decode -- -max_total_time="$wire")
fi
