import { expect } from 'chai';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { replayLog } from '../../src/dataplane/index.js';
import { NbdClient } from '../../src/nbd/index.js';
import { eventually, TestHost } from '../support/test_host.js';

const ROUNDS = Number(process.env['PHOBOS_KILL_ROUNDS'] ?? 200);
const BLOCK = 4096;
const BLOCKS = 2048;

describe('cluster tier: SIGKILL of the daemon during a write workload', function () {
  this.timeout(ROUNDS * 5000 + 60000);
  let host: TestHost;
  before(async () => {
    host = new TestHost('alpha');
    await host.ok('create-cluster');
    writeFileSync(host.tmp.file('disk.img'), '');
    await host.startDaemon();
    await host.ok('create-resource', 'r1', host.tmp.file('disk.img'), String(BLOCK * BLOCKS));
  });
  after(async () => {
    await host.remove();
  });

  it(`kill -9 at ${ROUNDS} random points: every acknowledged write survives, and the disk equals the logs replayed`, async () => {
    const acked = new Map<number, number>();     // block -> id the last acknowledged write put there
    const inflight = new Map<number, number>();  // block -> id of a write not acknowledged when killed
    let id = 0, seed = 12345, rotations = 0;
    const rand = () => {
      seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    for (let round = 0; round < ROUNDS; round++) {
      // The restarted daemon serves the device once recovery is done; until then the
      // socket refuses (and is-primary may still show the killed daemon's value).
      let connected: NbdClient | null = null;
      await eventually('device served', async () => {
        connected = await NbdClient.connect(host.socket('r1'), 'r1').catch(() => null);
        return connected !== null;
      }, 20000);
      const client: NbdClient = connected!;
      // Check what survived the previous kill, then run a workload and kill mid-way.
      const disk = await client.read(0, BLOCK * BLOCKS);
      for (const [block, want] of acked) {
        const got = disk.readUInt32LE(block * BLOCK);
        const maybe = inflight.get(block);
        expect(got === want || got === maybe, `round ${round}: block ${block} holds ${got}, acknowledged ${want}`).to.equal(true);
        acked.set(block, got);
      }
      for (const [block, maybe] of inflight) {
        const got = disk.readUInt32LE(block * BLOCK);
        if (got === maybe) acked.set(block, got);
      }
      inflight.clear();
      const stopAt = Date.now() + 10 + rand() * 120;
      let killed = false;
      const kill = (async () => {
        while (Date.now() < stopAt) await new Promise((r) => setTimeout(r, 2));
        killed = true;
        await host.stopDaemon('SIGKILL');
      })();
      if (round % 10 === 5) void host.marsadm('log-rotate', 'r1', '--timeout', '2').then((r) => { rotations += r.code === 0 ? 1 : 0; });
      const workers = Array.from({ length: 16 }, async () => {
        while (!killed) {
          const block = Math.floor(rand() * BLOCKS);
          if (inflight.has(block)) continue;
          const myId = ++id;
          const data = Buffer.alloc(BLOCK);
          data.writeUInt32LE(myId, 0);
          inflight.set(block, myId);
          try {
            await client.write(block * BLOCK, data, rand() < 0.1);
          } catch {
            return; // the daemon died: this write stays in flight
          }
          inflight.delete(block);
          acked.set(block, myId);
        }
      });
      await Promise.all([kill, ...workers]);
      await client.disconnect().catch(() => undefined);
      await host.startDaemon();
    }
    expect(acked.size).to.be.greaterThan(BLOCKS / 2);

    // The disk must equal every log replayed from scratch, in order.
    await eventually('device served', async () => (await host.ok('view-is-primary', 'r1')) === '1\n', 20000);
    await host.stopDaemon('SIGTERM');
    const dir = path.join(host.root, 'resource-r1');
    const logs = readdirSync(dir).filter((f) => f.startsWith('log-')).sort();
    for (const log of logs) {
      const r = await replayLog(path.join(dir, log), host.tmp.file('replica.img'), { create: true });
      expect(r.status, log).to.be.oneOf(['end', 'torn']);
    }
    const diskBytes = readFileSync(host.tmp.file('disk.img'));
    const replica = Buffer.concat([readFileSync(host.tmp.file('replica.img')), Buffer.alloc(diskBytes.length)]).subarray(0, diskBytes.length);
    expect(replica.equals(diskBytes)).to.equal(true);
    console.log(`      ${ROUNDS} kills, ${id} writes issued, ${acked.size} blocks checked, ${logs.length} logs (${rotations} rotations completed)`);
  });
});
