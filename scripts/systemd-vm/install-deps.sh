#!/bin/bash
# Install what the systemd VM tier needs (run as root, Debian 12), after
# scripts/kernel-vm/install-deps.sh (qemu, busybox-static, the unpacked guest kernel):
#
#   bash scripts/systemd-vm/install-deps.sh
#
# - debootstrap, e2fsprogs (mke2fs -d), openssh-client (ssh-keygen for the operator key);
# - the guests' Debian 12 base system (systemd, sshd, nbd-client), debootstrapped once into
#   a tarball under $KVM_CACHE/systemd-vm, keyed by its package list: reruns skip it.
#
# env: KVM_CACHE (default /var/tmp/phobos-kernel-vm)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${KVM_CACHE:-/var/tmp/phobos-kernel-vm}
export DEBIAN_FRONTEND=noninteractive

[ "$(id -u)" = 0 ] || { echo "systemd-vm install-deps: must run as root (apt-get, debootstrap)" >&2; exit 1; }
packages=()
command -v debootstrap >/dev/null || packages+=(debootstrap)
command -v mke2fs >/dev/null || packages+=(e2fsprogs)
command -v ssh-keygen >/dev/null || packages+=(openssh-client)
if [ ${#packages[@]} -gt 0 ]; then
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi
[ -s "$CACHE/kimg/vmlinux" ] ||
	echo "systemd-vm install-deps: no guest kernel in $CACHE/kimg yet: run scripts/kernel-vm/install-deps.sh too" >&2
t=$(date +%s)
tarball=$(bash "$HERE/mkrootfs.sh" base)
echo "systemd-vm install-deps: guest base system $tarball ($(($(date +%s) - t)) s)"
