#!/bin/bash
# Builds nlm4_client from nlm4.x with rpcgen + libtirpc and prints the binary's path.
#   build.sh [BUILD_DIR]   default: $CARGO_TARGET_DIR/rpcgen, else <repo>/target/rpcgen
# Generated files go to BUILD_DIR only; nothing generated is kept in the source tree.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
OUT=${1:-${CARGO_TARGET_DIR:-$REPO/target}/rpcgen}

# A fresh Debian machine lacks rpcgen (rpcsvc-proto) and the libtirpc headers.
if ! command -v rpcgen >/dev/null 2>&1 || [ ! -f /usr/include/tirpc/rpc/rpc.h ]; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rpcsvc-proto libtirpc-dev >&2
fi
command -v cc >/dev/null 2>&1 || { echo "build.sh: no C compiler (cc); install gcc" >&2; exit 1; }

mkdir -p "$OUT"
cp "$HERE/nlm4.x" "$OUT/nlm4.x"
# rpcgen names its outputs after the input file, so run it inside OUT on the copy.
(
  cd "$OUT"
  rm -f nlm4.h nlm4_xdr.c
  rpcgen -h -o nlm4.h nlm4.x
  rpcgen -c -o nlm4_xdr.c nlm4.x
)
CFLAGS=${CFLAGS:--O2 -g}
# libtirpc declares xdr_void() without parameters, so every (xdrproc_t)xdr_void cast warns.
# The generated XDR code declares unused locals; keep warnings for our own file only.
cc $CFLAGS -I/usr/include/tirpc -I"$OUT" -w -c "$OUT/nlm4_xdr.c" -o "$OUT/nlm4_xdr.o"
cc $CFLAGS -std=gnu11 -Wall -Wextra -Wno-cast-function-type -I/usr/include/tirpc -I"$OUT" -c "$HERE/nlm4_client.c" -o "$OUT/nlm4_client.o"
cc -o "$OUT/nlm4_client" "$OUT/nlm4_client.o" "$OUT/nlm4_xdr.o" -ltirpc
echo "$OUT/nlm4_client"
