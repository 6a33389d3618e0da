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
# Built for size, in this build only (the workspace's release profile keeps debug info for the native
# binaries' profiles, and a per-package override cannot set lto): no debug info, opt-level z, one
# codegen unit, LTO. With wasm-bindgen dropping the name section too, 812 KiB became 470 KiB
# (opt-level 3 with LTO: ~690 KiB; s: ~535 KiB). wasm-opt is not used: Debian's breaks the module.
CARGO_TARGET_DIR="$target_dir" \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
    CARGO_PROFILE_RELEASE_LTO=true \
    cargo build -p brlock-wasm --release --target wasm32-unknown-unknown

rm -rf "$out"
mkdir -p "$out/pkg"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
    --out-dir "$out/pkg" "$target_dir/wasm32-unknown-unknown/release/brlock_wasm.wasm"
cp -r "$here/web/." "$out/"
echo "built $out ($(du -k "$out/pkg/brlock_wasm_bg.wasm" | cut -f1) KiB of wasm)"
