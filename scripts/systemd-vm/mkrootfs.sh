#!/bin/bash
# Root filesystem of the systemd VM tier's guests (Debian 12 with systemd as init).
#
#   mkrootfs.sh base              debootstrap the base system into a cached tarball
#                                 (skipped when the tarball for this package list exists);
#                                 prints the tarball's path
#   mkrootfs.sh image OUT.img     unpack the cached tarball, add the guest kernel's modules,
#                                 node, Phobos (dist/, the addon, production node_modules,
#                                 templates/, systemd-units/) and the guest scripts; pack it
#                                 into an ext4 image with mke2fs -d (no loop mount)
#
# env: KVM_CACHE (default /var/tmp/phobos-kernel-vm; the guest kernel is in $KVM_CACHE/kimg,
#      from scripts/kernel-vm/install-deps.sh), SCRATCH (where `image` unpacks; default a
#      tmpfs mounted next to OUT.img), PHOBOS_KO (phobos.ko for the guest kernel, installed
#      as an extra module). Runs as root (debootstrap, mounts, file ownership).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${KVM_CACHE:-/var/tmp/phobos-kernel-vm}
SUITE=bookworm
# Everything the guests need beyond minbase: systemd as init, udev (device links such as
# /dev/virtio-ports/*), modprobe, ip, sshd for the peers, nbd-client for the userspace
# engine's device, ps for the logs on failure.
PACKAGES=systemd-sysv,udev,kmod,iproute2,openssh-server,nbd-client,procps
MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null ||
	awk '/^deb /{print $2; exit}' /etc/apt/sources.list)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# The tarball is keyed by what goes into it (not by the mirror: any mirror gives the same).
KEY=$(printf '%s %s minbase %s v1\n' "$SUITE" "$(dpkg --print-architecture)" "$PACKAGES" | sha256sum | cut -c1-12)
TARBALL=$CACHE/systemd-vm/rootfs-$SUITE-$KEY.tar

