/**
 * propagate-ssh: 3 hosts in network namespaces, daemons talking over the real SSH
 * transport (bench/_ssh_lab.ts).
 *
 *  - Latency from a tree set on alpha (MarsTree.set on alpha's root, what `marsadm
 *    set-link` does, minus node's start-up) until TreeWatchers in this process on beta's
 *    and gamma's roots see it; p50 and p99 over 200 changes x 2 watchers (target p99 <=
 *    50 ms). Baseline: the same watcher seeing a set on its own tree (local latency).
 *  - Idle CPU per host with RESOURCES (1000; PHOBOS_BENCH_RESOURCES) resources, alpha
 *    primary of all of them, beta and gamma secondaries of all of them (PHOBOS_BENCH_MEMBERS
 *    =primary-only: beta and gamma see them in the tree but are not members, as in the
 *    pipe bench): % of one core used over 300 s (PHOBOS_BENCH_IDLE_SECONDS) by every process in the host's namespace
 *    (daemon, the peer-serves sshd started for the other hosts, sshd sessions), from
 *    /proc (target <= 2 %). Baseline: the same hosts idle with no resource, over 10 s.
 *    Then the same over the next 300 s (`-steady`): the first window also holds the one-time
 *    work of the first safety-net rescans after 1000 resources appeared (each directory's
 *    version recorded, docs/tree.md "Watching"), the second only what recurs.
 *    Then the latency again, with the resources in place (200 changes: PHOBOS_BENCH_LOADED_CHANGES).
 *
 * Creating the resources: one create-resource / join-resource run per resource waits for
 * the daemon each time (4 min for 1000 served by one host, over the pipe transport). Here
 * the daemons are stopped, the keys those commands write are written straight into each
 * host's own tree (alpha: size, data, device, todo switches, primary, attach, as
 * create-resource does; beta and gamma: replay position at the start of alpha's first
 * log, sync-target, device, switches, data, as join-resource does), and the daemons are
 * started again: they bring the resources up together, the tree travels over SSH as
 * usual. One difference from join-resource: `syncstatus-<host>` is written as the size
 * (sync done) instead of 0, since all disks are fresh sparse files of zeros, identical
 * already; a fast full sync of them would compare digests and copy nothing.
 */
import { closeSync, openSync, truncateSync } from 'node:fs';
import path from 'node:path';

import { replayValue } from '../src/replication/log_names.js';
import {
  actualKey, dataKey, deviceKey, primaryKey, replayKey, resourceKey, sizeKey, todoKey, TreeWatcher,
} from '../src/tree/index.js';
import { commandLine, profileWindow, sleep } from './_cluster.js';
import { commOf, percentile, SshLab, ticksOf, verbose, waitUntil } from './_ssh_lab.js';
import { report } from './report.js';
import { countChurn } from './_tree_churn.js';

const HOSTS = ['alpha', 'beta', 'gamma'] as const;
const CHANGES = 200;
/**
 * As many as without resources: with 30 (when a change could take seconds), p99 was the
 * largest of 60 samples, which one unlucky change decided.
 */
const LOADED_CHANGES = Number(process.env['PHOBOS_BENCH_LOADED_CHANGES'] ?? CHANGES);
const RESOURCES = Number(process.env['PHOBOS_BENCH_RESOURCES'] ?? 1000);
const MEMBERS = process.env['PHOBOS_BENCH_MEMBERS'] === 'primary-only' ? 'primary-only' : 'all';
const RESOURCE_BYTES = 1 << 20;
/**
 * The idle window: 5 minutes, so it holds one of each periodic safety net (the daemon's
 * full pass, each peer link's resync from 0, every 5 min) and two or three rounds of the
 * replicas' 120 s idle wake-ups. A shorter window measured whichever of them it happened
 * to catch: the same code gave 9-20 % depending on where the 5-minute work fell.
 */
const IDLE_SECONDS = Number(process.env['PHOBOS_BENCH_IDLE_SECONDS'] ?? 300);
const BASELINE_IDLE_SECONDS = 10;
const TICKS_PER_SECOND = 100;

