/**
 * propagate (pipe transport), 3 hosts:
 *  - latency from a tree set on alpha to the change being in beta's and gamma's trees,
 *    timed by TreeWatchers in this process on their roots; p50 and p99 of 200 changes.
 *    Baseline: the same watcher's latency for a set on beta's own tree.
 *  - idle CPU of each host (daemon + its peer-serve children, from /proc) over 20 s with
 *    RESOURCES resources (200; PHOBOS_BENCH_RESOURCES) served by alpha, in every host's tree
 *    (beta and gamma are not members: see createResources) (target <= 2 %
 *    of one core per host). Baseline: the same hosts idle with no resource, over 10 s.
 */
import { closeSync, openSync, truncateSync } from 'node:fs';

import {
  dataKey, deviceKey, MarsTree, primaryKey, sizeKey, todoKey, TreeWatcher,
} from '../src/tree/index.js';
import { BenchCluster, cpuTicks, profileOptions, profileWindow, sleep, until, type BenchNode } from './_cluster.js';
import { report } from './report.js';
import { countChurn } from './_tree_churn.js';

const CHANGES = 200;
/**
 * The issue asks for 1000; bringing up 1000 served resources takes the daemon over 4
 * minutes here (~4/s, slowing as it grows), so the default is what fits the bench's time.
 */
const RESOURCES = Number(process.env['PHOBOS_BENCH_RESOURCES'] ?? 200);
const RESOURCE_BYTES = 1 << 20;
const IDLE_SECONDS = 20;
const BASELINE_IDLE_SECONDS = 10;
const TICKS_PER_SECOND = 100;

/** Arrival times (performance.now()) of values of one key, per watched root. */
class Arrivals {
  private readonly seen = new Map<string, number>();
  private constructor(private readonly watcher: TreeWatcher) {}

  static async watch(root: string, key: string): Promise<Arrivals> {
    let self: Arrivals | null = null;
    const watcher = await TreeWatcher.start({
      root,
      onChange: (c) => {
        if (c.kind === 'set' && c.key === key && c.value !== null) self?.seen.set(c.value, performance.now());
      },
    });
    self = new Arrivals(watcher);
    return self;
  }

  at(value: string): number | undefined {
    return this.seen.get(value);
  }

