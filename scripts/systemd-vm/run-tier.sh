#!/bin/bash
# The systemd VM tier: two qemu TCG guests (alpha, beta) booted with systemd as init, each
# running the Phobos daemon from the project's units (systemd-units/) and the generated
# per-resource units, peers over SSH (create-cluster / join-cluster). alpha loads phobos.ko
# (built here for the guest kernel), so its daemon's --engine auto picks the kernel engine
# (the device is /dev/phobos0, linked at /dev/mars/r1); beta has no module and runs the
# userspace engine (the daemon's NBD export, attached with nbd-client). Every log alpha
# writes is replayed by beta's userspace replayer and the reverse. The stack of r1 is a
# mounted ext4 filesystem plus a small HTTP service on it. Scenario:
#   0. alpha's daemon SIGKILLed: the module goes on serving, the restarted daemon adopts it;
#   1. planned handover alpha -> beta (`marsadm primary r1` on beta) moves the mount and
#      the service; what the service wrote on alpha is read on beta;
#   2. the primary's (beta's) link cut (ip link down inside beta), forced failover on alpha
#      (disconnect + primary --force) starts the stack there; beta, cut off, keeps its own;
#   3. beta's link returns: beta hears of alpha's role and stops its stack.
# (Failing over in this direction saves a second planned handover, ~40-70 s under TCG.)
# The host drives the guests over a virtio-serial control channel (guest/phobos-vm-agent.sh).
# Needs scripts/kernel-vm/install-deps.sh and scripts/systemd-vm/install-deps.sh (root).
#
#   bash scripts/systemd-vm/run-tier.sh
#
# env: KVM_CACHE (as install-deps.sh), KEEP=1 keeps the scratch folder, TIMEOUT per guest
#      (default 600 s), MEM per guest in MiB (default 768), HANDOVER_ONLY=1 stops after the
#      planned handover (the benchmark), SMP vCPUs per guest (default 1), PROBE=SCRIPT
#      [PROBE_AFTER=boot|stack-on-alpha] runs SCRIPT in alpha after that step and stops.
# Lines for the test and the benchmark: "STEP <name> ok|FAIL <s>", "BENCH <name> <value> <unit>",
# last line "systemd-vm tier: PASS|FAIL ...".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${KVM_CACHE:-/var/tmp/phobos-kernel-vm}
KIMG=$CACHE/kimg
TIMEOUT=${TIMEOUT:-600}
MEM=${MEM:-768}
SMP=${SMP:-1}
RES=r1
T0=$(date +%s.%N)
PASSED=0
declare -A QEMU=() CTL=() IP=([alpha]=10.99.0.1 [beta]=10.99.0.2)
CTL_SEQ=0

now() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $1}"; }
cleanup() {
	local p
	for p in "${QEMU[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${QEMU[@]}"; do wait "$p" 2>/dev/null; done
	[ "${OK:-0}" = 1 ] && [ "${KEEP:-0}" != 1 ] && rm -rf "$W"
}
die() {
	echo "$*"
	for h in alpha beta; do
		[ -n "${CTL[$h]:-}" ] || continue
		# the whole journal stays in the scratch folder; the tail printed here leaves out
		# the trigger's skipped runs (one per replication step, they drown the daemon)
		ctl "$h" 60 'journalctl -b --no-pager -o short-monotonic' > "$W/journal-$h.txt" 2>&1
		echo "--- $h: failed units, phobos journal without skipped triggers (last 60 lines; all in $W/journal-$h.txt)"
		ctl "$h" 30 'systemctl --failed --no-legend; journalctl -b --no-pager -o short-monotonic -u "phobos*" -u "app-*" |
			grep -v -e "Skipped due to .exec-condition" -e "Condition check resulted in" -e "Starting phobos-.*-trigger.service" | tail -60' 2>&1 | sed "s/^/$h| /"
	done
	echo "systemd-vm tier: FAIL after $PASSED steps, $(now "$T0") s (scratch kept in $W)"
	exit 1
}
step() {
	local name=$1 t; shift
	t=$(date +%s.%N)
	if "$@" > "$W/$name.log" 2>&1; then
		printf 'STEP %-22s ok   %6.1f s\n' "$name" "$(now "$t")"
		PASSED=$((PASSED + 1))
		grep -h '^BENCH ' "$W/$name.log"
	else
		printf 'STEP %-22s FAIL %6.1f s (log %s)\n' "$name" "$(now "$t")" "$W/$name.log"
		tail -40 "$W/$name.log"
		die "step $name failed"
	fi
}

