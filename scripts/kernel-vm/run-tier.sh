#!/bin/bash
# The kernel tier: build phobos.ko (make W=1, and DKMS), boot it in qemu TCG guests,
# check the device, its logs and the disks, then crash a guest mid-workload and
# recover in a second boot. Needs scripts/kernel-vm/install-deps.sh first (root).
#
#   bash scripts/kernel-vm/run-tier.sh
#
# env: KVM_CACHE (as install-deps.sh), KEEP=1 keeps the scratch folder, SMP (default 1),
#      TIMEOUT per guest in seconds (default 300), BENCH=1 adds the kernel-write benchmark,
#      QEMU_CPU the guest CPU model (default max; e.g. max,erms=off,fsrm=off).
# Exit 0 only if every step passed; the last line is "kernel tier: PASS|FAIL ...".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${KVM_CACHE:-/var/tmp/phobos-kernel-vm}
KIMG=$CACHE/kimg
SMP=${SMP:-1}
TIMEOUT=${TIMEOUT:-300}
T0=$(date +%s.%N)
PASSED=0

now() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $1}"; }
die() {
	echo "$*"
	echo "kernel tier: FAIL after $PASSED steps, $(now "$T0") s (scratch kept in $W)"
	exit 1
}
step() {
	local name=$1 t; shift
	t=$(date +%s.%N)
	if "$@" > "$W/$name.log" 2>&1; then
		printf 'STEP %-20s ok   %6.1f s\n' "$name" "$(now "$t")"
		PASSED=$((PASSED + 1))
	else
		printf 'STEP %-20s FAIL %6.1f s (log %s)\n' "$name" "$(now "$t")" "$W/$name.log"
		tail -40 "$W/$name.log"
		die "step $name failed"
	fi
}

[ -s "$KIMG/vmlinux" ] && [ -s "$KIMG/kver" ] ||
	{ echo "no guest kernel in $KIMG: run 'bash scripts/kernel-vm/install-deps.sh' as root"; exit 1; }
KVER=$(cat "$KIMG/kver")
[ -d "/lib/modules/$KVER/build" ] ||
	{ echo "headers for $KVER missing: run 'bash scripts/kernel-vm/install-deps.sh' as root"; exit 1; }
for t in qemu-system-x86_64 busybox gcc cpio debugfs mkfs.ext4; do
	command -v "$t" >/dev/null || { echo "$t missing: run install-deps.sh"; exit 1; }
done
W=$(mktemp -d /tmp/phobos-kt.XXXXXX)
# the scratch folder goes away only after a pass (and without KEEP=1)
trap '[ "${OK:-0}" = 1 ] && [ "${KEEP:-0}" != 1 ] && rm -rf "$W"' EXIT
echo "kernel tier: kernel $KVER, scratch $W"