/** Arrival times (performance.now()) of values of one key, per watched root. */
class Arrivals {
  private readonly seen = new Map<string, number>();
  private watcher: TreeWatcher | null = null;

  static async watch(root: string, key: string): Promise<Arrivals> {
    const self = new Arrivals();
    self.watcher = await TreeWatcher.start({
      root,
      onChange: (c) => {
        if (c.kind === 'set' && c.key === key && c.value !== null) self.seen.set(c.value, performance.now());
      },
    });
    return self;
  }

  at(value: string): number | undefined {
    return this.seen.get(value);
  }

  close(): void {
    this.watcher?.close();
  }
}

/** Latencies (ms) of CHANGES sets on `writer`'s tree until every watcher saw them. */
/**
 * With -v: CPU ticks of every process of the three hosts (and this one, whose watchers
 * are part of the path) every 50 ms, so that a slow change can be matched to whoever was
 * busy while it travelled.
 */
class BusySampler {
  private readonly samples: { at: number; ticks: Map<number, number> }[] = [];
  private timer: NodeJS.Timeout | null = null;

  private constructor(private readonly labels: Map<number, string>) {}

  static async start(lab: SshLab): Promise<BusySampler | null> {
    if (!process.env['PHOBOS_BENCH_VERBOSE']) return null;
    const labels = new Map<number, string>([[process.pid, 'bench']]);
    for (const h of HOSTS) {
      for (const pid of await lab.namespacePids(h)) labels.set(pid, `${h} ${kindOf(pid)}(${pid})`);
    }
    const self = new BusySampler(labels);
    const sample = (): void => void self.samples.push({ at: performance.now(), ticks: ticksOf([...labels.keys()]) });
    sample();
    self.timer = setInterval(sample, 50);
    return self;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Who used CPU between from and to (performance.now()): `label ticks`, busiest first. */
  busyIn(from: number, to: number): string {
    const first = [...this.samples].reverse().find((s) => s.at <= from) ?? this.samples[0];
    const last = this.samples.find((s) => s.at >= to) ?? this.samples.at(-1);
    if (!first || !last) return '';
    const used = [...this.labels].map(([pid, label]) => [label, (last.ticks.get(pid) ?? 0) - (first.ticks.get(pid) ?? 0)] as const);
    return used.filter(([, t]) => t > 0).sort((a, b) => b[1] - a[1]).slice(0, 5).map(([l, t]) => `${l} ${t}`).join(', ');
  }
}

async function latencies(lab: SshLab, writer: string, watchers: Arrivals[], key: string, tag: string, changes: number): Promise<number[]> {
  const tree = await lab.tree(writer);
  const out: number[] = [];
  const slowest: { i: number; at: number; ms: string; busy: string }[] = [];
  const sampler = await BusySampler.start(lab);
  const start = performance.now();
  for (let i = 0; i < changes; i++) {
    const value = `${tag}${i}`;
    const t = performance.now();
    await tree.set(key, value);
    await waitUntil(`change ${i} to arrive`, () => watchers.every((w) => w.at(value) !== undefined), 60_000, 1);
    const ms = watchers.map((w) => w.at(value)! - t);
    out.push(...ms);
    slowest.push({ i, at: (t - start) / 1000, ms: ms.map((m) => m.toFixed(1)).join('/'), busy: '' });
    if (sampler) slowest.at(-1)!.busy = sampler.busyIn(t, t + Math.max(...ms));
    await sleep(5 + (i % 7)); // not in lockstep with any timer
  }
  sampler?.stop();
  slowest.sort((a, b) => Math.max(...b.ms.split('/').map(Number)) - Math.max(...a.ms.split('/').map(Number)));
  verbose(`propagate-ssh: ${tag}: ${changes} changes over ${((performance.now() - start) / 1000).toFixed(1)} s; slowest:\n` +
    slowest.slice(0, 8).map((x) => `  #${x.i} at ${x.at.toFixed(2)} s ${x.ms} ms; busy meanwhile (ticks): ${x.busy}`).join('\n'));
  return out.sort((a, b) => a - b);
}

interface HostCpu {
  percent: number;
  /** The biggest users: `comm(pid) N %`. */
  top: string;
}

/** % of one core used by every process in each host's namespace over `seconds`. */
async function idleCpu(lab: SshLab, seconds: number, profile: boolean): Promise<HostCpu[]> {
  const pids = await Promise.all(HOSTS.map((h) => lab.namespacePids(h)));
  const before = pids.map((p) => ticksOf(p));
  const nodes = pids.flat().filter((p) => commOf(p) === 'node');
  if (profile) profileWindow(nodes);
  const changes = await countChurn(HOSTS.map((h) => lab.host(h)));
  await sleepWithTimeline(pids, seconds);
  verbose(`propagate-ssh: tree changes over ${seconds} s: ${changes.stop().join('; ')}`);
  if (profile) profileWindow(nodes);
  const now = await Promise.all(HOSTS.map((h) => lab.namespacePids(h)));
  return now.map((list, h) => {
    const after = ticksOf(list);
    let ticks = 0;
    const parts: { what: string; pct: number }[] = [];
    for (const [pid, t] of after) {
      const used = t - (before[h]!.get(pid) ?? 0); // a process that came meanwhile counts from 0
      ticks += used;
      const kind = kindOf(pid);
      const what = kind === 'others' ? commOf(pid) : kind === 'daemon' ? 'daemon' : 'peer-serve';
      parts.push({ what: `${what}(${pid})`, pct: (100 * used) / TICKS_PER_SECOND / seconds });
    }
    const top = parts.filter((p) => p.pct >= 0.05).sort((a, b) => b.pct - a.pct).slice(0, 6).map((p) => `${p.what} ${p.pct.toFixed(1)} %`).join(', ');
    return { percent: (100 * ticks) / TICKS_PER_SECOND / seconds, top };
  });
}

/** What a process in a host's namespace is, for the timeline. */
function kindOf(pid: number): 'daemon' | 'peer-serves' | 'others' {
  const cmd = commandLine(pid);
  return /peer-serve/.test(cmd) ? 'peer-serves' : / daemon /.test(cmd) ? 'daemon' : 'others';
}

/**
 * Sleep `seconds`; with -v, print each host's CPU per 10 s slice afterwards (its daemon,
 * its peer-serves together, everything else: sshd), which separates the steady idle cost
 * from the 5-minute bursts (full pass, rescan, resyncs).
 */
async function sleepWithTimeline(pids: number[][], seconds: number): Promise<void> {
  const kinds = ['daemon', 'peer-serves', 'others'] as const;
  const groups = pids.map((list) => kinds.map((k) => list.filter((p) => kindOf(p) === k)));
  const slices: number[][][] = HOSTS.map(() => kinds.map(() => []));
  let last = groups.map((g) => g.map((d) => ticksOf(d)));
  for (let left = seconds; left > 0; left -= 10) {
    await sleep(Math.min(10, left) * 1000);
    const now = groups.map((g) => g.map((d) => ticksOf(d)));
    now.forEach((g, h) => g.forEach((t, k) => {
      slices[h]![k]!.push([...t].reduce((sum, [pid, v]) => sum + v - (last[h]![k]!.get(pid) ?? v), 0));
    }));
    last = now;
  }
  HOSTS.forEach((h, i) => kinds.forEach((k, j) => {
    const s = slices[i]![j]!;
    const sorted = [...s].sort((a, b) => a - b);
    verbose(`propagate-ssh: ${h}'s ${k}, ticks (10 ms) per 10 s: ${s.join(' ')}; median ${percentile(sorted, 50)}`);
  }));
}

function names(): string[] {
  return Array.from({ length: RESOURCES }, (_, i) => `r${String(i).padStart(4, '0')}`);
}

/** The keys create-resource (alpha) and join-resource (the others) write, with the daemons stopped. */
async function writeResources(lab: SshLab): Promise<void> {
  const members = MEMBERS === 'all' ? HOSTS.slice(1) : [];
  const alpha = await lab.tree('alpha');
  const firstLog = 'log-000000001-alpha';
  for (const res of names()) {
    for (const h of ['alpha', ...members]) {
      const disk = path.join(lab.host(h).dir, `${res}.disk`);
      closeSync(openSync(disk, 'w'));
      truncateSync(disk, RESOURCE_BYTES);
    }
    const disk = path.join(lab.host('alpha').dir, `${res}.disk`);
    await alpha.set(sizeKey(res), String(RESOURCE_BYTES));
    await alpha.set(dataKey(res, 'alpha'), disk);
    await alpha.set(deviceKey(res, 'alpha'), res);
    for (const sw of ['connect', 'sync', 'allow-replay'] as const) await alpha.set(todoKey(res, 'alpha', sw), '1');
    await alpha.set(primaryKey(res), 'alpha');
    await alpha.set(todoKey(res, 'alpha', 'attach'), '1');
    for (const h of members) {
      const tree = await lab.tree(h);
      await tree.set(replayKey(res, h), replayValue({ log: firstLog, offset: 0 }));
      await tree.set(resourceKey(res, `syncstatus-${h}`), String(RESOURCE_BYTES)); // join-resource: 0 (see the header)
      await tree.set(actualKey(res, h, 'sync-target'), '(none)');
      await tree.set(deviceKey(res, h), res);
      for (const sw of ['connect', 'sync', 'allow-replay', 'attach'] as const) await tree.set(todoKey(res, h, sw), '1');
      await tree.set(dataKey(res, h), path.join(lab.host(h).dir, `${res}.disk`));
    }
  }
}

/** How many resources are up: primary on alpha; attached on the members / known to the others. */
async function upCounts(lab: SshLab): Promise<number[]> {
  const counts: number[] = [];
  for (const h of HOSTS) {
    const tree = await lab.tree(h);
    let n = 0;
    for (const res of names()) {
      const v = h === 'alpha' ? await tree.getValue(actualKey(res, 'alpha', 'is-primary'))
        : MEMBERS === 'all' ? await tree.getValue(actualKey(res, h, 'is-attached')) : (await tree.getValue(replayKey(res, 'alpha'))) ? '1' : '0';
      if (v === '1') n++;
    }
    counts.push(n);
  }
  return counts;
}

/**
 * Resources a secondary has settled: no sync running and its copy fetched up to the
 * primary's published log end. "Up" (attached) comes first; on a slow machine the
 * secondaries are still syncing and fetching for minutes after, which is not idle.
 */
async function settledCounts(lab: SshLab): Promise<number[]> {
  const counts: number[] = [];
  for (const h of HOSTS) {
    if (h === 'alpha' || MEMBERS !== 'all') {
      counts.push(RESOURCES);
      continue;
    }
    const tree = await lab.tree(h);
    let n = 0;
    for (const res of names()) {
      const end = await tree.getValue(actualKey(res, 'alpha', 'log-end'));
      const fetched = await tree.getValue(actualKey(res, h, 'fetch-pos'));
      // A replica publishes fetch-pos once it fetched something: none yet is position 0.
      const caughtUp = end !== undefined && (fetched === end || (fetched === '(none)' && end.endsWith(',0')));
      if ((await tree.getValue(actualKey(res, h, 'is-syncing'))) === '0' && caughtUp) n++;
    }
    counts.push(n);
  }
  return counts;
}

/** Wait until counts() gives RESOURCES for every host; with -v, a line whenever they change. */
async function untilEveryHost(what: string, label: string, counts: () => Promise<number[]>, since: number): Promise<void> {
  let last = '';
  await waitUntil(what, async () => {
    const now = await counts();
    const line = now.map((c, h) => `${HOSTS[h]} ${c}`).join(', ');
    if (line !== last) verbose(`propagate-ssh: ${((performance.now() - since) / 1000).toFixed(0)} s: ${label}: ${line}`);
    last = line;
    return now.every((c) => c === RESOURCES);
  }, 900_000, 2000);
}

export async function runPropagateSsh(): Promise<void> {
  const lab = await SshLab.cluster('phbench-prop', HOSTS);
  const watchers: Arrivals[] = [];
  try {
    const remoteKey = 'defaults-alpha/bench-probe';
    const localKey = 'defaults-beta/bench-probe';
    const measure = async (tag: string, changes: number): Promise<{ remote: number[]; local: number[] }> => {
      const w = [await Arrivals.watch(lab.host('beta').root, remoteKey), await Arrivals.watch(lab.host('gamma').root, remoteKey)];
      const l = await Arrivals.watch(lab.host('beta').root, localKey);
      watchers.push(...w, l);
      await sleep(1000);
      const remote = await latencies(lab, 'alpha', w, remoteKey, `${tag}r`, changes);
      const local = await latencies(lab, 'beta', [l], localKey, `${tag}l`, changes);
      for (const x of watchers.splice(0)) x.close();
      return { remote, local };
    };
    await sleep(2000); // links up, initial subscriptions done
    const empty = await measure('e', CHANGES);
    for (const p of [50, 99]) {
      report(`propagate-ssh-p${p}`, percentile(empty.remote, p), 'ms', percentile(empty.local, p),
        `set on alpha (MarsTree.set) until a TreeWatcher on beta's and on gamma's tree saw it, ${CHANGES} changes x 2 watchers, ` +
        `SSH transport between namespaces, no resources (target p99 <= 50 ms); baseline: the same watcher seeing a set on its own tree`);
    }

    const quiet = await idleCpu(lab, BASELINE_IDLE_SECONDS, false);
    verbose(`propagate-ssh: idle, no resources: ${quiet.map((q, h) => `${HOSTS[h]} ${q.percent.toFixed(2)} % (${q.top})`).join('; ')}`);

    const t = performance.now();
    for (const h of HOSTS) await lab.stopDaemon(h);
    await writeResources(lab);
    const written = (performance.now() - t) / 1000;
    for (const h of HOSTS) await lab.startDaemon(h);
    await untilEveryHost(`${RESOURCES} resources up on every host`, 'up', () => upCounts(lab), t);
    const setupSeconds = (performance.now() - t) / 1000;
    await untilEveryHost('every secondary to finish syncing and fetching', 'settled', () => settledCounts(lab), t);
    const settledSeconds = (performance.now() - t) / 1000;
    await sleep(10_000); // let the last publications settle
    const busy = await idleCpu(lab, IDLE_SECONDS, false);
    const steady = await idleCpu(lab, IDLE_SECONDS, true);
    const members = MEMBERS === 'all' ? 'alpha primary, beta and gamma secondaries of every one' : 'served by alpha, in every tree, beta and gamma not members';
    HOSTS.forEach((h, i) => {
      report(`propagate-ssh-idle-cpu-${h}`, busy[i]!.percent, '% of a core', quiet[i]!.percent,
        `every process in ${h}'s namespace (daemon, peer-serves, sshd) over ${IDLE_SECONDS} s idle with ${RESOURCES} resources ` +
        `(${members}; keys written in ${written.toFixed(0)} s, all up ${setupSeconds.toFixed(0)} s after, synced and fetched at ` +
        `${settledSeconds.toFixed(0)} s) (target <= 2 %); ` +
        `top: ${busy[i]!.top}; baseline: the same with no resource, over ${BASELINE_IDLE_SECONDS} s (${quiet[i]!.top || 'nothing'})`);
    });
    HOSTS.forEach((h, i) => {
      report(`propagate-ssh-idle-cpu-steady-${h}`, steady[i]!.percent, '% of a core', quiet[i]!.percent,
        `as propagate-ssh-idle-cpu-${h}, over the ${IDLE_SECONDS} s after that window (target <= 2 %); top: ${steady[i]!.top}`);
    });

    const loaded = await measure('l', LOADED_CHANGES);
    report('propagate-ssh-loaded-p99', percentile(loaded.remote, 99), 'ms', percentile(loaded.local, 99),
      `as propagate-ssh-p99, with the ${RESOURCES} resources up, ${LOADED_CHANGES} changes x 2 watchers (p50 ${percentile(loaded.remote, 50).toFixed(1)} ms, ` +
      `local p50 ${percentile(loaded.local, 50).toFixed(1)} ms)`);
  } catch (e) {
    for (const h of HOSTS) console.error(`--- daemon ${h}\n${lab.daemonTail(h)}`);
    throw e;
  } finally {
    for (const w of watchers) w.close();
    await lab.close();
  }
}
