/**
 * A throwaway cluster over the real SSH transport for the *-ssh benchmarks: one network
 * namespace per host on a bridge (test/support/netns.ts), a private OpenSSH sshd per host,
 * a tree root, run dir and daemon (compiled dist/) per host, the same way the system tier
 * builds it (test/system/replication.test.ts): `create-cluster` on the first host,
 * `join-cluster` through OpenSSH with an operator key on the others, after which the
 * daemons talk only with the cluster key, whose forced command is `marsadm peer-serve`.
 *
 * marsadm runs inside the host's namespace (`ip netns exec`), as an operator would run it
 * there (a fresh node process each time). Tree reads and writes the benches time against
 * go straight to the host's tree from this process (MarsTree), which is what marsadm's
 * get-link / set-link do minus node's start-up.
 *
 * Everything started here is stopped on close(), on an exception, and on SIGINT / SIGTERM
 * (every open lab is destroyed, then the process exits 130 / 143): daemons, sshds, the
 * sshd sessions and peer-serves they forked, the namespaces and the scratch dir.
 *
 * Needs root and OpenSSH (`bash scripts/system-tier/install-deps.sh`).
 * PHOBOS_BENCH_PROFILE=<dir>: daemons and the peer-serves sshd starts for the cluster key
 * write CPU profiles there (bench/_cpu_profile.cjs, summarised by bench/_profile_top.ts).
 * PHOBOS_BENCH_DAEMON_LOG=1: daemon stderr goes to ours.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import { generateEd25519KeyPair, installAuthorizedKey } from '../src/peer/ssh/keys.js';
import { MarsTree } from '../src/tree/index.js';
import { createLab, systemTierMissing, type Lab, type Sshd } from '../test/support/netns.js';
import { MARSADM } from './cluster_setup.js';
import { readProcStat, sleep } from './_cluster.js';

export const SSH_PORT = 2222;

/**
 * The marsadm the lab runs (daemons, commands, the forced command). PHOBOS_BENCH_MARSADM
 * points at a copy of a build (dist/ + build/Release/phobos.node + package.json), so a
 * rebuild of the working tree by someone else in the middle of a run cannot change it.
 */
export const LAB_MARSADM = process.env['PHOBOS_BENCH_MARSADM'] ?? MARSADM;

export interface LabHost {
  readonly name: string;
  readonly dir: string;
  readonly root: string;
  readonly runDir: string;
  readonly sshDir: string;
  readonly authorizedKeys: string;
  readonly hostKeyPub: string;
  sshd: Sshd | null;
  daemon: ChildProcess | null;
  daemonLog: string;
}

export interface MarsadmResult {
  readonly stdout: string;
  readonly stderr: string;
  /** Wall time of the whole command, node start-up included, ms. */
  readonly ms: number;
}

const open = new Set<SshLab>();
let handlersInstalled = false;

/** On Ctrl-C / SIGTERM: tear every open lab down, then exit. */
function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(sig, () => {
      console.error(`bench: ${sig}: tearing down ${open.size} lab(s)`);
      void Promise.allSettled([...open].map((l) => l.close())).finally(() => process.exit(code));
    });
  }
}

export class SshLab {
  readonly hosts: Map<string, LabHost>;
  readonly marsadmPath = LAB_MARSADM;
  private readonly trees = new Map<string, MarsTree>();
  private closing: Promise<void> | null = null;
  private readonly profileDir: string | null;

  private constructor(readonly lab: Lab, names: readonly string[]) {
    this.hosts = new Map(names.map((name) => {
      const dir = path.join(lab.dir, name);
      mkdirSync(path.join(dir, 'run'), { recursive: true });
      return [name, {
        name, dir, root: path.join(dir, 'mars'), runDir: path.join(dir, 'run'), sshDir: path.join(dir, 'ssh'),
        authorizedKeys: path.join(dir, 'authorized_keys'), hostKeyPub: path.join(dir, 'ssh_host_ed25519_key.pub'),
        sshd: null, daemon: null, daemonLog: '',
      }];
    }));
    const dir = process.env['PHOBOS_BENCH_PROFILE'];
    this.profileDir = dir ? path.resolve(dir) : null;
    if (this.profileDir) mkdirSync(this.profileDir, { recursive: true });
  }

  /** The operator's key: unrestricted root access on every host (join-cluster, ssh cat). */
  get operatorKey(): string {
    return path.join(this.lab.dir, 'operator_ed25519');
  }

