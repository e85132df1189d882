#!/bin/bash
# The systemd VM tier's busybox initramfs: loads what it takes to mount the root
# filesystem (virtio-pci, virtio-blk, ext4, resolved with modprobe --show-depends against
# the unpacked guest kernel), mounts /dev/vda and hands over to systemd (switch_root).
# usage: mkinitramfs.sh KIMG KVER OUT.cpio.gz
set -euo pipefail
KIMG=$1; KVER=$2; OUT=$3
HERE=$(cd "$(dirname "$0")" && pwd)
R=$(mktemp -d /tmp/phobos-svm-initramfs.XXXXXX)
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,dev,proc,sys,newroot,etc}
cp /bin/busybox "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
ln -s bin "$R/sbin"
: > "$R/etc/modules.order"
for m in virtio_pci virtio_blk ext4; do
	modprobe -d "$KIMG" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r f; do
	g=${f#"$KIMG"}
	mkdir -p "$R$(dirname "$g")"; cp "$f" "$R$g"; echo "$g" >> "$R/etc/modules.order"
done
cp "$HERE/guest/initramfs-init.sh" "$R/init"; chmod +x "$R/init"
(cd "$R" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$OUT"
