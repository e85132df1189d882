#!/usr/bin/env node
/**
 * npm run demo: a three-host cluster on this machine, as an operator would drive it.
 *
 *   three hosts (alpha, beta, gamma), each with its own tree root and disk, daemons that
 *   reach each other over the pipe transport (docs/peer-protocol.md);
 *   create-resource on alpha, data written through alpha's NBD export;
 *   join-resource on beta and gamma: fast full sync, with its progress;
 *   more writes while the secondaries replay; gamma's daemon is killed with SIGKILL in the
 *   middle and restarted, and resumes;
 *   marsadm view; the daemons stop; the three disks are compared (sha256).
 *
 * Usage: npm run demo [-- --json] [-- --keep] [-- --ssh]. With --ssh the daemons talk
 * over SSH instead: each host gets a private OpenSSH sshd on 127.0.0.1 (its own port,
 * host keys and authorized_keys), and beta and gamma join with `join-cluster` through
 * alpha's sshd, as an operator would. `npm run demo -- --crash` runs the one-host crash
 * demo (kill -9 of a primary under load, every acknowledged write checked).
 * Everything lives in a temp dir removed at the end; every process it starts is stopped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { formatBytes } from '../cli/format.js';
import { ProgressBar } from '../cli/progress.js';
import { NbdClient } from '../nbd/index.js';
import { generateEd25519KeyPair, installAuthorizedKey } from '../peer/ssh/keys.js';
import { runCrashDemo } from './crash.js';
import { preparePrivateSshd, SSHD, waitForListening } from './private_sshd.js';

const MARSADM = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const HOSTS = ['alpha', 'beta', 'gamma'] as const;
type Host = (typeof HOSTS)[number];
const RES = 'demo';
const DISK_BYTES = 256 << 20;
const json = process.argv.includes('--json');
const keep = process.argv.includes('--keep');
const overSsh = process.argv.includes('--ssh');
const LOOPBACK = '127.0.0.1';
const say = (line: string): void => { if (!json) console.log(line); };

/** A host's private sshd in --ssh mode. */
interface HostSshd {
  readonly port: number;
  readonly hostKeyPubFile: string;
  readonly authorizedKeys: string;
}

class DemoCluster {
  readonly daemons = new Map<Host, ChildProcess>();
  readonly sshds = new Map<Host, HostSshd>();
  private readonly sshdProcesses: ChildProcess[] = [];

  constructor(readonly dir: string) {
    for (const h of HOSTS) mkdirSync(path.join(dir, h, 'run'), { recursive: true });
  }

  env(host: Host): NodeJS.ProcessEnv {
    const own = {
      ...process.env,
      MARS_ROOT: path.join(this.dir, host, 'mars'),
      MARS_HOST: host,
      PHOBOS_RUN_DIR: path.join(this.dir, host, 'run'),
    };
    const sshd = this.sshds.get(host);
    if (!sshd) {
      return { ...own, PHOBOS_PIPE_ROOT: path.join(this.dir, '{host}', 'mars'), PHOBOS_PIPE_RUN_DIR: path.join(this.dir, '{host}', 'run') };
    }
    return {
      ...own,
      PHOBOS_SSH_DIR: path.join(this.dir, host, 'ssh'),
      PHOBOS_SSH_PORT: String(sshd.port),
      PHOBOS_HOST_KEY: sshd.hostKeyPubFile,
      PHOBOS_AUTHORIZED_KEYS: sshd.authorizedKeys,
    };
  }

  /** --ssh: a private sshd per host on 127.0.0.1; the operator's key may log in to each. */
  async startSshds(): Promise<string> {
    const operatorKey = path.join(this.dir, 'operator_ed25519');
    const operator = generateEd25519KeyPair('phobos-demo-operator');
    writeFileSync(operatorKey, `${operator.private.trim()}\n`, { mode: 0o600 });
    for (const h of HOSTS) {
      const authorizedKeys = path.join(this.dir, h, 'authorized_keys');
      await installAuthorizedKey(authorizedKeys, operator.public.trim(), 'phobos-demo-operator');
      const port = await freePort();
      const files = await preparePrivateSshd({ dir: path.join(this.dir, h, 'sshd'), address: LOOPBACK, port, authorizedKeysFile: authorizedKeys });
      const child = spawn(SSHD, ['-D', '-f', files.configFile, '-E', files.logFile], { stdio: 'ignore' });
      this.sshdProcesses.push(child);
      await waitForListening(child, files.logFile, LOOPBACK, port);
      this.sshds.set(h, { port, hostKeyPubFile: files.hostKeyPubFile, authorizedKeys });
      say(`${h}: sshd on ${LOOPBACK}:${port}`);
    }
    return operatorKey;
  }

