/** A throwaway one-host cluster for benchmarks: tree, daemon (compiled dist/), cleanup. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import path from 'node:path';

export const MARSADM = new URL('../dist/src/cli/main.js', import.meta.url).pathname;

export interface BenchHost {
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  marsadm(...args: string[]): string;
  startDaemon(): Promise<void>;
  close(): Promise<void>;
}

export function benchHost(base = process.env['PHOBOS_BENCH_DIR'] ?? '/var/tmp'): BenchHost {
  const dir = mkdtempSync(path.join(base, 'phobos-bench-'));
  const env = { ...process.env, MARS_ROOT: path.join(dir, 'mars'), MARS_HOST: 'bench', PHOBOS_RUN_DIR: path.join(dir, 'run') };
  let daemon: ChildProcess | null = null;
  return {
    dir,
    env,
    marsadm(...args) {
      const r = spawnSync(process.execPath, [MARSADM, ...args], { env, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`marsadm ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    },
    startDaemon() {
      daemon = spawn(process.execPath, [MARSADM, 'daemon'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
      let log = '';
      return new Promise((resolve, reject) => {
        daemon!.stderr!.on('data', (d: Buffer) => {
          log += d.toString();
          if (log.includes(': started on ')) resolve();
        });
        daemon!.once('exit', (code) => reject(new Error(`daemon exited ${code}: ${log}`)));
      });
    },
    async close() {
      if (daemon && daemon.exitCode === null) {
        const exited = new Promise((r) => daemon!.once('exit', r));
        daemon.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