  /** Namespaces, an sshd per host, an operator key; no cluster yet. */
  static async create(name: string, hosts: readonly string[]): Promise<SshLab> {
    const missing = systemTierMissing();
    if (missing) throw new Error(`the *-ssh benches need the system tier's setup: ${missing}`);
    if (!existsSync(LAB_MARSADM)) throw new Error(`${LAB_MARSADM} missing: run \`npm run build\``);
    installSignalHandlers();
    const lab = await createLab({ name, hosts });
    const self = new SshLab(lab, hosts);
    open.add(self);
    try {
      const operator = generateEd25519KeyPair('phobos-operator');
      await writeFile(self.operatorKey, `${operator.private.trim()}\n`, { mode: 0o600 });
      for (const h of self.hosts.values()) {
        await installAuthorizedKey(h.authorizedKeys, operator.public.trim(), 'phobos-operator');
        h.sshd = await lab.startSshd(h.name, { authorizedKeysFile: h.authorizedKeys, port: SSH_PORT });
        await writeFile(h.hostKeyPub, `${h.sshd.hostKeyLine}\n`);
      }
      return self;
    } catch (e) {
      await self.close();
      throw e;
    }
  }

  /**
   * A lab with a cluster: create-cluster on the first host, join-cluster through it on the
   * others (OpenSSH, operator key), every daemon started, wait-cluster everywhere.
   */
  static async cluster(name: string, hosts: readonly string[]): Promise<SshLab> {
    const self = await SshLab.create(name, hosts);
    try {
      const [first, ...rest] = hosts;
      await self.marsadm(first!, 'create-cluster', self.address(first!));
      await self.startDaemon(first!);
      for (const h of rest) {
        await self.joinCluster(h, first!);
        await self.startDaemon(h);
      }
      for (const h of hosts) await self.marsadm(h, 'wait-cluster');
      if (self.profileDir) {
        // sshd starts peer-serve by the cluster key's forced command, with sshd's
        // environment: the profiler has to ride in the command itself. Then restart the
        // daemons, so their links come up through the new command.
        const plain = `command="${process.execPath} ${LAB_MARSADM}`;
        const profiled = `command="/usr/bin/env PHOBOS_BENCH_PROFILE=${self.profileDir} NODE_OPTIONS=--require=${self.preload()} ${process.execPath} ${LAB_MARSADM}`;
        for (const h of self.hosts.values()) {
          writeFileSync(h.authorizedKeys, readFileSync(h.authorizedKeys, 'utf8').replaceAll(plain, profiled));
        }
        for (const h of hosts) await self.stopDaemon(h);
        for (const h of hosts) await self.startDaemon(h);
      }
      return self;
    } catch (e) {
      await self.close();
      throw e;
    }
  }

