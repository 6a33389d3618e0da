#!/usr/bin/env bash
# Installs what the test suite needs on a fresh machine of this project's kind, idempotently:
# rustup targets, PostgreSQL running, and the tools the wire, browser and wasm tests use.
set -euo pipefail
cd "$(dirname "$0")/.."

need_targets=()
for t in wasm32-unknown-unknown thumbv7em-none-eabi; do
  rustup target list --installed | grep -qx "$t" || need_targets+=("$t")
done
[ ${#need_targets[@]} -eq 0 ] || rustup target add "${need_targets[@]}"

# PostgreSQL for the store tests (trust auth on 127.0.0.1:5432).
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
  for _ in $(seq 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
fi

# Debian packages: rpcgen + libtirpc (independent NLM client), tshark (wire decode check); for the
# Linux kernel-client suite: QEMU, busybox, rpcbind, nfs-common (rpc.statd, mount.nfs; copied into
# the guest), NFS-Ganesha (the NFSv3 server beside brlockd, and the reference NLM), tcpdump.
missing=()
missing_norec=()
command -v rpcgen >/dev/null || missing+=(rpcsvc-proto)
[ -f /usr/include/tirpc/rpc/rpc.h ] || missing+=(libtirpc-dev)
command -v tshark >/dev/null || missing+=(tshark)
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
command -v rpcbind >/dev/null || missing+=(rpcbind)
command -v rpc.statd >/dev/null || missing+=(nfs-common)
command -v ganesha.nfsd >/dev/null || missing+=(nfs-ganesha nfs-ganesha-vfs)
command -v tcpdump >/dev/null || missing+=(tcpdump)
command -v ip >/dev/null || missing+=(iproute2)
# promtool (`promtool check metrics` on a live brlockd's /metrics, tests/tests/e2e/metrics.rs) comes
# with Debian's Prometheus server package; without recommends it adds no exporter, and nothing
# starts it outside systemd.
command -v promtool >/dev/null || missing_norec+=(prometheus)
if [ ${#missing[@]} -gt 0 ] || [ ${#missing_norec[@]} -gt 0 ]; then
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  [ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  [ ${#missing_norec[@]} -eq 0 ] ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_norec[@]}"
fi
