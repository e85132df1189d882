/**
 * Cluster tier: a secondary must not trust the origin's `log-end` hint over a seal.
 *
 * The CI run of stop 17 (systemd VM tier) had a handover's catch-up wait 60 s with no byte
 * fetched: the old primary's last `log-end` reached the new one with a value older than
 * its seal (a publish in flight landed after the final one), and the fetch loop, having
 * seen an empty long poll, took the hint as "the origin has nothing more" and slept. The
 * race itself is narrow; this test writes the stale hint on purpose, after the seal.
 */
import { readFile } from 'node:fs/promises';

import { expect } from 'chai';

import { NbdClient } from '../../src/nbd/index.js';
import { MarsTree } from '../../src/tree/index.js';
import { randomBytes } from '../support/tmp.js';
import { eventually, type TestHost } from '../support/test_host.js';
import { TestCluster } from '../support/test_cluster.js';

const RES = 'stale';
const SIZE = 8 << 20;

describe('cluster tier: a stale log-end hint after a seal (2 hosts)', function () {
  this.timeout(120_000);
  let cluster: TestCluster;
  let alpha: TestHost, beta: TestHost;
  const get = (h: TestHost, leaf: string) => h.getLink(`resource-${RES}/${leaf}`);
  const disk = (h: TestHost) => h.tmp.file('disk');

  before(async () => {
    cluster = await TestCluster.create(['alpha', 'beta']);
    [alpha, beta] = cluster.hosts as [TestHost, TestHost];
    cluster.makeDisks(SIZE);
    await alpha.ok('create-resource', RES, disk(alpha));
    await eventually('beta to learn of the resource', async () => (await get(beta, 'size')) === String(SIZE));
    await beta.ok('join-resource', RES, disk(beta));
  });

  after(async () => {
    await cluster?.remove();
  });

  it('the seal, not log-end, says there is more: the handover catches up', async () => {
    const device = await NbdClient.connect(alpha.socket(RES), RES);
    await device.write(0, randomBytes(1 << 20, 1));
    await device.flush();
    // beta has all of it, and its long poll has come back empty (1 s): the fetch is idle.
    let caughtUp = '';
    await eventually('beta to replay what alpha wrote', async () => {
      caughtUp = await get(alpha, 'actual-alpha/log-end');
      return caughtUp !== '' && (await get(beta, 'replay-beta')).startsWith(`${caughtUp},`);
    });
    await new Promise((r) => setTimeout(r, 2500));

    // More, which beta does not fetch yet; then alpha leaves the role and seals.
    await beta.ok('pause-fetch', RES);
    await device.write(2 << 20, randomBytes(1 << 20, 2));
    await device.flush();
    await device.disconnect();
    await alpha.ok('secondary', RES);
    let sealed = '';
    await eventually('alpha to seal its log', async () => {
      sealed = await get(alpha, 'actual-alpha/log-end');
      return sealed !== caughtUp && (await get(alpha, 'actual-alpha/is-primary')) === '0';
    });

    // The stale hint, newer than the final one: what the race left in the VM tier.
    const tree = await MarsTree.open({ root: alpha.root, host: alpha.name });
    await tree.set(`resource-${RES}/actual-alpha/log-end`, caughtUp);
    await eventually('beta to see the stale hint', async () => (await get(beta, 'actual-alpha/log-end')) === caughtUp);
    expect(caughtUp).to.not.equal(sealed);

    await beta.ok('resume-fetch', RES);
    const r = await beta.marsadm('primary', RES, '--timeout', '20');
    expect(r.code, r.err).to.equal(0);
    const image = await NbdClient.connect(beta.socket(RES), RES);
    const onBeta = await image.read(0, SIZE);
    await image.disconnect();
    expect(onBeta.equals(await readFile(disk(alpha)))).to.equal(true, "beta's device equals alpha's disk");
  });
});
