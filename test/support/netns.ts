/**
 * A network lab for the system test tier: one network namespace per host, all joined by
 * a bridge that lives in a namespace of its own, so the root namespace's network is never
 * touched. Each host can run a private sshd. See docs/system-tier.md.
 *
 *   <name>-br:     br0 (bridge), v0, v1, ... (bridge ends of the veth pairs)
 *   <name>-<host>: eth0 = 10.231.<k>.<i+1>/24 (other end of v<i>), lo
 */
import { spawn as spawnChild, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { preparePrivateSshd, SSHD, waitForListening } from '../../src/demo/private_sshd.js';
import { missingCommand } from './tiers.js';

export const SYSTEM_TIER_INSTALL = 'run `bash scripts/system-tier/install-deps.sh` as root';

/** null if this machine can run the system tier, else a sentence with the fix. */
export function systemTierMissing(): string | null {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces and a private sshd per lab host); run the tier as root';
  if (!existsSync(SSHD)) return `${SSHD} not found; ${SYSTEM_TIER_INSTALL}`;
  return missingCommand('ip', SYSTEM_TIER_INSTALL) ?? missingCommand('ssh', SYSTEM_TIER_INSTALL);
}

export interface LabOptions {
  /** Prefix of every namespace (`<name>-<host>`, `<name>-br`); one word, a-z 0-9 '-'. */
  readonly name: string;
  readonly hosts: readonly string[];
}

