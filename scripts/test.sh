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
# The Linux kernel's own NLM client (a QEMU guest) against the brlockd of this tree (beside
# Ganesha's NFS), then against brlock-nfsd (NFS and NLM in one process, no other server).
cargo build -q -p brlock-native --bin brlockd -p brlock-nfsd --bin brlock-nfsd
bash tests/linux-client/build-guest.sh
python3 tests/linux-client/run.py --server brlockd --brlockd target/debug/brlockd
python3 tests/linux-client/run.py --server brlock-nfsd --nfsd target/debug/brlock-nfsd
# A lock held in the guest survives a failover from a brlockd leader to its hot standby
# (PostgreSQL store, same address; the two restart cases only, ~20 s).
python3 tests/linux-client/run.py --server brlockd-ha --brlockd target/debug/brlockd
