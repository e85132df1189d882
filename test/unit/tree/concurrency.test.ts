import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { MarsTree } from '../../../src/tree/index.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const UUID = '0b8e5f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b';
const WRITERS = 20;
const SETS = 25;

/**
 * One writer process: SETS sets of its own keys, SETS sets of one shared key, SETS
 * increments of a shared counter; prints every stamp it was given, as JSON.
 */
const WRITER = `
import { MarsTree } from './src/tree/index.ts';
const [root, id, sets] = process.argv.slice(1);
const tree = await MarsTree.open({ root, host: 'host-' + id, lockTimeoutMs: 60000 });
const stamps = [];
for (let i = 0; i < Number(sets); i++) {
  stamps.push((await tree.set('resource-r1/userspace/w' + id + '-' + i, 'v' + id + '-' + i)).stamp);
  stamps.push((await tree.set('resource-r1/userspace/shared', 'w' + id + '-' + i)).stamp);
  stamps.push((await tree.update('userspace/counter', (e) => String(Number(e?.value ?? '0') + 1))).stamp);
}
process.stdout.write(JSON.stringify(stamps));
`;

function runWriter(root: string, id: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', WRITER, root, String(id), String(SETS)],
      { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(JSON.parse(out) as number[]);
      else reject(new Error(`writer ${id} exited ${code}: ${err}`));
    });
  });
}

describe('MarsTree concurrency', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.remove());

  it(`MarsTree - ${WRITERS} concurrent processes lose no update, share no stamp and corrupt nothing`, async function () {
    this.timeout(180_000);
    const tree = await MarsTree.open({ root: tmp.dir, host: 'alpha', create: true, requireCluster: false });
    await tree.set('uuid', UUID);
    const started = Date.now();
    const results = await Promise.all(Array.from({ length: WRITERS }, (_, id) => runWriter(tmp.dir, id)));
    const ms = Date.now() - started;

    // Every own key holds its value.
    const entries = await tree.list('resource-r1/userspace/');
    const own = entries.filter((e) => !e.key.endsWith('/shared'));
    expect(own.length).to.equal(WRITERS * SETS);
    for (const e of own) expect(e.value).to.equal(`v${e.key.split('/w')[1]}`);
    // The counter saw every increment.
    expect(await tree.getValue('userspace/counter')).to.equal(String(WRITERS * SETS));
    // The shared key holds the value of its newest write.
    const stamps = results.flat();
    const shared = await tree.get('resource-r1/userspace/shared');
    const sharedStamps = results.flatMap((r) => r.filter((_, i) => i % 3 === 1));
    expect(shared!.stamp).to.equal(Math.max(...sharedStamps));
    // No two writes anywhere got the same stamp: the clock is unique across processes.
    expect(new Set(stamps).size).to.equal(stamps.length);
    expect(stamps.length).to.equal(WRITERS * SETS * 3);
    // Within each process, stamps only grow.
    for (const r of results) for (let i = 1; i < r.length; i++) expect(r[i]).to.be.greaterThan(r[i - 1]!);
    // No temporary link was left behind.
    expect(readdirSync(tmp.file('resource-r1')).filter((n) => n.startsWith('.'))).to.deep.equal([]);
    console.log(`      ${WRITERS} processes x ${SETS * 3} writes in ${ms} ms (process start included)`);
  });
});
