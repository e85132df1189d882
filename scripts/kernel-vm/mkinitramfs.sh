#!/bin/bash
# Build the kernel tier's busybox initramfs: busybox-static with its applets, the
# dependency modules of phobos.ko, virtio-blk and ext4 (resolved with
# modprobe --show-depends against the unpacked guest kernel), phobos.ko, the static
# test program, and guest-init.sh as /init.
# usage: mkinitramfs.sh KIMG KVER PHOBOS.KO PHOBOS_TEST OUT.cpio.gz
set -euo pipefail
KIMG=$1; KVER=$2; KO=$3; TESTBIN=$4; OUT=$5
HERE=$(cd "$(dirname "$0")" && pwd)
MODS="libcrc32c lz4_compress virtio_pci virtio_blk ext4"
R=$(mktemp -d /tmp/phobos-initramfs.XXXXXX)
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,sbin,dev,proc,sys,tmp,mnt,etc,lib/modules/$KVER}
cp /bin/busybox "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
: > "$R/etc/modules.order"
for m in $MODS; do
	modprobe -d "$KIMG" -S "$KVER" --show-depends "$m" | awk '$1=="insmod"{print $2}'
done | awk '!seen[$0]++' | while read -r f; do
	g=${f#"$KIMG"}
	mkdir -p "$R$(dirname "$g")"; cp "$f" "$R$g"; echo "$g" >> "$R/etc/modules.order"
done
cp "$KO" "$R/lib/modules/$KVER/phobos.ko"
cp "$TESTBIN" "$R/bin/phobos_test"
echo "$KVER" > "$R/etc/kver"
cp "$HERE/guest-init.sh" "$R/init"; chmod +x "$R/init"
(cd "$R" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$OUT"
