/**
 * A Phobos cluster for the system tier: one lab host (network namespace, test/support/
 * netns.ts) per member, each with its own OpenSSH sshd, tree root, run dir, disk and
 * daemon; the daemons talk over SSH. marsadm runs inside the host's namespace with that
 * host's SSH setup in its environment. Used by test/system/replication.test.ts and
 * test/system/handover.test.ts.
 *
 *   const c = await SshCluster.create({ name: 'phho', hosts: ['alpha', 'beta'], diskBytes: 16 << 20 });
 *   await c.marsadm('alpha', 'create-cluster', c.lab.address('alpha'));
 *   await c.startDaemon('alpha');
 *   ...
 *   await c.destroy(dumpLogs);   // daemons, sshds, namespaces and scratch dir gone
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, truncateSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { generateEd25519KeyPair, installAuthorizedKey } from '../../src/peer/ssh/keys.js';
import { createLab, type ExecResult, type Lab, type Sshd } from './netns.js';
import { MARSADM } from './test_host.js';

export const SSH_PORT = 2222;

/** Where one lab host keeps its things (all under the lab's scratch dir). */
export interface HostFiles {
  readonly root: string;
  readonly runDir: string;
  readonly sshDir: string;
  readonly authorizedKeys: string;
  readonly hostKeyPub: string;
  readonly disk: string;
}

export interface SshClusterOptions {
  /** The lab's name: a prefix of its namespaces, unique per test file (docs/system-tier.md). */
  readonly name: string;
  readonly hosts: readonly string[];
  /** Each host's disk is a sparse file of this size. */
  readonly diskBytes: number;
}

export class SshCluster {
  readonly files: Record<string, HostFiles> = {};
  readonly sshd: Record<string, Sshd> = {};
  private readonly daemons = new Map<string, { child: ChildProcess; log: string[] }>();

  private constructor(readonly lab: Lab, readonly hosts: readonly string[], readonly operatorKey: string) {}

  /**
   * The lab, the operator's key (installed unrestricted on every host, what join-cluster
   * uses once), a disk and a running sshd per host. No daemon runs yet.
   */
  static async create(opts: SshClusterOptions): Promise<SshCluster> {
    const lab = await createLab({ name: opts.name, hosts: opts.hosts });
    try {
      const operatorKey = path.join(lab.dir, 'operator_ed25519');
      const operator = generateEd25519KeyPair('phobos-operator');
      await writeFile(operatorKey, `${operator.private.trim()}\n`, { mode: 0o600 });
      const c = new SshCluster(lab, opts.hosts, operatorKey);
      for (const h of opts.hosts) {
        const dir = path.join(lab.dir, h);
        const f: HostFiles = {
          root: path.join(dir, 'mars'), runDir: path.join(dir, 'run'), sshDir: path.join(dir, 'ssh'),
          authorizedKeys: path.join(dir, 'authorized_keys'), hostKeyPub: path.join(dir, 'ssh_host_ed25519_key.pub'),
          disk: path.join(dir, 'disk.img'),
        };
        c.files[h] = f;
        await mkdir(f.runDir, { recursive: true });
        closeSync(openSync(f.disk, 'w'));
        truncateSync(f.disk, opts.diskBytes);
        await installAuthorizedKey(f.authorizedKeys, `${operator.public.trim()}`, 'phobos-operator');
        c.sshd[h] = await lab.startSshd(h, { authorizedKeysFile: f.authorizedKeys, port: SSH_PORT });
        await writeFile(f.hostKeyPub, `${c.sshd[h].hostKeyLine}\n`);
      }
      return c;
    } catch (e) {
      await lab.destroy();
      throw e;
    }
  }

  /** The NBD socket of res on h (a Unix socket: reachable from the root namespace too). */
  socket(h: string, res: string): string {
    return path.join(this.files[h]!.runDir, `${res}.nbd`);
  }

