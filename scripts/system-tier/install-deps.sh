#!/usr/bin/env bash
# Installs the Debian packages the system test tier needs (run as root). The tier builds
# network namespaces joined by a bridge and runs a private sshd in them:
#   openssh-server: /usr/sbin/sshd (one per lab host, own config, never the system's)
#   openssh-client: ssh, ssh-keygen (fingerprint cross-checks, join-cluster)
#   iproute2:       ip netns / ip link (namespaces, veth pairs, the bridge)
#   iptables:       cutting links by packet filter in later tests
# Safe to re-run: it installs only what is missing and starts no service.
set -euo pipefail

packages=()
[ -x /usr/sbin/sshd ] || packages+=(openssh-server)
command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || packages+=(openssh-client)
command -v ip >/dev/null 2>&1 || packages+=(iproute2)
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || packages+=(iptables)

if [ ${#packages[@]} -eq 0 ]; then
  echo "system-tier install-deps: everything present (openssh-server, openssh-client, iproute2, iptables)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-tier install-deps: missing ${packages[*]}; run as root: sudo bash $0" >&2
  exit 1
fi
echo "system-tier install-deps: installing ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the package scripts from starting the system sshd where an init
# system would; the tier starts its own sshd per namespace.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 0755 "$policy" && made_policy=1
fi
trap 'if [ "$made_policy" -eq 1 ]; then rm -f "$policy"; fi' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"
echo "system-tier install-deps: installed ${packages[*]}"
