/**
 * Cluster tier: roles over the pipe transport (docs/handover.md). Planned handover
 * A -> B -> C -> A under a write workload that stops and restarts around each handover
 * (what the service stack does); a handover that cannot catch up compensates; a
 * partitioned host is refused with the way out; forced failover with the old primary cut
 * off, then reconnected: split brain reported, `invalidate` makes every disk identical.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { expect } from 'chai';

import { ALIVE_WINDOW_MS } from '../../src/cli/tree_access.js';
import { NbdClient } from '../../src/nbd/index.js';
import { randomBytes } from '../support/tmp.js';
import { eventually, type TestHost } from '../support/test_host.js';
import { sha256, sha256File, TestCluster } from '../support/test_cluster.js';
import { Workload } from '../support/workload.js';

const RES = 'r1';
const SIZE = 16 << 20;

describe('cluster tier: handover, failover and split brain (3 hosts)', function () {
  this.timeout(180_000);
  let cluster: TestCluster;
  let alpha: TestHost, beta: TestHost, gamma: TestHost;

  const get = (h: TestHost, key: string) => h.getLink(`resource-${RES}/${key}`);
  const disk = (h: TestHost) => h.tmp.file('disk');
  const isPrimary = async (h: TestHost) => (await get(h, `actual-${h.name}/is-primary`)) === '1';

  /** Every other member's disk (or those of `hosts`) equals the primary's device, read through its export. */
  async function allEqual(primary: TestHost, timeoutMs = 40_000, hosts = cluster.hosts): Promise<void> {
    const device = await NbdClient.connect(primary.socket(RES), RES);
    const image = await device.read(0, SIZE);
    await device.disconnect();
    const want = sha256(image);
    for (const h of hosts) {
      if (h === primary) continue;
      await eventually(`${h.name}'s disk to equal ${primary.name}'s device`, () => sha256File(disk(h)) === want, timeoutMs);
    }
  }

  before(async () => {
    cluster = await TestCluster.create(['alpha', 'beta', 'gamma']);
    [alpha, beta, gamma] = cluster.hosts as [TestHost, TestHost, TestHost];
    cluster.makeDisks(SIZE);
    await alpha.ok('create-resource', RES, disk(alpha));
    for (const h of [beta, gamma]) {
      await eventually(`${h.name} to learn of ${RES}`, async () => (await get(h, 'size')) === String(SIZE));
      await h.ok('join-resource', RES, disk(h));
    }
    await allEqual(alpha);
  });

  after(async () => {
    await cluster?.remove();
  });

  it('planned handover A -> B -> C -> A: every acknowledged write is on each new primary', async () => {
    const work = new Workload(8 << 20, RES);
    let current = alpha;
    for (const next of [beta, gamma, alpha]) {
      work.start(current.socket(RES));
      await eventually('some writes', () => work.writes >= 64);
      // The handover waits for the device to close: stop the "service" as it starts.
      const handover = next.marsadm('primary', RES, '--timeout', '60');
      await new Promise((r) => setTimeout(r, 100));
      await work.stop();
      const r = await handover;
      expect(r.code, r.err).to.equal(0);
      expect(await isPrimary(next)).to.equal(true);
      expect(await isPrimary(current)).to.equal(false);
      expect(await get(next, 'primary')).to.equal(next.name);
      await work.verify(next.socket(RES), next.name);
      current = next;
    }
    await allEqual(alpha);
    expect((await alpha.ok('view-is-split-brain', RES)).trim()).to.equal('0');
  });

  it('a handover that cannot catch up compensates: the old primary serves again, nothing lost', async () => {
    const work = new Workload(4 << 20, RES);
    work.start(alpha.socket(RES));
    await eventually('some writes', () => work.writes >= 32);
    await work.stop();
    await beta.ok('pause-replay', RES);
    const r = await beta.marsadm('primary', RES, '--timeout', '3');
    expect(r.code).to.not.equal(0);
    expect(r.err).to.match(/phase catch-up/);
    expect(r.err).to.match(/alpha is primary again/);
    expect(await get(alpha, 'primary')).to.equal('alpha');
    await eventually('alpha serving', () => isPrimary(alpha));
    await beta.ok('resume-replay', RES);
    await work.verify(alpha.socket(RES), 'alpha');
    await allEqual(alpha);
  });

  it('a host cut off from the primary is refused a planned handover, with the way out', async () => {
    cluster.isolate(gamma);
    try {
      // Cut a moment ago: gamma's tree still shows alpha alive, but alpha cannot answer the ping.
      await new Promise((r) => setTimeout(r, 1000));
      const early = await gamma.marsadm('primary', RES, '--timeout', '10');
      expect(early.code, early.out).to.not.equal(0);
      expect(early.err).to.match(/cannot reach the current primary alpha of r1 now: it did not answer within 5 s/);
      expect(await get(gamma, 'primary'), 'the refused handover changed the designation').to.equal('alpha');
      // Liveness is judged by alpha's heartbeat, which stops arriving at gamma.
      const stamp = async () => (await gamma.marsadm('get-link', 'actual-alpha/time')).out;
      const seen = await stamp();
      await new Promise((r) => setTimeout(r, ALIVE_WINDOW_MS));
      expect(await stamp(), 'alpha\'s heartbeat still arrives at gamma').to.equal(seen);
      const r = await gamma.marsadm('primary', RES, '--timeout', '2');
      expect(r.code).to.not.equal(0);
      expect(r.err).to.match(/cannot reach the current primary alpha/);
      expect(r.err).to.contain(`marsadm disconnect ${RES} && marsadm primary --force ${RES}`);
      expect(await get(alpha, 'primary')).to.equal('alpha');
    } finally {
      cluster.rejoin(gamma);
    }
  });

  it('forced failover with the old primary cut off; reconnected: split brain, invalidate repairs', async () => {
    const before = new Workload(4 << 20, RES);
    before.start(alpha.socket(RES));
    await eventually('some writes', () => before.writes >= 32);
    await before.stop();
    await allEqual(alpha);

    cluster.isolate(alpha);
    // The cut takes effect within 200 ms; then alpha goes on taking writes nobody else sees.
    await eventually('alpha cut off', () => /link to beta is cut/.test(alpha.daemonLog) && /link to gamma is cut/.test(alpha.daemonLog), 10_000);
    // alpha's "service" keeps the device open until it hears of the failover (below).
    const lost = await NbdClient.connect(alpha.socket(RES), RES);
    await lost.write(0, randomBytes(1 << 20, 77));
    await lost.flush();

    expect((await beta.marsadm('primary', '--force', RES)).err).to.match(/disconnect/);
    await beta.ok('disconnect', RES);
    await beta.ok('primary', '--force', RES, '--timeout', '30');
    expect(await isPrimary(beta)).to.equal(true);
    await before.verify(beta.socket(RES), 'beta'); // everything replicated before the cut
    const after = new Workload(4 << 20, RES, 1_000_000);
    after.start(beta.socket(RES));
    await eventually('writes on beta', () => after.writes >= 32);
    await after.stop();
    await allEqual(beta, 40_000, [gamma]); // gamma follows beta; alpha is cut off
    // What an operator checks in `view` first: a host that has not heard of the failover
    // would hand over from alpha (test 3 cut gamma off; its links come back with backoff).
    await eventually('gamma to know beta is designated', async () => (await get(gamma, 'primary')) === 'beta', 20_000);

    // alpha's stale is-primary (it never heard) must not block planned handovers among the rest.
    for (const next of [gamma, beta]) {
      const r = await next.marsadm('primary', RES, '--timeout', '30');
      expect(r.code, r.err).to.equal(0);
      expect(await isPrimary(next)).to.equal(true);
    }

    cluster.rejoin(alpha);
    // alpha hears it is not designated, but its device is open: it serves until it closes.
    await eventually('alpha to hear of the failover', () => /serving until the device is closed/.test(alpha.daemonLog), 40_000);
    await lost.write(1 << 20, randomBytes(4096, 78));
    await lost.flush();
    expect(await isPrimary(alpha)).to.equal(true);
    await lost.disconnect();
    await eventually('alpha to stop serving once the device is closed', async () => !(await isPrimary(alpha)), 5_000);
    await eventually('split brain reported', async () => (await beta.ok('view-is-split-brain', RES)).trim() === '1', 30_000);
    const view = await beta.ok('view', RES);
    expect(view).to.match(/SPLIT BRAIN/);

    await alpha.ok('invalidate', RES);
    await allEqual(beta, 60_000);
    await after.verify(beta.socket(RES), 'beta');
    await eventually('split brain resolved', async () => (await beta.ok('view-is-split-brain', RES)).trim() === '0', 30_000);
  });

  it('a replica left in a log its origin dropped (the split brain\'s loser, invalidated) reports Orphan; invalidate repairs', async () => {
    // beta is primary (test 4). alpha is cut off; beta starts a new log, and gamma follows it.
    for (const h of [beta, gamma]) await cluster.cutNow(alpha, h);
    await beta.ok('log-rotate', RES);
    const dropped = new Workload(4 << 20, RES, 2_000_000);
    dropped.start(beta.socket(RES));
    await eventually('writes on beta', () => dropped.writes >= 32);
    await dropped.stop();
    await allEqual(beta, 40_000, [gamma]);
    const followed = parseReplay(await get(gamma, `replay-${gamma.name}`));
    expect(followed.log).to.match(/-beta$/);

    // alpha fails over on its side; gamma goes away before it hears how this ends.
    await alpha.ok('disconnect', RES);
    await alpha.ok('primary', '--force', RES, '--timeout', '30');
    await cluster.cutNow(beta, gamma);
    cluster.heal(alpha, beta);
    await alpha.ok('connect', RES);
    await eventually('split brain reported on beta', async () => (await beta.ok('view-is-split-brain', RES)).trim() === '1', 30_000);
    await beta.ok('invalidate', RES, '--timeout', '60');
    await allEqual(alpha, 60_000, [beta]);
    expect(existsSync(path.join(beta.root, `resource-${RES}`, followed.log)), 'beta dropped the log gamma follows').to.equal(false);

    // gamma comes back: the log it replays is gone everywhere and alpha's history does not
    // hold it. It says so, rather than waiting for bytes nobody has.
    cluster.rejoin(gamma);
    const code = async () => get(gamma, `actual-${gamma.name}/replay-code`);
    await eventually('gamma to report Orphan', async () => (await code()).startsWith('-4,'), 60_000)
      .catch(async (e: Error) => {
        throw new Error(`${e.message}; gamma's replay-code: ${await code()}; its daemon log ends:\n${gamma.daemonLog.slice(-3000)}`);
      });
    expect(await code()).to.match(new RegExp(`^-4,Orphan: ${followed.log} .* is gone on beta and every peer, and alpha writes .*marsadm invalidate ${RES}`));
    await gamma.ok('invalidate', RES, '--timeout', '60');
    await allEqual(alpha, 60_000);
  });
});

function parseReplay(value: string): { log: string; offset: number } {
  const [log, offset] = value.split(',');
  return { log: log!, offset: Number(offset) };
}
