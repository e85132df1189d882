import { expect } from 'chai';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';

import { MarsTree, readTreeValues } from '../../../src/tree/index.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

describe('readTreeValues', () => {
  let tmp: TempDir;
  let tree: MarsTree;
  before(async () => {
    tmp = tempDir();
    tree = await MarsTree.open({ root: tmp.dir, host: 'alpha', requireCluster: false });
    await tree.set('uuid', '0b8e5f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b');
    await tree.set('resource-r1/size', '1');
    await tree.set('resource-r1/todo-alpha/attach', '1');
    await tree.set('resource-r10/size', '3');
    await tree.set('resource-r2/primary', 'alpha');
    await tree.delete('resource-r2/primary');
    await tree.set('ips/ip-alpha', '10.0.0.1');
    writeFileSync(tmp.file('resource-r1/log-000000001-alpha'), 'log bytes');
    symlinkSync('x', tmp.file('resource-r1/.tmp.1.0.size'));
    mkdirSync(tmp.file('.hidden'));
    symlinkSync('x', tmp.file('.hidden/link'));
  });
  after(() => tmp.remove());

  const sorted = (m: Map<string, string | null>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));

  it('readTreeValues - every link under the prefix with its value, a tombstone as null; logs and hidden names left out', async () => {
    expect(sorted(await readTreeValues(tmp.dir))).to.deep.equal([
      ['ips/ip-alpha', '10.0.0.1'], ['resource-r1/size', '1'], ['resource-r1/todo-alpha/attach', '1'],
      ['resource-r10/size', '3'], ['resource-r2/primary', null], ['uuid', '0b8e5f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b'],
    ]);
    expect(sorted(await readTreeValues(tmp.dir, 'resource-r1'))).to.deep.equal([
      ['resource-r1/size', '1'], ['resource-r1/todo-alpha/attach', '1'], ['resource-r10/size', '3'],
    ]);
    expect(sorted(await readTreeValues(tmp.dir, 'resource-r1/todo-'))).to.deep.equal([['resource-r1/todo-alpha/attach', '1']]);
  });

  it('readTreeValues - the same as MarsTree.values and list() without stamps, for any prefix', async () => {
    for (const prefix of ['', 'resource-r1/', 'resource-r2/', 'ips', 'u', 'nope/']) {
      const values = sorted(await readTreeValues(tmp.dir, prefix));
      expect(sorted(await tree.values(prefix)), prefix).to.deep.equal(values);
      expect((await tree.list(prefix)).map((e) => [e.key, e.value]), prefix).to.deep.equal(values);
    }
  });

  it('readTreeValues - a missing root has no links', async () => {
    expect((await readTreeValues(tmp.file('nope'))).size).to.equal(0);
  });
});
