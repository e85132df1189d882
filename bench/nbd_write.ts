/**
 * nbd-write: writes through the daemon's NBD export (userspace engine: log, then
 * writeback), against the same pattern written straight to a plain file in the same run.
 * Sequential 1 MiB writes (target ratio >= 0.5: every byte is written twice) and random
 * 4 KiB writes (target >= 20k IOPS), 32 in flight, one flush at the end of each.
 */
import { spawnSync } from 'node:child_process';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { randomFillSync } from 'node:crypto';

import { NbdClient } from '../src/nbd/index.js';
import { warmFreeMemory } from './_warm_memory.js';
import { benchHost } from './cluster_setup.js';
import { report } from './report.js';

const DEVICE = 1 << 30;
const SEQ_BYTES = 512 << 20;
const RANDOM_WRITES = 40000;
const INFLIGHT = 32;
/** Twice the largest pattern: buffered writeback would put every byte in two files. */
const WARM_BYTES = 2 * SEQ_BYTES;

interface Target {
  write(offset: number, data: Buffer): Promise<unknown>;
  flush(): Promise<unknown>;
}

/**
 * Run `count` writes with INFLIGHT in flight; returns seconds including the final flush.
 * Every pattern starts from a clean page cache (sync first): otherwise one pattern pays
 * for the dirty data the previous one left, and the comparison is skewed. And from warm
 * free memory (bench/_warm_memory.ts): without it the baseline, run first, took the
 * VM's warm pages and the export paid for cold ones (ratio 0.20-0.28 instead of ~0.5).
 */
async function pattern(target: Target, count: number, at: (i: number) => number, bufs: Buffer[], scratch: string): Promise<number> {
  await warmFreeMemory(scratch, WARM_BYTES);
  spawnSync('sync');
  const t = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: INFLIGHT }, async () => {
    while (next < count) {
      const i = next++;
      await target.write(at(i), bufs[i % bufs.length]!);
    }
  }));
  await target.flush();
  return (performance.now() - t) / 1000;
}

export async function runNbdWrite(): Promise<void> {
  const host = benchHost();
  try {
    host.marsadm('create-cluster');
    await host.startDaemon();
    const disk = path.join(host.dir, 'disk.img');
    const plain = await open(path.join(host.dir, 'plain.img'), 'w+');
    await (await open(disk, 'w')).close();
    host.marsadm('create-resource', 'bench', disk, String(DEVICE));
    const client = await NbdClient.connect(path.join(host.dir, 'run', 'bench.nbd'), 'bench');
    const file: Target = { write: (o, d) => plain.write(d, 0, d.length, o), flush: () => plain.datasync() };
    const nbd: Target = { write: (o, d) => client.write(o, d), flush: () => client.flush() };

    const scratch = path.join(host.dir, 'warm.tmp');
    const big = Array.from({ length: 8 }, () => randomFillSync(Buffer.alloc(1 << 20)));
    const seqCount = SEQ_BYTES >> 20;
    // A first round warms both sides up (the daemon's JIT and buffers: its first 512 MiB
    // went 20-25 % slower than its second, two runs); the second, into the other half of
    // the device, so that neither side overwrites pages it already has cached, is measured.
    const seqAt = (round: number) => (i: number) => round * SEQ_BYTES + (i << 20);
    await pattern(file, seqCount, seqAt(0), big, scratch);
    await pattern(nbd, seqCount, seqAt(0), big, scratch);
    const fileSeq = await pattern(file, seqCount, seqAt(1), big, scratch);
    const nbdSeq = await pattern(nbd, seqCount, seqAt(1), big, scratch);
    report('nbd-write-seq-1m', SEQ_BYTES / 1e6 / nbdSeq, 'MB/s', SEQ_BYTES / 1e6 / fileSeq,
      'sequential 1 MiB writes through the export (log + writeback), 32 in flight, flush at the end, after a warm-up round; baseline the same to a plain file (target ratio >= 0.5)');

    const small = Array.from({ length: 64 }, () => randomFillSync(Buffer.alloc(4096)));
    let x = 99;
    const offsets = Array.from({ length: RANDOM_WRITES }, () => {
      x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
      return ((x >>> 0) % (DEVICE / 4096)) * 4096;
    });
    const fileRand = await pattern(file, RANDOM_WRITES, (i) => offsets[i]!, small, scratch);
    const nbdRand = await pattern(nbd, RANDOM_WRITES, (i) => offsets[i]!, small, scratch);
    report('nbd-write-random-4k', RANDOM_WRITES / nbdRand, 'IOPS', RANDOM_WRITES / fileRand,
      'random 4 KiB writes through the export, 32 in flight, flush at the end; baseline the same to a plain file (target >= 20000 IOPS)');
    await client.disconnect();
    await plain.close();
  } finally {
    await host.close();
  }
}