  host(name: string): LabHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no lab host ${name}`);
    return h;
  }

  address(name: string): string {
    return this.lab.address(name);
  }

  /** A sparse file of `bytes` in the host's dir, for a disk. */
  disk(name: string, file: string, bytes: number): string {
    const p = path.join(this.host(name).dir, file);
    closeSync(openSync(p, 'w'));
    truncateSync(p, bytes);
    return p;
  }

  socket(name: string, res: string): string {
    return path.join(this.host(name).runDir, `${res}.nbd`);
  }

  private preload(): string {
    return new URL('./_cpu_profile.cjs', import.meta.url).pathname;
  }

  env(name: string): NodeJS.ProcessEnv {
    const h = this.host(name);
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PHOBOS_SSH_DIR: h.sshDir,
      PHOBOS_RUN_DIR: h.runDir,
      PHOBOS_AUTHORIZED_KEYS: h.authorizedKeys,
      PHOBOS_HOST_KEY: h.hostKeyPub,
      PHOBOS_SSH_PORT: String(SSH_PORT),
    };
    return env;
  }

  /** marsadm as host h inside h's namespace; throws unless it exits 0 (check: false keeps going). */
  async marsadm(name: string, ...argv: string[]): Promise<MarsadmResult> {
    return this.marsadmChecked(name, argv, true);
  }

  async marsadmChecked(name: string, argv: readonly string[], check: boolean, timeoutMs = 180_000): Promise<MarsadmResult> {
    const h = this.host(name);
    const t = performance.now();
    const r = await this.lab.exec(name, process.execPath, [LAB_MARSADM, ...argv, '--root', h.root, '--host', name], {
      env: this.env(name), check: false, timeoutMs,
    });
    const ms = performance.now() - t;
    if (check && r.code !== 0) throw new Error(`marsadm ${argv.join(' ')} on ${name} exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
    return { stdout: r.stdout, stderr: r.stderr, ms };
  }

  /** join-cluster on h through peer, with the operator's key and OpenSSH (as the system tier does). */
  async joinCluster(name: string, peer: string): Promise<void> {
    const p = this.host(peer);
    const remote = [process.execPath, LAB_MARSADM, '--root', p.root, '--host', peer, '--ssh-dir', p.sshDir,
      '--authorized-keys', p.authorizedKeys, '--host-key', p.hostKeyPub, '--ssh-port', String(SSH_PORT), '--run-dir', p.runDir].join(' ');
    await this.marsadm(name, 'join-cluster', peer, this.address(name), '--ssh-opts', this.sshOptions(peer).join(' '), '--remote-marsadm', remote);
  }

  /** OpenSSH client options reaching `peer`'s sshd with the operator key (host key not checked: lab only). */
  sshOptions(peer: string): string[] {
    return ['-i', this.operatorKey, '-p', String(SSH_PORT), '-o', `HostName=${this.address(peer)}`,
      '-o', 'UserKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR'];
  }

  async startDaemon(name: string): Promise<void> {
    const h = this.host(name);
    const env = this.env(name);
    if (this.profileDir) {
      env['NODE_OPTIONS'] = `--require ${this.preload()}`;
      env['PHOBOS_BENCH_PROFILE'] = this.profileDir;
    }
    const child = this.lab.spawn(name, process.execPath, [LAB_MARSADM, 'daemon', '--root', h.root, '--host', name,
      '--run-dir', h.runDir, '--ssh-dir', h.sshDir], { stdio: ['ignore', 'ignore', 'pipe'], env });
    h.daemon = child;
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (d: Buffer) => {
        h.daemonLog = (h.daemonLog + d.toString()).slice(-64 << 10);
        if (process.env['PHOBOS_BENCH_DAEMON_LOG']) process.stderr.write(`[${name}] ${d.toString()}`);
        if (h.daemonLog.includes(': started on ')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`daemon ${name} exited ${code} before starting:\n${h.daemonLog}`)));
    });
  }

  /** SIGTERM (graceful, up to 10 s), then SIGKILL. */
  async stopDaemon(name: string): Promise<void> {
    const h = this.host(name);
    const child = h.daemon;
    h.daemon = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }

  /** Every process in the host's namespace: daemon, its children, sshd, sshd sessions, peer-serves. */
  async namespacePids(name: string): Promise<number[]> {
    const r = await new Promise<string>((resolve) => {
      const c = spawn('ip', ['netns', 'pids', this.lab.namespace(name)], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      c.on('close', () => resolve(out));
    });
    return r.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
  }

  /** This process's handle on a host's tree (what get-link / set-link use). */
  async tree(name: string): Promise<MarsTree> {
    let t = this.trees.get(name);
    if (!t) {
      t = await MarsTree.open({ root: this.host(name).root, host: name });
      this.trees.set(name, t);
    }
    return t;
  }

  async get(name: string, key: string): Promise<string> {
    return (await (await this.tree(name)).getValue(key)) ?? '';
  }

  async set(name: string, key: string, value: string): Promise<void> {
    await (await this.tree(name)).set(key, value);
  }

  async close(): Promise<void> {
    this.closing ??= (async () => {
      for (const h of this.hosts.values()) await this.stopDaemon(h.name).catch(() => undefined);
      await this.lab.destroy();
      open.delete(this);
    })();
    return this.closing;
  }

  /**
   * Resource `res` on a fresh sparse disk of `bytes` per host: create-resource on the
   * first host, join-resource (fast full sync, waited for) on the others.
   */
  async replicated(res: string, hosts: readonly string[], bytes: number): Promise<void> {
    const [first, ...rest] = hosts;
    await this.marsadm(first!, 'create-resource', res, this.disk(first!, `${res}.disk`, bytes));
    for (const h of rest) {
      await waitUntil(`${h} to learn of ${res} and ${first}'s log position`, async () => (await this.get(h, `resource-${res}/replay-${first}`)) !== '');
      await this.marsadm(h, 'join-resource', res, this.disk(h, `${res}.disk`, bytes));
    }
  }

  /** The tail of a host's daemon log (for a failure message). */
  daemonTail(name: string, chars = 3000): string {
    return this.host(name).daemonLog.slice(-chars);
  }
}

/** CPU ticks (1/100 s) of each pid that still exists. */
export function ticksOf(pids: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    const s = readProcStat(pid);
    if (s) out.set(pid, s.ticks);
  }
  return out;
}

/** `comm` of a process ('' if gone). */
export function commOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

/** Poll until check() holds; fail after timeoutMs naming what. */
export async function waitUntil(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000, everyMs = 20): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function verbose(line: string): void {
  if (process.env['PHOBOS_BENCH_VERBOSE']) console.error(line);
}
