#!/usr/bin/env bash
# The whole test suite, on a fresh machine: README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
# The wasm guest that the native = wasm tests load through wasmtime.
bash conformance/guest/build.sh
cargo test --workspace
# The visualiser in a real browser (builds the wasm and the page first).
bash host-wasm/test.sh
# The Linux kernel's own NLM client (a QEMU guest) against the brlockd of this tree.
cargo build -q -p brlock-native --bin brlockd
bash tests/linux-client/build-guest.sh
python3 tests/linux-client/run.py --brlockd target/debug/brlockd
