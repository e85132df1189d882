/**
 * System tier (root: it mounts filesystems): emergency mode (docs/emergency.md). Each
 * host's /mars is a small tmpfs; a filler file takes it down to each level of the cascade
 * in turn: 1 warning, 2 the secondary deletes logs it has replayed, 3 the secondary stops
 * fetching, 4 the primary stops logging and writes go straight to its disk. With space
 * back, the primary logs again after a gap, the secondary reports Orphan, and
 * `invalidate` makes the disks identical.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, statfsSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { expect } from 'chai';

import { NbdClient } from '../../src/nbd/index.js';
import { randomBytes } from '../support/tmp.js';
import { eventually, type TestHost } from '../support/test_host.js';
import { sha256, sha256File, TestCluster } from '../support/test_cluster.js';
import { requireTier } from '../support/tiers.js';

const RES = 'r1';
const SIZE = 8 << 20;
const TMPFS_BYTES = 64 << 20;
/** Coarse thresholds, so that each level is megabytes away from the next. */
const THRESHOLDS = '60,45,30,15';

describe('system tier: emergency mode on a filling /mars', function () {
  this.timeout(180_000);
  let cluster: TestCluster;
  let alpha: TestHost, beta: TestHost;
  const mounted: string[] = [];

  const get = (h: TestHost, key: string) => h.getLink(key);
  const res = (leaf: string) => `resource-${RES}/${leaf}`;
  const disk = (h: TestHost) => h.tmp.file('disk');
  const filler = (h: TestHost) => path.join(h.root, 'filler');
  const logsOf = (h: TestHost) => readdirSync(path.join(h.root, `resource-${RES}`)).filter((f) => f.startsWith('log-')).sort();

  /** Grow or shrink h's filler until its /mars has `percent` free. */
  function fillTo(h: TestHost, percent: number): void {
    const s = statfsSync(h.root);
    const total = s.blocks * s.bsize;
    const current = sizeOf(filler(h));
    const freeNow = s.bavail * s.bsize;
    const want = Math.max(0, current + freeNow - Math.floor((percent / 100) * total));
    writeFileSync(filler(h), Buffer.alloc(0));
    if (want > 0) writeFileSync(filler(h), Buffer.alloc(want, 1));
  }

  async function write(h: TestHost, at: number, bytes: number, seed: number): Promise<void> {
    const device = await NbdClient.connect(h.socket(RES), RES);
    await device.write(at, randomBytes(bytes, seed));
    await device.flush();
    await device.disconnect();
  }

  async function imageOf(h: TestHost): Promise<string> {
    const device = await NbdClient.connect(h.socket(RES), RES);
    const image = await device.read(0, SIZE);
    await device.disconnect();
    return sha256(image);
  }

  before(async function () {
    requireTier(this, 'system (emergency)', process.getuid?.() === 0 ? null : 'mounting a tmpfs needs root');
    cluster = await TestCluster.create(['alpha', 'beta'], (h) => {
      mkdirSync(h.root, { recursive: true });
      const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_BYTES}`, 'phobos-test', h.root], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`mount tmpfs on ${h.root}: ${r.stderr}`);
      mounted.push(h.root);
    });
    [alpha, beta] = cluster.hosts as [TestHost, TestHost];
    cluster.makeDisks(SIZE);
    await alpha.ok('set-link', 'userspace/emergency-free', THRESHOLDS);
    await alpha.ok('create-resource', RES, disk(alpha));
    await eventually('beta to learn of r1', async () => (await get(beta, res('size'))) === String(SIZE));
    await beta.ok('join-resource', RES, disk(beta));
    await write(alpha, 0, 1 << 20, 1);
    const want = await imageOf(alpha);
    await eventually('beta in sync', () => sha256File(disk(beta)) === want, 30_000);
  });

  after(async () => {
    await cluster?.remove().catch(() => undefined);
    for (const dir of mounted) spawnSync('umount', ['-l', dir]);
    cluster?.base.remove();
  });

  it('level 1 warns, 2 drops replayed logs, 3 stops fetching, and space back resumes', async () => {
    fillTo(beta, 50);
    await eventually('beta at level 1', async () => (await get(beta, 'actual-beta/emergency-level')) === '1');

    // Logs replayed by beta: rotate twice on alpha so beta has finished with two.
    for (let i = 0; i < 2; i++) {
      await write(alpha, (2 + i) << 20, 256 << 10, 10 + i);
      await alpha.ok('log-rotate', RES);
    }
    await eventually('beta to replay into the third log', async () => (await get(beta, res('replay-beta'))).startsWith('log-000000003-'), 30_000);
    expect(logsOf(beta)).to.include('log-000000001-alpha');
    fillTo(beta, 40);
    await eventually('beta at level 2', async () => (await get(beta, 'actual-beta/emergency-level')) === '2');
    await eventually('beta to delete its replayed copies', () => !logsOf(beta).includes('log-000000001-alpha')
      && !logsOf(beta).includes('log-000000002-alpha'));
    expect(logsOf(alpha)).to.include('log-000000001-alpha');

    fillTo(beta, 25);
    await eventually('beta at level 3, fetching stopped', async () => (await get(beta, 'actual-beta/emergency-level')) === '3'
      && (await get(beta, res('actual-beta/emergency'))) === '1' && (await get(beta, res('actual-beta/is-copying'))) === '0');
    const fetchedBefore = await get(beta, res('actual-beta/fetch-pos'));
    await write(alpha, 5 << 20, 512 << 10, 20);
    await new Promise((r) => setTimeout(r, 2000));
    expect(await get(beta, res('actual-beta/fetch-pos'))).to.equal(fetchedBefore);
    expect(await beta.ok('view', RES)).to.match(/Emergency/);

    rmSync(filler(beta));
    await eventually('beta back at level 0', async () => (await get(beta, 'actual-beta/emergency-level')) === '0');
    const want = await imageOf(alpha);
    await eventually('beta to catch up', () => sha256File(disk(beta)) === want, 30_000);
  });

  it('level 4 on the primary: writes bypass the log; afterwards a gap, Orphan, and invalidate repairs', async () => {
    fillTo(alpha, 10);
    await eventually('alpha at level 4, logging ceased', async () => (await get(alpha, 'actual-alpha/emergency-level')) === '4'
      && (await get(alpha, res('actual-alpha/emergency'))) === '1', 20_000);
    const logsBefore = logsOf(alpha);
    const newest = path.join(alpha.root, `resource-${RES}`, logsBefore[logsBefore.length - 1]!);
    const sizeBefore = sizeOf(newest);
    await write(alpha, 6 << 20, 1 << 20, 30);
    expect(sizeOf(newest), 'the log does not grow in emergency mode').to.equal(sizeBefore);
    expect(logsOf(alpha)).to.deep.equal(logsBefore);
    const image = await imageOf(alpha);

    rmSync(filler(alpha));
    await eventually('alpha logging again', async () => (await get(alpha, res('actual-alpha/emergency'))) === '0', 20_000);
    const resumed = logsOf(alpha).filter((f) => !logsBefore.includes(f));
    const gap = Number(resumed[0]!.slice(4, 13)) - Number(logsBefore[logsBefore.length - 1]!.slice(4, 13));
    expect(gap).to.equal(11);
    await eventually('beta to report Orphan', async () => (await get(beta, res('actual-beta/replay-code'))).startsWith('-4,Orphan'), 30_000);
    expect(sha256File(disk(beta))).to.not.equal(image);

    await beta.ok('invalidate', RES);
    const want = await imageOf(alpha);
    await eventually('beta identical after invalidate', () => sha256File(disk(beta)) === want, 60_000);
  });
});

function sizeOf(file: string): number {
  return existsSync(file) ? statSync(file).size : 0;
}