# ---- the control channel (guest side: guest/phobos-vm-agent.sh) ----
# ctl HOST TIMEOUT SCRIPT: run SCRIPT with bash in HOST, print its output, return its status
ctl() {
	local h=$1 tmo=$2 script=$3 fd=${CTL[$1]} id r rid rc b64
	CTL_SEQ=$((CTL_SEQ + 1)); id=$CTL_SEQ
	printf '%s %s %s\n' "$id" "$tmo" "$(printf %s "$script" | base64 -w0)" >&"$fd" || return 99
	IFS=' ' read -r -t $((tmo + 15)) -u "$fd" r rid rc b64 || { echo "ctl $h: no answer within $((tmo + 15)) s"; return 98; }
	[ "$r $rid" = "R $id" ] || { echo "ctl $h: out of step (sent $id, got '$r $rid')"; return 97; }
	[ -z "$b64" ] || printf '%s\n' "$(printf '%s\n' "$b64" | base64 -d)"
	return "$rc"
}
# until HOST TIMEOUT WHAT SCRIPT: run SCRIPT in HOST every 0.5 s until it succeeds
until_ok() {
	local h=$1 tmo=$2 what=$3 script=$4
	ctl "$h" $((tmo + 5)) "for i in \$(seq 1 $((tmo * 2))); do ( $script ) >/tmp/until.out 2>&1 && { cat /tmp/until.out; exit 0; }; sleep 0.5; done; cat /tmp/until.out; exit 1" ||
		{ echo "$h: timed out after $tmo s waiting for $what"; return 1; }
}

[ -s "$KIMG/vmlinux" ] && [ -s "$KIMG/kver" ] ||
	{ echo "no guest kernel in $KIMG: run 'bash scripts/kernel-vm/install-deps.sh' as root"; exit 1; }
KVER=$(cat "$KIMG/kver")
[ -d "/lib/modules/$KVER/build" ] ||
	{ echo "headers for $KVER missing: run 'bash scripts/kernel-vm/install-deps.sh' as root"; exit 1; }
for t in qemu-system-x86_64 busybox cpio mke2fs ssh-keygen node; do
	command -v "$t" >/dev/null || { echo "$t missing: run scripts/systemd-vm/install-deps.sh"; exit 1; }
done
W=$(mktemp -d /var/tmp/phobos-svm.XXXXXX)
trap cleanup EXIT
echo "systemd-vm tier: kernel $KVER, scratch $W"

# ---- images ----
operator_key() {
	# The operator's root ssh access to both hosts (what join-cluster uses once).
	ssh-keygen -q -t ed25519 -N '' -C phobos-vm-operator -f "$W/operator_ed25519"
}
module() {	# phobos.ko for the guest kernel (the kernel tier checks it with W=1 and DKMS)
	cp -a "$ROOT/kernel" "$W/kernel" && make -C "$W/kernel" clean >/dev/null 2>&1
	nice -n 10 make -C "$W/kernel" KVER="$KVER" && modinfo "$W/kernel/phobos.ko" | grep -E '^(vermagic|depends)'
}
step rootfs-base bash "$HERE/mkrootfs.sh" base
step module module
step operator-key operator_key
step rootfs-image env OPERATOR_KEY="$W/operator_ed25519" PHOBOS_KO="$W/kernel/phobos.ko" bash "$HERE/mkrootfs.sh" image "$W/rootfs.img"
step initramfs bash "$HERE/mkinitramfs.sh" "$KIMG" "$KVER" "$W/initrd.gz"

