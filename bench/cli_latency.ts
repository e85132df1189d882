/**
 * cli-latency: wall time of `marsadm view --json` on a tree with 1000 resources (target
 * <= 150 ms median), against starting Node with an empty script in the same run. Also
 * the view without its cache (PHOBOS_VIEW_CACHE=off: every directory listed), and with one
 * link changed before each run (its directory listed again, the cache rewritten).
 * PHOBOS_BENCH_MARSADM=<copy>/dist/src/cli/main.js times a copy of a build instead of dist/.
 */
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

import { dataKey, deviceKey, MarsTree, primaryKey, sizeKey, todoKey, actualKey } from '../src/tree/index.js';
import { benchHost, MARSADM } from './cluster_setup.js';
import { report } from './report.js';

const RESOURCES = 1000;
const RUNS = 11;
const TIMED_MARSADM = process.env['PHOBOS_BENCH_MARSADM'] ?? MARSADM;

/**
 * The median ms of each function over RUNS rounds; each round runs every one once, so a
 * change of load hits all alike. `before` runs ahead of each function, untimed.
 */
async function mediansMs(...fns: { before?: () => Promise<unknown>; run: () => void }[]): Promise<number[]> {
  const times = fns.map((): number[] => []);
  for (let i = 0; i < RUNS; i++) {
    for (const [j, fn] of fns.entries()) {
      await fn.before?.();
      const t = performance.now();
      fn.run();
      times[j]!.push(performance.now() - t);
    }
  }
  return times.map((t) => t.sort((a, b) => a - b)[Math.floor(RUNS / 2)]!);
}

export async function runCliLatency(): Promise<void> {
  const host = benchHost();
  try {
    host.marsadm('create-cluster');
    const tree = await MarsTree.open({ root: host.env['MARS_ROOT']!, host: 'bench' });
    for (let i = 0; i < RESOURCES; i++) {
      const res = `r${i}`;
      await tree.set(sizeKey(res), String(1 << 30));
      await tree.set(dataKey(res, 'bench'), `/dev/vg/${res}`);
      await tree.set(deviceKey(res, 'bench'), res);
      await tree.set(primaryKey(res), 'bench');
      for (const sw of ['attach', 'connect', 'sync', 'allow-replay'] as const) await tree.set(todoKey(res, 'bench', sw), '1');
      await tree.set(actualKey(res, 'bench', 'is-attached'), '1');
    }
    const view = (env: NodeJS.ProcessEnv) => () => {
      const r = spawnSync(process.execPath, [TIMED_MARSADM, 'view', '--json'], { env, encoding: 'utf8', maxBuffer: 64 << 20 });
      if (r.status !== 0) throw new Error(r.stderr);
      const resources = (JSON.parse(r.stdout) as { resources: unknown[] }).resources.length;
      if (resources !== RESOURCES) throw new Error(`view listed ${resources} resources, expected ${RESOURCES}`);
    };
    // A view fills the cache; the tree's directories are then more than 2 s old (trusted).
    view(host.env)();
    await sleep(2500);
    let round = 0;
    const [cached, uncached, oneChange, node] = await mediansMs(
      { run: view(host.env) },
      { run: view({ ...host.env, PHOBOS_VIEW_CACHE: 'off' }) },
      { before: () => tree.set(sizeKey(`r${round++ % RESOURCES}`), String(2 ** 31)), run: view(host.env) },
      { run: () => spawnSync(process.execPath, ['-e', ''], { encoding: 'utf8' }) });
    report('cli-latency-view-json', cached!, 'ms', node!, `median of ${RUNS} runs of marsadm view --json on ${RESOURCES} resources (target <= 150 ms); baseline node -e '' startup`);
    // What marsadm adds to node's start-up, which alone is most of the target on a small VM.
    report('cli-latency-view-json-over-node', cached! - node!, 'ms', null, "median of the view minus median of node -e '' (same rounds)");
    report('cli-latency-view-json-uncached', uncached!, 'ms', cached!, 'PHOBOS_VIEW_CACHE=off: every directory listed; baseline the view with its cache');
    report('cli-latency-view-json-one-change', oneChange!, 'ms', cached!, 'one link set before each run (a changed directory since the last view); baseline the view with nothing changed');
  } finally {
    await host.close();
  }
}
