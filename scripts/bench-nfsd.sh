#!/usr/bin/env bash
# brlock-nfsd's figures, in one run (not part of CI):
#  1. NLM inside the NFS server against NLM beside it: brlock-bench against brlock-nfsd's NLM port
#     and against brlockd, same generator, both on the memory store, back to back.
#  2. What locking costs plain NFS traffic: nfs-bench's small-file workload (CREATE, WRITE 4 KiB,
#     GETATTR, REMOVE) against brlock-nfsd --no-locking (nfsserve alone) and against brlock-nfsd
#     with NLM on (nobody locking), back to back.
#
#   bash scripts/bench-nfsd.sh [SECONDS]
# Everything listens on 127.0.0.1 with free ports and registers with no rpcbind.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-5}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build -q --release -p brlock-native --bin brlockd -p brlock-nfsd --bin brlock-nfsd \
    -p brlock-tests --bin brlock-bench --bin nfs-bench
R=$CARGO_TARGET_DIR/release
WORK=$(mktemp -d /tmp/brlock-bench-nfsd.XXXXXX)
mkdir -p "$WORK/export"
echo data > "$WORK/export/bench-file"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { # FILE PATTERN
    for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done
    echo "did not start: $(cat "$1")" >&2; exit 1
}

start_nfsd() { # EXTRA-FLAGS…
    NFS_PORT=$(free_port); NLM_PORT=$(free_port)
    "$R/brlock-nfsd" --export "$WORK/export" --listen "127.0.0.1:$NFS_PORT" \
        --nlm-listen "127.0.0.1:$NLM_PORT" --store memory --grace 0 --rpcbind none "$@" >"$WORK/nfsd.out" 2>"$WORK/nfsd.err" &
    NFSD=$!; PIDS+=("$NFSD")
    wait_line "$WORK/nfsd.out" exporting
}
stop_nfsd() { kill -TERM "$NFSD"; wait "$NFSD" || true; }

echo "## NLM: inside the NFS server (brlock-nfsd) and beside it (brlockd)"
echo "| server | connections | pipeline | pairs/s | p99 | server CPU per pair |"
echo "|---|---:|---:|---:|---:|---:|"
start_nfsd
FH=$(python3 conformance/rpcgen/fh_lookup.py --mount-port "$NFS_PORT" --nfs-port "$NFS_PORT" "$WORK/export" bench-file)
"$R/brlockd" --listen 127.0.0.1:0 --store memory --grace 0 --rpcbind none --statd none \
    --portmap-port 1 >"$WORK/bd.out" 2>"$WORK/bd.err" &
BD=$!; PIDS+=("$BD")
wait_line "$WORK/bd.out" "listening on"
BD_ADDR=$(sed -n 's/^listening on //p' "$WORK/bd.out")
nlm_row() { # LABEL ADDR PID N D
    local out
    out=$("$R/brlock-bench" --addr "$2" --connections "$4" --pipeline "$5" --seconds "$SECONDS_PER_RUN" \
        --server-pid "$3" --fh "$FH")
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$4" "$5" \
        "$(sed -n 's/.*pairs\/s=\([0-9]*\).*/\1/p' <<<"$out")" \
        "$(sed -n 's/.* p99=\([0-9]*us\).*/\1/p' <<<"$out")" \
        "$(sed -n 's/.*cpu\/pair=\([0-9.]*us\).*/\1/p' <<<"$out")"
}
for n in 1 4 16; do
    for d in 1 16; do
        nlm_row brlock-nfsd "127.0.0.1:$NLM_PORT" "$NFSD" "$n" "$d"
        nlm_row brlockd "$BD_ADDR" "$BD" "$n" "$d"
    done
done
stop_nfsd

echo
echo "## NFS small files (CREATE, WRITE 4 KiB, GETATTR, REMOVE): without and with locking"
echo "| server | connections | files/s | p99 | server CPU per file |"
echo "|---|---:|---:|---:|---:|"
nfs_row() { # LABEL N
    local out
    out=$("$R/nfs-bench" --addr "127.0.0.1:$NFS_PORT" --export "$WORK/export" --connections "$2" \
        --seconds "$SECONDS_PER_RUN" --server-pid "$NFSD")
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$2" \
        "$(sed -n 's/.*files\/s=\([0-9]*\).*/\1/p' <<<"$out")" \
        "$(sed -n 's/.* p99=\([0-9]*us\).*/\1/p' <<<"$out")" \
        "$(sed -n 's/.*cpu\/file=\([0-9.]*us\).*/\1/p' <<<"$out")"
}
for n in 1 4 16; do
    start_nfsd --no-locking; nfs_row "nfsserve alone (--no-locking)" "$n"; stop_nfsd
    start_nfsd; nfs_row "brlock-nfsd (NLM on, idle)" "$n"; stop_nfsd
done
