/**
 * A throwaway multi-host cluster for the replication benchmarks: one temp dir, one tree
 * root and run dir per host, real daemons (compiled dist/) reaching each other over the
 * pipe transport (docs/peer-protocol.md). Self-contained: benches do not import test/.
 *
 * Every process it starts, and every peer-serve those start, is killed by close().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';

import { main } from '../src/cli/main.js';
import { MARSADM } from './cluster_setup.js';

export interface DaemonOptions {
  /** Extra arguments for node before the script (e.g. --cpu-prof). */
  readonly nodeArgs?: readonly string[];
  /** Extra environment (NODE_OPTIONS reaches the peer-serve children too). */
  readonly env?: NodeJS.ProcessEnv;
}

export class BenchNode {
  readonly dir: string;
  readonly root: string;
  readonly runDir: string;
  daemon: ChildProcess | null = null;
  daemonLog = '';

  constructor(readonly name: string, private readonly base: string) {
    this.dir = path.join(base, name);
    this.root = path.join(this.dir, 'mars');
    this.runDir = path.join(this.dir, 'run');
    mkdirSync(this.runDir, { recursive: true });
  }

  file(name: string): string {
    return path.join(this.dir, name);
  }

  get pipeOptions(): string[] {
    return ['--pipe-root', path.join(this.base, '{host}', 'mars'), '--pipe-run-dir', path.join(this.base, '{host}', 'run')];
  }

  socket(res: string): string {
    return path.join(this.runDir, `${res}.nbd`);
  }

  /** marsadm in this process with this host's --root and --host; throws unless it succeeded. */
  async marsadm(...argv: string[]): Promise<string> {
    const out = new PassThrough(), err = new PassThrough();
    let o = '', e = '';
    out.on('data', (d: Buffer) => (o += d.toString()));
    err.on('data', (d: Buffer) => (e += d.toString()));
    const code = await main([...argv, '--root', this.root, '--host', this.name], out, err);
    if (code !== 0) throw new Error(`${this.name}: marsadm ${argv.join(' ')} exited ${code}: ${e}`);
    return o;
  }

  async get(key: string): Promise<string> {
    return (await this.marsadm('get-link', key)).trim();
  }

  /** Like get(), but '' when the key is not there (yet). */
  async tryGet(key: string): Promise<string> {
    return this.get(key).catch(() => '');
  }

  async startDaemon(opts: DaemonOptions = {}): Promise<void> {
    const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), MARSADM, 'daemon', '--root', this.root, '--host', this.name,
      '--run-dir', this.runDir, ...this.pipeOptions], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...opts.env } });
    this.daemon = child;
    child.stderr!.on('data', (d: Buffer) => {
      // Keep only the tail: a long bench must not grow this without bound.
      this.daemonLog = (this.daemonLog + d.toString()).slice(-64 << 10);
      if (process.env['PHOBOS_BENCH_DAEMON_LOG']) process.stderr.write(d);
    });
    await new Promise<void>((resolve, reject) => {
      const onData = () => {
        if (this.daemonLog.includes(': started on ')) resolve();
      };
      child.stderr!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`${this.name}: daemon exited ${code} before starting:\n${this.daemonLog}`)));
    });
  }

  /** The daemon and its peer-serve children (pids), for CPU accounting. */
  processTree(): number[] {
    const pid = this.daemon?.pid;
    return pid ? [pid, ...descendants(pid)] : [];
  }

  /** SIGTERM (graceful, up to 5 s), then SIGKILL; peer-serve children are killed too. */
  async stopDaemon(): Promise<void> {
    const child = this.daemon;
    if (!child) return;
    this.daemon = null;
    const children = descendants(child.pid!);
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    for (const pid of children) killQuietly(pid);
  }
}

export class BenchCluster {
  readonly nodes: BenchNode[];

  private constructor(readonly base: string, names: readonly string[]) {
    this.nodes = names.map((n) => new BenchNode(n, base));
  }

  /** create-cluster on the first host, join-cluster on the others, daemons started. */
  static async create(names: readonly string[], daemon: DaemonOptions = {}): Promise<BenchCluster> {
    if (!existsSync(MARSADM)) throw new Error(`${MARSADM} missing: run \`npm run build\``);
    const base = mkdtempSync(path.join(process.env['PHOBOS_BENCH_DIR'] ?? '/var/tmp', 'phobos-bench-'));
    const cluster = new BenchCluster(base, names);
    try {
      const [first, ...rest] = cluster.nodes;
      await first!.marsadm('create-cluster');
      for (const n of rest) await n.marsadm('join-cluster', first!.name, ...n.pipeOptions);
      await Promise.all(cluster.nodes.map((n) => n.startDaemon(daemon)));
      return cluster;
    } catch (e) {
      await cluster.close();
      throw e;
    }
  }

  node(name: string): BenchNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no host ${name}`);
    return n;
  }

  async close(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stopDaemon()));
    rmSync(this.base, { recursive: true, force: true });
  }
}

/**
 * PHOBOS_BENCH_PROFILE=<dir>: daemons and their peer-serve children write CPU profiles
 * there (bench/_cpu_profile.cjs; summarise with bench/_profile_top.ts).
 */
export function profileOptions(): DaemonOptions {
  const dir = process.env['PHOBOS_BENCH_PROFILE'];
  if (!dir) return {};
  mkdirSync(dir, { recursive: true });
  const preload = new URL('./_cpu_profile.cjs', import.meta.url).pathname;
  return { env: { NODE_OPTIONS: `--require ${preload}`, PHOBOS_BENCH_PROFILE: path.resolve(dir) } };
}

/** When profiling: the first call restarts the profiles of `pids`, the second writes them. */
export function profileWindow(pids: readonly number[]): void {
  if (!process.env['PHOBOS_BENCH_PROFILE']) return;
  for (const pid of pids) killQuietly(pid, 'SIGUSR2');
}

/** Poll until check() holds; fail after timeoutMs naming what. */
export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000, everyMs = 20): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** All descendants of pid, from /proc (children of children too). */
export function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (!stat) continue;
    const list = parents.get(stat.ppid) ?? [];
    list.push(Number(entry));
    parents.set(stat.ppid, list);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of parents.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/** ppid and CPU time (user + system, clock ticks) of a process; null if it is gone. */
export function readProcStat(pid: number): { ppid: number; ticks: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) may hold spaces: split after its closing parenthesis.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) };
}

/** CPU ticks (1/100 s) used so far by each process of `pids` that still exists. */
export function cpuTicks(pids: readonly number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    const stat = readProcStat(pid);
    if (stat) out.set(pid, stat.ticks);
  }
  return out;
}

/** `label pid: N % of a core` for each process, between two cpuTicks() readings. */
export function cpuShares(before: Map<number, number>, after: Map<number, number>, seconds: number, labels: Map<number, string>): string {
  return [...after].map(([pid, t]) => `${labels.get(pid) ?? pid}: ${((t - (before.get(pid) ?? 0)) / seconds).toFixed(0)} %`).join(', ');
}

/** Command line of a process, for labels ('' if gone). */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
