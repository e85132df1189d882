#!/usr/bin/env bash
# Installs the Debian packages the test tiers need (run as root; CI runs it from .ci/run).
#   fuzz tier: clang, and its compiler-rt (libFuzzer, ASan, UBSan runtimes: only a
#              "Recommends" of clang, so --no-install-recommends leaves it out)
#   codecs:    liblz4-1, libzstd1 (runtime libraries only; the addon dlopens them)
#   nbd:       qemu-utils (qemu-io, qemu-img drive the NBD server in test/unit/nbd)
#   syslog:    python3-minimal (binds the UNIX datagram socket the command log test sends to)
# Safe to re-run: it installs only what is missing.
set -euo pipefail

packages=()
command -v clang >/dev/null 2>&1 || packages+=(clang)
compgen -G '/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a' >/dev/null || packages+=(libclang-rt-dev)
ldconfig -p | grep -q 'liblz4\.so\.1 ' || packages+=(liblz4-1)
ldconfig -p | grep -q 'libzstd\.so\.1 ' || packages+=(libzstd1)
command -v qemu-io >/dev/null 2>&1 || packages+=(qemu-utils)
command -v python3 >/dev/null 2>&1 || packages+=(python3-minimal)

if [ ${#packages[@]} -eq 0 ]; then
  echo "install-test-deps: everything present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing ${packages[*]}; run as root: sudo bash $0" >&2
  exit 1
fi
echo "install-test-deps: installing ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"
