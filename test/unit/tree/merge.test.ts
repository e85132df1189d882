import { expect } from 'chai';
import { readFileSync } from 'node:fs';

import { MarsTree, type TreeEntry } from '../../../src/tree/index.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

const UUID = '0b8e5f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b';

async function openTree(tmp: TempDir, name: string): Promise<MarsTree> {
  const tree = await MarsTree.open({ root: tmp.file(name), host: name, create: true, requireCluster: false });
  await tree.set('uuid', UUID, { stamp: 1 });
  return tree;
}

describe('MarsTree.merge', () => {
  let tmp: TempDir;
  let alpha: MarsTree;
  let beta: MarsTree;
  const now = (): number => Date.now() * 1000;
  beforeEach(async () => {
    tmp = tempDir();
    alpha = await openTree(tmp, 'alpha');
    beta = await openTree(tmp, 'beta');
  });
  afterEach(() => tmp.remove());

  it('MarsTree.merge - the newest stamp wins and older entries are ignored', async () => {
    const t = now();
    await alpha.set('resource-r1/primary', 'alpha', { stamp: t });
    const older = { key: 'resource-r1/primary', value: 'beta', stamp: t - 1 };
    const newer = { key: 'resource-r1/primary', value: 'beta', stamp: t + 1 };
    expect(await alpha.merge([older])).to.deep.equal([]);
    expect(await alpha.getValue('resource-r1/primary')).to.equal('alpha');
    expect(await alpha.merge([newer])).to.deep.equal([newer]);
    expect(await alpha.get('resource-r1/primary')).to.deep.equal(newer);
    expect(await alpha.merge([newer])).to.deep.equal([]); // applying twice changes nothing
  });

  it('MarsTree.merge - equal stamps are broken by value, the same way in both directions', async () => {
    const t = now();
    await alpha.set('resource-r1/primary', 'alpha', { stamp: t });
    await beta.set('resource-r1/primary', 'beta', { stamp: t });
    await alpha.merge(await beta.snapshot());
    await beta.merge(await alpha.snapshot());
    expect(await alpha.get('resource-r1/primary')).to.deep.equal({ key: 'resource-r1/primary', value: 'beta', stamp: t });
    expect(await beta.get('resource-r1/primary')).to.deep.equal({ key: 'resource-r1/primary', value: 'beta', stamp: t });
    // A tie between a value and a tombstone: '.deleted' sorts below letters, so the value wins everywhere.
    await alpha.set('userspace/x', 'keep', { stamp: t });
    await beta.set('userspace/x', 'keep', { stamp: t - 5 });
    await beta.set('userspace/x', null, { stamp: t });
    await alpha.merge(await beta.snapshot());
    await beta.merge(await alpha.snapshot());
    expect(await alpha.getValue('userspace/x')).to.equal('keep');
    expect(await beta.getValue('userspace/x')).to.equal('keep');
  });

  it('MarsTree.merge - hosts converge whatever order random entries arrive in', async () => {
    const t = now();
    let x = 7;
    const rand = (n: number): number => {
      x = (x * 1103515245 + 12345) >>> 0;
      return x % n;
    };
    const entries: TreeEntry[] = [];
    for (let i = 0; i < 400; i++) {
      const value = rand(5) === 0 ? null : `v${rand(4)}`;
      entries.push({ key: `userspace/k${rand(20)}`, value, stamp: t + rand(10) });
    }
    const reversed = [...entries].reverse();
    await alpha.merge(entries);
    await beta.merge(reversed);
    await alpha.merge(await beta.snapshot());
    await beta.merge(await alpha.snapshot());
    expect(await alpha.snapshot()).to.deep.equal(await beta.snapshot());
  });

  it('MarsTree.merge - a tombstone applies only over an existing older link', async () => {
    const t = now();
    expect(await alpha.merge([{ key: 'userspace/unknown', value: null, stamp: t }])).to.deep.equal([]);
    expect(await alpha.get('userspace/unknown')).to.equal(undefined);
    await alpha.set('userspace/known', 'v', { stamp: t });
    expect(await alpha.merge([{ key: 'userspace/known', value: null, stamp: t - 1 }])).to.deep.equal([]);
    const tomb = { key: 'userspace/known', value: null, stamp: t + 1 };
    expect(await alpha.merge([tomb])).to.deep.equal([tomb]);
    expect(await alpha.get('userspace/known')).to.deep.equal(tomb);
    // A newer value resurrects the key.
    const back = { key: 'userspace/known', value: 'again', stamp: t + 2 };
    expect(await alpha.merge([back])).to.deep.equal([back]);
  });

  it('MarsTree.merge - observes every stamp into the clock, so local writes come after', async () => {
    const ahead = now() + 30_000_000; // a peer 30 s ahead
    await alpha.merge([{ key: 'resource-r1/size', value: '1', stamp: ahead }]);
    expect(Number(readFileSync(tmp.file('alpha/.phobos/lamport'), 'utf8'))).to.equal(ahead);
    const local = await alpha.set('userspace/after', 'x');
    expect(local!.stamp).to.equal(ahead + 1);
  });

  it('MarsTree.merge - defers an entry stamped beyond the future bound', async () => {
    const wall = Date.now();
    const bounded = await MarsTree.open({ root: tmp.file('alpha'), host: 'alpha', maxFutureMs: 60_000, wallClockMs: () => wall });
    const far = { key: 'userspace/far', value: 'x', stamp: (wall + 3_600_000) * 1000 };
    const near = { key: 'userspace/near', value: 'y', stamp: (wall + 1000) * 1000 };
    const deferred: TreeEntry[] = [];
    expect(await bounded.merge([far, near], { onDeferred: (e) => deferred.push(e) })).to.deep.equal([near]);
    expect(deferred).to.deep.equal([far]);
    expect(await bounded.get('userspace/far')).to.equal(undefined);
    expect(bounded.clock.peek()).to.equal(near.stamp);
  });
});
