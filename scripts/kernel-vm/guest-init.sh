#!/bin/sh
# /init of the kernel tier's busybox initramfs. The mode comes from the kernel command
# line (kt.mode=main|crash|recover|bench, kt.durable=N). Disks (from run-tier.sh):
#   main:          vda backing of r0, vdb ext4 for /mars, vdc backing of r1 (ext2 + lz4)
#   crash/recover: vda backing of r0, vdb ext4 for /mars
# Every line for the host starts with "KT:"; the last one is "KT: RESULT PASS|FAIL".
export PATH=/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
KVER=$(cat /etc/kver); MODE=main; DURABLE=0; ULOG=0
for a in $(cat /proc/cmdline); do
	case $a in kt.mode=*) MODE=${a#kt.mode=};; kt.durable=*) DURABLE=${a#kt.durable=};;
		kt.ulog=*) ULOG=${a#kt.ulog=};; esac
done
T=/bin/phobos_test
RES=PASS
fail() { echo "KT: FAIL: $*"; RES=FAIL; }
# run CMD...: print its output with the KT prefix, fail the test if it fails
run() { out=$("$@" 2>&1); rc=$?; echo "$out" | sed 's/^/KT:   /'; [ $rc = 0 ] || fail "$* (rc $rc)"; }
# create NAME BACKING LOG [opts]: like run, and sets DEV to the new block device
create() {
	out=$($T create "$@" 2>&1); rc=$?; echo "$out" | sed 's/^/KT:   /'
	DEV=$(echo "$out" | grep -o '/dev/phobos[0-9]*' | head -1)
	[ $rc = 0 ] && [ -b "$DEV" ] || { fail "create $* (rc $rc, device '$DEV')"; DEV=/nonexistent; }
}
finish() {
	dmesg | grep -E 'phobos|WARNING|BUG|Oops|blocked for more' | sed 's/^/KT: dmesg: /'
	dmesg | grep -qE 'WARNING:|BUG:|Oops|blocked for more than' && fail "kernel warnings in dmesg"
	echo "KT: RESULT $RES (mode $MODE, uptime $(cut -d' ' -f1 /proc/uptime) s)"
	sync; poweroff -f
}
echo "KT: uptime at init: $(cut -d' ' -f1 /proc/uptime) s, mode=$MODE"
for f in $(cat /etc/modules.order); do insmod "$f" 2>/dev/null; done
insmod /lib/modules/$KVER/phobos.ko || { fail "insmod phobos"; finish; }
[ -c /dev/phobos-ctl ] || fail "/dev/phobos-ctl missing"
mkdir -p /mars /mnt /small
mount -t ext4 /dev/vdb /mars || { fail "mount /mars"; finish; }
MB=1048576

if [ "$MODE" = main ]; then
	echo "KT: -- control interface"
	run $T version
	run $T badargs
	create r0 /dev/vda /mars/log-000000001-kt
	[ "$DEV" = /dev/phobos0 ] || fail "first device is $DEV, not /dev/phobos0"
	run $T expect EEXIST create r0 /dev/vdc /mars/other.log
	run $T expect EBUSY create r1 /dev/vda /mars/other.log
	run $T expect EBUSY create r1 /dev/vdc /mars/log-000000001-kt
	dd if=/dev/zero of=/tmp/tiny.img bs=64k count=1 2>/dev/null
	run $T expect ENOSPC create r9 /tmp/tiny.img /mars/tiny.log -s $MB
	run $T expect EINVAL create r9 /dev/phobos0 /mars/tiny.log

	echo "KT: -- data on /dev/phobos0: O_DIRECT, buffered + fsync, discard"
	run $T write /dev/phobos0 0 $MB 11 direct
	run $T write /dev/phobos0 $MB $((3 * MB)) 12 fsync
	run $T write /dev/phobos0 $((4 * MB)) 4096 13 direct fsync
	run $T write /dev/phobos0 $((8 * MB)) $MB 14 direct
	blkdiscard -o $((8 * MB + 262144)) -l 524288 /dev/phobos0 || fail "blkdiscard"
	run $T verify /dev/phobos0 0 $MB 11 direct
	run $T verify /dev/phobos0 $MB $((3 * MB)) 12
	run $T verify /dev/phobos0 $((4 * MB)) 4096 13 direct
	run $T verify /dev/phobos0 $((8 * MB)) 262144 14 direct
	run $T verify /dev/phobos0 $((8 * MB + 786432)) 262144 14 direct
	Z=$(dd if=/dev/phobos0 bs=4096 skip=$((2048 + 64)) count=128 iflag=direct 2>/dev/null | tr -d '\0' | wc -c)
	[ "$Z" = 0 ] || fail "discarded range not zero ($Z non-zero bytes)"
	run $T mode r0 durable
	run $T write /dev/phobos0 $((5 * MB)) $MB 16
	run $T mode r0 logged
	run $T query r0
	for a in writes zeroes flushes log_fsyncs log_pos synced_pos wb_pos completion; do
		echo "KT:   sysfs $a=$(cat /sys/block/phobos0/phobos/$a)"
	done
	[ "$(cat /sys/block/phobos0/phobos/zeroes)" -ge 1 ] || fail "no ZERO record counted"

	echo "KT: -- refusals while open"
	exec 3</dev/phobos0
	run $T expect EBUSY destroy r0
	rmmod phobos 2>/dev/null && fail "rmmod succeeded while /dev/phobos0 was open"
	exec 3<&-

	echo "KT: -- log switch"
	run $T switch r0 /mars/log-000000002-kt 2
	run $T write /dev/phobos0 $((12 * MB)) $MB 15 direct fsync
	run $T verify /dev/phobos0 $((12 * MB)) $MB 15 direct
	run $T destroy r0

	echo "KT: -- ext2 on /dev/phobos1 (lz4 log)"
	create r1 /dev/vdc /mars/r1-log-000000001-kt -z
	mke2fs -q $DEV >/dev/null 2>&1 || fail "mke2fs $DEV"
	if mount -t ext2 $DEV /mnt 2>/dev/null || mount -t ext4 $DEV /mnt; then
		dd if=/dev/urandom of=/mnt/random bs=64k count=32 2>/dev/null
		cp -a /bin /mnt/bin; mkdir -p /mnt/d/e; echo hello-phobos > /mnt/d/e/f
		S1=$(md5sum /mnt/random | cut -d' ' -f1); sync; umount /mnt || fail "umount"
		mount -t ext4 -o ro $DEV /mnt || fail "remount"
		S2=$(md5sum /mnt/random | cut -d' ' -f1)
		[ "$S1" = "$S2" ] && [ "$(cat /mnt/d/e/f)" = hello-phobos ] &&
			[ "$(ls /mnt/bin | wc -l)" -gt 100 ] && echo "KT:   files intact after remount" ||
			fail "files differ after remount"
		umount /mnt
	else
		fail "mount $DEV"
	fi
	run $T query r1
	run $T destroy r1

	echo "KT: -- log on a full filesystem"
	mount -t tmpfs -o size=256k tmpfs /small
	dd if=/dev/zero of=/tmp/fb.img bs=1M count=8 2>/dev/null
	create r2 /tmp/fb.img /small/log
	if dd if=/dev/urandom of=$DEV bs=1M count=2 oflag=direct 2>/tmp/dd.err; then
		fail "2 MiB write with a 256 KiB log filesystem succeeded"
	else
		grep -q 'No space left' /tmp/dd.err && echo "KT:   write refused: $(cat /tmp/dd.err)" ||
			fail "write failed, but not with ENOSPC: $(cat /tmp/dd.err)"
	fi
	run $T write $DEV 0 4096 17 direct
	run $T verify $DEV 0 4096 17 direct
	[ "$(cat /sys/block/${DEV#/dev/}/phobos/log_errors)" -ge 1 ] || fail "log_errors not counted"
	run $T destroy r2
	run $T verify /tmp/fb.img 0 4096 17

	echo "KT: -- recovery refusals: corruption and torn tail"
	cp /mars/log-000000001-kt /mars/corrupt.log
	printf 'X' | dd of=/mars/corrupt.log bs=1 seek=100 conv=notrunc 2>/dev/null
	run $T expect EUCLEAN create r3 /tmp/fb.img /mars/corrupt.log -r 0
	cp /mars/log-000000001-kt /mars/torn.log
	dd if=/dev/zero bs=100 count=1 2>/dev/null >> /mars/torn.log
	dd if=/dev/zero of=/tmp/fb3.img bs=1M seek=16 count=0 2>/dev/null
	create r3 /tmp/fb3.img /mars/torn.log -r 0
	run $T verify $DEV 0 $MB 11 direct
	run $T destroy r3
	echo 'not a phobos log' > /mars/garbage.log
	run $T expect EUCLEAN create r3 /tmp/fb.img /mars/garbage.log -r 0
	rm -f /mars/corrupt.log /mars/torn.log /mars/garbage.log
	dmesg | grep -q 'corrupt.log corrupt at offset 0: payload crc32c mismatch' || fail "no log line for the corruption"
	dmesg | grep -q 'torn tail at offset' || fail "no log line for the torn tail"
	if [ "$ULOG" = 1 ]; then
		echo "KT: -- replay of a log written by the userspace engine (/mars/ulog)"
		dd if=/dev/zero of=/tmp/u.img bs=1M seek=4 count=0 2>/dev/null
		create r5 /tmp/u.img /mars/ulog -r 0
		run $T verify $DEV 0 $((2 * MB - 65536)) 21 direct
		Z=$(dd if=$DEV bs=65536 skip=31 count=1 iflag=direct 2>/dev/null | tr -d '\0' | wc -c)
		[ "$Z" = 0 ] || fail "zeroed range of the userspace log not zero"
		[ "$RES" = PASS ] && echo "KT:   ok: phobos.ko replayed the userspace log"
		run $T destroy r5
	fi
	rmmod phobos || fail "rmmod phobos"
fi

if [ "$MODE" = crash ]; then
	create r0 /dev/vda /mars/log-000000001-kt
	$T crash-work $DEV 256 &
	sleep 6
	echo "KT: crashing now (sysrq b)"
	echo b > /proc/sysrq-trigger
fi

if [ "$MODE" = recover ]; then
	echo "KT: recovering, host saw gen $DURABLE durable"
	create r0 /dev/vda /mars/log-000000001-kt -r 0
	run $T crash-verify $DEV 256 "$DURABLE"
	run $T destroy r0
	run $T crash-verify /dev/vda 256 "$DURABLE"
	rmmod phobos || fail "rmmod phobos"
fi

if [ "$MODE" = bench ]; then
	# kernel-write: the same O_DIRECT workload on the raw virtio disk and on phobos
	create r0 /dev/vda /mars/log-000000001-kt
	for i in 1 2; do
		$T bench /dev/vdc 32 2000 || fail "bench vdc"
		$T bench $DEV 32 2000 || fail "bench $DEV"
	done
	run $T query r0
	run $T destroy r0
fi

umount /mars || fail "umount /mars"
finish