# ---- guests ----
PORT=$((20000 + RANDOM % 20000))
boot_guest() {	# NAME MAC NETDEV-MODE CTL-PORT
	local h=$1 mac=$2 net=$3 cport=$4
	truncate -s 32M "$W/disk-$h.img"
	timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -m "$MEM" -smp "$SMP" -nographic -no-reboot \
		-kernel "$KIMG/vmlinux" -initrd "$W/initrd.gz" \
		-append "console=ttyS0 loglevel=4 panic=-1 net.ifnames=0 systemd.hostname=$h phobos.ip=${IP[$h]} phobos.hosts=alpha:${IP[alpha]},beta:${IP[beta]}" \
		-drive "file=$W/rootfs.img,if=virtio,format=raw,snapshot=on" \
		-drive "file=$W/disk-$h.img,if=virtio,format=raw,cache=unsafe" \
		-netdev "socket,id=n0,$net=127.0.0.1:$PORT" -device "virtio-net-pci,netdev=n0,mac=$mac" \
		-device virtio-serial-pci -chardev "socket,id=ctl,host=127.0.0.1,port=$cport,server=on,wait=off" \
		-device virtserialport,chardev=ctl,name=phobos.ctl \
		< /dev/null > "$W/console-$h.log" 2>&1 &
	QEMU[$h]=$!
}
connect_ctl() {	# NAME CTL-PORT: connect once the guest's agent is up
	local h=$1 cport=$2 fd i
	for i in $(seq 1 $((TIMEOUT * 2))); do
		grep -aq 'PHOBOS-VM: agent ready' "$W/console-$h.log" 2>/dev/null && break
		kill -0 "${QEMU[$h]}" 2>/dev/null || { echo "qemu of $h exited"; tail -30 "$W/console-$h.log"; return 1; }
		sleep 0.5
	done
	exec {fd}<>"/dev/tcp/127.0.0.1/$cport" || return 1
	CTL[$h]=$fd
	ctl "$h" 10 'echo "$(hostname) up $(cut -d" " -f1 /proc/uptime) s"; systemctl is-system-running || true'
}
boot_both() {
	boot_guest alpha 52:54:00:99:00:01 listen $((PORT + 1))
	sleep 0.3
	boot_guest beta 52:54:00:99:00:02 connect $((PORT + 2))
	connect_ctl alpha $((PORT + 1)) && connect_ctl beta $((PORT + 2))
}
step boot boot_both
# step runs its function in this shell: CTL is set for the next steps
grep -ah 'PHOBOS-VM' "$W"/console-*.log | tr -d '\r'

# env PROBE=SCRIPT [PROBE_AFTER=step]: run SCRIPT in alpha after that step (default boot), stop
probe() { [ -n "${PROBE:-}" ] && [ "${PROBE_AFTER:-boot}" = "$1" ] || return 0; ctl alpha 600 "$PROBE"; exit $?; }
probe boot

# ---- cluster, resource, stack ----
UNITS="phobos-daemon.service phobos-trigger.path phobos-trigger.service"
cluster() {	# the operator's steps: cluster, then the units (docs/operator-guide.md)
	ctl alpha 60 "modprobe phobos && ls -l /dev/phobos-ctl && marsadm create-cluster ${IP[alpha]} && systemctl enable --now $UNITS" || return 1
	ctl beta 120 "marsadm join-cluster alpha ${IP[beta]} --ssh-opts '-o StrictHostKeyChecking=accept-new -o BatchMode=yes' &&
		systemctl enable --now $UNITS && marsadm wait-cluster --timeout 90"
}
resource() {
	# alpha: the kernel engine's device, linked by the daemon. 4 KiB blocks: phobos0 has
	# 512-byte sectors, and mke2fs would pick 1 KiB blocks for 32 MiB, which beta's NBD
	# device (4 KiB sectors) cannot mount
	ctl alpha 120 "marsadm create-resource $RES /dev/vdb && ls -l /dev/mars/$RES && [ \"\$(readlink /dev/mars/$RES)\" = /dev/phobos0 ] &&
		mkfs.ext4 -q -b 4096 -L $RES /dev/mars/$RES && echo \"phobos0 records: \$(cat /sys/block/phobos0/phobos/records)\" &&
		journalctl -b --no-pager -u phobos-daemon | grep -o 'engine: kernel.*'" || return 1
	ctl beta 180 "marsadm join-resource $RES /dev/vdb --json | tail -2 && journalctl -b --no-pager -u phobos-daemon | grep -o 'engine: user.*'"
}
stack() {
	ctl alpha 120 "marsadm set-systemd-unit $RES app-$RES.service phobos-$RES-stack.service && marsadm get-systemd-unit $RES" || return 1
	until_ok alpha 120 "the service on alpha" "busybox wget -qO- http://127.0.0.1:8080/app.log | grep -q 'started on alpha'" || return 1
	# data written on alpha, through the mounted filesystem
	ctl alpha 60 "cd /mnt/phobos/$RES && head -c 4M /dev/urandom > payload && sha256sum payload > payload.sha256 && sync &&
		cat app.log payload.sha256 && findmnt -no SOURCE /mnt/phobos/$RES &&
		cd /sys/block/phobos0/phobos && grep . records log_fsyncs log_pos wb_durable_pos log_errors" || return 1
	# beta generated the stack's units by itself: its path unit saw the keys arrive
	until_ok beta 120 "beta's units of the stack" "[ -e /run/systemd/system/app-$RES.service ] &&
		st=\$(readlink /mars/resource-$RES/actual-beta/systemd-status) && echo \"beta systemd-status \$st\" && [ \"\$st\" = stop,0,alpha ]"
}
step cluster cluster
guest_costs() {	# what one marsadm costs under TCG (the benchmark's baseline, and the report's)
	ctl alpha 60 'TIMEFORMAT=%R; echo "node -e 0: $( { time node -e 0; } 2>&1) s"
		echo "marsadm view-get-primary: $( { time marsadm view-get-primary >/dev/null; } 2>&1) s"
		systemd-analyze time' > "$W/costs.txt"
	cat "$W/costs.txt"
	awk '/^marsadm view-get-primary:/ { printf "BENCH guest-marsadm %.0f ms\n", $3 * 1000 }' "$W/costs.txt"
}
[ "${HANDOVER_ONLY:-0}" = 1 ] && step guest-costs guest_costs
step resource resource
step stack-on-alpha stack
probe stack-on-alpha

