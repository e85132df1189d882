/**
 * sync: fast full sync of a 1 GiB disk of which 1 % of the 64 KiB blocks changed. The
 * secondary's disk is a copy of the primary's taken before the change, which is written
 * through the export and then sealed in log 1 by a log rotation (a joining secondary
 * replays from the primary's current log, so replay cannot deliver it); `join-resource`
 * then compares digests and copies only the differing blocks (docs/replication.md).
 *
 * Figures, each with its baseline from the same run:
 *  - bytes on the wire (blocks sent, from actual-<host>/sync-sent, plus 16 bytes of digest
 *    per block) against the changed bytes plus the digests (target ratio <= 1.1);
 *  - sync wall time against reading the 1 GiB disk file once, sequentially, 4 MiB at a time.
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, copyFileSync, openSync, readSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';

import { NbdClient } from '../src/nbd/index.js';
import { SYNC_BLOCK_BYTES } from '../src/replication/replica.js';
import { BenchCluster, profileOptions, profileWindow, until, type BenchNode } from './_cluster.js';
import { report } from './report.js';

const RES = 'sync';
const DISK = 1 << 30;
const BLOCKS = DISK / SYNC_BLOCK_BYTES;
const CHANGED_BLOCKS = Math.round(BLOCKS / 100);
const DIGEST_BYTES = 16;
const CHUNK = 4 << 20;

/** Fill a disk file with incompressible data (zeros would make every block alike). */
function fillDisk(file: string): void {
  const fd = openSync(file, 'w');
  const buf = Buffer.alloc(CHUNK);
  try {
    for (let at = 0; at < DISK; at += CHUNK) writeSync(fd, randomFillSync(buf), 0, CHUNK, at);
  } finally {
    closeSync(fd);
  }
}

/** CHANGED_BLOCKS distinct block numbers, spread at random over the disk (fixed seed). */
function changedBlocks(): number[] {
  const picked = new Set<number>();
  let x = 2463534242;
  while (picked.size < CHANGED_BLOCKS) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    picked.add(x % BLOCKS);
  }
  return [...picked].sort((a, b) => a - b);
}

/** Seconds to read `file` once, 4 MiB at a time. */
async function readOnceSeconds(file: string): Promise<number> {
  const handle = await open(file, 'r');
  const buf = Buffer.allocUnsafe(CHUNK);
  const t = performance.now();
  try {
    for (let at = 0; ; at += CHUNK) {
      const { bytesRead } = await handle.read(buf, 0, CHUNK, at);
      if (bytesRead === 0) break;
    }
  } finally {
    await handle.close();
  }
  return (performance.now() - t) / 1000;
}

/** The secondary must now hold what the primary's device holds, in the changed blocks at least. */
function checkChangedBlocks(disk: string, blocks: number[], written: Map<number, Buffer>): void {
  const fd = openSync(disk, 'r');
  const buf = Buffer.alloc(SYNC_BLOCK_BYTES);
  try {
    for (const b of blocks) {
      readSync(fd, buf, 0, SYNC_BLOCK_BYTES, b * SYNC_BLOCK_BYTES);
      if (!buf.equals(written.get(b)!)) throw new Error(`block ${b} differs on the secondary after sync`);
    }
  } finally {
    closeSync(fd);
  }
}

export async function runSync(): Promise<void> {
  const cluster = await BenchCluster.create(['alpha', 'beta'], profileOptions());
  try {
    const [alpha, beta] = cluster.nodes as [BenchNode, BenchNode];
    fillDisk(alpha.file('disk'));
    copyFileSync(alpha.file('disk'), beta.file('disk'));
    await alpha.marsadm('create-resource', RES, alpha.file('disk'), String(DISK));

    const blocks = changedBlocks();
    const written = new Map<number, Buffer>();
    const device = await NbdClient.connect(alpha.socket(RES), RES);
    for (const b of blocks) {
      written.set(b, randomFillSync(Buffer.alloc(SYNC_BLOCK_BYTES)));
      await device.write(b * SYNC_BLOCK_BYTES, written.get(b)!);
    }
    await device.flush();
    await device.disconnect();
    // A joining secondary replays from the start of the primary's current log: rotate, so
    // the changes are in the sealed log and only the sync can deliver them.
    await alpha.marsadm('log-rotate', RES);
    await until('beta to learn of the resource and the primary\'s second log',
      async () => (await beta.tryGet(`resource-${RES}/size`)) === String(DISK) &&
        (await beta.tryGet(`resource-${RES}/replay-alpha`)).startsWith('log-000000002-alpha,'));

    const t = performance.now();
    profileWindow(cluster.nodes.flatMap((n) => n.processTree()));
    await beta.marsadm('join-resource', RES, beta.file('disk'));
    await until('syncstatus-beta to reach the size', async () => (await beta.get(`resource-${RES}/syncstatus-beta`)) === String(DISK), 120_000, 5);
    const seconds = (performance.now() - t) / 1000;
    profileWindow(cluster.nodes.flatMap((n) => n.processTree()));
    const sent = Number(await beta.get(`resource-${RES}/actual-beta/sync-sent`));
    checkChangedBlocks(beta.file('disk'), blocks, written);

    const digests = BLOCKS * DIGEST_BYTES;
    const changed = CHANGED_BLOCKS * SYNC_BLOCK_BYTES;
    report('sync-bytes', sent + digests, 'bytes', changed + digests,
      `fast full sync of a 1 GiB disk with ${CHANGED_BLOCKS} of ${BLOCKS} 64 KiB blocks changed: blocks sent (${sent}) + digests (${digests}); ` +
      `baseline changed bytes + digests (target ratio <= 1.1)`);
    const readSeconds = await readOnceSeconds(alpha.file('disk'));
    report('sync-time', seconds, 's', readSeconds,
      'join-resource until syncstatus = size (both sides read and digest 1 GiB); baseline: reading the 1 GiB disk file once, ' +
      '4 MiB reads, from the page cache (written moments before; caches are not dropped)');
  } finally {
    await cluster.close();
  }
}