export interface ExecOptions {
  readonly input?: string | Buffer;
  /** Reject when the command exits non-zero (default true). */
  readonly check?: boolean;
  readonly timeoutMs?: number;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

export interface ExecResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface SshdOptions {
  /** Absolute path; sshd reads it on every login, so it may change while sshd runs. */
  readonly authorizedKeysFile: string;
  readonly port?: number;
}

export interface Sshd {
  /** `ssh-ed25519 AAAA...` (what a peer pins). */
  readonly hostKeyLine: string;
  /** The same key in SSH wire format (what ssh2's hostVerifier sees). */
  readonly hostKeyBlob: Buffer;
  /**
   * sshd's second host key (ECDSA P-256), there because a real sshd has several: a client
   * must ask for the type it pinned, or it may be shown another key.
   */
  readonly ecdsaHostKeyLine: string;
  readonly address: string;
  readonly port: number;
  readonly logFile: string;
  readonly pid: number;
}

export interface Lab {
  readonly name: string;
  readonly hosts: readonly string[];
  /** Scratch directory for keys, configs and logs; removed by destroy(). */
  readonly dir: string;
  namespace(host: string): string;
  address(host: string): string;
  exec(host: string, command: string, args?: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  spawn(host: string, command: string, args?: readonly string[], opts?: SpawnOptions): ChildProcess;
  startSshd(host: string, opts: SshdOptions): Promise<Sshd>;
  /** Cut the host's cable: its veth's bridge end goes down, packets vanish silently. */
  linkDown(host: string): Promise<void>;
  linkUp(host: string): Promise<void>;
  /** Kill everything the lab started, delete its namespaces and scratch dir; idempotent. */
  destroy(): Promise<void>;
}

/** Build the lab; on failure everything built so far is torn down before the error is thrown. */
export async function createLab(opts: LabOptions): Promise<Lab> {
  checkNames(opts);
  await removeLeftovers(opts.name);
  const lab = new NetnsLab(opts.name, opts.hosts, await mkdtemp(path.join(os.tmpdir(), `phobos-lab-${opts.name}-`)));
  try {
    await lab.build();
  } catch (e) {
    await lab.destroy();
    throw e;
  }
  return lab;
}

function checkNames(opts: LabOptions): void {
  const word = /^[a-z][a-z0-9-]{0,30}$/;
  if (!word.test(opts.name)) throw new Error(`lab name "${opts.name}" must be a short word of a-z, 0-9 and '-' (it prefixes namespace names)`);
  if (opts.hosts.length === 0 || opts.hosts.length > 250) throw new Error(`a lab needs 1 to 250 hosts, got ${opts.hosts.length}`);
  for (const host of opts.hosts) {
    if (!word.test(host) || host === 'br') throw new Error(`lab host "${host}" must be a short word of a-z, 0-9 and '-', and not "br" (the bridge's namespace)`);
  }
  if (new Set(opts.hosts).size !== opts.hosts.length) throw new Error(`lab host names repeat: ${opts.hosts.join(', ')}`);
}

/** 10.231.<k>.0/24 with k from the name, so two labs with different names do not share a subnet. */
function subnetOf(name: string): number {
  return createHash('sha256').update(name).digest()[0] ?? 0;
}

// ---------------------------------------------------------------------------------------
// Running commands

/** Run a command in the root namespace (only `ip` itself), collecting output. */
function run(command: string, args: readonly string[], opts: ExecOptions = {}, track?: Set<ChildProcess>): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(command, args, { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
    track?.add(child);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.once('error', (e) => {
      clearTimeout(timer);
      track?.delete(child);
      reject(new Error(`cannot run ${command}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      track?.delete(child);
      const result = { code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
      if (code === 0 || opts.check === false) return resolve(result);
      const why = signal ? `killed by ${signal}${timer ? ` (timeout ${opts.timeoutMs} ms?)` : ''}` : `exit ${code}`;
      reject(new Error(`${command} ${args.join(' ')}: ${why}: ${result.stderr.trim().split('\n').pop() ?? ''}`));
    });
  });
}

const ip = (...args: string[]): Promise<ExecResult> => run('ip', args);

async function listNamespaces(): Promise<string[]> {
  const { stdout } = await ip('netns', 'list');
  return stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n !== '');
}

async function namespacePids(ns: string): Promise<number[]> {
  const { stdout } = await run('ip', ['netns', 'pids', ns], { check: false });
  return stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number).filter((pid) => pid !== process.pid);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/** SIGTERM, then SIGKILL whatever is still there after `graceMs`. */
async function terminate(pids: readonly number[], graceMs = 2000): Promise<void> {
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(50);
  for (const pid of pids.filter(isAlive)) signal(pid, 'SIGKILL');
}

/** Stop the processes living in a namespace (sshd, its sessions, clients) and delete it. */
async function deleteNamespace(ns: string): Promise<void> {
  await terminate(await namespacePids(ns));
  await run('ip', ['netns', 'del', ns], { check: false });
}

/** Namespaces and scratch dirs of an earlier run that crashed before its destroy(). */
async function removeLeftovers(name: string): Promise<void> {
  for (const ns of await listNamespaces()) if (ns.startsWith(`${name}-`)) await deleteNamespace(ns);
  const prefix = `phobos-lab-${name}-`;
  for (const entry of await readdir(os.tmpdir())) {
    if (entry.startsWith(prefix)) await rm(path.join(os.tmpdir(), entry), { recursive: true, force: true });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------
// The lab

class NetnsLab implements Lab {
  private readonly subnet: number;
  private readonly bridgeNs: string;
  private readonly children = new Set<ChildProcess>();
  private readonly created: string[] = [];
  private destroying: Promise<void> | null = null;

  constructor(readonly name: string, readonly hosts: readonly string[], readonly dir: string) {
    this.subnet = subnetOf(name);
    this.bridgeNs = `${name}-br`;
  }

  namespace(host: string): string {
    this.indexOf(host);
    return `${this.name}-${host}`;
  }

  address(host: string): string {
    return `10.231.${this.subnet}.${this.indexOf(host) + 1}`;
  }

  private indexOf(host: string): number {
    const index = this.hosts.indexOf(host);
    if (index < 0) throw new Error(`lab ${this.name} has no host "${host}" (hosts: ${this.hosts.join(', ')})`);
    return index;
  }

  async build(): Promise<void> {
    await this.addNamespace(this.bridgeNs);
    await ip('-n', this.bridgeNs, 'link', 'add', 'br0', 'type', 'bridge');
    await ip('-n', this.bridgeNs, 'link', 'set', 'br0', 'up');
    for (const host of this.hosts) await this.addHost(host);
  }

  private async addNamespace(ns: string): Promise<void> {
    await ip('netns', 'add', ns);
    this.created.push(ns);
    await ip('-n', ns, 'link', 'set', 'lo', 'up');
  }

  /** A veth pair made inside the bridge namespace, its far end moved straight into the host's. */
  private async addHost(host: string): Promise<void> {
    const ns = this.namespace(host);
    const port = `v${this.indexOf(host)}`;
    await this.addNamespace(ns);
    await ip('-n', this.bridgeNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    await ip('-n', this.bridgeNs, 'link', 'set', port, 'master', 'br0');
    await ip('-n', this.bridgeNs, 'link', 'set', port, 'up');
    await ip('-n', ns, 'addr', 'add', `${this.address(host)}/24`, 'dev', 'eth0');
    await ip('-n', ns, 'link', 'set', 'eth0', 'up');
  }

  exec(host: string, command: string, args: readonly string[] = [], opts: ExecOptions = {}): Promise<ExecResult> {
    return run('ip', ['netns', 'exec', this.namespace(host), command, ...args], opts, this.children);
  }

  /** `ip netns exec` execs the command, so the child's pid is the command's own. */
  spawn(host: string, command: string, args: readonly string[] = [], opts: SpawnOptions = {}): ChildProcess {
    if (this.destroying) throw new Error(`lab ${this.name} is destroyed; cannot start ${command} in it`);
    const child = spawnChild('ip', ['netns', 'exec', this.namespace(host), command, ...args], opts);
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    child.once('error', () => this.children.delete(child));
    return child;
  }

  async startSshd(host: string, opts: SshdOptions): Promise<Sshd> {
    const port = opts.port ?? 2222;
    const address = this.address(host);
    const files = await preparePrivateSshd({ dir: path.join(this.dir, `sshd-${host}`), address, port, authorizedKeysFile: opts.authorizedKeysFile });
    await this.exec(host, SSHD, ['-t', '-f', files.configFile]).catch((e: Error) => {
      throw new Error(`sshd config ${files.configFile} is invalid: ${e.message}`);
    });
    const child = this.spawn(host, SSHD, ['-D', '-f', files.configFile, '-E', files.logFile], { stdio: 'ignore' });
    await waitForListening(child, files.logFile, address, port);
    return {
      hostKeyLine: files.hostKeyLine, hostKeyBlob: files.hostKeyBlob, ecdsaHostKeyLine: files.ecdsaHostKeyLine,
      address, port, logFile: files.logFile, pid: child.pid ?? -1,
    };
  }

  async linkDown(host: string): Promise<void> {
    await ip('-n', this.bridgeNs, 'link', 'set', `v${this.indexOf(host)}`, 'down');
  }

  async linkUp(host: string): Promise<void> {
    await ip('-n', this.bridgeNs, 'link', 'set', `v${this.indexOf(host)}`, 'up');
  }

  destroy(): Promise<void> {
    this.destroying ??= this.teardown();
    return this.destroying;
  }

  private async teardown(): Promise<void> {
    const pids = [...this.children].map((c) => c.pid).filter((p): p is number => p !== undefined);
    await terminate(pids);
    // Host namespaces first: sshd's session children are not ours by pid, but live there.
    for (const ns of [...this.created].reverse()) await deleteNamespace(ns);
    await rm(this.dir, { recursive: true, force: true });
  }
}