# ---- build ----
build_module() {
	cp -r "$ROOT/kernel" "$W/kernel"
	make -C "$W/kernel" clean >/dev/null 2>&1
	nice -n 10 make -C "$W/kernel" KVER="$KVER" W=1 || return 1
	! grep -iE 'warning:|error:|undefined' "$W/build-module.log"
}
build_dkms() {
	# A private DKMS tree: proves dkms.conf builds kernel/ without touching /var/lib/dkms.
	local v src
	v=$(sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' "$ROOT/kernel/dkms.conf")
	src=$W/dkms-src/phobos-$v
	mkdir -p "$src" "$W/dkms-tree"
	cp -r "$ROOT/kernel/." "$src/"
	make -C "$src" clean >/dev/null 2>&1
	nice -n 10 dkms add --dkmstree "$W/dkms-tree" --sourcetree "$W/dkms-src" -m phobos -v "$v" &&
	nice -n 10 dkms build --dkmstree "$W/dkms-tree" --sourcetree "$W/dkms-src" -m phobos -v "$v" \
		-k "$KVER" --kernelsourcedir "/lib/modules/$KVER/build" || return 1
	ls -l "$W/dkms-tree/phobos/$v/$KVER/x86_64/module/"
	ls "$W/dkms-tree/phobos/$v/$KVER/x86_64/module/" | grep -q '^phobos\.ko'
}
build_tools() {
	gcc -O2 -Wall -Wextra -Werror -static -o "$W/phobos_test" "$ROOT/test/kernel/phobos_test.c" &&
	gcc -O2 -Wall -Wextra -Werror -I "$ROOT/kernel/common" -o "$W/phobos_logcheck" \
		"$ROOT/test/kernel/phobos_logcheck.c" "$ROOT/kernel/common/phobos_log.c"
}
step build-module build_module
step build-dkms build_dkms
step build-tools build_tools
step initramfs "$HERE/mkinitramfs.sh" "$KIMG" "$KVER" "$W/kernel/phobos.ko" "$W/phobos_test" \
	"$W/initrd.gz"

# ---- guests ----
# boot NAME MODE [APPEND] -- disk images...
boot() {
	local name=$1 mode=$2 append=$3 drives=() t
	shift 3
	for d in "$@"; do drives+=(-drive "file=$d,if=virtio,format=raw,cache=unsafe"); done
	t=$(date +%s.%N)
	nice -n 10 timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu "${QEMU_CPU:-max}" -m 512 -smp "$SMP" \
		-nographic -no-reboot -nic none -kernel "$KIMG/vmlinux" -initrd "$W/initrd.gz" \
		-append "console=ttyS0 panic=-1 oops=panic panic_on_warn=1 slub_debug=FZPU hung_task_timeout_secs=60 kt.mode=$mode $append" \
		"${drives[@]}" > "$W/guest-$name.out" 2>&1
	echo "qemu rc=$? after $(now "$t") s"
	grep -a 'KT:' "$W/guest-$name.out" | tr -d '\r'
}
fresh_disks() {	# vda: backing, vdb: ext4 /mars, vdc: second backing
	rm -f "$W"/vd?.img
	truncate -s 64M "$W/vda.img" "$W/vdc.img"
	truncate -s 128M "$W/vdb.img"
	mkfs.ext4 -q -F "$W/vdb.img"
}
dump() { debugfs -R "dump $1 $2" "$W/vdb.img" >/dev/null 2>&1 && [ -f "$2" ]; }

# The userspace engine (dist/ and the addon), when built, gives the cross-engine checks.
have_userspace() { [ -f "$ROOT/dist/src/dataplane/index.js" ] && command -v node >/dev/null; }
guest_main() {
	local extra=""
	fresh_disks || return 1
	if have_userspace; then
		# a log written by the userspace engine, for phobos.ko to replay in the guest
		truncate -s 2M "$W/pat.img" && "$W/phobos_test" write "$W/pat.img" 0 2097152 21 &&
		node "$ROOT/test/kernel/cross_engine.mjs" write "$W/ulog" "$W/pat.img" 2097152 lz4 &&
		debugfs -w -R "write $W/ulog /ulog" "$W/vdb.img" || return 1
		extra="kt.ulog=1"
	else
		echo "userspace engine not built (dist/): skipping the cross-engine checks"
	fi
	boot main main "$extra" "$W/vda.img" "$W/vdb.img" "$W/vdc.img"
	grep -aq 'KT: RESULT PASS' "$W/guest-main.out"
}
host_verify_main() {
	local L=$W/logs C=$W/phobos_logcheck V=$W/phobos_test
	mkdir -p "$L"
	dump /log-000000001-kt "$L/r0.1" && dump /log-000000002-kt "$L/r0.2" &&
		dump /r1-log-000000001-kt "$L/r1.1" || { echo "logs missing on /mars"; return 1; }
	# every log ends with a SYNC_MARK (switch and destroy close them cleanly)
	"$C" "$L/r0.1" --expect-clean && "$C" "$L/r0.2" --expect-clean &&
		"$C" "$L/r1.1" --expect-clean || return 1
	grep -q '"lz4":[1-9]' <("$C" "$L/r1.1") || { echo "no lz4 record in r1's log"; return 1; }
	# replaying the logs onto empty disks gives exactly what phobos.ko wrote back
	truncate -s 64M "$W/replay0.img" "$W/replay1.img"
	"$C" "$L/r0.1" --replay "$W/replay0.img" >/dev/null &&
		"$C" "$L/r0.2" --replay "$W/replay0.img" >/dev/null &&
		"$C" "$L/r1.1" --replay "$W/replay1.img" >/dev/null || return 1
	cmp "$W/replay0.img" "$W/vda.img" && echo "r0: log replay == backing vda" || return 1
	cmp "$W/replay1.img" "$W/vdc.img" && echo "r1: log replay == backing vdc (ext2 image)" || return 1
	# and the backing holds the patterns the guest wrote
	"$V" verify "$W/vda.img" 0 1048576 11 && "$V" verify "$W/vda.img" 1048576 3145728 12 &&
		"$V" verify "$W/vda.img" 4194304 4096 13 && "$V" verify "$W/vda.img" 5242880 1048576 16 &&
		"$V" verify "$W/vda.img" 12582912 1048576 15 &&
		"$V" verify "$W/vda.img" 8388608 262144 14 || return 1
	[ "$(dd if="$W/vda.img" bs=4096 skip=2112 count=128 2>/dev/null | tr -d '\0' | wc -c)" = 0 ] ||
		{ echo "discarded range on vda not zero"; return 1; }
	if have_userspace; then
		for f in "$L"/r0.1 "$L"/r0.2 "$L"/r1.1; do
			node "$ROOT/dist/src/cli/main.js" log-check "$f" --json || return 1
		done
		# the userspace engine replays the module's logs to the same disks
		truncate -s 64M "$W/ureplay0.img" "$W/ureplay1.img"
		node "$ROOT/test/kernel/cross_engine.mjs" replay "$L/r0.1" "$W/ureplay0.img" &&
		node "$ROOT/test/kernel/cross_engine.mjs" replay "$L/r0.2" "$W/ureplay0.img" &&
		node "$ROOT/test/kernel/cross_engine.mjs" replay "$L/r1.1" "$W/ureplay1.img" || return 1
		cmp "$W/ureplay0.img" "$W/vda.img" && cmp "$W/ureplay1.img" "$W/vdc.img" &&
			echo "userspace replay of the module's logs == backing vda, vdc" || return 1
		grep -aq 'KT:   ok: phobos.ko replayed the userspace log' "$W/guest-main.out" ||
			{ echo "guest did not replay the userspace engine's log"; return 1; }
	else
		echo "userspace scanner dist/src/cli/main.js not built: checked with phobos_logcheck only"
	fi
}
guest_crash() {
	fresh_disks || return 1
	boot crash crash "" "$W/vda.img" "$W/vdb.img"
	DURABLE=$(grep -a 'KT: DURABLE' "$W/guest-crash.out" | tail -1 | tr -dc '0-9')
	echo "last generation the host saw durable: ${DURABLE:-none}"
	grep -aq 'KT: crashing now' "$W/guest-crash.out" && ! grep -aq 'KT: RESULT' "$W/guest-crash.out" &&
		[ "${DURABLE:-0}" -gt 0 ] && echo "$DURABLE" > "$W/durable"
}
guest_recover() {
	cp "$W/vda.img" "$W/vda-crashed.img"
	boot recover recover "kt.durable=$(cat "$W/durable")" "$W/vda.img" "$W/vdb.img"
	grep -aq 'KT: RESULT PASS' "$W/guest-recover.out"
}
host_verify_crash() {
	dump /log-000000001-kt "$W/crash.log" || return 1
	# informative: what the backing held at the crash, before replay
	echo "backing at the crash, before replay: $("$W/phobos_test" crash-verify \
		"$W/vda-crashed.img" 256 "$(cat "$W/durable")" | tail -1)"
	"$W/phobos_logcheck" "$W/crash.log" --expect-clean &&
		"$W/phobos_test" crash-verify "$W/vda.img" 256 "$(cat "$W/durable")"
}
guest_bench() {
	fresh_disks || return 1
	boot bench bench "" "$W/vda.img" "$W/vdb.img" "$W/vdc.img"
	grep -aq 'KT: RESULT PASS' "$W/guest-bench.out" || return 1
	# ratios phobos / raw, from the second round (the first warms the page caches)
	grep -a 'KT: BENCH' "$W/guest-bench.out" | tr -d '\r' | tail -2 | awk '
		{ for (i = 4; i <= 5; i++) { split($i, kv, "="); v[NR, i - 1] = kv[2] } }
		END { printf "kernel-write: raw vdc seq %.1f MiB/s, rand %.0f IOPS; phobos seq %.1f MiB/s, rand %.0f IOPS; ratio seq %.2f, rand %.2f\n",
			v[1,3], v[1,4], v[2,3], v[2,4], v[2,3] / v[1,3], v[2,4] / v[1,4] }'
}
step guest-main guest_main
step host-verify-main host_verify_main
step guest-crash guest_crash
step guest-recover guest_recover
step host-verify-crash host_verify_crash

if [ "${BENCH:-0}" = 1 ]; then
	step guest-bench guest_bench
	grep 'kernel-write' "$W/guest-bench.log"
fi
OK=1
echo "kernel tier: PASS ($PASSED steps, $(now "$T0") s)"
