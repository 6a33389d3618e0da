#!/usr/bin/env bash
# Builds the wasm guest the conformance tests and the benchmark load:
#   $CARGO_TARGET_DIR (or target)/wasm32-unknown-unknown/release/brlock_guest.wasm
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
cargo build -p brlock-guest --release --target wasm32-unknown-unknown
echo "built ${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/brlock_guest.wasm"
