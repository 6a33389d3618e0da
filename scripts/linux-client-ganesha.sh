#!/usr/bin/env bash
# The kernel-client suite against NFS-Ganesha's own NLM (and rpc.statd) instead of brlockd: the
# reference run, kept out of CI. tests/linux-client/README.md says where the two differ and why.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash tests/linux-client/build-guest.sh
exec python3 tests/linux-client/run.py --server ganesha "$@"
