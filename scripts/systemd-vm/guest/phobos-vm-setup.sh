#!/bin/bash
# Identity of a VM tier guest, from the kernel command line (both guests boot the same
# read-only image): systemd.hostname= names the host (systemd sets it), phobos.ip= is
# eth0's address, phobos.hosts=name:ip,... goes to /etc/hosts. Makes the guest's own sshd
# host key (ed25519: fast under TCG).
set -u
IP=; HOSTS=
for a in $(cat /proc/cmdline); do
	case $a in phobos.ip=*) IP=${a#phobos.ip=};; phobos.hosts=*) HOSTS=${a#phobos.hosts=};; esac
done
hostname > /etc/hostname
{
	echo "127.0.0.1 localhost"
	echo "127.0.1.1 $(hostname)"
	for h in ${HOSTS//,/ }; do echo "${h#*:} ${h%%:*}"; done
} > /etc/hosts
[ -e /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key
ip link set lo up
if [ -n "$IP" ]; then
	for i in $(seq 1 100); do [ -e /sys/class/net/eth0 ] && break; sleep 0.1; done
	ip addr add "$IP/24" dev eth0 && ip link set eth0 up
fi
echo "PHOBOS-VM: $(hostname) set up, eth0 ${IP:-none}, uptime $(cut -d' ' -f1 /proc/uptime) s" > /dev/console
