/**
 * Several TestHosts as one cluster on this machine: separate roots under one temp dir,
 * daemons that reach each other over the pipe transport (docs/peer-protocol.md).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

import { tempDir, type TempDir } from './tmp.js';
import { TestHost } from './test_host.js';

export class TestCluster {
  readonly hosts: TestHost[];

  private constructor(readonly base: TempDir, names: readonly string[]) {
    this.hosts = names.map((n) => new TestHost(n, base.dir));
  }

  /** create-cluster on the first host, join-cluster on the others, every daemon started. */
  static async create(names: readonly string[]): Promise<TestCluster> {
    const cluster = new TestCluster(tempDir('phobos-cluster-'), names);
    const [first, ...rest] = cluster.hosts;
    await first!.ok('create-cluster');
    for (const h of rest) await h.ok('join-cluster', first!.name, ...h.pipeOptions);
    await Promise.all(cluster.hosts.map((h) => h.startDaemon()));
    return cluster;
  }

  host(name: string): TestHost {
    const h = this.hosts.find((x) => x.name === name);
    if (!h) throw new Error(`no host ${name} in this cluster`);
    return h;
  }

  async remove(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.stopDaemon('SIGKILL')));
    this.base.remove();
  }
}

export function sha256File(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
