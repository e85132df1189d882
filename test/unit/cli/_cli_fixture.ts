/**
 * Running marsadm in-process (main() with captured stdout/stderr) against a tree in a
 * temp directory that the test builds and changes by hand, as the daemon would.
 */
import { PassThrough } from 'node:stream';

import { main } from '../../../src/cli/main.js';
import { dataKey, formatStamp, hostActualKey, MarsTree, sizeKey, UUID_KEY } from '../../../src/tree/index.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

export interface CliResult {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

export async function marsadm(...argv: string[]): Promise<CliResult> {
  const out = new PassThrough(), err = new PassThrough();
  let o = '', e = '';
  out.on('data', (d: Buffer) => (o += d.toString()));
  err.on('data', (d: Buffer) => (e += d.toString()));
  const code = await main(argv, out, err);
  return { code, out: o, err: e };
}

export interface TreeFixture {
  readonly tmp: TempDir;
  readonly root: string;
  /** The tree as `host` (the host marsadm acts as). */
  readonly tree: MarsTree;
  /** The same root as another host, to write that host's keys. */
  as(host: string): Promise<MarsTree>;
  /** `--root R --host H` for marsadm. */
  readonly args: readonly string[];
  remove(): void;
}

/** A cluster tree with resource `res` of `sizeBytes` whose members are `hosts` (the first is this host). */
export async function treeFixture(res: string, hosts: readonly string[], sizeBytes = 1 << 20): Promise<TreeFixture> {
  const tmp = tempDir('phobos-cli-');
  const root = tmp.file('mars');
  const open = (host: string) => MarsTree.open({ root, host, create: true, requireCluster: false });
  const tree = await open(hosts[0]!);
  await tree.set(UUID_KEY, '01234567-89ab-cdef-0123-456789abcdef');
  await tree.set(sizeKey(res), String(sizeBytes));
  for (const h of hosts) await (await open(h)).set(dataKey(res, h), `/dev/disk-${h}`);
  return { tmp, root, tree, as: open, args: ['--root', root, '--host', hosts[0]!], remove: () => tmp.remove() };
}

/** Publish the daemon's liveness for host, as its main loop does. */
export async function daemonBeat(tree: MarsTree): Promise<void> {
  await tree.set(hostActualKey(tree.host, 'alive'), '1');
  await tree.set(hostActualKey(tree.host, 'time'), formatStamp(await tree.stamp()));
}
