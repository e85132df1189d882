import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

import { missingCommand, requireTier } from '../support/tiers.js';

const root = new URL('../../', import.meta.url).pathname;
const cache = process.env['KVM_CACHE'] ?? '/var/tmp/phobos-kernel-vm';
const INSTALL = 'run `sudo bash scripts/kernel-vm/install-deps.sh` (qemu, Debian kernel headers and image)';

function kernelTierMissing(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (loop devices, DKMS, guest images)';
  if (!existsSync(`${cache}/kimg/vmlinux`)) return `no guest kernel in ${cache}/kimg; ${INSTALL}`;
  return missingCommand('qemu-system-x86_64', INSTALL);
}

describe('kernel tier (phobos.ko in qemu guests)', function () {
  this.timeout(20 * 60 * 1000);

  before(function () {
    requireTier(this, 'kernel', kernelTierMissing());
  });

  it('kernel - phobos.ko builds (make W=1, DKMS), serves I/O, recovers from a crash, and its logs replay with the userspace engine', () => {
    const run = spawnSync('bash', ['scripts/kernel-vm/run-tier.sh'], {
      cwd: root, encoding: 'utf8', timeout: 15 * 60 * 1000, maxBuffer: 64 * 1024 * 1024,
    });
    const out = `${run.stdout}${run.stderr}`;
    for (const line of out.split('\n')) if (/^(STEP|kernel tier:)/.test(line)) console.log(`      ${line}`);
    expect(run.status, out.slice(-4000)).to.equal(0);
    expect(out).to.match(/kernel tier: PASS/);
  });
});
