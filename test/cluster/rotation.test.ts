/**
 * Cluster tier: log rotation along the version chain, cluster-wide deletion of replayed
 * logs (cron), and a secondary daemon killed with SIGKILL in the middle of a transfer.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { expect } from 'chai';

import { NbdClient } from '../../src/nbd/index.js';
import { randomBytes } from '../support/tmp.js';
import { eventually, type TestHost } from '../support/test_host.js';
import { sha256, sha256File, TestCluster } from '../support/test_cluster.js';

const RES = 'rot';
const SIZE = 64 << 20;

describe('cluster tier: log rotation, cron, killed secondary (2 hosts)', function () {
  this.timeout(120_000);
  let cluster: TestCluster;
  let alpha: TestHost, beta: TestHost;
  let device: NbdClient;
  const get = (h: TestHost, leaf: string) => h.getLink(`resource-${RES}/${leaf}`);
  const disk = (h: TestHost) => h.tmp.file('disk');
  const log = (h: TestHost, seq: number) => path.join(h.root, `resource-${RES}`, `log-${String(seq).padStart(9, '0')}-alpha`);
  const inSync = async () => {
    const parts: Buffer[] = [];
    for (let at = 0; at < SIZE; at += 16 << 20) parts.push(await device.read(at, 16 << 20));
    const want = sha256(Buffer.concat(parts));
    await eventually('beta to equal the primary', () => sha256File(disk(beta)) === want, 60_000);
  };

  before(async () => {
    cluster = await TestCluster.create(['alpha', 'beta']);
    [alpha, beta] = cluster.hosts as [TestHost, TestHost];
    cluster.makeDisks(SIZE);
    await alpha.ok('create-resource', RES, disk(alpha));
    device = await NbdClient.connect(alpha.socket(RES), RES);
    await device.write(0, randomBytes(2 << 20, 11));
    await eventually('beta to learn of the resource', async () => (await get(beta, 'size')) === String(SIZE));
    await beta.ok('join-resource', RES, disk(beta));
    await inSync();
  });

  after(async () => {
    await device?.disconnect().catch(() => undefined);
    await cluster?.remove();
  });

  it('follows a rotation: version links agree, replay moves to the next log', async () => {
    await device.write(4 << 20, randomBytes(1 << 20, 12));
    await alpha.ok('log-rotate', RES);
    await device.write(8 << 20, randomBytes(1 << 20, 13));
    await inSync();
    await eventually('beta to replay log 2', async () => (await get(beta, 'replay-beta')).startsWith('log-000000002-alpha,'));
    const [va, vb] = [await get(alpha, 'version-000000001-alpha'), await get(beta, 'version-000000001-beta')];
    expect(va).to.match(/^[0-9a-f]{32},log-000000001-alpha,[0-9]+:/);
    expect(vb.split(',')[0]).to.equal(va.split(',')[0]);
  });

  it('cron deletes a log on every member once every member has replayed it', async () => {
    expect(existsSync(log(alpha, 1)) && existsSync(log(beta, 1))).to.equal(true);
    await eventually('alpha\'s checkpoint to reach log 2', async () => (await get(alpha, 'replay-alpha')).startsWith('log-000000002-'));
    const out = await alpha.ok('cron');
    expect(out).to.contain('logs below 2');
    await eventually('log 1 to go on both hosts', () => !existsSync(log(alpha, 1)) && !existsSync(log(beta, 1)));
    expect(existsSync(log(alpha, 2)) && existsSync(log(beta, 2))).to.equal(true);
  });

  it('a secondary daemon killed mid-transfer resumes and catches up', async () => {
    await beta.ok('pause-fetch', RES);
    await device.write(16 << 20, randomBytes(24 << 20, 14));
    await device.flush();
    await beta.ok('resume-fetch', RES);
    await eventually('beta to start fetching', async () => (await get(beta, 'actual-beta/is-copying')) === '1');
    await beta.stopDaemon('SIGKILL');
    await beta.startDaemon();
    await inSync();
    expect(await get(beta, 'actual-beta/replay-code')).to.equal('0');
  });
});
