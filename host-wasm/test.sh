#!/usr/bin/env bash
# Builds the visualiser and tests it end to end in Debian's Chromium: serves host-wasm/dist on a free
# port of 127.0.0.1, runs e2e/visualiser.test.mjs (playwright-core, no browser download), stops the
# server; then e2e/live.test.mjs, the live mode against a real brlockd (debug build) serving dist
# with --web-root, driven by NLM calls from nlm-script. Screenshots land in host-wasm/e2e/out/
# (visualiser.png, live.png).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/build.sh"

if [ ! -x "${BRLOCK_CHROMIUM:-/usr/bin/chromium}" ]; then
    apt-get update
    apt-get install -y chromium
fi
cd "$here"
npm ci --no-audit --no-fund

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
python3 -m http.server --bind 127.0.0.1 "$port" --directory "$here/dist" >"$here/e2e/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

BRLOCK_URL="http://127.0.0.1:$port/" node e2e/visualiser.test.mjs

root="$(dirname "$here")"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build -p brlock-native --bin brlockd && cargo build -p brlock-tests --bin nlm-script \
    && cargo build -p brlock-conformance --bin brlock)
BRLOCKD="$target_dir/debug/brlockd" NLM_SCRIPT="$target_dir/debug/nlm-script" BRLOCK="$target_dir/debug/brlock" \
    BRLOCK_WEB="$here/dist" node e2e/live.test.mjs
