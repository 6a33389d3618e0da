#!/usr/bin/env bash
# brlockd against NFS-Ganesha 4.3 with the same load generator, in one run (not part of CI).
#
#   bash scripts/bench-nlm.sh [SECONDS]          # memory store vs Ganesha, then the durable stores
#
# Both servers run on 127.0.0.1 side by side: brlockd does not register with rpcbind here
# (--rpcbind none), so Ganesha keeps the machine's rpcbind. For each connection count and pipeline
# depth the two servers are measured back to back. Needs the Ganesha peer (../shared/peers) and,
# for the PostgreSQL figures, DATABASE_URL's server (default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q --release -p brlock-native --bin brlockd -p brlock-tests --bin brlock-bench
R=$CARGO_TARGET_DIR/release
PEER=../shared/peers/ganesha/peer.sh
WORK=$(mktemp -d /tmp/brlock-bench.XXXXXX)
PG_BASE=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
PG_BASE=${PG_BASE%/*}
BD=""
cleanup() {
    [ -n "$BD" ] && kill -TERM "$BD" 2>/dev/null && wait "$BD" 2>/dev/null
    bash "$PEER" stop >/dev/null 2>&1 || true
    psql "$PG_BASE/postgres" -qc "DROP DATABASE IF EXISTS brlock_bench WITH (FORCE)" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

start_brlockd() { # STORE
    "$R/brlockd" --listen 127.0.0.1:0 --store "$1" --grace 0 --portmap-port 1 \
        --rpcbind none --statd none --max-locks-per-client 1000000 --max-locks-total 10000000 \
        --max-locks-per-file 10000000 >"$WORK/bd.out" 2>"$WORK/bd.err" &
    BD=$!
    for _ in $(seq 100); do
        ADDR=$(sed -n 's/^listening on //p' "$WORK/bd.out")
        [ -n "$ADDR" ] && return
        sleep 0.1
    done
    echo "brlockd did not start: $(cat "$WORK/bd.err")" >&2
    exit 1
}
stop_brlockd() { kill -TERM "$BD"; wait "$BD" || true; BD=""; }

run() { # LABEL ADDR PID CONNECTIONS DEPTH [--fh FH]
    local label=$1 addr=$2 pid=$3 n=$4 d=$5
    shift 5
    local out
    out=$("$R/brlock-bench" --addr "$addr" --connections "$n" --pipeline "$d" \
        --seconds "$SECONDS_PER_RUN" --server-pid "$pid" "$@")
    local rate cpu p99 errors
    rate=$(sed -n 's/.*pairs\/s=\([0-9]*\).*/\1/p' <<<"$out")
    p99=$(sed -n 's/.* p99=\([0-9]*us\).*/\1/p' <<<"$out")
    errors=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$out")
    cpu=$(sed -n 's/.*cpu\/pair=\([0-9.]*us\).*/\1/p' <<<"$out")
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$n" "$d" "$rate" "$p99" "$cpu" "$errors"
}

bash "$PEER" install >/dev/null
bash "$PEER" start >/dev/null
FH=$(python3 conformance/rpcgen/fh_lookup.py /tmp/brlock-ganesha-peer/export testfile)
GP=$(cat /tmp/brlock-ganesha-peer/ganesha.pid)
start_brlockd memory
echo "| server | connections | pipeline | pairs/s | p99 (pair or wave) | server CPU per pair | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for n in 1 4 16; do
    for d in 1 16 64; do
        run "brlockd memory" "$ADDR" "$BD" "$n" "$d"
        run "Ganesha 4.3" 127.0.0.1:32803 "$GP" "$n" "$d" --fh "$FH"
    done
done
stop_brlockd
bash "$PEER" stop >/dev/null

psql "$PG_BASE/postgres" -qc "DROP DATABASE IF EXISTS brlock_bench WITH (FORCE)" \
    -c "CREATE DATABASE brlock_bench"
for store in "sqlite://$WORK/brlock.db" "$PG_BASE/brlock_bench"; do
    start_brlockd "$store"
    for n in 1 4 16; do
        for d in 1 64 256; do
            run "brlockd ${store%%:*}" "$ADDR" "$BD" "$n" "$d"
        done
    done
    stop_brlockd
done
