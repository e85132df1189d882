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
 * Usage: npm run demo [-- --json] [-- --keep]; `npm run demo -- --crash` runs the one-host
 * crash demo (kill -9 of a primary under load, every acknowledged write checked).
 * Everything lives in a temp dir removed at the end; every process it starts is stopped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { formatBytes } from '../cli/format.js';
import { ProgressBar } from '../cli/progress.js';
import { NbdClient } from '../nbd/index.js';
import { runCrashDemo } from './crash.js';

const MARSADM = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const HOSTS = ['alpha', 'beta', 'gamma'] as const;
type Host = (typeof HOSTS)[number];
const RES = 'demo';
const DISK_BYTES = 256 << 20;
const json = process.argv.includes('--json');
const keep = process.argv.includes('--keep');
const say = (line: string): void => { if (!json) console.log(line); };

class DemoCluster {
  readonly daemons = new Map<Host, ChildProcess>();

  constructor(readonly dir: string) {
    for (const h of HOSTS) mkdirSync(path.join(dir, h, 'run'), { recursive: true });
  }

  env(host: Host): NodeJS.ProcessEnv {
    return {
      ...process.env,
      MARS_ROOT: path.join(this.dir, host, 'mars'),
      MARS_HOST: host,
      PHOBOS_RUN_DIR: path.join(this.dir, host, 'run'),
      PHOBOS_PIPE_ROOT: path.join(this.dir, '{host}', 'mars'),
      PHOBOS_PIPE_RUN_DIR: path.join(this.dir, '{host}', 'run'),
    };
  }

  disk(host: Host): string {
    return path.join(this.dir, host, 'disk.img');
  }

  socket(host: Host): string {
    return path.join(this.dir, host, 'run', `${RES}.nbd`);
  }

  /** marsadm as `host`, echoed like a shell session. */
  async marsadm(host: Host, ...args: string[]): Promise<string> {
    say(`${host}$ marsadm ${args.join(' ')}`);
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

async function main(): Promise<number> {
  const started = performance.now();
  const cluster = new DemoCluster(mkdtempSync(path.join(os.tmpdir(), 'phobos-demo-')));
  try {
    for (const h of HOSTS) writeFileSync(cluster.disk(h), '');
    await cluster.marsadm('alpha', 'create-cluster');
    await cluster.marsadm('beta', 'join-cluster', 'alpha');
    await cluster.marsadm('gamma', 'join-cluster', 'alpha');
    say('starting a daemon on each host (they connect to each other over the pipe transport)');
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
    if (json) console.log(JSON.stringify({ hosts: HOSTS.length, diskBytes: DISK_BYTES, identical, sha256: sums[0], seconds: Number(seconds.toFixed(1)) }));
    say(identical ? `the three disks are byte-identical (${formatBytes(DISK_BYTES)} each, ${seconds.toFixed(1)} s)` : 'the disks DIFFER');
    return identical ? 0 : 1;
  } finally {
    for (const h of HOSTS) await cluster.stopDaemon(h, 'SIGKILL');
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
