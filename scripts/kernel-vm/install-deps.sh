#!/bin/bash
# Install everything the kernel tier needs (run as root, Debian 12).
#
#   bash scripts/kernel-vm/install-deps.sh
#
# - qemu (TCG), busybox-static, kmod, cpio, xz-utils, gcc/make, dkms, e2fsprogs;
# - the headers of the kernel ABI that Debian's linux-image-amd64 currently points at
#   (resolved now: the ABI changes with every security upload);
# - that kernel's image, downloaded and unpacked into $KVM_CACHE/kimg, NOT installed
#   (installing it runs update-initramfs twice and upgrades systemd/udev on the host).
#
# env: KVM_CACHE (default /var/tmp/phobos-kernel-vm), KFLAVOUR (default amd64)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${KVM_CACHE:-/var/tmp/phobos-kernel-vm}
FL=${KFLAVOUR:-amd64}
export DEBIAN_FRONTEND=noninteractive

[ "$(id -u)" = 0 ] || { echo "install-deps.sh: must run as root (apt-get)" >&2; exit 1; }
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
	qemu-system-x86 busybox-static kmod cpio xz-utils gcc make libc6-dev e2fsprogs dkms >/dev/null

KVER=$(apt-cache depends "linux-image-$FL" |
	awk '/Depends: linux-image-6/{sub("linux-image-","",$2); print $2; exit}')
[ -n "$KVER" ] || { echo "install-deps.sh: cannot resolve the kernel ABI of linux-image-$FL" >&2; exit 1; }
apt-get install -y -qq --no-install-recommends "linux-headers-$KVER" >/dev/null

mkdir -p "$CACHE"
if [ ! -s "$CACHE/kimg/vmlinux" ] || [ "$(cat "$CACHE/kimg/kver" 2>/dev/null)" != "$KVER" ]; then
	rm -rf "$CACHE/kimg"; mkdir -p "$CACHE/kimg"
	(cd "$CACHE/kimg" &&
		{ apt-get download -qq "linux-image-$KVER" 2>/dev/null ||
		  apt-get download -qq "linux-image-$KVER-unsigned"; } &&
		dpkg-deb -x linux-image-"$KVER"*_*.deb . && rm -f linux-image-"$KVER"*_*.deb)
	depmod -b "$CACHE/kimg" "$KVER"
	# PVH boot of the uncompressed ELF skips ~8 s of XZ decompression under TCG
	"$HERE/extract-vmlinux.sh" "$CACHE/kimg/boot/vmlinuz-$KVER" "$CACHE/kimg/vmlinux"
	echo "$KVER" > "$CACHE/kimg/kver"
fi
echo "install-deps.sh: kernel $KVER, guest image in $CACHE/kimg"
