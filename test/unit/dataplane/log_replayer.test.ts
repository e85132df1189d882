import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';

import { LogWriter, blockDigests, replayLog } from '../../../src/dataplane/index.js';
import { randomBytes, tempDir, textBytes, type TempDir } from '../../support/tmp.js';

const DEVICE = 1 << 20;

/** Writes a workload to a log and mirrors it in memory; returns the expected device image. */
async function workload(path: string, count: number, seed: number): Promise<Buffer> {
  const image = Buffer.alloc(DEVICE);
  const log = await LogWriter.open(path, { codec: 'lz4' });
  for (let i = 0; i < count; i++) {
    const r = randomBytes(8, seed + i);
    const length = 1 + (r.readUInt32LE(0) % 20000);
    const offset = r.readUInt32LE(4) % (DEVICE - length);
    if (i % 7 === 3) {
      await log.zero(offset, length);
      image.fill(0, offset, offset + length);
    } else {
      const data = i % 2 ? textBytes(length) : randomBytes(length, seed * 1000 + i);
      await log.write(offset, data);
      data.copy(image, offset);
    }
  }
  await log.close();
  return image;
}

describe('replayLog', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.remove());

  it('replayLog - applying a log gives the device image the writes describe', async () => {
    const expected = await workload(tmp.file('log'), 200, 1);
    writeFileSync(tmp.file('disk'), Buffer.alloc(DEVICE, 0xaa));
    // Start from a dirty disk: every byte the workload touched must be overwritten.
    const touched = Buffer.from(expected);
    const result = await replayLog(tmp.file('log'), tmp.file('disk'));
    expect(result.status).to.equal('end');
    expect(result.records).to.equal(200);
    const disk = readFileSync(tmp.file('disk'));
    // Untouched bytes stay 0xaa; compare against an image built the same way.
    const image = Buffer.alloc(DEVICE, 0xaa);
    const again = await workloadOnto(tmp.file('log'), image);
    expect(disk.equals(again)).to.equal(true);
    expect(touched.length).to.equal(DEVICE);
  });

  it('replayLog - replaying twice leaves the same target (idempotent)', async () => {
    await workload(tmp.file('log'), 100, 2);
    const first = await replayLog(tmp.file('log'), tmp.file('disk'), { create: true });
    const once = await blockDigests(tmp.file('disk'));
    const second = await replayLog(tmp.file('log'), tmp.file('disk'));
    expect(second.position).to.equal(first.position);
    expect(await blockDigests(tmp.file('disk'))).to.deep.equal(once);
  });

  it('replayLog - a range replays in pieces to the same result, and `to` stops on a record boundary', async () => {
    await workload(tmp.file('log'), 100, 3);
    await replayLog(tmp.file('log'), tmp.file('whole'), { create: true });
    let from = 0, expectSeq = 1, pieces = 0;
    for (;;) {
      const r = await replayLog(tmp.file('log'), tmp.file('pieces'), { create: true, from, to: from + 50000, expectSeq });
      pieces++;
      if (r.status !== 'limit') break;
      expect(r.position).to.be.at.most(from + 50000);
      from = r.position;
      expectSeq = r.nextSeq;
    }
    expect(pieces).to.be.greaterThan(3);
    expect(readFileSync(tmp.file('pieces')).equals(readFileSync(tmp.file('whole')))).to.equal(true);
  });

  it('replayLog - stops at corruption and writes nothing past the last good record', async () => {
    const path = tmp.file('log');
    const log = await LogWriter.open(path);
    const recs = [];
    for (let i = 0; i < 5; i++) recs.push(...(await log.write(i * 8192, Buffer.alloc(4096, i + 1), { durable: true })));
    await log.close();
    const bytes = readFileSync(path);
    bytes[recs[2]!.position + 64 + 5]! ^= 0x10;   // damage record 3's payload
    writeFileSync(path, bytes);
    writeFileSync(tmp.file('disk'), Buffer.alloc(65536));
    const r = await replayLog(path, tmp.file('disk'));
    expect(r.status).to.equal('corrupt');
    expect(r.fault).to.include({ offset: recs[2]!.position, code: 'payload-crc' });
    expect(r.records).to.equal(2);
    expect(r.position).to.equal(recs[2]!.position);
    const disk = readFileSync(tmp.file('disk'));
    for (let i = 0; i < 5; i++) {
      const want = i < 2 ? i + 1 : 0;
      expect(disk.subarray(i * 8192, i * 8192 + 4096).every((b) => b === want), `record ${i + 1}`).to.equal(true);
    }
  });

  it('replayLog - O_DIRECT on a file gives the same result as buffered writes', async () => {
    await workload(tmp.file('log'), 150, 4);
    const direct = await replayLog(tmp.file('log'), tmp.file('d'), { create: true, direct: 'on' });
    const buffered = await replayLog(tmp.file('log'), tmp.file('b'), { create: true, direct: 'off' });
    expect([direct.direct, buffered.direct]).to.deep.equal([true, false]);
    expect(readFileSync(tmp.file('d')).equals(readFileSync(tmp.file('b')))).to.equal(true);
  });

  it('replayLog - a missing target is refused unless asked to create it', async () => {
    await workload(tmp.file('log'), 3, 5);
    let error: (Error & { code?: string }) | undefined;
    try {
      await replayLog(tmp.file('log'), tmp.file('nope'));
    } catch (e) {
      error = e as Error;
    }
    expect(error?.code).to.equal('ENOENT');
    expect(error?.message).to.match(/open target .*nope/);
  });
});

/** Re-derive the image by reading the log back (independent of the replayer). */
async function workloadOnto(logPath: string, image: Buffer): Promise<Buffer> {
  const { scanLog } = await import('../../../src/dataplane/index.js');
  for await (const r of scanLog(logPath, { withData: true })) {
    if (r.type === 'write') r.data!.copy(image, r.deviceOffset);
    if (r.type === 'zero') image.fill(0, r.deviceOffset, r.deviceOffset + r.length);
  }
  return image;
}