# ---- the kernel engine outlives its daemon ----
daemon_kill() {	# SIGKILL alpha's daemon: phobos.ko keeps serving; the restarted daemon adopts the device
	ctl alpha 60 "systemctl kill -s KILL phobos-daemon && echo 'alpha: daemon killed' &&
		cd /mnt/phobos/$RES && head -c 1M /dev/urandom > during-restart && sync && sha256sum during-restart >> payload.sha256 &&
		echo 'alpha: wrote during-restart with no daemon running'" || return 1
	until_ok alpha 90 "the restarted daemon to adopt /dev/phobos0" \
		"journalctl -b --no-pager -u phobos-daemon | grep -o 'resource $RES: primary, serving.*adopted.*'" || return 1
	ctl alpha 30 "cd /mnt/phobos/$RES && sha256sum -c payload.sha256 && marsadm view-is-primary $RES &&
		journalctl -b --no-pager -u 'app-*' -u 'phobos-*-stack*' | grep -c Stopping | grep -qx 0"
}
step daemon-kill-alpha daemon_kill

# ---- 1. planned handover ----
stopped_on() {	# HOST NEWHOST: HOST's stack is stopped, and HOST said so in the tree
	until_ok "$1" 90 "$1 to stop its stack" "st=\$(readlink /mars/resource-$RES/actual-$1/systemd-status)
		echo \"$1 systemd-status \$st\"; case \$st in stop,0,$2*) ;; *) false;; esac &&
		! systemctl is-active -q app-$RES.service phobos-$RES-stack.service && ! mountpoint -q /mnt/phobos/$RES &&
		[ ! -e /sys/block/nbd0/pid ]"
}
handover() {	# TO FROM
	local to=$1 from=$2 t0 t1 t2 rc
	t0=$(date +%s.%N)
	ctl "$to" 240 "marsadm primary $RES --json" > "$W/primary-$to.json"; rc=$?; cat "$W/primary-$to.json"; [ $rc = 0 ] || return 1
	t1=$(date +%s.%N)
	until_ok "$to" 120 "the service on $to" "busybox wget -qO- http://127.0.0.1:8080/app.log | grep -q 'started on $to'" || return 1
	t2=$(date +%s.%N)
	echo "service answered on $to"
	ctl "$to" 30 "cd /mnt/phobos/$RES && cat app.log && sha256sum -c payload.sha256" || return 1
	stopped_on "$from" "$to" || return 1
	# the figures for bench/stack_handover.ts: stop, handover, start
	awk -v t0="$t0" -v t1="$t1" -v t2="$t2" '
		/"phase"/ { match($0, /"phase":"[^"]*"/); p = substr($0, RSTART + 9, RLENGTH - 10)
			match($0, /"ms":[0-9.]+/); ms[p] = substr($0, RSTART + 5, RLENGTH - 5) }
		END {
			stop = ms["stop-stack"] + ms["wait-close"]
			hand = ms["check"] + ms["leave"] + ms["catch-up"] + ms["become"]
			total = (t2 - t0) * 1000
			printf "BENCH stack-handover-stop %.0f ms\nBENCH stack-handover-handover %.0f ms\n", stop, hand
			printf "BENCH stack-handover-start %.0f ms\nBENCH stack-handover-total %.0f ms\n", total - stop - hand, total
		}' "$W/primary-$to.json"
}
step handover-to-beta handover beta alpha
if [ "${HANDOVER_ONLY:-0}" = 1 ]; then	# env HANDOVER_ONLY=1: bench/stack_handover.ts stops here
	OK=1; echo "systemd-vm tier: PASS ($PASSED steps, handover only, $(now "$T0") s)"; exit 0
