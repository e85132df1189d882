/**
 * Cluster tier: three hosts over the pipe transport, userspace engine. Writes on the
 * primary reach both secondaries byte for byte; pause/resume of fetch and replay; a
 * copy fetched through the window of reads is byte-identical to the origin's log; a
 * corrupted log copy is fetched again; a corrupted origin stops replay with DefectiveLog;
 * a join whose disk is almost a copy transfers only the changed blocks; wait-cluster.
 */
import { closeSync, copyFileSync, openSync, readFileSync, readSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';

import { expect } from 'chai';

import { NbdClient } from '../../src/nbd/index.js';
import { randomBytes } from '../support/tmp.js';
import { eventually, type TestHost } from '../support/test_host.js';
import { sha256, sha256File, TestCluster } from '../support/test_cluster.js';

const RES = 'r1';
const SIZE = 32 << 20;
const BLOCK = 64 << 10;

describe('cluster tier: replication over the pipe transport (3 hosts)', function () {
  this.timeout(120_000);
  let cluster: TestCluster;
  let alpha: TestHost, beta: TestHost, gamma: TestHost;
  let device: NbdClient;

  const get = (h: TestHost, leaf: string) => h.getLink(`resource-${RES}/${leaf}`);
  const disk = (h: TestHost) => h.tmp.file('disk');
  const logFile = (h: TestHost) => path.join(h.root, `resource-${RES}`, 'log-000000001-alpha');
  /** The primary's logical device, read through its export. */
  const primaryImage = async () => device.read(0, SIZE);

  async function inSync(h: TestHost, timeoutMs = 30_000): Promise<void> {
    const want = sha256(await primaryImage());
    await eventually(`${h.name}'s disk to equal the primary's device`, () => sha256File(disk(h)) === want, timeoutMs);
  }

  before(async () => {
    cluster = await TestCluster.create(['alpha', 'beta', 'gamma']);
    [alpha, beta, gamma] = cluster.hosts as [TestHost, TestHost, TestHost];
    cluster.makeDisks(SIZE);
    await alpha.ok('create-resource', RES, disk(alpha));
    device = await NbdClient.connect(alpha.socket(RES), RES);
    await device.write(0, randomBytes(4 << 20, 1));
    await device.flush();
    for (const h of [beta, gamma]) {
      await eventually(`${h.name} to learn of ${RES}`, async () => (await get(h, 'size')) === String(SIZE));
    }
  });

  after(async () => {
    await device?.disconnect().catch(() => undefined);
    await cluster?.remove();
  });

  it('wait-cluster is answered by every peer\'s daemon; an isolated peer is named', async () => {
    const nonce = async () => alpha.getLink('actual-alpha/ping-gamma');
    expect((await alpha.ok('wait-cluster', '--timeout', '20')).trim()).to.equal('every peer answered');
    // The echo comes from gamma's daemon and reaches alpha through the tree.
    await eventually('gamma\'s echo of alpha\'s ping', async () => (await alpha.getLink('actual-gamma/pong-alpha')) === (await nonce()));
    cluster.isolate(gamma);
    try {
      await new Promise((r) => setTimeout(r, 600)); // the cut takes effect within 200 ms (cutNow)
      const r = await alpha.marsadm('wait-cluster', '--timeout', '2');
      expect(r.code).to.equal(1);
      expect(r.err).to.match(/^no answer from gamma within 2 s; /);
    } finally {
      cluster.rejoin(gamma);
    }
    expect((await alpha.ok('wait-cluster', '--timeout', '60')).trim()).to.equal('every peer answered');
  });

  it('a joining host gets every byte by fast full sync, then by replay', async () => {
    await beta.ok('join-resource', RES, disk(beta));
    await device.write(10 << 20, randomBytes(3 << 20, 2));
    await device.write(4096, randomBytes(8192, 3));
    await inSync(beta);
    expect(await get(beta, 'syncstatus-beta')).to.equal(String(SIZE));
  });

  it('a join whose disk is almost a copy transfers only the changed blocks', async () => {
    await inSync(beta);
    await beta.ok('pause-replay', RES);
    copyFileSync(disk(beta), disk(gamma));
    await beta.ok('resume-replay', RES);
    // Three 64 KiB blocks change on the primary after the copy was taken.
    for (const at of [1, 200, 400]) await device.write(at * BLOCK, randomBytes(BLOCK, 100 + at));
    await device.flush();
    await gamma.ok('join-resource', RES, disk(gamma));
    await inSync(gamma);
    const sent = Number(await get(gamma, 'actual-gamma/sync-sent'));
    expect(sent).to.equal(3 * BLOCK);
  });

  it('pause-replay holds the disk while logs keep arriving; resume-replay catches up', async () => {
    await inSync(beta);
    await beta.ok('pause-replay', RES);
    await eventually('beta to stop replaying', async () => (await get(beta, 'actual-beta/is-replaying')) === '0');
    const before = sha256File(disk(beta));
    await device.write(20 << 20, randomBytes(1 << 20, 4));
    await device.flush();
    const logSize = statSync(logFile(alpha)).size;
    await eventually('beta to fetch the new bytes', async () => (await get(beta, 'actual-beta/fetch-pos')) === `log-000000001-alpha,${logSize}`);
    expect(sha256File(disk(beta))).to.equal(before);
    await beta.ok('resume-replay', RES);
    await inSync(beta);
  });

  it('a copy fetched through the window of reads equals the origin\'s log byte for byte', async () => {
    await inSync(beta);
    await beta.ok('pause-replay', RES);
    await eventually('beta to stop replaying', async () => (await get(beta, 'actual-beta/is-replaying')) === '0');
    // More than one window (8 reads of 1 MiB) of new log, written in pieces.
    for (let i = 0; i < 6; i++) await device.write((12 + 2 * i) << 20, randomBytes(2 << 20, 40 + i));
    await device.flush();
    const logSize = statSync(logFile(alpha)).size;
    await eventually('beta to fetch the new bytes', async () => (await get(beta, 'actual-beta/fetch-pos')) === `log-000000001-alpha,${logSize}`);
    expect(statSync(logFile(beta)).size).to.equal(logSize);
    expect(sha256File(logFile(beta))).to.equal(sha256File(logFile(alpha)));
    await beta.ok('resume-replay', RES);
    await inSync(beta);
  });

  it('pause-fetch-global stops fetching on every member; resume-fetch-global resumes', async () => {
    await alpha.ok('pause-fetch-global', RES);
    await eventually('the switch to reach gamma', async () => (await get(gamma, 'todo-gamma/connect')) === '0');
    await eventually('gamma to stop fetching', async () => (await get(gamma, 'actual-gamma/is-copying')) === '0');
    const fetched = await get(gamma, 'actual-gamma/fetch-pos');
    await device.write(22 << 20, randomBytes(1 << 20, 5));
    await device.flush();
    await new Promise((r) => setTimeout(r, 1500));
    expect(await get(gamma, 'actual-gamma/fetch-pos')).to.equal(fetched);
    await alpha.ok('resume-fetch-global', RES);
    await inSync(gamma);
    await inSync(beta);
  });

  it('a corrupted local copy is fetched again from offset 0 and replay goes on', async () => {
    await inSync(beta);
    await beta.ok('pause-replay', RES);
    await eventually('beta to stop replaying', async () => (await get(beta, 'actual-beta/is-replaying')) === '0');
    const start = statSync(logFile(alpha)).size;
    await device.write(24 << 20, randomBytes(1 << 20, 6));
    await device.flush();
    const end = statSync(logFile(alpha)).size;
    await eventually('beta to fetch the new records', async () => (await get(beta, 'actual-beta/fetch-pos')) === `log-000000001-alpha,${end}`);
    flipByte(logFile(beta), start + 4096); // inside the first new record's payload
    await beta.ok('resume-replay', RES);
    await inSync(beta);
    expect(await get(beta, 'actual-beta/replay-code')).to.equal('0');
    expect(beta.daemonLog).to.match(/fails verification at offset [0-9]+ .*fetching it again from offset 0/);
  });

  it('a corrupted origin stops replay with DefectiveLog, naming the file and offset', async () => {
    await inSync(gamma);
    await gamma.ok('pause-fetch', RES);
    await eventually('gamma to stop fetching', async () => (await get(gamma, 'actual-gamma/is-copying')) === '0');
    const start = statSync(logFile(alpha)).size;
    await device.write(26 << 20, randomBytes(1 << 20, 7));
    await device.flush();
    flipByte(logFile(alpha), start + 4096);
    await gamma.ok('resume-fetch', RES);
    await eventually('gamma to report DefectiveLog', async () => (await get(gamma, 'actual-gamma/replay-code')).startsWith('-2,DefectiveLog'));
    const code = await get(gamma, 'actual-gamma/replay-code');
    expect(code).to.contain('log-000000001-alpha at offset');
    const view = await gamma.ok('view', RES);
    expect(view).to.contain('DefectiveLog');
    // Nothing past the bad record was applied: gamma's image lacks the new write.
    const region = readFileSync(disk(gamma)).subarray(26 << 20, 27 << 20);
    expect(region.equals(randomBytes(1 << 20, 7))).to.equal(false);
  });
});

function flipByte(file: string, offset: number): void {
  const fd = openSync(file, 'r+');
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, offset);
  b[0] = b[0]! ^ 0xff;
  writeSync(fd, b, 0, 1, offset);
  closeSync(fd);
}
