#!/bin/sh
# /init of the systemd VM tier's initramfs: load the disk modules, mount the root
# filesystem, start systemd on it.
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for f in $(cat /etc/modules.order); do insmod "$f" 2>/dev/null; done
for i in $(seq 1 50); do [ -b /dev/vda ] && break; sleep 0.1; done
mount -t ext4 -o rw /dev/vda /newroot || { echo "PHOBOS-VM: FAIL cannot mount /dev/vda"; poweroff -f; }
for d in dev proc sys; do mount --move /$d /newroot/$d; done
echo "PHOBOS-VM: switch_root at uptime $(cut -d' ' -f1 /newroot/proc/uptime) s"
exec switch_root /newroot /sbin/init
