/**
 * ship (pipe transport): log shipping throughput from a primary to a secondary. The
 * secondary's fetching is paused while 512 MiB are written through the primary's export,
 * so the log holds them; then fetching resumes and we time until the secondary's copy of
 * the log reaches the primary's size (target >= 1 GB/s). Replay is paused on the
 * secondary meanwhile, so the figure is the transfer alone (2 cores are shared by both
 * daemons, peer-serve and this process).
 *
 * Baseline, same run: the same log file's bytes through a pipe between two processes into
 * a file (`cat log | cat > copy`), the raw pipe + page-cache cost. Best of three, and the
 * later runs reuse the page-cache pages the earlier copy freed. The transfer cannot: the
 * secondary's copy needs pages nobody touched lately, and on the benchmark VM those fault
 * in slowly (writing a new 512 MiB file after a few idle seconds ran at 300-700 MB/s,
 * warm 3-4 GB/s). So a second figure compares with the first copy alone, which pays the
 * same.
 *
 * PHOBOS_BENCH_PROFILE=<dir>: daemons and their peer-serve children write CPU profiles there
 * (bench/_cpu_profile.cjs; bench/_profile_top.ts summarises them).
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, openSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';

import { NbdClient } from '../src/nbd/index.js';
import {
  BenchCluster, commandLine, cpuShares, cpuTicks, profileOptions, profileWindow, sleep, until, type BenchNode,
} from './_cluster.js';
import { report } from './report.js';

const RES = 'ship';
/** Small device, written over several times: the log grows, the initial sync stays cheap. */
const DEVICE = 64 << 20;
const WRITE_BYTES = 512 << 20;
const WRITE_SIZE = 1 << 20;
const INFLIGHT = 16;

function logPath(n: BenchNode, origin: string): string {
  return path.join(n.root, `resource-${RES}`, `log-000000001-${origin}`);
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Fill the primary's log with WRITE_BYTES of incompressible data through its export. */
async function fillLog(primary: BenchNode): Promise<void> {
  const device = await NbdClient.connect(primary.socket(RES), RES);
  const bufs = Array.from({ length: 8 }, () => randomFillSync(Buffer.alloc(WRITE_SIZE)));
  let next = 0;
  const count = WRITE_BYTES / WRITE_SIZE;
  await Promise.all(Array.from({ length: INFLIGHT }, async () => {
    while (next < count) {
      const i = next++;
      await device.write((i * WRITE_SIZE) % DEVICE, bufs[i % bufs.length]!);
    }
  }));
  await device.flush();
  await device.disconnect();
}

/** Seconds for `cat log | cat > copy`: two processes, one pipe, a file written. */
function pipeBaselineSeconds(log: string, dir: string): number {
  const copy = path.join(dir, 'baseline-copy');
  const t = performance.now();
  const r = spawnSync('sh', ['-c', 'cat "$1" | cat > "$2"', 'sh', log, copy]);
  const seconds = (performance.now() - t) / 1000;
  if (r.status !== 0) throw new Error(`baseline copy failed: ${r.stderr.toString()}`);
  rmSync(copy, { force: true });
  return seconds;
}

/** 'alpha daemon', 'peer-serve alpha (for beta)' by pid. */
function processLabels(cluster: BenchCluster): Map<number, string> {
  const labels = new Map<number, string>();
  for (const n of cluster.nodes) {
    for (const pid of n.processTree()) {
      const served = /--host (\S+) peer-serve/.exec(commandLine(pid))?.[1];
      labels.set(pid, served ? `peer-serve ${served} (for ${n.name})` : `${n.name} daemon`);
    }
  }
  return labels;
}

export async function runShip(): Promise<void> {
  const cluster = await BenchCluster.create(['alpha', 'beta'], profileOptions());
  try {
    const [alpha, beta] = cluster.nodes as [BenchNode, BenchNode];
    for (const n of cluster.nodes) closeSync(openSync(n.file('disk'), 'w'));
    await alpha.marsadm('create-resource', RES, alpha.file('disk'), String(DEVICE));
    await until('beta to learn of the resource and the primary\'s log position',
      async () => (await beta.tryGet(`resource-${RES}/size`)) === String(DEVICE) && (await beta.tryGet(`resource-${RES}/replay-alpha`)) !== '');
    await beta.marsadm('join-resource', RES, beta.file('disk'));
    await beta.marsadm('pause-fetch', RES);
    await beta.marsadm('pause-replay', RES);
    await until('beta to stop fetching', async () => (await beta.get(`resource-${RES}/actual-beta/is-copying`)) === '0');

    await fillLog(alpha);
    spawnSync('sync');
    await sleep(2000); // let the primary's writeback finish: it would compete for the CPU
    const source = logPath(alpha, 'alpha');
    const copy = logPath(beta, 'alpha');
    const target = sizeOf(source);
    const start = sizeOf(copy);

    const pids = cluster.nodes.flatMap((n) => n.processTree());
    const cpuBefore = cpuTicks(pids);
    profileWindow(pids); // profile the transfer only
    const t = performance.now();
    await beta.marsadm('resume-fetch', RES);
    await until('beta\'s copy of the log to reach the primary\'s size', () => sizeOf(copy) >= target, 120_000, 5);
    const seconds = (performance.now() - t) / 1000;
    profileWindow(pids);
    if (process.env['PHOBOS_BENCH_VERBOSE']) {
      console.error(`ship: ${seconds.toFixed(2)} s; CPU: ${cpuShares(cpuBefore, cpuTicks(pids), seconds, processLabels(cluster))}`);
    }
    const shipped = target - start;

    // The VM's file writes are noisy: the best of three is the fairer baseline.
    const copies = [0, 1, 2].map(() => pipeBaselineSeconds(source, alpha.dir));
    report('ship-pipe', shipped / 1e6 / seconds, 'MB/s', target / 1e6 / Math.min(...copies),
      `${(shipped / 2 ** 20).toFixed(0)} MiB of log fetched by a paused secondary after resume-fetch, pipe transport, replay paused ` +
      `(target >= 1000 MB/s); baseline: the same log file through \`cat | cat > file\` (page cache, best of 3)`);
    report('ship-pipe-fresh-pages', shipped / 1e6 / seconds, 'MB/s', target / 1e6 / copies[0]!,
      'the same transfer; baseline: the first of the three copies alone, which like the transfer writes into page-cache ' +
      'pages nobody touched lately (the later copies reuse the pages the first one freed)');
  } finally {
    await cluster.close();
  }
}
