#!/usr/bin/env bash
# Builds the brlock visualiser into host-wasm/dist/: the core compiled to wasm, wasm-bindgen's JS glue,
# the page and the example traces. Installs what is missing (the wasm32 target, wasm-bindgen-cli of
# the version Cargo.lock pins). Serve dist/ from any static server, e.g.
#   python3 -m http.server --bind 127.0.0.1 8000 --directory host-wasm/dist
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
out="${BRLOCK_WASM_OUT:-$here/dist}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
bindgen_version="0.2.130" # must equal the wasm-bindgen crate in Cargo.lock

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q " $bindgen_version\$"; then
    # Not --locked: the CLI's own lockfile names a webpki-roots version the registry lacks.
    cargo install wasm-bindgen-cli --version "$bindgen_version"
fi

cd "$root"
CARGO_TARGET_DIR="$target_dir" cargo build -p brlock-wasm --release --target wasm32-unknown-unknown

rm -rf "$out"
mkdir -p "$out/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$out/pkg" \
    "$target_dir/wasm32-unknown-unknown/release/brlock_wasm.wasm"
cp -r "$here/web/." "$out/"
echo "built $out ($(du -k "$out/pkg/brlock_wasm_bg.wasm" | cut -f1) KiB of wasm)"