  /** h's SSH setup, as marsadm and the daemon read it from the environment. */
  envFor(h: string): NodeJS.ProcessEnv {
    const f = this.files[h]!;
    return {
      ...process.env,
      PHOBOS_SSH_DIR: f.sshDir,
      PHOBOS_RUN_DIR: f.runDir,
      PHOBOS_AUTHORIZED_KEYS: f.authorizedKeys,
      PHOBOS_HOST_KEY: f.hostKeyPub,
      PHOBOS_SSH_PORT: String(SSH_PORT),
    };
  }

  /** marsadm's arguments for host h (after the verb and its arguments). */
  hostArgs(h: string): string[] {
    return ['--root', this.files[h]!.root, '--host', h];
  }

  /** marsadm as host h, inside h's namespace, whatever its exit code. */
  run(h: string, ...argv: string[]): Promise<ExecResult> {
    return this.lab.exec(h, process.execPath, [MARSADM, ...argv, ...this.hostArgs(h)], { env: this.envFor(h), check: false, timeoutMs: 120_000 });
  }

  /** marsadm as host h; fails unless it exits 0; returns its stdout. */
  async marsadm(h: string, ...argv: string[]): Promise<string> {
    const r = await this.run(h, ...argv);
    if (r.code !== 0) throw new Error(`marsadm ${argv.join(' ')} on ${h} exited ${r.code}: ${r.stderr.trim()}`);
    return r.stdout;
  }

  /** Start marsadm as host h in its namespace without waiting (stdout/stderr piped). */
  spawnMarsadm(h: string, ...argv: string[]): ChildProcess {
    return this.lab.spawn(h, process.execPath, [MARSADM, ...argv, ...this.hostArgs(h)], { stdio: ['ignore', 'pipe', 'pipe'], env: this.envFor(h) });
  }

  /** join-cluster on h through peer, with the operator's key and OpenSSH. */
  async joinCluster(h: string, peer: string): Promise<void> {
    const p = this.files[peer]!;
    const remote = [process.execPath, MARSADM, '--root', p.root, '--host', peer,
      '--ssh-dir', p.sshDir, '--authorized-keys', p.authorizedKeys,
      '--host-key', p.hostKeyPub, '--ssh-port', String(SSH_PORT), '--run-dir', p.runDir].join(' ');
    const sshOpts = ['-i', this.operatorKey, '-p', String(SSH_PORT), '-o', `HostName=${this.lab.address(peer)}`,
      '-o', 'UserKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR'].join(' ');
    await this.marsadm(h, 'join-cluster', peer, this.lab.address(h), '--ssh-opts', sshOpts, '--remote-marsadm', remote);
  }

  /** Start h's daemon in its namespace and wait until it says it started. */
  async startDaemon(h: string): Promise<void> {
    const f = this.files[h]!;
    const child = this.lab.spawn(h, process.execPath, [MARSADM, 'daemon', '--root', f.root, '--host', h,
      '--run-dir', f.runDir, '--ssh-dir', f.sshDir], { stdio: ['ignore', 'ignore', 'pipe'], env: this.envFor(h) });
    const log = this.daemons.get(h)?.log ?? [];
    this.daemons.set(h, { child, log });
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

  async stopDaemon(h: string, sig: NodeJS.Signals): Promise<void> {
    const d = this.daemons.get(h);
    if (!d || d.child.exitCode !== null || d.child.signalCode !== null) return;
    const exited = new Promise((r) => d.child.once('exit', r));
    d.child.kill(sig);
    await exited;
  }

  /** Everything h's daemon wrote so far (across restarts). */
  daemonLog(h: string): string {
    return this.daemons.get(h)?.log.join('') ?? '';
  }

  /** Stop every daemon, print their logs' tails if asked, and destroy the lab. */
  async destroy(dumpLogs = false): Promise<void> {
    for (const h of this.hosts) await this.stopDaemon(h, 'SIGKILL');
    if (dumpLogs || process.env['PHOBOS_TEST_DAEMON_LOG']) {
      for (const h of this.hosts) console.log(`--- daemon ${h}\n${this.daemonLog(h).slice(-4000)}`);
    }
    await this.lab.destroy();
  }
}