  /** join-cluster through peer's sshd with the operator's key (pipe mode: through its root). */
  async joinCluster(host: Host, peer: Host, operatorKey: string | null): Promise<void> {
    const sshd = this.sshds.get(peer);
    if (!sshd || !operatorKey) {
      await this.marsadm(host, 'join-cluster', peer);
      return;
    }
    const penv = this.env(peer);
    const remote = [process.execPath, MARSADM, '--root', penv['MARS_ROOT']!, '--host', peer, '--ssh-dir', penv['PHOBOS_SSH_DIR']!,
      '--authorized-keys', sshd.authorizedKeys, '--host-key', sshd.hostKeyPubFile, '--ssh-port', String(sshd.port),
      '--run-dir', penv['PHOBOS_RUN_DIR']!].join(' ');
    const sshOpts = `-i ${operatorKey} -p ${sshd.port} -o HostName=${LOOPBACK} -o UserKnownHostsFile=/dev/null ` +
      '-o StrictHostKeyChecking=no -o BatchMode=yes -o LogLevel=ERROR';
    await this.marsadm(host, 'join-cluster', peer, LOOPBACK, '--ssh-opts', sshOpts, '--remote-marsadm', remote);
  }

  stopSshds(): void {
    for (const child of this.sshdProcesses) if (child.exitCode === null) child.kill('SIGTERM');
  }

  disk(host: Host): string {
    return path.join(this.dir, host, 'disk.img');
  }

  socket(host: Host): string {
    return path.join(this.dir, host, 'run', `${RES}.nbd`);
  }

  /** marsadm as `host`, echoed like a shell session. */
  async marsadm(host: Host, ...args: string[]): Promise<string> {
    say(`${host}$ marsadm ${args.map((a) => (a.includes(' ') ? `'${a}'` : a)).join(' ')}`);
    const child = spawn(process.execPath, [MARSADM, ...args], { env: this.env(host), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number>((r) => child.once('exit', (c) => r(c ?? 1)));
    if (out && !json) process.stdout.write(`${out.trimEnd().replace(/^/gm, '  ')}\n`);
    if (code !== 0) throw new Error(`marsadm ${args[0]} on ${host} exited ${code}: ${err.trim()}`);
    return out;
  }

  /** join-resource prints progress objects with --json; draw them as a bar. */
  async join(host: Host): Promise<void> {
    say(`${host}$ marsadm join-resource ${RES} ${this.disk(host)}`);
    const child = spawn(process.execPath, [MARSADM, 'join-resource', RES, this.disk(host), '--json', '--timeout', '120'],
      { env: this.env(host), stdio: ['ignore', 'pipe', 'pipe'] });
    const bar = new ProgressBar(`sync ${host}`, DISK_BYTES);
    let err = '', tail = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      tail += d.toString();
      const lines = tail.split('\n');
      tail = lines.pop() ?? '';
      for (const line of lines) {
        const p = (line.startsWith('{') ? JSON.parse(line) : {}) as { syncedBytes?: number };
        if (typeof p.syncedBytes === 'number') bar.update(p.syncedBytes);
      }
    });
    const code = await new Promise<number>((r) => child.once('exit', (c) => r(c ?? 1)));
    bar.done();
    if (code !== 0) throw new Error(`join-resource on ${host} exited ${code}: ${err.trim()}`);
  }

  startDaemon(host: Host): Promise<void> {
    const child = spawn(process.execPath, [MARSADM, 'daemon'], { env: this.env(host), stdio: ['ignore', 'ignore', 'pipe'] });
    this.daemons.set(host, child);
    let log = '';
    return new Promise((resolve, reject) => {
      child.stderr!.on('data', (d: Buffer) => {
        log += d.toString();
        if (log.includes(': started on ')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`daemon on ${host} exited ${code}: ${log}`)));
    });
  }

  async stopDaemon(host: Host, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.daemons.get(host);
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(signal);
    await exited;
  }

  async view(host: Host): Promise<ViewJson> {
    const child = spawn(process.execPath, [MARSADM, 'view', RES, '--json'], { env: this.env(host), stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => child.once('exit', r));
    return JSON.parse(out) as ViewJson;
  }
}

interface ViewJson {
  resources: { hosts: { host: string; replayRest: number; fetchRest: number; diskState: string; replState: string }[] }[];
}

/** Deterministic bytes: the demo's data can be regenerated to check it. */
function pattern(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let x = seed || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    b.writeInt32LE(x | 0, i);
  }
  return b;
}

async function writeData(client: NbdClient, bytes: number, seed: number): Promise<void> {
  const chunk = 1 << 20;
  for (let done = 0; done < bytes; done += chunk) {
    const at = ((seed * 37 + done / chunk) * chunk * 7) % DISK_BYTES;
    await client.write(at - (at % chunk), pattern(seed * 1000 + done / chunk, chunk));
  }
  await client.flush();
}

