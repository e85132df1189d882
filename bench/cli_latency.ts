/**
 * cli-latency: wall time of `marsadm view --json` on a tree with 1000 resources (target
 * <= 150 ms median), against starting Node with an empty script in the same run.
 */
import { spawnSync } from 'node:child_process';

import { dataKey, deviceKey, MarsTree, primaryKey, sizeKey, todoKey, actualKey } from '../src/tree/index.js';
import { benchHost, MARSADM } from './cluster_setup.js';
import { report } from './report.js';

const RESOURCES = 1000;
const RUNS = 11;

function medianMs(fn: () => void): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    fn();
    times.push(performance.now() - t);
  }
  return times.sort((a, b) => a - b)[Math.floor(RUNS / 2)]!;
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
    let resources = 0;
    const view = medianMs(() => {
      const r = spawnSync(process.execPath, [MARSADM, 'view', '--json'], { env: host.env, encoding: 'utf8', maxBuffer: 64 << 20 });
      if (r.status !== 0) throw new Error(r.stderr);
      resources = (JSON.parse(r.stdout) as { resources: unknown[] }).resources.length;
    });
    if (resources !== RESOURCES) throw new Error(`view listed ${resources} resources, expected ${RESOURCES}`);
    const node = medianMs(() => spawnSync(process.execPath, ['-e', ''], { encoding: 'utf8' }));
    report('cli-latency-view-json', view, 'ms', node, `median of ${RUNS} runs of marsadm view --json on ${RESOURCES} resources (target <= 150 ms); baseline node -e '' startup`);
  } finally {
    await host.close();
  }
}
