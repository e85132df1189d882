/**
 * Cluster tier: random schedules of role changes and faults (issue 5, "50 random
 * schedules"), each step followed by an invariant checker. One 3-host cluster over the
 * pipe transport serves every schedule; between schedules it is brought back to one
 * serving primary with every disk identical.
 *
 * A schedule is STEPS steps drawn with a seeded PRNG from
 *   handover  `marsadm primary r1` on another host; a workload runs on the primary and
 *             stops as the command starts (what the service stack does); a target cut
 *             off from that primary hands over from the primary of its own side
 *   failover  `disconnect` + `primary --force` on a non-primary, sometimes with the
 *             primary cut off first, and sometimes with writes on the cut-off primary
 *   cut       cut a host off (all its links, or one link), or heal it if it is cut
 *   kill      SIGKILL a daemon and start it again
 *   write     a burst of acknowledged writes on the current primary
 * Host choices are indexes into [primary at the start, the others by name], so a seed
 * replays the same schedule whichever host is primary when it starts.
 *
 * Invariants:
 *   (a) after each step: no two hosts that can talk to each other (directly or through
 *       the third) both serve as designated primary in their own tree, unless some host
 *       reports split brain. (Across a cut, both serving is what MARS does: the old
 *       primary cannot know; it must leave, or split brain must show, once the cut heals,
 *       which the end of schedule checks.)
 *   (b) no acknowledged write lost outside a reported split brain: a planned handover's
 *       new primary (or, when it compensates, the old one) has every acknowledged write
 *       (across a cut, the old primary's writes are one side of a split brain instead);
 *       a forced primary has every write acknowledged before the last moment it was seen
 *       in sync (its disk held them), or a split brain is reported; at the end of a
 *       schedule the primary has every acknowledged write since the last forced failover.
 *   (c) no silent divergence: once links heal and replication settles with no split brain
 *       and no replay error reported, every disk is byte-identical (sha256).
 *   (d) the current primary serves its device again after every step.
 * A reported split brain is resolved with `invalidate` on the hosts that report it.
 *
 * A failed schedule leaves the cluster as it was; the next schedule starts on a new one.
 *
 * Environment: PHOBOS_SCHEDULES (default 50), PHOBOS_SCHEDULE_STEPS (default 2),
 * PHOBOS_SCHEDULE_SEED (run only the schedule with that seed, on a fresh cluster),
 * PHOBOS_SCHEDULE_BASE_SEED (where the seeds of a run start). A failing schedule prints
 * its seed, how to rerun it from the same cluster state, its steps, each host's
 * `view r1 --json`, the history links and the daemon logs.
 */
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, statSync } from 'node:fs';
import path from 'node:path';

import { HistoryWorkload, readExport, WriteHistory } from '../support/history_workload.js';
import { sha256, sha256File, TestCluster } from '../support/test_cluster.js';
import { eventually, type TestHost } from '../support/test_host.js';

const RES = 'r1';
const SIZE = 4 << 20;
/** The workload writes to the first MiB. */
const SPAN = 1 << 20;
const env = process.env;
const SCHEDULES = Number(env['PHOBOS_SCHEDULES'] ?? 50);
const STEPS = Number(env['PHOBOS_SCHEDULE_STEPS'] ?? 2);
const BASE_SEED = Number(env['PHOBOS_SCHEDULE_BASE_SEED'] ?? 5000);
const SEEDS = env['PHOBOS_SCHEDULE_SEED'] !== undefined ? [Number(env['PHOBOS_SCHEDULE_SEED'])]
  : Array.from({ length: SCHEDULES }, (_, i) => BASE_SEED + i);
/** `--timeout` of a planned handover's phases, s: a cut link makes it compensate after this. */
const HANDOVER_TIMEOUT_S = '10';
const WAIT_MS = 30_000;

type StepKind = 'handover' | 'failover' | 'cut' | 'kill' | 'write';
const WEIGHTS: readonly [StepKind, number][] = [['handover', 25], ['failover', 20], ['cut', 20], ['kill', 15], ['write', 20]];