async function sha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Until no secondary has anything left to fetch or replay, with a bar of the rest. */
async function caughtUp(cluster: DemoCluster): Promise<void> {
  let first = -1;
  const started = Date.now();
  let bar: ProgressBar | null = null;
  for (;;) {
    const hosts = (await cluster.view('alpha')).resources[0]!.hosts.filter((h) => h.host !== 'alpha');
    const rest = hosts.reduce((sum, h) => sum + h.replayRest + h.fetchRest, 0);
    const done = hosts.length === 2 && rest === 0 && hosts.every((h) => h.diskState === 'UpToDate');
    if (first < 0) {
      first = Math.max(rest, 1);
      bar = new ProgressBar('catch-up', first);
    }
    bar!.update(first - Math.min(first, rest));
    if (done) break;
    if (Date.now() - started > 120_000) throw new Error(`secondaries did not catch up: ${JSON.stringify(hosts)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  bar?.done();
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().once('error', reject).listen(0, LOOPBACK, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function main(): Promise<number> {
  if (overSsh && !existsSync(SSHD)) {
    console.error(`demo --ssh needs OpenSSH's sshd (${SSHD}); install openssh-server (as root: bash scripts/system-tier/install-deps.sh), or run the demo without --ssh`);
    return 1;
  }
  const started = performance.now();
  const cluster = new DemoCluster(mkdtempSync(path.join(os.tmpdir(), 'phobos-demo-')));
  try {
    for (const h of HOSTS) writeFileSync(cluster.disk(h), '');
    const operatorKey = overSsh ? await cluster.startSshds() : null;
    await cluster.marsadm('alpha', 'create-cluster', ...(overSsh ? [LOOPBACK] : []));
    await cluster.joinCluster('beta', 'alpha', operatorKey);
    await cluster.joinCluster('gamma', 'alpha', operatorKey);
    say(`starting a daemon on each host (they connect to each other over ${overSsh ? 'SSH with the cluster key' : 'the pipe transport'})`);
    await Promise.all(HOSTS.map((h) => cluster.startDaemon(h)));
    await cluster.marsadm('alpha', 'create-resource', RES, cluster.disk('alpha'), '256M');
    const client = await NbdClient.connect(cluster.socket('alpha'), RES);
    say('writing 64 MiB through alpha\'s export ...');
    await writeData(client, 64 << 20, 1);
    await cluster.marsadm('beta', 'wait-cluster');
    await cluster.marsadm('gamma', 'wait-cluster');
    for (const h of ['beta', 'gamma'] as const) await cluster.join(h);

    say('writing 96 MiB more while beta and gamma replay; gamma\'s daemon gets SIGKILL half way ...');
    const writes = writeData(client, 96 << 20, 2);
    await new Promise((r) => setTimeout(r, 400));
    await cluster.stopDaemon('gamma', 'SIGKILL');
    say('gamma$ kill -9 <daemon>   (restarted a second later; it resumes where it stopped)');
    await new Promise((r) => setTimeout(r, 1000));
    await cluster.startDaemon('gamma');
    await writes;
    await client.disconnect();
    await caughtUp(cluster);
    await cluster.marsadm('alpha', 'view', RES);

    say('stopping the daemons; comparing the three disks');
    for (const h of HOSTS) await cluster.stopDaemon(h);
    const sums = await Promise.all(HOSTS.map((h) => sha256(cluster.disk(h))));
    HOSTS.forEach((h, i) => say(`  ${sums[i]}  ${h}/disk.img`));
    const identical = sums.every((s) => s === sums[0]);
    const seconds = (performance.now() - started) / 1000;
    if (json) console.log(JSON.stringify({ hosts: HOSTS.length, transport: overSsh ? 'ssh' : 'pipe', diskBytes: DISK_BYTES, identical, sha256: sums[0], seconds: Number(seconds.toFixed(1)) }));
    say(identical ? `the three disks are byte-identical (${formatBytes(DISK_BYTES)} each, ${seconds.toFixed(1)} s)` : 'the disks DIFFER');
    return identical ? 0 : 1;
  } finally {
    for (const h of HOSTS) await cluster.stopDaemon(h, 'SIGKILL');
    cluster.stopSshds();
    if (keep) console.log(`kept ${cluster.dir}`);
    else rmSync(cluster.dir, { recursive: true, force: true });
  }
}

if (process.argv.includes('--crash')) {
  await runCrashDemo();
} else {
  await main().then((code) => {
    process.exitCode = code;
  }, (error: unknown) => {
    console.error(`demo failed: ${(error as Error).message}`);
    process.exitCode = 1;
  });
}