base() {
	if [ -s "$TARBALL" ]; then
		echo "$TARBALL"
		return 0
	fi
	[ "$(id -u)" = 0 ] || { echo "mkrootfs.sh base: must run as root (debootstrap)" >&2; exit 1; }
	command -v debootstrap >/dev/null || { echo "debootstrap missing: run scripts/systemd-vm/install-deps.sh" >&2; exit 1; }
	mkdir -p "$CACHE/systemd-vm"
	local t
	dir=$(mktemp -d "$CACHE/systemd-vm/debootstrap.XXXXXX")
	# On a tmpfs of its own: dpkg's fsyncs cost nothing there (debootstrap is mostly dpkg)
	mount -t tmpfs -o size=3G,mode=755 phobos-debootstrap "$dir"
	trap 'umount -l "$dir"; rm -rf --one-file-system "$dir" "$dir.log" "$TARBALL.tmp"' EXIT
	t=$(date +%s)
	if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$dir" "$MIRROR" > "$dir.log" 2>&1; then
		tail -30 "$dir.log" >&2; rm -f "$dir.log"; exit 1
	fi
	rm -f "$dir.log"
	echo "debootstrap: $(($(date +%s) - t)) s" >&2
	# Each guest makes its own sshd host key at boot; the tarball holds none.
	rm -f "$dir"/etc/ssh/ssh_host_* "$dir"/var/cache/apt/archives/*.deb
	rm -rf "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/locale/*
	tar --numeric-owner -C "$dir" -cf "$TARBALL.tmp" .
	mv "$TARBALL.tmp" "$TARBALL"
	# older tarballs (another package list) are no longer used
	find "$CACHE/systemd-vm" -maxdepth 1 -name 'rootfs-*.tar' ! -name "$(basename "$TARBALL")" -delete
	echo "$TARBALL"
}

image() {
	local out=$1 kimg kver m t
	[ -s "$TARBALL" ] || base >/dev/null
	kimg=$CACHE/kimg
	kver=$(cat "$kimg/kver")
	for f in "$ROOT/dist/src/cli/main.js" "$ROOT"/build/Release/*.node; do
		[ -e "$f" ] || { echo "$f missing: build the project first (npm ci / npm run build)" >&2; exit 1; }
	done
	if [ -n "${SCRATCH:-}" ]; then
		r=$SCRATCH; mkdir -p "$r"
	else
		r=$(mktemp -d "$(dirname "$out")/rootfs.XXXXXX")
		mount -t tmpfs -o size=3G,mode=755 phobos-rootfs "$r"
		trap 'umount -l "$r"; rm -rf --one-file-system "$r"' EXIT
	fi
	t=$(date +%s.%N)
	tar --numeric-owner -C "$r" -xf "$TARBALL"
	chmod 755 "$r"

	# Kernel modules loaded after switch_root (virtio_pci, virtio_blk and ext4 are loaded
	# by the initramfs): the NIC, the control port, NBD. depmod makes modprobe and udev's
	# modalias loading work.
	for m in virtio_net virtio_console nbd libcrc32c lz4_compress; do
		modprobe -d "$kimg" -S "$kver" --show-depends "$m" | awk '$1=="insmod"{print $2}'
	done | awk '!seen[$0]++' | while read -r f; do
		g=${f#"$kimg"}; mkdir -p "$r$(dirname "$g")"; cp "$f" "$r$g"
	done
	cp "$kimg/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$r/lib/modules/$kver/"
	# env PHOBOS_KO: phobos.ko built for this kernel (`modprobe phobos` in the guest; the
	# daemon's --engine auto then picks the kernel engine)
	if [ -n "${PHOBOS_KO:-}" ]; then
		mkdir -p "$r/lib/modules/$kver/extra" && cp "$PHOBOS_KO" "$r/lib/modules/$kver/extra/phobos.ko"
	fi
	depmod -b "$r" "$kver"
	echo nbd > "$r/etc/modules-load.d/nbd.conf"

	# node (same Debian 12 as the host: its shared libraries are in the guest too)
	cp "$(command -v node)" "$r/usr/bin/node"
	# Phobos: what the npm package ships, plus the production dependencies
	mkdir -p "$r/opt/phobos/build/Release" "$r/opt/phobos/node_modules"
	cp -a "$ROOT/dist" "$ROOT/templates" "$ROOT/systemd-units" "$ROOT/package.json" "$r/opt/phobos/"
	cp "$ROOT"/build/Release/*.node "$r/opt/phobos/build/Release/"
	(cd "$ROOT" && npm ls --omit=dev --all --parseable 2>/dev/null | sed "s|^$ROOT/||" | grep '^node_modules/' |
		sort -u | while read -r d; do mkdir -p "$r/opt/phobos/$(dirname "$d")"; cp -a "$d" "$r/opt/phobos/$d"; done)
	printf '#!/bin/sh\nexec /usr/bin/node /opt/phobos/dist/src/cli/main.js "$@"\n' > "$r/usr/local/bin/marsadm"
	chmod 755 "$r/usr/local/bin/marsadm"
	ln -sf /usr/local/bin/marsadm "$r/usr/bin/marsadm"  # the shipped units say /usr/bin/marsadm

	# The project's units, copied as the operator guide says; the test enables them (enable
	# --now) once the host is in the cluster: before that the daemon would only fail and
	# restart every 2 s, seconds of CPU each under TCG
	cp "$ROOT"/systemd-units/* "$r/etc/systemd/system/"
	# The operator's templates of the test's stack (app on top of an NBD-backed mount)
	mkdir -p "$r/etc/phobos/systemd-templates"
	cp "$HERE"/guest/templates/* "$r/etc/phobos/systemd-templates/"

	# The guest side of the test: identity from the kernel command line, the control agent
	install -m 755 "$HERE/guest/phobos-vm-setup.sh" "$HERE/guest/phobos-vm-agent.sh" "$r/usr/local/sbin/"
	cp "$HERE"/guest/phobos-vm-setup.service "$HERE"/guest/phobos-vm-agent.service "$r/etc/systemd/system/"
	ln -sf /etc/systemd/system/phobos-vm-setup.service "$r/etc/systemd/system/sysinit.target.wants/phobos-vm-setup.service"
	ln -sf /etc/systemd/system/phobos-vm-agent.service "$r/etc/systemd/system/multi-user.target.wants/phobos-vm-agent.service"
	# agetty on ttyS0 would vhangup() the console (reference/kernel-vm.md §5); nothing else
	# the test does not use either
	for u in getty.target serial-getty@ttyS0.service systemd-timesyncd.service apt-daily.timer \
		apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer \
		systemd-networkd-wait-online.service nbd-client.service; do
		ln -sf /dev/null "$r/etc/systemd/system/$u"
	done
	echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" > "$r/etc/fstab"
	mkdir -p "$r/root/.ssh" && chmod 700 "$r/root/.ssh"
	if [ -n "${OPERATOR_KEY:-}" ]; then	# env OPERATOR_KEY: the operator's root ssh access to every guest
		install -m 600 "$OPERATOR_KEY" "$r/root/.ssh/id_ed25519"
		install -m 600 "$OPERATOR_KEY.pub" "$r/root/.ssh/authorized_keys"
	fi
	cp /bin/busybox "$r/usr/local/bin/busybox"   # the test service: busybox httpd (and wget)
	cat > "$r/etc/ssh/sshd_config.d/phobos-vm.conf" <<-'EOF'
		# Only the ed25519 key that phobos-vm-setup makes at boot (fast under TCG)
		HostKey /etc/ssh/ssh_host_ed25519_key
		PermitRootLogin prohibit-password
		UseDNS no
	EOF
	rm -f "$out"
	mke2fs -q -t ext4 -d "$r" -L phobos-vm "$out" 1G
	printf 'image: %s (%.1f s)\n' "$out" "$(awk "BEGIN{print $(date +%s.%N) - $t}")"
}

case "${1:-}" in
base) base ;;
image) image "$2" ;;
*) echo "usage: $0 base | image OUT.img" >&2; exit 2 ;;
esac
