#!/bin/bash
# Installs the outside tools the brlock-tests suite drives, idempotently and without questions:
#   tshark        (tests/tests/tshark.rs: decodes every captured NLM packet)
#   rpcsvc-proto  (rpcgen) and libtirpc-dev (tests/tests/rpcgen_client.rs builds conformance/rpcgen)
#   gcc           (the C compiler build.sh needs)
#   prometheus    (promtool: tests/tests/e2e/metrics.rs runs `promtool check metrics`)
# Needs root or sudo. Safe to run on every CI job: it does nothing when all are present.
set -euo pipefail
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo

missing=()
command -v tshark >/dev/null 2>&1 || missing+=(tshark)
command -v rpcgen >/dev/null 2>&1 || missing+=(rpcsvc-proto)
[ -f /usr/include/tirpc/rpc/rpc.h ] || missing+=(libtirpc-dev)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-tools: tshark, rpcgen, libtirpc-dev, cc and promtool already present"
  exit 0
fi

# wireshark-common asks whether non-root users may capture; answer "no" up front so the
# install never waits for a terminal (tests capture as root).
echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "install-tools: installed ${missing[*]}"
