#!/bin/bash
# The control channel of the VM tier: runs the bash scripts the host sends on the
# virtio-serial port phobos.ctl, one at a time, and answers. One line each way:
#   host -> guest: <id> <timeout s> <base64 of a bash script>
#   guest -> host: R <id> <exit code> <base64 of its stdout and stderr>
PORT=/dev/virtio-ports/phobos.ctl
for i in $(seq 1 300); do [ -e "$PORT" ] && break; sleep 0.1; done
echo "PHOBOS-VM: agent ready on $(hostname), uptime $(cut -d' ' -f1 /proc/uptime) s" > /dev/console
while :; do
	# read gives EOF while the host side is not connected: open again a little later
	exec 3<>"$PORT" || { sleep 0.5; continue; }
	while IFS=' ' read -r id tmo script <&3; do
		out=$(timeout -k 5 "$tmo" bash -c "$(printf %s "$script" | base64 -d)" </dev/null 2>&1)
		rc=$?
		printf 'R %s %s %s\n' "$id" "$rc" "$(printf %s "$out" | base64 -w0)" >&3
	done
	exec 3<&-
	sleep 0.2
done
