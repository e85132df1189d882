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
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, truncateSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { NbdClient } from '../../src/nbd/index.js';
import { generateEd25519KeyPair, installAuthorizedKey } from '../../src/peer/ssh/keys.js';
import { createLab, systemTierMissing, type Lab, type Sshd } from '../support/netns.js';
import { eventually, MARSADM } from '../support/test_host.js';
import { requireTier } from '../support/tiers.js';

const RES = 'r1';
const SIZE = 64 << 20;
const HOSTS = ['alpha', 'beta', 'gamma'] as const;
type Host = (typeof HOSTS)[number];
const SSH_PORT = 2222;

/** Where one lab host keeps its things (all under the lab's scratch dir). */
interface HostFiles {
  readonly root: string;
  readonly runDir: string;
  readonly sshDir: string;
  readonly authorizedKeys: string;
  readonly hostKeyPub: string;
  readonly disk: string;
}

describe('system tier: replication over SSH between network namespaces', function () {
  this.timeout(240_000);
  let lab: Lab | undefined;
  const files = {} as Record<Host, HostFiles>;
  const sshd = {} as Record<Host, Sshd>;
  const daemons = new Map<Host, { child: ChildProcess; log: string[] }>();
  let operatorKey: string;

  before(async function () {
    requireTier(this, 'system', systemTierMissing());
    lab = await createLab({ name: 'phrepl', hosts: HOSTS });
    operatorKey = path.join(lab.dir, 'operator_ed25519');
    const operator = generateEd25519KeyPair('phobos-operator');
    await writeFile(operatorKey, `${operator.private.trim()}\n`, { mode: 0o600 });
    for (const h of HOSTS) {
      const dir = path.join(lab.dir, h);
      files[h] = {
        root: path.join(dir, 'mars'), runDir: path.join(dir, 'run'), sshDir: path.join(dir, 'ssh'),
        authorizedKeys: path.join(dir, 'authorized_keys'), hostKeyPub: path.join(dir, 'ssh_host_ed25519_key.pub'),
        disk: path.join(dir, 'disk.img'),
      };
      await mkdir(files[h].runDir, { recursive: true });
      closeSync(openSync(files[h].disk, 'w'));
      truncateSync(files[h].disk, SIZE);
      // The operator's own root access (what join-cluster uses once), unrestricted.
      await installAuthorizedKey(files[h].authorizedKeys, `${operator.public.trim()}`, 'phobos-operator');
      sshd[h] = await lab.startSshd(h, { authorizedKeysFile: files[h].authorizedKeys, port: SSH_PORT });
      await writeFile(files[h].hostKeyPub, `${sshd[h].hostKeyLine}\n`);
    }
  });

  after(async function () {
    for (const h of HOSTS) await stopDaemon(h, 'SIGKILL');
    if (this.currentTest?.state === 'failed' || process.env['PHOBOS_TEST_DAEMON_LOG']) {
      for (const [h, d] of daemons) console.log(`--- daemon ${h}\n${d.log.join('').slice(-4000)}`);
    }
    await lab?.destroy();
  });

  /** marsadm as host h, inside h's namespace, with h's SSH setup in the environment. */
  async function marsadm(h: Host, ...argv: string[]): Promise<string> {
    const r = await lab!.exec(h, process.execPath, [MARSADM, ...argv, '--root', files[h].root, '--host', h], {
      env: envFor(h), check: false, timeoutMs: 120_000,
    });
    if (r.code !== 0) throw new Error(`marsadm ${argv.join(' ')} on ${h} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  function envFor(h: Host): NodeJS.ProcessEnv {
    return {
      ...process.env,
      PHOBOS_SSH_DIR: files[h].sshDir,
      PHOBOS_RUN_DIR: files[h].runDir,
      PHOBOS_AUTHORIZED_KEYS: files[h].authorizedKeys,
      PHOBOS_HOST_KEY: files[h].hostKeyPub,
      PHOBOS_SSH_PORT: String(SSH_PORT),
    };
  }

  /** join-cluster on h through peer, with the operator's key and OpenSSH. */
  async function joinCluster(h: Host, peer: Host): Promise<void> {
    const remote = [process.execPath, MARSADM, '--root', files[peer].root, '--host', peer,
      '--ssh-dir', files[peer].sshDir, '--authorized-keys', files[peer].authorizedKeys,
      '--host-key', files[peer].hostKeyPub, '--ssh-port', String(SSH_PORT), '--run-dir', files[peer].runDir].join(' ');
    const sshOpts = ['-i', operatorKey, '-p', String(SSH_PORT), '-o', `HostName=${lab!.address(peer)}`,
      '-o', 'UserKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR'].join(' ');
    await marsadm(h, 'join-cluster', peer, lab!.address(h), '--ssh-opts', sshOpts, '--remote-marsadm', remote);
  }

  async function startDaemon(h: Host): Promise<void> {
    const child = lab!.spawn(h, process.execPath, [MARSADM, 'daemon', '--root', files[h].root, '--host', h,
      '--run-dir', files[h].runDir, '--ssh-dir', files[h].sshDir], { stdio: ['ignore', 'ignore', 'pipe'], env: envFor(h) });
    const log = daemons.get(h)?.log ?? [];
    daemons.set(h, { child, log });
    await new Promise<void>((resolve, reject) => {
      let text = '';
      child.stderr!.on('data', (d: Buffer) => {
        log.push(d.toString());
        if (process.env['PHOBOS_TEST_DAEMON_LOG']) process.stderr.write(d);
        text += d.toString();
        if (text.includes(': started on ')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`daemon ${h} exited ${code} before starting:\n${text}`)));
    });
  }

  async function stopDaemon(h: Host, sig: NodeJS.Signals): Promise<void> {
    const d = daemons.get(h);
    if (!d || d.child.exitCode !== null || d.child.signalCode !== null) return;
    const exited = new Promise((r) => d.child.once('exit', r));
    d.child.kill(sig);
    await exited;
  }

  const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

  it('three hosts join over SSH, replicate through a cut link and killed daemons, and end byte-identical', async () => {
    // alpha: the cluster and the resource; its device gets a first layer of data.
    await marsadm('alpha', 'create-cluster', lab!.address('alpha'));
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
    await lab!.linkDown('beta');
    await workload(40);
    await stopDaemon('gamma', 'SIGKILL');
    await workload(40);
    await new Promise((r) => setTimeout(r, 4000));
    await lab!.linkUp('beta');
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
