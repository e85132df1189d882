/**
 * Child process for the SIGKILL tests: writes through a UserEngine and prints
 * `ack <block> <id>` after each write is acknowledged, until killed.
 * argv: dir blocks seed
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { UserEngine, type Checkpoint } from '../../src/dataplane/index.js';

const [dir, blocksArg, seedArg] = process.argv.slice(2) as [string, string, string];
const BLOCK = 4096;
const blocks = Number(blocksArg);
let x = Number(seedArg) | 1;
const rand = () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return (x >>> 0) / 2 ** 32; };

function loadCheckpoint(): Checkpoint | null {
  try { return JSON.parse(readFileSync(path.join(dir, 'checkpoint.json'), 'utf8')) as Checkpoint; } catch { return null; }
}

const engine = await UserEngine.open({
  diskPath: path.join(dir, 'disk'),
  sizeBytes: blocks * BLOCK,
  logPath: path.join(dir, 'log-000000001-a'),
  codec: 'lz4',
  checkpoint: loadCheckpoint(),
  saveCheckpoint: async (c) => {
    writeFileSync(path.join(dir, 'checkpoint.tmp'), JSON.stringify(c));
    renameSync(path.join(dir, 'checkpoint.tmp'), path.join(dir, 'checkpoint.json'));
  },
  stamp: () => BigInt(Date.now()) * 1_000_000n,
  checkpointIntervalMs: 20,
  maxPendingBytes: 1 << 20,
});
process.stdout.write('ready\n');

// ids start above anything a previous child used, so "newer" is well defined.
let id = Number(seedArg) * 1_000_000;
const busy = new Set<number>();
for (;;) {
  while (busy.size >= 16) await new Promise((r) => setImmediate(r));
  const block = Math.floor(rand() * blocks);
  if (busy.has(block)) continue;
  busy.add(block);
  const myId = ++id;
  const data = Buffer.alloc(BLOCK);
  for (let i = 0; i < BLOCK; i += 8) data.writeDoubleLE(myId, i);
  const isZero = rand() < 0.05;
  const op = isZero
    ? engine.zero(block * BLOCK, BLOCK, rand() < 0.2).then(() => `zero ${block} ${myId}`)
    : engine.write(block * BLOCK, data, rand() < 0.2).then(() => `ack ${block} ${myId}`);
  process.stdout.write(`issue ${block} ${op === undefined ? 0 : myId} ${isZero ? 'zero' : 'data'}\n`);
  void op.then((line) => {
    busy.delete(block);
    process.stdout.write(`${line}\n`);
  });
}
