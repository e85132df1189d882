/**
 * System tier: replication end to end over SSH. Three network namespaces on a bridge
 * (test/support/netns.ts), each with its own OpenSSH sshd, tree root, disk and daemon.
 * beta and gamma join alpha's cluster with the operator's ssh (`join-cluster`), get the
 * cluster key restricted to `marsadm peer-serve`, join the resource by fast full sync,
 * and replicate a write workload while beta's cable is cut and restored and gamma's
 * daemon is SIGKILLed and restarted; then alpha's own daemon is SIGKILLed and restarted.
 * At the end the three disks equal what the workload wrote (sha256).
 */
import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { NbdClient } from '../../src/nbd/index.js';
import { systemTierMissing, type Sshd } from '../support/netns.js';
import { SshCluster, type HostFiles } from '../support/ssh_cluster.js';
import { eventually } from '../support/test_host.js';
import { requireTier } from '../support/tiers.js';

const RES = 'r1';
const SIZE = 64 << 20;
const HOSTS = ['alpha', 'beta', 'gamma'] as const;
type Host = (typeof HOSTS)[number];

describe('system tier: replication over SSH between network namespaces', function () {
  this.timeout(240_000);
  let cluster: SshCluster | undefined;
  let files: Record<Host, HostFiles>;
  let sshd: Record<Host, Sshd>;

  before(async function () {
    requireTier(this, 'system', systemTierMissing());
    cluster = await SshCluster.create({ name: 'phrepl', hosts: HOSTS, diskBytes: SIZE });
    files = cluster.files as Record<Host, HostFiles>;
    sshd = cluster.sshd as Record<Host, Sshd>;
  });

  after(async function () {
    await cluster?.destroy(this.currentTest?.state === 'failed');
  });

  const lab = () => cluster!.lab;
  const marsadm = (h: Host, ...argv: string[]) => cluster!.marsadm(h, ...argv);
  const joinCluster = (h: Host, peer: Host) => cluster!.joinCluster(h, peer);
  const startDaemon = (h: Host) => cluster!.startDaemon(h);
  const stopDaemon = (h: Host, sig: NodeJS.Signals) => cluster!.stopDaemon(h, sig);

  const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

  it('three hosts join over SSH, replicate through a cut link and killed daemons, and end byte-identical', async () => {
    // alpha: the cluster and the resource; its device gets a first layer of data.
    await marsadm('alpha', 'create-cluster', lab().address('alpha'));
    await startDaemon('alpha');
    await marsadm('alpha', 'create-resource', RES, files.alpha.disk);
    const model = Buffer.alloc(SIZE);
    let device = await NbdClient.connect(path.join(files.alpha.runDir, `${RES}.nbd`), RES);
    const write = async (offset: number, data: Buffer): Promise<void> => {
      await device.write(offset, data);
      data.copy(model, offset);
    };
    await write(0, randomBytes(8 << 20));

    // beta and gamma join with the operator's ssh, then talk with the cluster key only.
    for (const h of ['beta', 'gamma'] as const) {
      await joinCluster(h, 'alpha');
      expect(readFileSync(files[h].authorizedKeys, 'utf8')).to.match(/restrict,command=".*peer-serve/);
      await startDaemon(h);
    }
    for (const h of HOSTS) await marsadm(h, 'wait-cluster');
    for (const h of ['beta', 'gamma'] as const) await marsadm(h, 'join-resource', RES, files[h].disk);

    // A workload of 256 KiB writes; beta's cable is cut for 4 s, gamma's daemon killed.
    const chunk = 256 << 10;
    let n = 0;
    const workload = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++, n++) {
        const offset = ((n * 7919) % (SIZE / chunk)) * chunk;
        await write(offset, randomBytes(chunk));
      }
      await device.flush();
    };
    await workload(40);
    await lab().linkDown('beta');
    await workload(40);
    await stopDaemon('gamma', 'SIGKILL');
    await workload(40);
    await new Promise((r) => setTimeout(r, 4000));
    await lab().linkUp('beta');
    await startDaemon('gamma');
    await workload(80);

    // The primary's daemon dies too, with everything acknowledged; its restart replays.
    await device.disconnect();
    await stopDaemon('alpha', 'SIGKILL');
    await startDaemon('alpha');
    let reconnected: NbdClient | null = null;
    await eventually('alpha to serve its device again after recovery', async () => {
      reconnected = await NbdClient.connect(path.join(files.alpha.runDir, `${RES}.nbd`), RES).catch(() => null);
      return reconnected !== null;
    }, 30_000);
    device = reconnected!;
    await workload(40);
    await device.disconnect();

    const want = sha256(model);
    for (const h of HOSTS) {
      await eventually(`${h}'s disk to hold every byte written`, () => sha256(readFileSync(files[h].disk)) === want, 90_000);
    }
    // The bytes went through sshd: peer-serve sessions for the cluster key on every host.
    for (const h of HOSTS) {
      expect(await readFile(sshd[h].logFile, 'utf8'), `${h}'s sshd log`).to.match(/forced-command.*peer-serve/);
    }
  });
});
