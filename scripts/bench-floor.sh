#!/usr/bin/env bash
# brlockd against the floor (nlm-floor, a do-nothing NLM responder) and NFS-Ganesha 4.3, same load
# generator, one run (not part of CI). Prints one markdown table.
#
#   bash scripts/bench-floor.sh [SECONDS]        # 5 s per figure: 27 figures, ~2.5 min in all
#
# All three servers run side by side on 127.0.0.1; for each connection count and in-flight depth
# they are measured back to back (floor first, so its CPU per pair is the row group's reference).
# brlockd: release, --store memory, no rpcbind/statd. Ganesha: ../shared/peers/ganesha/peer.sh
# (rpcbind + statd + Ganesha, NLM on 127.0.0.1:32803), locking a real file handle.
# Everything started here is stopped by its PID (Ganesha's by the peer script's PID files).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q --release -p brlock-native --bin brlockd -p brlock-tests --bin brlock-bench --bin nlm-floor
R=$CARGO_TARGET_DIR/release
PEER=../shared/peers/ganesha/peer.sh
GANESHA_NLM=127.0.0.1:32803
WORK=$(mktemp -d /tmp/brlock-bench-floor.XXXXXX)
BD=""
FLOOR=""
PEER_STARTED=""
cleanup() {
    for pid in $BD $FLOOR; do
        kill -TERM "$pid" 2>/dev/null && { wait "$pid" 2>/dev/null || true; }
    done
    [ -n "$PEER_STARTED" ] && { bash "$PEER" stop >/dev/null 2>&1 || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT

# Waits for "listening on ADDR" in FILE and prints ADDR.
listening_addr() { # FILE PID
    for _ in $(seq 100); do
        local addr
        addr=$(sed -n 's/^listening on //p' "$1")
        [ -n "$addr" ] && { echo "$addr"; return; }
        kill -0 "$2" 2>/dev/null || break
        sleep 0.1
    done
    echo "server did not start: $(cat "${1%.out}.err")" >&2
    exit 1
}

if rpcinfo -T tcp 127.0.0.1 100021 4 >/dev/null 2>&1; then
    echo "an NLM server is already registered with rpcbind (another Ganesha peer?); not starting mine" >&2
    exit 1
fi
command -v ganesha.nfsd >/dev/null || bash "$PEER" install >/dev/null
PEER_STARTED=1
bash "$PEER" start >/dev/null
FH=$(python3 conformance/rpcgen/fh_lookup.py /tmp/brlock-ganesha-peer/export testfile)
GP=$(cat /tmp/brlock-ganesha-peer/ganesha.pid)

"$R/brlockd" --listen 127.0.0.1:0 --store memory --grace 0 --portmap-port 1 \
    --rpcbind none --statd none --max-locks-per-client 1000000 --max-locks-total 10000000 \
    --max-locks-per-file 10000000 >"$WORK/bd.out" 2>"$WORK/bd.err" &
BD=$!
BD_ADDR=$(listening_addr "$WORK/bd.out" "$BD")
"$R/nlm-floor" --listen 127.0.0.1:0 >"$WORK/floor.out" 2>"$WORK/floor.err" &
FLOOR=$!
FLOOR_ADDR=$(listening_addr "$WORK/floor.out" "$FLOOR")

FLOOR_CPU=""
run() { # LABEL ADDR PID CONNECTIONS DEPTH [--fh FH]
    local label=$1 addr=$2 pid=$3 n=$4 d=$5
    shift 5
    local out rate cpu errors ratio
    # A run with errors exits non-zero; its row still shows them.
    out=$("$R/brlock-bench" --addr "$addr" --connections "$n" --pipeline "$d" \
        --seconds "$SECONDS_PER_RUN" --server-pid "$pid" "$@" 2>&1) || true
    rate=$(sed -n 's/.*pairs\/s=\([0-9]*\).*/\1/p' <<<"$out")
    errors=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$out")
    cpu=$(sed -n 's/.*cpu\/pair=\([0-9.]*\)us.*/\1/p' <<<"$out")
    [ -z "$rate" ] && echo "$label $n×$d: $out" >&2
    [ "$label" = floor ] && FLOOR_CPU=$cpu
    ratio=$(awk -v c="$cpu" -v f="$FLOOR_CPU" 'BEGIN { if (c != "" && f > 0) printf "%.2f", c / f; else print "—" }')
    printf '| %s | %s | %s | %s | %s µs | %s× | %s |\n' \
        "$label" "$n" "$d" "${rate:-—}" "${cpu:-—}" "$ratio" "${errors:-—}"
}

echo "| server | connections | in flight | pairs/s | server CPU per LOCK+UNLOCK pair | CPU/pair ÷ floor's | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for n in 1 4 16; do
    for d in 1 16 64; do
        run floor "$FLOOR_ADDR" "$FLOOR" "$n" "$d"
        run "brlockd memory" "$BD_ADDR" "$BD" "$n" "$d"
        run "Ganesha 4.3" "$GANESHA_NLM" "$GP" "$n" "$d" --fh "$FH"
    done
done
