/**
 * kernel-write (issue 7): in a qemu TCG guest of the kernel tier, 32 MiB of sequential
 * 1 MiB O_DIRECT writes + fsync, then 2000 random 4 KiB O_DIRECT writes + fsync, to
 * /dev/phobos0 (backing vda, log on ext4 on a second virtio disk, vdb) and, as the
 * baseline in the same boot, to the raw virtio disk vdc (scripts/kernel-vm/run-tier.sh with
 * BENCH=1; figures of the second of two rounds). Target: sequential ratio >= 0.8.
 *
 * Under TCG the ratio measures emulated guest CPU, not I/O: the raw path costs the guest
 * no per-byte work (qemu moves the data natively; the disks are cache=unsafe), phobos
 * copies and checksums every byte in emulated code. docs/kernel.md has the discussion.
 * Needs root and scripts/kernel-vm/install-deps.sh.
 */
import { spawnSync } from 'node:child_process';

import { report } from './report.js';

export async function runKernelWrite(): Promise<void> {
  const root = new URL('../', import.meta.url).pathname;
  const run = spawnSync('bash', ['scripts/kernel-vm/run-tier.sh'], {
    cwd: root, encoding: 'utf8', timeout: 15 * 60 * 1000, maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, BENCH: '1' },
  });
  const out = `${run.stdout}${run.stderr}`;
  const m = /^kernel-write: raw vdc seq ([0-9.]+) MiB\/s, rand ([0-9.]+) IOPS; phobos seq ([0-9.]+) MiB\/s, rand ([0-9.]+) IOPS/m.exec(out);
  if (run.status !== 0 || !m) {
    console.error(out.slice(-4000));
    throw new Error(`kernel-write: scripts/kernel-vm/run-tier.sh exited ${run.status}${m ? '' : ' without the kernel-write line'}`);
  }
  const [rawSeq, rawRand, seq, rand] = m.slice(1, 5).map(Number) as [number, number, number, number];
  const note = 'qemu TCG guest; baseline: the same writes to a raw virtio disk in the same boot';
  report('kernel-write-seq-1m', seq, 'MiB/s', rawSeq, note);
  report('kernel-write-rand-4k', rand, 'IOPS', rawRand, note);
}
