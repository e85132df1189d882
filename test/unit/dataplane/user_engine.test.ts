import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

import { replayLog, UserEngine, type Checkpoint } from '../../../src/dataplane/index.js';
import { randomBytes, tempDir, type TempDir } from '../../support/tmp.js';

const MiB = 1 << 20;

describe('UserEngine', () => {
  let tmp: TempDir;
  let saved: Checkpoint | null;
  beforeEach(() => {
    tmp = tempDir();
    saved = null;
    writeFileSync(tmp.file('disk'), Buffer.alloc(0));
  });
  afterEach(() => tmp.remove());

  const open = (extra: Partial<Parameters<typeof UserEngine.open>[0]> = {}) => UserEngine.open({
    diskPath: tmp.file('disk'),
    sizeBytes: 8 * MiB,
    logPath: tmp.file('log-000000001-a'),
    checkpoint: saved,
    saveCheckpoint: async (c) => { saved = c; },
    stamp: () => 1n,
    ...extra,
  });

  it('UserEngine - reads see writes at once, and the disk gets them by writeback', async () => {
    const engine = await open();
    const a = randomBytes(10000, 1);
    await engine.write(5000, a, false);
    expect((await engine.read(5000, 10000)).equals(a)).to.equal(true);
    expect((await engine.read(4096, 2000)).subarray(904).equals(a.subarray(0, 1096))).to.equal(true);
    await engine.zero(6000, 100, false);
    expect((await engine.read(6000, 100)).every((b) => b === 0)).to.equal(true);
    await engine.drain();
    const disk = readFileSync(tmp.file('disk'));
    expect(disk.subarray(5000, 6000).equals(a.subarray(0, 1000))).to.equal(true);
    expect(disk.subarray(6000, 6100).every((b) => b === 0)).to.equal(true);
    await engine.close();
    expect(saved).to.deep.equal({ logPath: tmp.file('log-000000001-a'), position: engine.logPosition });
  });

  it('UserEngine - FUA writes and FLUSH leave the log durable', async () => {
    const engine = await open();
    await engine.write(0, randomBytes(4096, 2), true);
    await engine.write(4096, randomBytes(4096, 3), false);
    await engine.flush();
    await engine.close();
    const replica = await replayLog(tmp.file('log-000000001-a'), tmp.file('replica'), { create: true });
    expect(replica.status).to.equal('end');
    expect(readFileSync(tmp.file('replica')).equals(readFileSync(tmp.file('disk')).subarray(0, 8192))).to.equal(true);
  });

  it('UserEngine - out-of-range requests are refused with EINVAL', async () => {
    const engine = await open();
    let error: (Error & { code?: string }) | undefined;
    try {
      await engine.read(8 * MiB - 10, 20);
    } catch (e) {
      error = e as Error;
    }
    expect([error?.code, error?.message]).to.deep.equal(['EINVAL', `request ${8 * MiB - 10}+20 outside the device (${8 * MiB} bytes)`]);
    await engine.close();
  });

  it('UserEngine - recovery replays from the checkpoint what the disk lacks', async () => {
    const engine = await open({ checkpointIntervalMs: 3_600_000 });
    const data = randomBytes(65536, 4);
    await engine.write(MiB, data, true);
    // Simulate a daemon that died before writeback: the disk loses what it had.
    await engine.drain();
    const stale = saved;
    await engine.close();
    writeFileSync(tmp.file('disk'), Buffer.alloc(8 * MiB));
    saved = stale;
    const again = await open();
    expect(again.recovery.replayedRecords).to.be.greaterThan(0);
    expect((await again.read(MiB, 65536)).equals(data)).to.equal(true);
    await again.close();
  });

  it('UserEngine - rotation drains, seals the old log and checkpoints at the new one', async () => {
    const engine = await open();
    await engine.write(0, randomBytes(4096, 5), false);
    await engine.rotate(tmp.file('log-000000002-a'));
    expect(saved).to.deep.equal({ logPath: tmp.file('log-000000002-a'), position: 0 });
    await engine.write(4096, randomBytes(4096, 6), false);
    await engine.close();
    expect(saved!.logPath).to.equal(tmp.file('log-000000002-a'));
  });

  it('UserEngine - writes racing a rotation all land, each in exactly one log, and the disk matches both logs', async () => {
    const engine = await open({ maxPendingBytes: 64 * 1024 });
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      writes.push(engine.write((i % 64) * 4096, randomBytes(4096, 100 + i), i % 10 === 0));
      if (i === 100) writes.push(engine.rotate(tmp.file('log-000000002-a')));
    }
    await Promise.all(writes);
    await engine.close();
    await replayLog(tmp.file('log-000000001-a'), tmp.file('replica'), { create: true });
    const second = await replayLog(tmp.file('log-000000002-a'), tmp.file('replica'));
    expect(second.records).to.be.greaterThan(0);
    const disk = readFileSync(tmp.file('disk')).subarray(0, 64 * 4096);
    expect(readFileSync(tmp.file('replica')).subarray(0, 64 * 4096).equals(disk)).to.equal(true);
    expect((await engine.read(0, 1).catch((e: Error) => e)) instanceof Error).to.equal(true);
  });

  it('UserEngine - SIGKILL at 12 random points never loses an acknowledged write', async function () {
    this.timeout(120000);
    const blocks = 256;
    const lastAck = new Map<number, number>();
    const inflight = new Map<number, number>();
    for (let round = 1; round <= 12; round++) {
      const child = spawn(process.execPath, ['--import', 'tsx', 'test/support/engine_child.ts', tmp.dir, String(blocks), String(round)],
        { stdio: ['ignore', 'pipe', 'inherit'] });
      let buffer = '';
      let ready!: () => void;
      const isReady = new Promise<void>((r) => (ready = r));
      child.stdout.on('data', (d: Buffer) => {
        buffer += d.toString();
        let nl;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const [kind, b, id, what] = buffer.slice(0, nl).split(' ');
          buffer = buffer.slice(nl + 1);
          if (kind === 'ready') ready();
          // An in-flight zero may or may not have landed: it reads as 0 if it did.
          else if (kind === 'issue') inflight.set(Number(b), what === 'zero' ? 0 : Number(id));
          else {
            lastAck.set(Number(b), kind === 'zero' ? 0 : Number(id));
            inflight.delete(Number(b));
          }
        }
      });
      await isReady;
      await new Promise((r) => setTimeout(r, 50 + ((round * 37) % 250)));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      // Recover in this process and check every block.
      saved = (() => { try { return JSON.parse(readFileSync(tmp.file('checkpoint.json'), 'utf8')) as Checkpoint; } catch { return null; } })();
      const engine = await open({ sizeBytes: blocks * 4096, codec: 'lz4' });
      for (const [block, acked] of lastAck) {
        const value = (await engine.read(block * 4096, 8)).readDoubleLE(0);
        const maybe = inflight.get(block);
        expect(value === acked || value === maybe, `round ${round} block ${block}: ${value}, acked ${acked}, in flight ${maybe}`).to.equal(true);
        if (value !== acked) lastAck.set(block, value);
      }
      inflight.clear();
      await engine.close();
      writeFileSync(tmp.file('checkpoint.json'), JSON.stringify(saved));
    }
    expect(lastAck.size).to.be.greaterThan(50);
    // The disk equals the log's content replayed from scratch.
    await replayLog(tmp.file('log-000000001-a'), tmp.file('replica'), { create: true });
    const disk = readFileSync(tmp.file('disk'));
    const replica = Buffer.concat([readFileSync(tmp.file('replica')), Buffer.alloc(disk.length)]).subarray(0, disk.length);
    expect(replica.equals(disk)).to.equal(true);
  });
});