fi

# ---- 2. forced failover with the primary's (beta's) link cut ----
failover() {
	local rc
	ctl beta 10 'ip link set eth0 down && echo "beta: eth0 down"' || return 1
	# First with alpha's disk mounted (an operator looked at the copy, read-only and noload so
	# nothing is written, and forgot it): phobos.ko refuses the device with EBUSY, and
	# marsadm says so at once, in the operator's words, instead of waiting out --timeout
	ctl alpha 30 "mkdir -p /mnt/peek && mount -o ro,noload /dev/vdb /mnt/peek && echo 'alpha: /dev/vdb mounted on /mnt/peek'" || return 1
	ctl alpha 120 "marsadm disconnect $RES && marsadm primary --force $RES 2>&1" > "$W/refused.txt"; rc=$?; cat "$W/refused.txt"
	[ $rc != 0 ] || { echo "the failover to alpha succeeded with its disk mounted"; return 1; }
	grep -q "phase become: alpha could not serve $RES: EBUSY: phobos.ko refused $RES .*the disk is in use" "$W/refused.txt" || return 1
	ctl alpha 30 "marsadm view $RES; umount /mnt/peek && echo 'alpha: /mnt/peek unmounted'" || return 1
	# the same command again: asking again makes the daemon retry at once
	ctl alpha 120 "marsadm primary --force $RES --json" || return 1
	until_ok alpha 120 "the service on alpha" "busybox wget -qO- http://127.0.0.1:8080/app.log | grep -c 'started on alpha' | grep -qx 2" || return 1
	ctl alpha 30 "cd /mnt/phobos/$RES && cat app.log && sha256sum -c payload.sha256 &&
		echo \"mounted from \$(findmnt -no SOURCE /mnt/phobos/$RES), /dev/mars/$RES -> \$(readlink /dev/mars/$RES)\" &&
		readlink /dev/mars/$RES | grep -q '^/dev/phobos'" || return 1
	# cut off, beta still runs its stack: it has heard nothing
	ctl beta 10 "systemctl is-active app-$RES.service && mountpoint /mnt/phobos/$RES"
}
step failover-to-alpha failover

# ---- 3. beta's link returns: beta stops its stack ----
relink() {
	ctl beta 10 'ip link set eth0 up && echo "beta: eth0 up"' || return 1
	stopped_on beta alpha || return 1
	ctl alpha 30 "systemctl is-active app-$RES.service && marsadm view $RES; echo split-brain: \$(marsadm view-is-split-brain $RES)"
}
step relink-beta relink

for h in alpha beta; do
	ctl "$h" 10 "systemctl --failed --no-legend" | sed "s/^/$h failed unit: /"
	[ "${KEEP:-0}" = 1 ] && ctl "$h" 60 "journalctl -b --no-pager -o short-monotonic" > "$W/journal-$h.txt"
done
# CPU the guests got: on an idle 2-core host the scenario needs about the larger of the two
for h in alpha beta; do
	q=$(pgrep -P "${QEMU[$h]}" qemu-system-x86 | head -1)
	[ -n "$q" ] && echo "qemu of $h: $(ps -o times= -p "$q" | tr -d ' ') s CPU"
done
OK=1
echo "systemd-vm tier: PASS ($PASSED steps, $(now "$T0") s)"
