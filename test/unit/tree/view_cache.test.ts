import { expect } from 'chai';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { native } from '../../../src/dataplane/native.js';
import { MarsTree, readTreeValues, TOMBSTONE } from '../../../src/tree/index.js';
import { readTreeValuesCached, VIEW_CACHE } from '../../../src/tree/tree_values.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

/**
 * The view cache (docs/tree.md "View cache"): whatever happened to the tree, a cached read
 * returns exactly what a full walk returns, and it lists only directories that moved.
 */
describe('view cache', () => {
  let tmp: TempDir;
  let tree: MarsTree;
  let cachePath: string;
  beforeEach(async () => {
    tmp = tempDir();
    tree = await MarsTree.open({ root: tmp.dir, host: 'alpha', requireCluster: false });
    cachePath = tmp.file(VIEW_CACHE);
    for (let i = 0; i < 20; i++) {
      await tree.set(`resource-r${i}/size`, String(i + 1));
      await tree.set(`resource-r${i}/todo-alpha/attach`, '1');
    }
  });
  afterEach(() => tmp.remove());

  const sorted = (m: Map<string, string | null>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));
  /** The cached read with a settle time, as a map like readTreeValues's, and its counters. */
  async function cachedRead(settleMs: number) {
    const r = await native.readTreeValuesCached(tmp.dir, cachePath, settleMs);
    const values = new Map(r.keys.map((k, i) => [k, r.values[i] === TOMBSTONE ? null : r.values[i]!] as const));
    return { values: sorted(values), reread: r.reread, written: r.written, dirs: r.dirs };
  }
  /** Longer than any timestamp granule here, so settleMs 0 is safe between steps. */
  const pastGranule = () => sleep(30);

  it('readTreeValuesCached - a quiet tree is read from the cache, one directory listed after one change', async () => {
    const first = await cachedRead(0);
    expect(first.values).to.deep.equal(sorted(await readTreeValues(tmp.dir)));
    expect(first).to.include({ reread: 41, dirs: 41, written: true }); // root + 20 resources + 20 todo dirs
    await pastGranule();
    expect(await cachedRead(0)).to.include({ reread: 0, written: false });
    await tree.set('resource-r7/size', '99');
    await pastGranule();
    const after = await cachedRead(0);
    expect(after).to.include({ reread: 1, written: true });
    expect(after.values).to.deep.include(['resource-r7/size', '99']);
  });

  it('readTreeValuesCached - a directory changed within the settle time is listed again at every read', async () => {
    // The default settle time: every directory here was written just now.
    expect(sorted(await readTreeValuesCached(tmp.dir))).to.deep.equal(sorted(await readTreeValues(tmp.dir)));
    await tree.set('resource-r3/size', '42'); // possibly within the same timestamp granule as the listing
    expect((await readTreeValuesCached(tmp.dir)).get('resource-r3/size')).to.equal('42');
    const again = await native.readTreeValuesCached(tmp.dir, cachePath, 2000);
    expect(again.reread).to.equal(41);
    expect(again.written, 'relisting unsettled directories that did not change rewrites nothing').to.equal(false);
  });

  it('readTreeValuesCached - equals a full walk through random sets, tombstones, new and removed directories', async () => {
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    await cachedRead(0);
    for (let step = 0; step < 60; step++) {
      const res = `resource-r${rand(30)}`;
      switch (rand(6)) {
        case 0: await tree.set(`${res}/size`, String(rand(1000) + 1)); break;
        case 1: await tree.set(`${res}/todo-alpha/${['attach', 'connect', 'sync'][rand(3)]}`, String(rand(2))); break;
        case 2: await tree.delete(`${res}/size`).catch(() => undefined); break;
        case 3: rmSync(tmp.file(res), { recursive: true, force: true }); break;
        case 4: await tree.set(`${res}/actual-alpha/is-attached`, '1'); break;
        default: await tree.set(`ips/ip-h${rand(5)}`, `10.0.0.${rand(250)}`);
      }
      await pastGranule();
      const cached = await cachedRead(0);
      expect(cached.values, `step ${step}`).to.deep.equal(sorted(await readTreeValues(tmp.dir)));
      expect(cached.reread, `step ${step}: listed only what moved`).to.be.below(6);
    }
  });

  it('readTreeValuesCached - a directory replaced by another with the same name is listed again', async () => {
    await cachedRead(0);
    await pastGranule();
    renameSync(tmp.file('resource-r1'), tmp.file('old-r1'));
    mkdirSync(tmp.file('resource-r1'));
    symlinkSync('5', tmp.file('resource-r1/size'));
    rmSync(tmp.file('old-r1'), { recursive: true });
    await pastGranule();
    const r = await cachedRead(0);
    expect(r.values).to.deep.equal(sorted(await readTreeValues(tmp.dir)));
    expect(r.values).to.deep.include(['resource-r1/size', '5']);
    expect(r.values.some(([k]) => k.startsWith('resource-r1/todo-alpha'))).to.equal(false);
  });

  it('readTreeValuesCached - a damaged, foreign or group-writable cache is ignored and rebuilt', async () => {
    const full = sorted(await readTreeValues(tmp.dir));
    await cachedRead(0);
    const good = readFileSync(cachePath);
    const damage: [string, (b: Buffer) => Buffer][] = [
      ['truncated', (b) => b.subarray(0, b.length - 5)],
      ['one byte of a value flipped', (b) => { const c = Buffer.from(b); c[c.length - 1]! ^= 1; return c; }],
      ['another format', (b) => { const c = Buffer.from(b); c[4] = 9; return c; }],
      ['empty', () => Buffer.alloc(0)],
    ];
    for (const [what, spoil] of damage) {
      writeFileSync(cachePath, spoil(good), { mode: 0o600 });
      await pastGranule();
      const r = await cachedRead(0);
      expect(r.values, what).to.deep.equal(full);
      expect(r, what).to.include({ reread: 41, written: true });
    }
    // The same directories under another path: the cache names the root it was made for.
    const other = tempDir();
    try {
      symlinkSync(tmp.dir, other.file('tree'));
      writeFileSync(other.file('cache'), good, { mode: 0o600 });
      const r = await native.readTreeValuesCached(other.file('tree'), other.file('cache'), 0);
      expect(r.reread).to.equal(41);
    } finally {
      other.remove();
    }
    // One that others may write.
    writeFileSync(cachePath, good, { mode: 0o600 });
    chmodSync(cachePath, 0o620);
    await pastGranule();
    expect(await cachedRead(0)).to.include({ reread: 41, written: true });
    expect(statSync(cachePath).mode & 0o777).to.equal(0o600);
  });

  it('readTreeValuesCached - without a place to write the cache every value still comes back', async () => {
    const r = await native.readTreeValuesCached(tmp.dir, tmp.file('no-such-dir/cache'), 0);
    expect(r.written).to.equal(false);
    expect(r.keys).to.have.length(40);
    expect((await native.readTreeValuesCached(tmp.file('nope'), cachePath, 0)).keys).to.deep.equal([]);
  });
});