/** mulberry32: a small seeded PRNG, so a seed replays its schedule. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class InvariantError extends Error {
  override name = 'InvariantError';
}

describe('cluster tier: random schedules of handover, failover, cuts and kills (3 hosts)', function () {
  this.timeout(600_000);
  let cluster: TestCluster;
  let hosts: TestHost[];
  /** The primary as the commands of the schedule left it. */
  let primary: TestHost;
  /** Cut host pairs, `a|b` with a < b. */
  const cuts = new Set<string>();
  const history = new WriteHistory(SPAN, 1);
  /** Host -> sequence number of the writes its disk was last seen to hold completely. */
  const syncedAt = new Map<string, number>();
  /** The steps of the running schedule, with what happened. */
  let steps: string[] = [];
  let seed = 0;
  /** The first seed run on this cluster: a schedule starts from the state the ones before it left. */
  let firstSeed = SEEDS[0]!;
  const reproduce = () => `PHOBOS_SCHEDULE_BASE_SEED=${firstSeed} PHOBOS_SCHEDULES=${seed - firstSeed + 1}`;
  let dirty = false;
  const timings: { seed: number; ms: number }[] = [];

  const get = (h: TestHost, key: string) => h.getLink(`resource-${RES}/${key}`);
  const disk = (h: TestHost) => h.tmp.file('disk');
  const designatedIn = (h: TestHost) => get(h, 'primary');
  const servingIn = async (h: TestHost) => (await get(h, `actual-${h.name}/is-primary`)) === '1';
  const pair = (a: TestHost, b: TestHost) => [a.name, b.name].sort().join('|');
  const note = (line: string) => steps.push(line);

  /** Hosts that reach h through links that are not cut (the tree travels through a third host). */
  function component(h: TestHost): Set<string> {
    const seen = new Set([h.name]);
    const todo = [h];
    while (todo.length) {
      const x = todo.pop()!;
      for (const y of hosts) if (!seen.has(y.name) && !cuts.has(pair(x, y))) {
        seen.add(y.name);
        todo.push(y);
      }
    }
    return seen;
  }

  function readSpan(file: string): Buffer {
    const fd = openSync(file, 'r');
    try {
      const buf = Buffer.alloc(SPAN);
      readSync(fd, buf, 0, SPAN, 0);
      return buf;
    } finally {
      closeSync(fd);
    }
  }

  async function splitBrainReported(): Promise<string | null> {
    for (const h of hosts) if ((await h.ok('view-is-split-brain', RES)).trim() === '1') return `view-is-split-brain on ${h.name}`;
    return null;
  }

  /** Hosts whose own replay-code is an error. */
  async function replayErrors(): Promise<{ host: TestHost; code: string }[]> {
    const out: { host: TestHost; code: string }[] = [];
    for (const h of hosts) {
      const code = await get(h, `actual-${h.name}/replay-code`);
      if (code.startsWith('-')) out.push({ host: h, code });
    }
    return out;
  }

  /** version-*, replay-*, primary and log-end links of h's own tree, with their stamps (docs/tree.md). */
  function historyLinks(h: TestHost): string[] {
    const dir = path.join(h.root, `resource-${RES}`);
    const out: string[] = [];
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isSymbolicLink() && /version-|replay-|\/primary$|log-end|is-primary/.test(p)) {
          out.push(`  ${path.relative(dir, p)} = ${readlinkSync(p)} @${lstatSync(p, { bigint: true }).mtimeNs / 1000n}`);
        }
      }
    };
    walk(dir);
    out.push(`  log files: ${readdirSync(dir).filter((f) => f.startsWith('log-')).map((f) => `${f}:${statSync(path.join(dir, f)).size}`).join(' ')}`);
    return out.sort();
  }

  /** Print everything a failed invariant needs and fail the schedule. */
  async function violated(what: string): Promise<never> {
    dirty = true;
    const lines = [`INVARIANT VIOLATED: ${what}`, `seed ${seed} (reproduce: ${reproduce()})`, 'schedule:', ...steps.map((s) => `  ${s}`),
      `cuts: ${[...cuts].join(', ') || '(none)'}`];
    for (const h of hosts) lines.push(`--- ${h.name}: marsadm view ${RES} --json`, (await h.marsadm('view', RES, '--json')).out.trim());
    for (const h of hosts) lines.push(`--- ${h.name}: history links in its tree`, ...historyLinks(h));
    for (const h of hosts) lines.push(`--- ${h.name}: daemon log (last 12000 chars)`, h.daemonLog.slice(-12_000));
    console.log(lines.join('\n'));
    throw new InvariantError(`${what} (seed ${seed}; reproduce: ${reproduce()})`);
  }

  /** Wait for check(); on timeout the invariant `what` is violated. */
  async function within(what: string, check: () => Promise<boolean>, timeoutMs = WAIT_MS): Promise<void> {
    try {
      await eventually(what, check, timeoutMs);
    } catch {
      await violated(`timed out waiting for ${what}`);
    }
  }

  // -------------------------------------------------------------------------------------
  // Invariants

  /** (a): serving designated primaries that can talk to each other, without a split brain. */
  async function checkOnePrimary(): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const active: TestHost[] = [];
      for (const h of hosts) if ((await designatedIn(h)) === h.name && (await servingIn(h))) active.push(h);
      const clash = active.flatMap((a, i) => active.slice(i + 1).filter((b) => component(a).has(b.name)).map((b) => `${a.name}+${b.name}`));
      if (clash.length === 0 || (await splitBrainReported())) return;
      if (Date.now() > deadline) await violated(`(a) ${clash.join(', ')} both serve as designated primary in their own trees, can talk, and no host reports split brain`);
      await sleep(200);
    }
  }

  /** (d): the current primary serves (its own tree says so). */
  async function checkPrimaryServes(): Promise<void> {
    await within(`(d) ${primary.name} to serve ${RES} as designated primary`, async () =>
      (await designatedIn(primary)) === primary.name && (await servingIn(primary)));
  }

  /** (b): `h` serves every write acknowledged up to `upTo`; returns the span it has. */
  async function checkWrites(h: TestHost, upTo: number, what: string, splitBrainExcuses = false): Promise<Buffer> {
    let image: Buffer | null = null;
    await within(`${h.name}'s device to be readable`, async () => {
      image = await readExport(h.socket(RES), RES, SPAN).catch(() => null);
      return image !== null;
    });
    const bad = history.problems(image!, upTo);
    if (bad.length === 0) return image!;
    const excuse = splitBrainExcuses ? await eventually('split brain', async () => (await splitBrainReported()) !== null, 15_000)
      .then(() => true, () => false) : false;
    if (excuse) {
      note(`    ${bad.length} blocks lack writes acknowledged before seq ${upTo}; split brain reported, so allowed`);
      return image!;
    }
    return await violated(`(b) ${what}: ${h.name} lacks acknowledged writes (${bad.length} blocks): ${bad.slice(0, 5).join('; ')}`);
  }

  /** Note which non-serving hosts' disks hold every acknowledged write now. */
  async function probeSync(): Promise<string[]> {
    const inSync: string[] = [];
    for (const h of hosts) {
      if (h === primary || (await servingIn(h))) continue;
      if (history.problems(readSpan(disk(h)), history.ackedSeq).length === 0) {
        syncedAt.set(h.name, history.ackedSeq);
        inSync.push(h.name);
      }
    }
    return inSync;
  }

  // -------------------------------------------------------------------------------------
  // Steps

  async function handover(target: TestHost): Promise<void> {
    const old = primary;
    const work = new HistoryWorkload(history, RES);
    const started = await work.start(old.socket(RES)).then(() => true, (e: Error) => {
      note(`    no workload: ${old.name}'s device: ${e.message}`);
      return false;
    });
    if (started) {
      await eventually('some writes', () => work.writes >= 8 || work.failure !== null, WAIT_MS).catch(() => undefined);
      // wait-close reads open-count from the target's tree: let it see the opener, if it can.
      await eventually(`${target.name} to see the device open`, async () => Number(await get(target, `actual-${old.name}/open-count`)) > 0, 3000)
        .catch(() => undefined);
    }
    // Across a cut the target knows only its side: it hands over from the primary its own
    // tree names, not from the one the schedule made (a forced primary it never heard of).
    const acrossCut = !component(target).has(old.name);
    const command = target.marsadm('primary', RES, '--timeout', HANDOVER_TIMEOUT_S);
    await sleep(100);
    await work.stop();
    const r = await command;
    const wrote = `${work.writes} writes${work.failure ? ` (workload ended: ${work.failure.message})` : ''}`;
    if (r.code === 0 && /nothing to do/.test(r.out)) {
      note(`    no-op: ${target.name} believes it is primary already (a stale view across a cut); ${wrote}`);
    } else if (r.code === 0 && acrossCut) {
      // The writes on the cut-off old primary are now one side of a split brain, which must
      // show once the cut heals (the end of the schedule checks it): start a new history.
      note(`    done across the cut, ${wrote}: ${target.name} took over from its side's primary; ${old.name}'s writes await a split brain`);
      primary = target;
      await checkPrimaryServes();
      history.rebase(await readExport(target.socket(RES), RES, SPAN));
      syncedAt.clear();
      syncedAt.set(target.name, history.seq);
    } else if (r.code === 0) {
      note(`    done, ${wrote}`);
      primary = target;
      await checkPrimaryServes();
      await checkWrites(target, history.ackedSeq, `planned handover ${old.name} -> ${target.name}`);
    } else {
      note(`    failed (${wrote}): ${r.err.trim().split('\n').pop()}`);
      // A failed handover compensates: the old primary serves again with nothing lost.
      await checkPrimaryServes();
      await checkWrites(old, history.ackedSeq, `failed handover ${old.name} -> ${target.name} (nothing may be lost)`);
    }
  }

  async function failover(target: TestHost, isolateOld: boolean, writeOnOld: boolean): Promise<void> {
    const old = primary;
    if (isolateOld) {
      cluster.isolate(old);
      for (const h of hosts) if (h !== old) cuts.add(pair(old, h));
      // The pipe transport closes an open link within 200 ms of the cut marker: until then a
      // peer may still fetch, and writes made now would reach it.
      await sleep(600);
    }
    if (isolateOld && writeOnOld) {
      // Writes only the cut-off old primary takes: lost with the split brain they cause.
      const doomed = new HistoryWorkload(new WriteHistory(SPAN, 1_000_000 + seed * 1000), RES);
      const ok = await doomed.burst(old.socket(RES), 2);
      note(`    ${doomed.writes} writes on the cut-off ${old.name}${ok ? '' : ` (ended: ${doomed.failure?.message})`}`);
    }
    await probeSync();
    const upTo = syncedAt.get(target.name) ?? history.baseSeq;
    await target.ok('disconnect', RES);
    const r = await target.marsadm('primary', '--force', RES, '--timeout', '30');
    if (r.code !== 0) await violated(`forced failover to ${target.name} failed: ${r.err.trim()}`);
    if (/nothing to do/.test(r.out)) {
      // It still serves from before a cut. `disconnect` stays in force here (the no-op returns
      // before primary --force's implicit connect): switch it back on, as an operator would.
      note(`    no-op: ${target.name} believes it is primary already; connect again`);
      await target.ok('connect', RES);
      return;
    }
    primary = target;
    await checkPrimaryServes();
    const image = await checkWrites(target, upTo, `forced failover ${old.name} -> ${target.name}`, true);
    note(`    ${target.name} serves, had every write up to seq ${upTo} of ${history.ackedSeq}`);
    history.rebase(image);
    syncedAt.clear();
    syncedAt.set(target.name, history.seq);
  }

  function cutOrHeal(h: TestHost, other: TestHost, whole: boolean): string {
    const mine = [...cuts].filter((p) => p.split('|').includes(h.name));
    if (mine.length) {
      for (const p of mine) {
        const [a, b] = p.split('|');
        cluster.heal(cluster.host(a!), cluster.host(b!));
        cuts.delete(p);
      }
      return `heal ${mine.join(', ')}`;
    }
    if (whole) {
      cluster.isolate(h);
      for (const x of hosts) if (x !== h) cuts.add(pair(h, x));
      return `isolate ${h.name}`;
    }
    cluster.cut(h, other);
    cuts.add(pair(h, other));
    return `cut ${pair(h, other)}`;
  }

  async function write(): Promise<void> {
    const work = new HistoryWorkload(history, RES);
    let ok = false;
    await eventually(`${primary.name} to serve`, async () => (ok = await work.burst(primary.socket(RES), 2)), WAIT_MS).catch(() => undefined);
    if (!ok) note(`    could not write: ${work.failure?.message}`);
    // Give reachable secondaries a moment to catch up, so a later failover has a sync point.
    const reachable = hosts.filter((h) => h !== primary && component(primary).has(h.name));
    await eventually('secondaries in sync', async () => (await probeSync()).length >= reachable.length, 3000).catch(() => undefined);
    note(`    ${work.writes} writes; in sync: ${hosts.filter((h) => syncedAt.get(h.name) === history.ackedSeq).map((h) => h.name).join(', ') || '-'}`);
  }

  async function runStep(rng: () => number, order: TestHost[]): Promise<void> {
    let r = rng() * WEIGHTS.reduce((s, [, w]) => s + w, 0);
    const kind = WEIGHTS.find(([, w]) => (r -= w) < 0)![0];
    const pick = (not?: TestHost) => {
      const from = order.filter((h) => h !== not);
      return from[Math.floor(rng() * from.length)]!;
    };
    const coin = () => rng() < 0.5;
    const started = Date.now();
    switch (kind) {
      case 'handover': {
        const target = pick(primary);
        note(`handover ${primary.name} -> ${target.name}`);
        await handover(target);
        break;
      }
      case 'failover': {
        const target = pick(primary);
        const isolateOld = coin(), writeOnOld = coin();
        note(`failover ${primary.name} -> ${target.name}${isolateOld ? `, ${primary.name} cut off first${writeOnOld ? ' and written to' : ''}` : ''}`);
        await failover(target, isolateOld, isolateOld && writeOnOld);
        break;
      }
      case 'cut': {
        const h = pick(), other = pick(h), whole = coin();
        note(cutOrHeal(h, other, whole));
        break;
      }
      case 'kill': {
        const h = pick();
        note(`kill -9 ${h.name}'s daemon, start it again`);
        await h.stopDaemon('SIGKILL');
        await h.startDaemon();
        break;
      }
      case 'write':
        note(`writes on ${primary.name}`);
        await write();
        break;
    }
    await checkOnePrimary();
    await checkPrimaryServes();
    await probeSync();
    steps[steps.length - 1] += ` [${Date.now() - started} ms]`;
  }

  // -------------------------------------------------------------------------------------
  // Between schedules

  /**
   * Heal every link, connect every host, resolve reported split brains with invalidate,
   * and wait for identical disks. With `strict`, this is the end-of-schedule check:
   * (c) and (b) as described at the top.
   */
  async function settle(strict: boolean): Promise<void> {
    for (const p of cuts) {
      const [a, b] = p.split('|');
      cluster.heal(cluster.host(a!), cluster.host(b!));
    }
    cuts.clear();
    note('settle: heal all links');
    for (const h of hosts) if ((await get(h, `todo-${h.name}/connect`)) === '0') await h.ok('connect', RES);
    await within('every host to agree on the designated primary', async () =>
      new Set(await Promise.all(hosts.map(designatedIn))).size === 1, 60_000);
    const designated = await designatedIn(hosts[0]!);
    if (designated !== primary.name) {
      if (strict) await violated(`after healing, every host names ${designated} the designated primary, but the last command made ${primary.name} primary`);
      primary = cluster.host(designated);
    }
    await checkPrimaryServes();
    await checkOnePrimary();

    /** Host -> when its invalidate returned. */
    const invalidated = new Map<string, number>();
    const rejoined = new Set<string>();
    const started = Date.now();
    const deadline = started + 60_000;
    for (;;) {
      const want = sha256(await readExport(primary.socket(RES), RES, SIZE));
      const differ = hosts.filter((h) => h !== primary && sha256File(disk(h)) !== want);
      // Only a reported split brain or replay error may be repaired; anything else must heal by itself.
      const errors = await replayErrors();
      const reported = new Set(errors.map((e) => e.host.name));
      const view = JSON.parse((await primary.ok('view', RES, '--json')).trim()) as {
        resources: { splitBrain: { hosts: { host: string; bytesAfterSplit: number }[] } | null; hosts: { host: string; replayCode: string }[] }[];
      };
      const { splitBrain, hosts: rows } = view.resources[0]!;
      for (const x of rows) if (x.replayCode.startsWith('-')) reported.add(x.host);
      if (splitBrain) for (const x of splitBrain.hosts) reported.add(x.host);
      const anywhere = splitBrain ? 'view on the primary' : await splitBrainReported();
      if (differ.length === 0 && reported.size === 0 && anywhere === null) break;
      reported.delete(primary.name);
      for (const name of reported) {
        const h = cluster.host(name);
        const at = invalidated.get(name);
        if (at === undefined) {
          note(`settle: split brain or replay error reported for ${name} (identical disk: ${!differ.includes(h)}): invalidate`);
          const r = await h.marsadm('invalidate', RES, '--timeout', '60');
          if (r.code !== 0) await violated(`invalidate on ${name} failed: ${r.err.trim()}`);
          invalidated.set(name, Date.now());
        } else if (Date.now() - at > 15_000 && !rejoined.has(name)) {
          // invalidate drops every diverged link of this host, so a split brain that survives
          // it is a product failure in a strict schedule; a repair after an earlier failure
          // uses the documented alternative, leave-resource + join-resource.
          if (strict) {
            await violated(`(c) split brain still reported for ${name} 15 s after invalidate there (disk identical: ${!differ.includes(h)}): ` +
              `${JSON.stringify(splitBrain)}`);
          }
          rejoined.add(name);
          note(`settle: split brain for ${name} survives invalidate: leave-resource + join-resource`);
          await h.ok('leave-resource', RES);
          await h.ok('join-resource', RES, disk(h), '--timeout', '60');
        }
      }
      if (!strict && reported.size === 0 && differ.length > 0 && Date.now() - started > 20_000) {
        // Repair after an earlier failure: replication that stalls without any report (the
        // (c) violation printed before) gets a full sync.
        for (const h of differ) if (!invalidated.has(h.name)) {
          note(`settle: ${h.name} differs with nothing reported: invalidate (repair)`);
          await h.ok('invalidate', RES, '--timeout', '60');
          invalidated.set(h.name, Date.now());
        }
      }
      // Replication that stalls with nothing reported (a replica waiting for a version link
      // nobody will write) ends here as a (c) violation.
      if (Date.now() > deadline) {
        const codes = errors.map((e) => `${e.host.name}: ${e.code}`).join('; ');
        await violated(`(c) 60 s after healing: differing from ${primary.name}: ${differ.map((h) => h.name).join(', ') || 'none'}; ` +
          `split brain: ${JSON.stringify(splitBrain)} (${anywhere ?? 'not reported'}); replay errors: ${codes || 'none'}; ` +
          `invalidated: ${[...invalidated.keys()].join(', ') || 'none'}`);
      }
      await sleep(250);
    }
    // (b) at the end: the primary has every write acknowledged since the last forced failover.
    const image = strict ? await checkWrites(primary, history.ackedSeq, 'end of schedule') : await readExport(primary.socket(RES), RES, SPAN);
    history.rebase(image);
    for (const h of hosts) syncedAt.set(h.name, history.seq);
  }

  /** A fresh cluster: r1 created on alpha, joined by the others, disks identical. */
  async function build(): Promise<void> {
    cuts.clear();
    cluster = await TestCluster.create(['alpha', 'beta', 'gamma']);
    hosts = cluster.hosts;
    cluster.makeDisks(SIZE);
    const [alpha, ...rest] = hosts as [TestHost, ...TestHost[]];
    await alpha.ok('create-resource', RES, disk(alpha));
    for (const h of rest) {
      await eventually(`${h.name} to learn of ${RES}`, async () => (await get(h, 'size')) === String(SIZE), WAIT_MS);
      await h.ok('join-resource', RES, disk(h));
    }
    primary = alpha;
    await settle(false);
  }

  before(build);

  after(async () => {
    if (timings.length) {
      const ms = timings.map((t) => t.ms).sort((a, b) => a - b);
      console.log(`      ${timings.length} schedules, ${STEPS} steps each: median ${ms[Math.floor(ms.length / 2)]} ms, max ${ms[ms.length - 1]} ms ` +
        `(seed ${timings.find((t) => t.ms === ms[ms.length - 1])!.seed})`);
    }
    if (env['PHOBOS_TEST_DAEMON_LOG']) for (const h of hosts ?? []) console.log(`--- ${h.name}\n${h.daemonLog}`);
    await cluster?.remove();
  });

  for (const s of SEEDS) {
    it(`schedule with seed ${s}: no dual primary, no lost acknowledged write, no silent divergence`, async () => {
      seed = s;
      steps = [];
      if (dirty) {
        // An earlier schedule failed and left the cluster in some state: start afresh, so
        // one failure does not fail the rest.
        await cluster.remove();
        await build();
        firstSeed = s;
        dirty = false;
      }
      const started = Date.now();
      const rng = prng(s);
      const order = [primary, ...hosts.filter((h) => h !== primary)];
      note(`start: ${primary.name} primary; order ${order.map((h) => h.name).join(', ')}`);
      try {
        for (let i = 0; i < STEPS; i++) await runStep(rng, order);
        await settle(true);
      } catch (e) {
        dirty = true;
        if (!(e instanceof InvariantError)) {
          console.log(`schedule with seed ${s} (reproduce: ${reproduce()}) failed:\n${steps.map((x) => `  ${x}`).join('\n')}`);
        }
        throw e;
      }
      timings.push({ seed: s, ms: Date.now() - started });
      if (env['PHOBOS_SCHEDULE_VERBOSE']) console.log(steps.map((x) => `        ${x}`).join('\n'));
    });
  }
});
