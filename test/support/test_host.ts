/**
 * A host for cluster-tier tests: its own tree root and run dir in a temp dir, marsadm run
 * in-process with --root/--host, and the real daemon (compiled dist/, as operators run it)
 * as a child process that the test stops.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';

import { main } from '../../src/cli/main.js';
import { tempDir, type TempDir } from './tmp.js';

const root = new URL('../../', import.meta.url).pathname;
export const MARSADM = path.join(root, 'dist/src/cli/main.js');

export interface RunResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

export class TestHost {
  readonly tmp: TempDir;
  readonly root: string;
  readonly runDir: string;
  private daemon: ChildProcess | null = null;
  daemonLog = '';

  /**
   * @param cluster the base directory of a TestCluster: this host then lives in
   *   `<base>/<name>/` and its daemon reaches the others over the pipe transport.
   */
  constructor(readonly name = 'alpha', private readonly cluster: string | null = null) {
    if (!existsSync(MARSADM)) throw new Error(`${MARSADM} missing: run \`npm run build\` (npm test does it)`);
    this.tmp = cluster ? subDir(cluster, name) : tempDir(`phobos-${name}-`);
    this.root = this.tmp.file('mars');
    this.runDir = this.tmp.file('run');
    mkdirSync(this.runDir);
  }

  /** The pipe transport's options for a host of a TestCluster. */
  get pipeOptions(): string[] {
    if (!this.cluster) return [];
    return ['--pipe-root', path.join(this.cluster, '{host}', 'mars'), '--pipe-run-dir', path.join(this.cluster, '{host}', 'run')];
  }

  /** marsadm in this process, with this host's --root and --host. */
  async marsadm(...argv: string[]): Promise<RunResult> {
    const out = new PassThrough(), err = new PassThrough();
    let o = '', e = '';
    out.on('data', (d: Buffer) => (o += d.toString()));
    err.on('data', (d: Buffer) => (e += d.toString()));
    const code = await main([...argv, '--root', this.root, '--host', this.name], out, err);
    return { code, out: o, err: e };
  }

  /** Like marsadm(), but fails the test unless the command succeeded. */
  async ok(...argv: string[]): Promise<string> {
    const r = await this.marsadm(...argv);
    if (r.code !== 0) throw new Error(`marsadm ${argv.join(' ')} exited ${r.code}: ${r.err}`);
    return r.out;
  }

  /** `marsadm get-link <key>`'s value, '' when the key does not exist (polled by tests). */
  async getLink(key: string): Promise<string> {
    return (await this.marsadm('get-link', key)).out.trim();
  }

  socket(res: string): string {
    return path.join(this.runDir, `${res}.nbd`);
  }

  /** Start the daemon and wait until it says it started. */
  async startDaemon(): Promise<void> {
    const child = spawn(process.execPath, [MARSADM, 'daemon', '--root', this.root, '--host', this.name, '--run-dir', this.runDir,
      ...this.pipeOptions], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.daemon = child;
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        this.daemonLog += d.toString();
        if (this.daemonLog.includes(': started on ')) resolve();
      };
      child.stderr!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`daemon exited ${code} before starting:\n${this.daemonLog}`)));
    }).finally(() => {
      if (process.env['PHOBOS_TEST_DAEMON_LOG']) child.stderr!.on('data', (d: Buffer) => process.stderr.write(d));
    });
  }

  /** Stop the daemon with sig (SIGTERM: clean; SIGKILL: a crash) and wait for it to exit. */
  async stopDaemon(sig: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.daemon;
    if (!child) return;
    this.daemon = null;
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(sig);
      await exited;
    }
  }

  async remove(): Promise<void> {
    await this.stopDaemon('SIGKILL');
    this.tmp.remove();
  }
}

function subDir(base: string, name: string): TempDir {
  const dir = path.join(base, name);
  mkdirSync(dir, { recursive: true });
  return { dir, file: (f) => path.join(dir, f), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Poll until check() holds, or fail after timeoutMs naming what. */
export async function eventually(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10000): Promise<void> {
  const started = Date.now();
  while (!(await check())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
