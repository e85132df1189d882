/**
 * The NBD layer alone: NbdServer over a Buffer-backed device, driven by NbdClient over a
 * UNIX socket. Sequential 1 MiB writes (8 in flight) and random 4 KiB writes (32 in
 * flight). Run: node --import tsx scripts/nbd-server-probe.ts
 * The numbers are the ceiling the daemon's engine sits under; docs/nbd.md records them.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { NbdClient, NbdServer, type BlockDevice } from '../src/nbd/index.js';

class BufferDevice implements BlockDevice {
  readonly data: Buffer;
  constructor(readonly sizeBytes: number) {
    this.data = Buffer.alloc(sizeBytes);
  }
  async read(offset: number, length: number): Promise<Buffer> {
    return this.data.subarray(offset, offset + length);
  }
  async write(offset: number, data: Buffer): Promise<void> {
    data.copy(this.data, offset);
  }
  async flush(): Promise<void> {}
  async zero(offset: number, length: number): Promise<void> {
    this.data.fill(0, offset, offset + length);
  }
}

/** Runs `op(i)` for i < count with `depth` in flight; returns seconds. */
async function drive(count: number, depth: number, op: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: depth }, async () => {
    while (next < count) await op(next++);
  }));
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'phobos-nbd-bench-'));
  const sizeBytes = 1 << 30;
  const server = new NbdServer({ socketPath: path.join(dir, 'b.nbd'), exportName: 'b', device: new BufferDevice(sizeBytes) });
  await server.listen();
  const client = await NbdClient.connect(server.socketPath, 'b');
  try {
    const mib = Buffer.alloc(1 << 20, 0x5a);
    const seqCount = 2048; // 2 GiB, wrapping over the 1 GiB export
    const seqS = await drive(seqCount, 8, (i) => client.write((i % 1024) * (1 << 20), mib));
    const block = Buffer.alloc(4096, 0xa5);
    const randCount = 200_000;
    let x = 12345;
    const randS = await drive(randCount, 32, () => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return client.write((x % (sizeBytes / 4096)) * 4096, block);
    });
    const readS = await drive(randCount, 32, () => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return client.read((x % (sizeBytes / 4096)) * 4096, 4096).then(() => undefined);
    });
    console.log(`sequential 1 MiB writes, 8 in flight:  ${(seqCount / seqS).toFixed(0)} MiB/s (${seqCount} writes in ${seqS.toFixed(2)} s)`);
    console.log(`random 4 KiB writes, 32 in flight:    ${(randCount / randS / 1000).toFixed(1)}k IOPS (${(randCount * 4096 / randS / 2 ** 20).toFixed(0)} MiB/s)`);
    console.log(`random 4 KiB reads, 32 in flight:     ${(randCount / readS / 1000).toFixed(1)}k IOPS`);
  } finally {
    await client.disconnect();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
