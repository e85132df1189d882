import { expect } from 'chai';
import { existsSync, lstatSync, mkdirSync, readdirSync, symlinkSync, watch, writeFileSync, lutimesSync } from 'node:fs';
import path from 'node:path';

import { MarsTree, TreeError, todoKey, type LamportStamp } from '../../../src/tree/index.js';
import { stampToSeconds, statToStamp } from '../../../src/tree/_entry_io.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

const UUID = '0b8e5f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b';

async function expectTreeError(p: Promise<unknown>, code: string, re: RegExp): Promise<void> {
  let error: TreeError | undefined;
  try {
    await p;
  } catch (e) {
    error = e as TreeError;
  }
  expect(error?.code).to.equal(code);
  expect(error?.message).to.match(re);
}

describe('MarsTree', () => {
  let tmp: TempDir;
  let tree: MarsTree;
  beforeEach(async () => {
    tmp = tempDir();
    const fresh = await MarsTree.open({ root: tmp.dir, host: 'alpha', requireCluster: false });
    await fresh.set('uuid', UUID);
    tree = await MarsTree.open({ root: tmp.dir, host: 'alpha' });
  });
  afterEach(() => tmp.remove());

  it('stamps - survive lutimes and lstat exactly to the microsecond', () => {
    symlinkSync('v', tmp.file('link'));
    const stamps: LamportStamp[] = [1, 999_999, 1_000_000, 1_763_800_000_000_000, 1_763_800_000_999_999,
      4_102_444_800_000_001 /* 2100 */, 8_589_934_591_999_999 /* 2242 */];
    let x = 0x12345678;
    for (let i = 0; i < 20000; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      stamps.push(1_700_000_000_000_000 + x * 97 + i);
    }
    for (const stamp of stamps) {
      const s = stampToSeconds(stamp);
      lutimesSync(tmp.file('link'), s, s);
      expect(statToStamp(lstatSync(tmp.file('link'), { bigint: true })), String(stamp)).to.equal(stamp);
    }
  });

  it('MarsTree.open - a missing root or one without uuid is not a cluster', async () => {
    await expectTreeError(MarsTree.open({ root: tmp.file('nope'), host: 'alpha' }), 'EPHOBOS_NOT_CLUSTER',
      /^no tree at .*nope: run marsadm create-cluster/);
    mkdirSync(tmp.file('empty'));
    await expectTreeError(MarsTree.open({ root: tmp.file('empty'), host: 'alpha' }), 'EPHOBOS_NOT_CLUSTER',
      /empty is not a cluster member \(no uuid\): run marsadm create-cluster or join-cluster first/);
    await expectTreeError(MarsTree.open({ root: tmp.dir, host: 'Alpha' }), 'EPHOBOS_NAME', /invalid host name 'Alpha'/);
    const created = await MarsTree.open({ root: tmp.file('new/mars'), host: 'alpha', create: true, requireCluster: false });
    expect(await created.isCluster()).to.equal(false);
    expect(lstatSync(tmp.file('new/mars')).isDirectory()).to.equal(true);
  });

  it('MarsTree.set - stores the value as the link target and the stamp as its mtime', async () => {
    const key = todoKey('r1', 'alpha', 'attach');
    const entry = await tree.set(key, '1');
    expect(entry?.value).to.equal('1');
    const file = path.join(tmp.dir, key);
    expect(lstatSync(file).isSymbolicLink()).to.equal(true);
    expect(statToStamp(lstatSync(file, { bigint: true }))).to.equal(entry?.stamp);
    expect(await tree.get(key)).to.deep.equal(entry);
    expect(await tree.getValue(key)).to.equal('1');
    expect(lstatSync(path.dirname(file)).mode & 0o777).to.equal(0o755 & ~process.umask());
    // No temporary names remain.
    expect(readdirSync(path.dirname(file))).to.deep.equal(['attach']);
  });

  it('MarsTree.set - every write gets a newer stamp than the one it replaces', async () => {
    let last = 0;
    for (let i = 0; i < 200; i++) {
      const entry = await tree.set('userspace/counter', String(i));
      expect(entry!.stamp).to.be.greaterThan(last);
      last = entry!.stamp;
    }
    // Even if the link carries a stamp ahead of the clock (the .lamport file was lost).
    const far = last + 3_600_000_000;
    const s = stampToSeconds(far);
    lutimesSync(path.join(tmp.dir, 'userspace/counter'), s, s);
    expect((await tree.set('userspace/counter', 'x'))!.stamp).to.equal(far + 1);
  });

  it('MarsTree.set - an explicit stamp is applied only if strictly newer', async () => {
    await tree.set('resource-r1/size', '100', { stamp: 5_000_000 });
    expect(await tree.set('resource-r1/size', '200', { stamp: 5_000_000 })).to.equal(null);
    expect(await tree.set('resource-r1/size', '200', { stamp: 4_000_000 })).to.equal(null);
    expect(await tree.get('resource-r1/size')).to.deep.equal({ key: 'resource-r1/size', value: '100', stamp: 5_000_000 });
    expect(await tree.set('resource-r1/size', '300', { stamp: 5_000_001 })).to.deep.equal(
      { key: 'resource-r1/size', value: '300', stamp: 5_000_001 });
  });

  it('MarsTree.set - weak writes take the old stamp + 1, so a concurrent normal write wins', async () => {
    const primary = await tree.set('resource-r1/primary', 'alpha');
    const weak = await tree.set('resource-r1/primary', '(none)', { weak: true });
    expect(weak!.stamp).to.equal(primary!.stamp + 1);
    // A normal write made elsewhere after the original one carries a clock stamp >= this.
    const normal = { key: 'resource-r1/primary', value: 'beta', stamp: primary!.stamp + 1000 };
    expect(await tree.merge([normal])).to.deep.equal([normal]);
    expect(await tree.getValue('resource-r1/primary')).to.equal('beta');
  });

  it('MarsTree.delete - writes a .deleted tombstone that reads as null', async () => {
    const set = await tree.set('resource-r1/data-alpha', '/dev/lv/r1');
    const tomb = await tree.delete('resource-r1/data-alpha');
    expect(tomb.value).to.equal(null);
    expect(tomb.stamp).to.be.greaterThan(set!.stamp);
    expect(await tree.get('resource-r1/data-alpha')).to.deep.equal(tomb);
    expect(await tree.getValue('resource-r1/data-alpha')).to.equal(undefined);
    expect((await tree.list('resource-r1/')).map((e) => e.value)).to.deep.equal([null]);
  });

  it('MarsTree.update - read-modify-write under the lock', async () => {
    await Promise.all(Array.from({ length: 50 }, () =>
      tree.update('userspace/n', (e) => String(Number(e?.value ?? '0') + 1))));
    expect(await tree.getValue('userspace/n')).to.equal('50');
    expect(await tree.update('userspace/n', () => undefined)).to.equal(undefined);
    expect(await tree.getValue('userspace/n')).to.equal('50');
  });

  it('MarsTree - regular files (logs) are listed past and never touched', async () => {
    await tree.set('resource-r1/size', '4096');
    writeFileSync(tmp.file('resource-r1/log-000000001-alpha'), 'log bytes');
    expect((await tree.list('')).map((e) => e.key)).to.deep.equal(['resource-r1/size', 'uuid']);
    expect(await tree.get('resource-r1/log-000000001-alpha')).to.equal(undefined);
    await expectTreeError(tree.set('resource-r1/log-000000001-alpha', 'x'), 'EPHOBOS_KEY', /is a log \(a regular file\)/);
    // A regular file where a link key should be is refused, not replaced.
    writeFileSync(tmp.file('resource-r1/primary'), 'not a link');
    await expectTreeError(tree.set('resource-r1/primary', 'alpha'), 'EPHOBOS_KEY', /is a regular file, not a tree link/);
    const merged = await tree.merge([{ key: 'resource-r1/primary', value: 'beta', stamp: Date.now() * 1000 }]);
    expect(merged).to.deep.equal([]);
    expect(lstatSync(tmp.file('resource-r1/primary')).isFile()).to.equal(true);
  });

  it('MarsTree - refuses bad keys and values with one-line errors, leaving the tree unchanged', async () => {
    const before = await tree.snapshot();
    await expectTreeError(tree.set('../escape', 'x'), 'EPHOBOS_KEY', /invalid key '\.\.\/escape'/);
    await expectTreeError(tree.set('/etc/passwd', 'x'), 'EPHOBOS_KEY', /relative to the root/);
    await expectTreeError(tree.set('resource-r1/todo-alpha/attach', 'on'), 'EPHOBOS_VALUE', /expected '0' or '1'/);
    await expectTreeError(tree.merge([
      { key: 'resource-r1/size', value: '1', stamp: 1 },
      { key: 'resource-r1/bogus', value: '1', stamp: 1 },
    ]), 'EPHOBOS_KEY', /not a key of the tree/);
    // A directory component that is a symlink is never followed out of the root.
    mkdirSync(tmp.file('outside'));
    symlinkSync(tmp.file('outside'), tmp.file('resource-r9'));
    await expectTreeError(tree.set('resource-r9/size', '1'), 'EPHOBOS_KEY', /is not a directory \(a symlink\)/);
    expect(readdirSync(tmp.file('outside'))).to.deep.equal([]);
    expect(await tree.snapshot()).to.deep.equal(before);
  });

  it('MarsTree.list - filters by prefix; listResources names the resource directories', async () => {
    await tree.set('resource-r1/size', '1');
    await tree.set('resource-r2/size', '2');
    await tree.set('resource-r2/todo-alpha/attach', '1');
    await tree.set('resource-r10/size', '3');
    await tree.set('ips/ip-alpha', '10.0.0.1');
    expect(await tree.listResources()).to.deep.equal(['r1', 'r10', 'r2']);
    expect((await tree.list('resource-r2/')).map((e) => e.key)).to.deep.equal(['resource-r2/size', 'resource-r2/todo-alpha/attach']);
    expect((await tree.list('resource-r1')).map((e) => e.key)).to.deep.equal(['resource-r1/size', 'resource-r10/size']);
    expect((await tree.list('resource-r2/todo-')).map((e) => e.key)).to.deep.equal(['resource-r2/todo-alpha/attach']);
    expect((await tree.snapshot()).length).to.equal(6);
  });

  it('MarsTree - a crash mid-write leaves a .tmp link that readers ignore and open() removes when old', async () => {
    const dir = tmp.file('resource-r1');
    await tree.set('resource-r1/size', '100');
    symlinkSync('999', path.join(dir, '.tmp.4242.0.size'));   // a writer killed before rename
    symlinkSync('998', path.join(dir, '.tmp.4243.0.size'));   // a writer still running
    expect(await tree.getValue('resource-r1/size')).to.equal('100');
    expect((await tree.list('')).map((e) => e.key)).to.deep.equal(['resource-r1/size', 'uuid']);
    await MarsTree.open({ root: tmp.dir, host: 'alpha' });
    expect(readdirSync(dir).sort()).to.deep.equal(['.tmp.4242.0.size', '.tmp.4243.0.size', 'size']);
    // ctime cannot be set back, so the age limit is lowered instead.
    await new Promise((r) => setTimeout(r, 20));
    await MarsTree.open({ root: tmp.dir, host: 'alpha', staleTmpMs: 10 });
    expect(readdirSync(dir)).to.deep.equal(['size']);
  });

  it('MarsTree.purgeTombstones - removes only tombstones older than the limit', async () => {
    await tree.set('userspace/new', 'y');
    await tree.set('userspace/live', 'z');
    // A tombstone an hour old (written with an explicit stamp on a new key).
    await tree.set('userspace/old', null, { stamp: (Date.now() - 3_600_000) * 1000 });
    await tree.delete('userspace/new');
    expect(await tree.purgeTombstones(60_000)).to.deep.equal(['userspace/old']);
    expect((await tree.list('userspace/')).map((e) => [e.key, e.value])).to.deep.equal(
      [['userspace/live', 'z'], ['userspace/new', null]]);
  });

  it('MarsTree - a mutation leaves the root directory alone (lock and clock are in .phobos/), so watchers of the root stay quiet', async () => {
    await tree.set('userspace/warm', '1');
    const events: string[] = [];
    const watcher = watch(tmp.dir, (_, name) => events.push(String(name)));
    try {
      for (let i = 0; i < 5; i++) await tree.set(`userspace/k${i}`, String(i));
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      watcher.close();
    }
    expect(events).to.deep.equal([]);
    expect(existsSync(tmp.file('.phobos/lock')) && existsSync(tmp.file('.phobos/lamport'))).to.equal(true);
  });

  it('MarsTree.open - carries the clock of an older tree (<root>/.lamport) over, so stamps never go back', async () => {
    const other = tempDir();
    try {
      const ahead = (Date.now() + 60_000) * 1000;
      writeFileSync(other.file('.lamport'), `${String(ahead).padStart(20, '0')}\n`);
      const old = await MarsTree.open({ root: other.dir, host: 'alpha', requireCluster: false });
      expect(await old.stamp()).to.be.greaterThan(ahead);
    } finally {
      other.remove();
    }
  });

  it('MarsTree.stamp - hands out clock stamps under the lock, persisted in .phobos/lamport', async () => {
    const a = await tree.stamp();
    const b = await tree.stamp();
    expect(b).to.be.greaterThan(a);
    const reopened = await MarsTree.open({ root: tmp.dir, host: 'alpha' });
    expect(await reopened.stamp()).to.be.greaterThan(b);
  });
});
