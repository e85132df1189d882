import { expect } from 'chai';
import fs, { lutimesSync, mkdirSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';

import { MarsTree, TreeWatcher, type TreeChange } from '../../../src/tree/index.js';
import { FULL_RESCAN_EVERY } from '../../../src/tree/tree_watcher.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

const UUID = '0b8e5f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b';

/** Wait until `done()` holds, or fail after timeoutMs. */
async function until(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const started = Date.now();
  while (!done()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('TreeWatcher', () => {
  let tmp: TempDir;
  let tree: MarsTree;
  let watcher: TreeWatcher | undefined;
  let changes: TreeChange[];
  let errors: Error[];

  beforeEach(async () => {
    tmp = tempDir();
    tree = await MarsTree.open({ root: tmp.dir, host: 'alpha', requireCluster: false });
    await tree.set('uuid', UUID);
    await tree.set('resource-r0/size', '1');
    changes = [];
    errors = [];
  });
  afterEach(() => {
    watcher?.close();
    watcher = undefined;
    tmp.remove();
  });

  const start = async (rescanMs = 0): Promise<TreeWatcher> => {
    watcher = await TreeWatcher.start({
      root: tmp.dir, rescanMs, onChange: (c) => changes.push(c), onError: (e) => errors.push(e),
    });
    return watcher;
  };

  it('TreeWatcher - the initial scan knows the tree and emits nothing', async () => {
    const w = await start();
    await w.idle();
    expect(changes).to.deep.equal([]);
    expect([...w.entries().keys()].sort()).to.deep.equal(['resource-r0/size', 'uuid']);
  });

  it('TreeWatcher - a burst that overflows the kernel\'s event queue is caught up by a rescan, not lost until the periodic one', async () => {
    await tree.set('resource-r0/userspace/seed', 'x');
    const w = await start(0); // no periodic rescan: only the burst's own can find what overflowed
    await w.idle();
    const dir = `${tmp.dir}/resource-r0/userspace`;
    // The event loop is blocked while the links appear, so the kernel queues every event:
    // past max_queued_events (16384 by default) it drops them, and nobody is told.
    const count = 20_000;
    for (let i = 0; i < count; i++) symlinkSync(`v${i}`, `${dir}/k${String(i).padStart(5, '0')}`);
    await until(() => changes.length >= count, 20_000, `${count} changes (have ${changes.length})`);
    expect(new Set(changes.map((c) => c.key)).size).to.equal(count);
    expect(w.stats.burstRescans).to.be.at.least(1);
    expect(errors).to.deep.equal([]);
  });

  it('TreeWatcher - delivers 1000/1000 rapid sets, each exactly once', async () => {
    await start();
    const written = new Map<string, number>();
    const t0 = Date.now();
    for (let i = 0; i < 1000; i++) {
      const key = `resource-r${i % 10}/userspace/k${i}`;
      const entry = await tree.set(key, `v${i}`);
      written.set(key, entry!.stamp);
    }
    const writeMs = Date.now() - t0;
    await until(() => changes.length >= 1000, 10_000, '1000 changes');
    await watcher!.idle();
    await new Promise((r) => setTimeout(r, 100)); // room for any duplicate to show up
    const lastMs = Date.now() - t0;
    const userspace = changes.filter((c) => c.key.includes('/userspace/'));
    expect(userspace.length).to.equal(1000);
    expect(new Set(userspace.map((c) => c.key)).size).to.equal(1000);
    for (const c of userspace) {
      expect(c.kind).to.equal('set');
      if (c.kind !== 'set') continue;
      expect(c.stamp).to.equal(written.get(c.key));
      expect(c.value).to.equal(`v${c.key.split('/k')[1]}`);
      expect(c.previous).to.equal(null);
    }
    // The new resource directories r1..r9 were picked up on the fly; nothing else was emitted.
    expect(changes.length).to.equal(1000);
    expect(errors).to.deep.equal([]);
    console.log(`      1000 sets in ${writeMs} ms, all 1000 events by ${lastMs} ms`);
  });

  it('TreeWatcher - paced updates of one key each arrive once, with the previous entry', async () => {
    const arrivals: bigint[] = [];
    watcher = await TreeWatcher.start({
      root: tmp.dir, rescanMs: 0, onChange: (c) => {
        arrivals.push(process.hrtime.bigint());
        changes.push(c);
      },
    });
    const latencies: number[] = [];
    let previous = await tree.get('resource-r0/size');
    for (let i = 2; i < 202; i++) {
      const before = changes.length;
      const entry = await tree.set('resource-r0/size', String(i));
      const written = process.hrtime.bigint(); // the rename is done
      await until(() => changes.length > before, 2000, `update ${i}`);
      latencies.push(Number(arrivals[before]! - written) / 1e6);
      expect(changes.length).to.equal(before + 1);
      expect(changes[before]).to.deep.equal({
        kind: 'set', key: 'resource-r0/size', value: String(i), stamp: entry!.stamp, previous,
      });
      previous = entry!;
    }
    latencies.sort((a, b) => a - b);
    const p = (q: number): string => latencies[Math.floor(q * (latencies.length - 1))]!.toFixed(2);
    console.log(`      rename -> event latency: median ${p(0.5)} ms, p99 ${p(0.99)} ms`);
  });

  it('TreeWatcher - a link replaced right after the watcher read it is not taken as known: its new value arrives', async () => {
    // The watcher remembers each link's inode version to skip events for links it has
    // read. That version must be the one the value came from: taken by a later lstat, a
    // link replaced in between was remembered with the old value and the new inode, and
    // every later event and rescan skipped it as known, for good (a daemon that never saw
    // a switch flip). The replacement is made right after the read's last lstat.
    const key = 'resource-r0/size';
    const file = `${tmp.dir}/${key}`;
    const w = await start(0);
    await w.idle();
    const lstat = fs.promises.lstat;
    const readlink = fs.promises.readlink;
    let readValue = false;
    let replaced = false;
    const replace = (): void => {
      replaced = true;
      symlinkSync('3', `${file}.tmp`);
      lutimesSync(`${file}.tmp`, 4_000_000_000, 4_000_000_000);
      renameSync(`${file}.tmp`, file);
    };
    fs.promises.readlink = (async (...args: Parameters<typeof readlink>) => {
      if (args[0] === file) readValue = true;
      return readlink(...args);
    }) as typeof readlink;
    fs.promises.lstat = (async (...args: Parameters<typeof lstat>) => {
      const st = await lstat(...args);
      if (args[0] === file && readValue && !replaced) replace();
      return st;
    }) as typeof lstat;
    try {
      await tree.set(key, '2');
      await until(() => replaced, 2000, 'the replacement');
      await until(() => w.entries().get(key)?.value === '3', 2000, 'the replaced value');
    } finally {
      fs.promises.lstat = lstat;
      fs.promises.readlink = readlink;
    }
    expect(changes.map((c) => c.kind === 'set' ? c.value : null)).to.deep.equal(['2', '3']);
  });

  it('TreeWatcher - sees tombstones, removals, new and removed directories', async () => {
    const w = await start();
    await tree.delete('resource-r0/size');
    await until(() => changes.length === 1, 2000, 'tombstone');
    expect(changes[0]).to.include({ kind: 'set', key: 'resource-r0/size', value: null });
    // A new directory tree, populated right after mkdir.
    mkdirSync(tmp.file('resource-new'));
    mkdirSync(tmp.file('resource-new/todo-alpha'));
    for (let i = 0; i < 50; i++) symlinkSync('1', tmp.file(`resource-new/todo-alpha/s${i}`));
    await until(() => changes.length === 51, 2000, 'new directory entries');
    await tree.set('resource-new/todo-alpha/attach', '0');
    await until(() => changes.length === 52, 2000, 'set in the new directory');
    // Purge and rm: a link disappears.
    unlinkSync(tmp.file('resource-new/todo-alpha/s0'));
    await until(() => changes.length === 53, 2000, 'unlink');
    expect(changes[52]).to.deep.include({ kind: 'removed', key: 'resource-new/todo-alpha/s0' });
    // A whole directory removed: every link in it is reported removed once.
    rmSync(tmp.file('resource-new'), { recursive: true });
    await until(() => changes.length === 53 + 50, 2000, 'directory removal');
    await w.idle();
    const removed = changes.slice(53);
    expect(removed.every((c) => c.kind === 'removed')).to.equal(true);
    expect(new Set(removed.map((c) => c.key)).size).to.equal(50);
    // Regular files (logs) and hidden names are not entries.
    writeFileSync(tmp.file('resource-r0/log-000000001-alpha'), 'x');
    symlinkSync('x', tmp.file('resource-r0/.tmp.1.1.size'));
    await new Promise((r) => setTimeout(r, 100));
    await w.idle();
    expect(changes.length).to.equal(103);
    expect(errors).to.deep.equal([]);
  });

  it('TreeWatcher - rescans emit only real differences, including ones inotify missed', async () => {
    const w = await start();
    await w.rescan();
    expect(changes).to.deep.equal([]);
    // Changes made while the watcher is deaf (watches closed): only the rescan can see them.
    w.close();
    watcher = await TreeWatcher.start({ root: tmp.dir, rescanMs: 50, onChange: (c) => changes.push(c) });
    await tree.set('resource-r0/size', '2');
    await until(() => changes.length === 1, 2000, 'the change');
    await new Promise((r) => setTimeout(r, 200)); // several rescans
    expect(changes.length).to.equal(1);
    expect(watcher.stats.rescans).to.be.greaterThan(1);
  });

  it('TreeWatcher - a burst that overflows the queue while links in many known directories are replaced loses none of them', async () => {
    const dirs = 200;
    for (let i = 0; i < dirs; i++) await tree.set(`resource-d${i}/size`, '1');
    const w = await start(0);
    await new Promise((r) => setTimeout(r, 2100)); // directories quiet: their versions count
    await w.rescan();
    // Blocked event loop: the kernel queues, then drops. The replacements come after the
    // 20 000 new links, so their events are the ones lost; only the rescan after the
    // burst can find them, by the versions of their directories.
    for (let i = 0; i < 20_000; i++) symlinkSync('x', tmp.file(`resource-r0/k${String(i).padStart(5, '0')}`));
    for (let i = 0; i < dirs; i++) {
      const tmpLink = tmp.file(`resource-d${i}/.tmp.size`);
      symlinkSync('2', tmpLink);
      renameSync(tmpLink, tmp.file(`resource-d${i}/size`));
    }
    const replaced = (): number => changes.filter((c) => c.kind === 'set' && c.key.endsWith('/size') && c.value === '2').length;
    await until(() => replaced() === dirs, 20_000, `${dirs} replaced links (have ${replaced()})`);
    expect(w.stats.burstRescans).to.be.at.least(1);
    const onDisk = new Map((await tree.snapshot()).map((e) => [e.key, e]));
    expect(w.entries()).to.deep.equal(onDisk);
    expect(errors).to.deep.equal([]);
  });

  it('TreeWatcher - a rescan of a quiet tree re-reads no directory, and after a change only its directory', async () => {
    for (let i = 0; i < 20; i++) await tree.set(`resource-d${i}/size`, '1');
    const w = await start(0);
    // Versions are trusted only once a directory has been quiet for 2 s (DIR_SETTLE_MS).
    await new Promise((r) => setTimeout(r, 2100));
    await w.rescan();
    const before = w.stats.rescannedDirs;
    await w.rescan();
    expect(w.stats.rescannedDirs - before, 'directories re-read at rest').to.equal(0);
    await tree.set('resource-d7/size', '2');
    await until(() => changes.length === 1, 2000, 'the change');
    await w.rescan();
    expect(w.stats.rescannedDirs - before, 'directories re-read after one change').to.equal(1);
    expect(changes.length).to.equal(1);
    expect(errors).to.deep.equal([]);
  });

  it('TreeWatcher - a full rescan finds a link whose stamp changed in place, which moves no directory', async () => {
    const w = await start(0);
    await new Promise((r) => setTimeout(r, 2100));
    await w.rescan();
    lutimesSync(tmp.file('resource-r0/size'), 2_000_000_000, 2_000_000_000); // no event is acted on
    await new Promise((r) => setTimeout(r, 100));
    await w.rescan();
    expect(changes).to.deep.equal([]);
    await w.rescan({ full: true });
    expect(changes).to.have.length(1);
    expect(changes[0]).to.deep.include({ kind: 'set', key: 'resource-r0/size', value: '1', stamp: 2_000_000_000_000_000 });
    expect(w.stats.fullRescans).to.equal(1);
  });

  it('TreeWatcher - every FULL_RESCAN_EVERY-th periodic rescan is a full one', async () => {
    const w = await start(10);
    await until(() => w.stats.rescans >= FULL_RESCAN_EVERY + 1, 5000, 'periodic rescans');
    expect(w.stats.fullRescans).to.be.at.least(1);
    expect(w.stats.fullRescans).to.be.below(w.stats.rescans / 2);
  });

  it('TreeWatcher - a new regular file (a log) is told to onFile once; appends and links are not', async () => {
    const files: string[] = [];
    watcher = await TreeWatcher.start({ root: tmp.dir, rescanMs: 0, onChange: (c) => changes.push(c), onFile: (f) => files.push(f) });
    const log = `${tmp.dir}/resource-r0/log-000000002-alpha`;
    writeFileSync(log, '');
    await until(() => files.length > 0, 2000, 'onFile');
    for (let i = 0; i < 5; i++) writeFileSync(log, 'more', { flag: 'a' });
    await tree.set('resource-r0/primary', 'alpha');
    await until(() => changes.length > 0, 2000, 'the link');
    await watcher.idle();
    expect(files).to.deep.equal(['resource-r0/log-000000002-alpha']);
    expect(changes.map((c) => c.key)).to.deep.equal(['resource-r0/primary']);
  });

  it('TreeWatcher.close - stops all events', async () => {
    const w = await start(20);
    w.close();
    await tree.set('resource-r0/size', '9');
    await new Promise((r) => setTimeout(r, 100));
    expect(changes).to.deep.equal([]);
  });
});
