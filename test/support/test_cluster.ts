/**
 * Several TestHosts as one cluster on this machine: separate roots under one temp dir,
 * daemons that reach each other over the pipe transport (docs/peer-protocol.md).
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { tempDir, type TempDir } from './tmp.js';
import { TestHost } from './test_host.js';

export class TestCluster {
  readonly hosts: TestHost[];

  private constructor(readonly base: TempDir, names: readonly string[]) {
    this.hosts = names.map((n) => new TestHost(n, base.dir));
  }

  /**
   * create-cluster on the first host, join-cluster on the others, every daemon started.
   * `prepare` runs for each host first (e.g. to mount a small filesystem on its root).
   */
  static async create(names: readonly string[], prepare?: (h: TestHost) => void): Promise<TestCluster> {
    const cluster = new TestCluster(tempDir('phobos-cluster-'), names);
    for (const h of cluster.hosts) prepare?.(h);
    const [first, ...rest] = cluster.hosts;
    await first!.ok('create-cluster');
    for (const h of rest) await h.ok('join-cluster', first!.name, ...h.pipeOptions);
    await Promise.all(cluster.hosts.map((h) => h.startDaemon()));
    return cluster;
  }

  /** A fresh sparse file of `bytes` as each host's disk, at h.tmp.file('disk'). */
  makeDisks(bytes: number): void {
    for (const h of this.hosts) {
      closeSync(openSync(h.tmp.file('disk'), 'w'));
      truncateSync(h.tmp.file('disk'), bytes);
    }
  }

  host(name: string): TestHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name} in this cluster`);
    return h;
  }

  /**
   * Cut the links between a and b in both directions (the pipe transport's cut markers,
   * src/peer/pipe_transport.ts): connects fail and open links close within 200 ms.
   */
  cut(a: TestHost, b: TestHost): void {
    writeFileSync(path.join(a.runDir, `cut-${b.name}`), '');
    writeFileSync(path.join(b.runDir, `cut-${a.name}`), '');
  }

  /**
   * cut(), then wait until it has taken effect: the pipe transport closes a running
   * connection when its poll sees the marker (CUT_POLL_MS, 200 ms), so a command run at
   * once could still reach the other side.
   */
  async cutNow(a: TestHost, b: TestHost): Promise<void> {
    this.cut(a, b);
    await new Promise((r) => setTimeout(r, 600));
  }

  heal(a: TestHost, b: TestHost): void {
    rmSync(path.join(a.runDir, `cut-${b.name}`), { force: true });
    rmSync(path.join(b.runDir, `cut-${a.name}`), { force: true });
  }

  /** Cut `h` off from every other host. */
  isolate(h: TestHost): void {
    for (const other of this.hosts) if (other !== h) this.cut(h, other);
  }

  rejoin(h: TestHost): void {
    for (const other of this.hosts) if (other !== h) this.heal(h, other);
  }

  /**
   * SIGKILL the daemons, then wait for the peer-serves they started to go with their
   * connections (at most 5 s); any still running then are killed and named on stderr:
   * every process a test starts ends with it.
   */
  async remove(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.stopDaemon('SIGKILL')));
    const left = await processesUnder(this.base.dir, 5000);
    for (const p of left) {
      process.stderr.write(`TestCluster: ${p.pid} outlived its daemon, killed: ${p.args}\n`);
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch { /* gone meanwhile */ }
    }
    this.base.remove();
  }
}

/** Processes whose command line names `dir`, once none is left or after `waitMs`. */
async function processesUnder(dir: string, waitMs: number): Promise<{ pid: number; args: string }[]> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const found: { pid: number; args: string }[] = [];
    for (const name of readdirSync('/proc')) {
      if (!/^[0-9]+$/.test(name) || Number(name) === process.pid) continue;
      let args: string;
      try {
        args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').join(' ');
      } catch {
        continue;
      }
      if (args.includes(dir)) found.push({ pid: Number(name), args: args.slice(0, 200) });
    }
    if (found.length === 0 || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
