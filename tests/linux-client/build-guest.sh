#!/usr/bin/env bash
# Builds the Linux client guest for the kernel-client suite, into target/linux-client/guest/:
#   vmlinuz          Debian's 6.1 kernel (the linux-image package, unpacked, not installed)
#   initramfs.cpio.gz busybox, the NFS/lockd/virtio modules, rpcbind, rpc.statd, mount.nfs (with
#                    their shared libraries), the static test program `locktest`, and guest/init.
# A build is reused while its inputs (this script, guest/, the kernel package) are unchanged.
# Needs the Debian packages that scripts/setup.sh installs (busybox-static, rpcbind, nfs-common, gcc).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${BRLOCK_GUEST_DIR:-$root/target/linux-client/guest}
cache=$root/target/linux-client/cache
mkdir -p "$out" "$cache"

# Debian's 6.1 kernel: whatever the linux-image-amd64 metapackage names today.
kernel_package() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
kpkg=$(kernel_package)
# A fresh machine may not have read Debian's package lists yet.
[ -n "$kpkg" ] || { apt-get update -qq >/dev/null 2>&1 || true; kpkg=$(kernel_package); }
[ -n "$kpkg" ] || { echo "build-guest: apt knows no linux-image-amd64 (run apt-get update)" >&2; exit 1; }
kver=${kpkg#linux-image-}
stamp_inputs=$(cat "$0" "$here"/guest/* | sha256sum | cut -c1-16)
stamp="$kpkg $stamp_inputs"
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initramfs.cpio.gz" ]; then
  exit 0
fi
echo "build-guest: building the guest ($kpkg)"

deb=$(ls "$cache"/"${kpkg}"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  (cd "$cache" && apt-get download -qq "$kpkg" >/dev/null 2>&1 || true)
  deb=$(ls "$cache"/"${kpkg}"_*.deb 2>/dev/null | head -n1 || true)
  [ -n "$deb" ] || { echo "build-guest: could not download $kpkg" >&2; exit 1; }
fi
kdir=$cache/$kpkg
if [ ! -d "$kdir/lib/modules/$kver" ]; then
  rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp" && dpkg-deb -x "$deb" "$kdir.tmp" && rm -rf "$kdir" && mv "$kdir.tmp" "$kdir"
fi

work=$(mktemp -d "$root/target/linux-client/initramfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
mkdir -p bin sbin usr/bin usr/sbin etc lib lib64 proc sys dev run tmp var/lib/nfs mnt

# busybox and its applets.
cp /bin/busybox bin/busybox
for applet in $(bin/busybox --list); do
  [ -e "bin/$applet" ] || ln -s busybox "bin/$applet"
done

# Dynamic programs from Debian, with the shared libraries they load.
copy_with_libs() {
  local prog=$1 dest=$2
  cp "$prog" "$dest"
  ldd "$prog" | awk '/=> \// {print $3} /^\t\/lib64\// {print $1}' | while read -r lib; do
    local target=".${lib}"
    mkdir -p "$(dirname "$target")"
    [ -e "$target" ] || cp -L "$lib" "$target"
  done
}
copy_with_libs /usr/sbin/rpcbind sbin/rpcbind
copy_with_libs /usr/sbin/rpc.statd sbin/rpc.statd
copy_with_libs /usr/sbin/rpcinfo sbin/rpcinfo
copy_with_libs /usr/sbin/mount.nfs sbin/mount.nfs
# libtirpc reads /etc/netconfig; the rest are looked up by name.
cp /etc/netconfig /etc/protocols /etc/services etc/
cat > etc/passwd <<'PW'
root:x:0:0:root:/:/bin/sh
_rpc:x:108:65534::/run/rpcbind:/bin/false
statd:x:110:65534::/var/lib/nfs:/bin/false
PW
printf 'root:x:0:\nnogroup:x:65534:\n' > etc/group
printf 'passwd: files\ngroup: files\nhosts: files\n' > etc/nsswitch.conf

# The kernel modules NFSv3 locking and virtio-net need, and a modules.dep for busybox modprobe.
mdir=lib/modules/$kver
for m in sunrpc grace lockd nfs_acl netfs fscache nfs nfsv3 virtio virtio_ring virtio_pci_legacy_dev \
         virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
  src=$(find "$kdir/$mdir/kernel" -name "$m.ko" | head -n1)
  [ -n "$src" ] || { echo "build-guest: module $m not in $kpkg" >&2; exit 1; }
  rel=${src#"$kdir/"}
  mkdir -p "$(dirname "$rel")"
  cp "$src" "$rel"
done
bin/busybox depmod -b "$work" "$kver"

gcc -O2 -Wall -Wextra -Werror -static -o bin/locktest "$here/guest/locktest.c"
cp "$here/guest/init" init
chmod +x init

find . -mindepth 1 | sed 's#^\./##' | LC_ALL=C sort | bin/busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$out/initramfs.cpio.gz.tmp"
mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
cp "$kdir/boot/vmlinuz-$kver" "$out/vmlinuz"
cp bin/locktest "$out/locktest"
echo "$stamp" > "$out/stamp"
echo "build-guest: $(du -h "$out/initramfs.cpio.gz" | cut -f1) initramfs, kernel $kver"