  close(): void {
    this.watcher.close();
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Latencies (ms) of CHANGES sets on `writer`'s tree until every watcher saw them. */
async function latencies(writer: BenchNode, watchers: Arrivals[], key: string): Promise<number[]> {
  const tree = await MarsTree.open({ root: writer.root, host: writer.name });
  const out: number[] = [];
  for (let i = 0; i < CHANGES; i++) {
    const value = `v${i}`;
    const t = performance.now();
    await tree.set(key, value);
    await until(`change ${i} to arrive`, () => watchers.every((w) => w.at(value) !== undefined), 10_000, 1);
    for (const w of watchers) out.push(w.at(value)! - t);
    await sleep(5 + (i % 7)); // not in lockstep with any timer
  }
  return out.sort((a, b) => a - b);
}

/** % of one core used by each host's daemon and its peer-serve children over `seconds`. */
async function idleCpu(cluster: BenchCluster, seconds: number, profile: boolean): Promise<number[]> {
  const trees = cluster.nodes.map((n) => n.processTree());
  const before = trees.map((pids) => cpuTicks(pids));
  if (profile) profileWindow(trees.flat());
  const changes = await countChurn(cluster.nodes.map((n) => ({ name: n.name, root: n.root })));
  await sleep(seconds * 1000);
  if (process.env['PHOBOS_BENCH_VERBOSE']) console.error(`propagate: tree changes while idle: ${changes.stop().join('; ')}`);
  else changes.stop();
  if (profile) profileWindow(trees.flat());
  // Processes that came or went meanwhile (a peer-serve restarted) count from 0 / are lost.
  const after = cluster.nodes.map((n) => cpuTicks(n.processTree()));
  return after.map((now, h) => {
    let ticks = 0;
    for (const [pid, t] of now) ticks += t - (before[h]!.get(pid) ?? 0);
    return (100 * ticks) / TICKS_PER_SECOND / seconds;
  });
}

/**
 * RESOURCES resources with alpha primary: the keys create-resource writes, written
 * directly (one create-resource run per resource waits for its primary each time). Beta
 * and gamma see them in their trees but are not members: 2 x 200 concurrent
 * join-resource runs stalled (no sync progress for 60 s) and sequential ones do not fit.
 */
async function createResources(cluster: BenchCluster): Promise<void> {
  const [alpha, beta, gamma] = cluster.nodes as [BenchNode, BenchNode, BenchNode];
  const tree = await MarsTree.open({ root: alpha.root, host: alpha.name });
  const names = Array.from({ length: RESOURCES }, (_, i) => `r${String(i).padStart(4, '0')}`);
  for (const n of [alpha]) {
    for (const res of names) {
      closeSync(openSync(n.file(`${res}.disk`), 'w'));
      truncateSync(n.file(`${res}.disk`), RESOURCE_BYTES);
    }
  }
  for (const res of names) {
    await tree.set(sizeKey(res), String(RESOURCE_BYTES));
    await tree.set(dataKey(res, alpha.name), alpha.file(`${res}.disk`));
    await tree.set(deviceKey(res, alpha.name), res);
    for (const sw of ['connect', 'sync', 'allow-replay'] as const) await tree.set(todoKey(res, alpha.name, sw), '1');
    await tree.set(primaryKey(res), alpha.name);
    await tree.set(todoKey(res, alpha.name, 'attach'), '1');
  }
  const last = names[names.length - 1]!;
  const progress = setInterval(() => {
    if (!process.env['PHOBOS_BENCH_VERBOSE']) return;
    void Promise.all(names.map((r) => alpha.tryGet(`resource-${r}/actual-alpha/is-primary`))).then((v) =>
      console.error(`propagate: ${v.filter((x) => x === '1').length} of ${RESOURCES} primary on alpha`));
  }, 5000);
  await until('alpha to serve every resource and the others to see it', async () =>
    (await alpha.tryGet(`resource-${last}/actual-alpha/is-primary`)) === '1' &&
    (await beta.tryGet(`resource-${last}/replay-alpha`)) !== '' && (await gamma.tryGet(`resource-${last}/replay-alpha`)) !== '', 240_000, 200).finally(() => clearInterval(progress));
}

export async function runPropagate(): Promise<void> {
  const cluster = await BenchCluster.create(['alpha', 'beta', 'gamma'], profileOptions());
  const watchers: Arrivals[] = [];
  try {
    const [alpha, beta, gamma] = cluster.nodes as [BenchNode, BenchNode, BenchNode];
    const remoteKey = `defaults-${alpha.name}/bench-probe`;
    const localKey = `defaults-${beta.name}/bench-probe`;
    watchers.push(await Arrivals.watch(beta.root, remoteKey), await Arrivals.watch(gamma.root, remoteKey));
    const local = await Arrivals.watch(beta.root, localKey);
    watchers.push(local);
    await sleep(1000); // links up, initial subscriptions done
    const remote = await latencies(alpha, watchers.slice(0, 2), remoteKey);
    const baseline = await latencies(beta, [local], localKey);
    for (const p of [50, 99]) {
      report(`propagate-p${p}`, percentile(remote, p), 'ms', percentile(baseline, p),
        `set on alpha (MarsTree.set) until a TreeWatcher on beta's and on gamma's tree saw it, ${CHANGES} changes, pipe transport; ` +
        'baseline: the same watcher seeing a set on its own tree');
    }
    for (const w of watchers.splice(0)) w.close();

    const quiet = await idleCpu(cluster, BASELINE_IDLE_SECONDS, false);
    const t = performance.now();
    await createResources(cluster);
    const setupSeconds = (performance.now() - t) / 1000;
    await sleep(5000); // let the last publications settle
    const busy = await idleCpu(cluster, IDLE_SECONDS, true);
    cluster.nodes.forEach((n, h) => {
      report(`propagate-idle-cpu-${n.name}`, busy[h]!, '% of a core', quiet[h]!,
        `${n.name}'s daemon + its peer-serve children over ${IDLE_SECONDS} s idle with ${RESOURCES} resources ` +
        `(served by alpha, in every tree, beta and gamma not members; set up in ${setupSeconds.toFixed(0)} s) (target <= 2 %); ` +
        `baseline: the same with no resource, over ${BASELINE_IDLE_SECONDS} s`);
    });
  } finally {
    for (const w of watchers) w.close();
    await cluster.close();
  }
}
