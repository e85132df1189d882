/**
 * handover: planned `marsadm primary r1` between two hosts in network namespaces, daemons
 * over the real SSH transport (bench/_ssh_lab.ts). marsadm runs in the new primary's
 * namespace, a fresh node process each time, as an operator would run it; the wall time
 * is the whole command (node's start-up included).
 *
 *  - Idle resource: HANDOVERS (20) handovers, beta, alpha, beta, ...; p50 and p99 of the
 *    wall time (target p50 <= 1 s, p99 <= 2 s), with the median of each phase from
 *    `--json`. Baseline: `marsadm view r1` run the same way (p50), and an OpenSSH
 *    `ssh alpha true` from beta's namespace (p50) in the note.
 *  - 64 MiB of unreplayed log on the new primary, LOADED_RUNS (3) times: beta pauses
 *    fetch and replay, 64 MiB of random data are written through alpha's export, then
 *    beta's `connect` and `allow-replay` switches go back on (straight into beta's tree,
 *    what resume-fetch / resume-replay write) and `marsadm primary r1 --json` starts on
 *    beta at once. From that moment (t0), this process watches beta's tree: fetch ends
 *    when `actual-beta/fetch-pos` reaches the end of alpha's log, replay ends when
 *    beta's version link for that log appears (written when replay reached the sealed
 *    end, the moment catch-up waits for). fetch = t0 -> fetch end; replay = fetch end ->
 *    replay end (what replay still had to do after the last byte arrived; it runs while
 *    fetching too); control = the command's wall time - replay end. Baseline for the
 *    fetch: OpenSSH `ssh alpha cat <the same log>` into a file in beta's namespace, same
 *    bytes; for the others `marsadm view`.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { rmSync, statSync } from 'node:fs';
import path from 'node:path';

import { NbdClient } from '../src/nbd/index.js';
import { parseLogName, parsePositionValue } from '../src/replication/log_names.js';
import { parseVersion } from '../src/replication/versions.js';
import { actualKey, todoKey, versionKey } from '../src/tree/index.js';
import { sleep } from './_cluster.js';
import { median, percentile, SshLab, verbose, waitUntil } from './_ssh_lab.js';
import { report } from './report.js';

const RES = 'r1';
const DEVICE = 128 << 20;
const HANDOVERS = Number(process.env['PHOBOS_BENCH_HANDOVERS'] ?? 20);
const LOADED_RUNS = Number(process.env['PHOBOS_BENCH_LOADED_RUNS'] ?? 3);
const LOADED_BYTES = 64 << 20;

interface Handover {
  ms: number;
  phases: Record<string, number>;
  /** performance.now() of each stdout line, with the line. */
  lines: { at: number; json: Record<string, unknown> }[];
}

/** `marsadm primary r1 --json` on `host`, lines timestamped as they arrive. */
async function primary(lab: SshLab, host: string): Promise<Handover> {
  const h = lab.host(host);
  const started = performance.now();
  const child = lab.lab.spawn(host, process.execPath, [lab.marsadmPath, 'primary', RES, '--json', '--root', h.root, '--host', host],
    { stdio: ['ignore', 'pipe', 'pipe'], env: lab.env(host) });
  const lines: Handover['lines'] = [];
  let tail = '', err = '';
  child.stdout!.on('data', (d: Buffer) => {
    const at = performance.now();
    tail += d.toString();
    const parts = tail.split('\n');
    tail = parts.pop() ?? '';
    for (const p of parts) if (p.trim()) lines.push({ at, json: JSON.parse(p) as Record<string, unknown> });
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const ms = performance.now() - started;
  if (code !== 0) throw new Error(`marsadm primary ${RES} on ${host} exited ${code}: ${err.trim()}`);
  const phases: Record<string, number> = {};
  for (const l of lines) if (typeof l.json['phase'] === 'string' && typeof l.json['ms'] === 'number') phases[l.json['phase']] = l.json['ms'];
  return { ms, phases, lines };
}

async function writeRandom(lab: SshLab, host: string, bytes: number): Promise<void> {
  const device = await NbdClient.connect(lab.socket(host, RES), RES);
  const buf = randomFillSync(Buffer.alloc(1 << 20));
  let next = 0;
  const count = bytes >> 20;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < count) {
      const i = next++;
      buf.writeUInt32LE(i, 0); // no two chunks alike
      await device.write((i << 20) % DEVICE, buf);
    }
  }));
  await device.flush();
  await device.disconnect();
}

function medians(list: Record<string, number>[]): string {
  const names = [...new Set(list.flatMap((p) => Object.keys(p)))];
  return names.map((n) => `${n} ${median(list.map((p) => p[n] ?? 0)).toFixed(0)}`).join(', ');
}

export async function runHandoverSsh(): Promise<void> {
  const lab = await SshLab.cluster('phbench-hand', ['alpha', 'beta']);
  try {
    await lab.replicated(RES, ['alpha', 'beta'], DEVICE);
    await writeRandom(lab, 'alpha', 8 << 20);

    // Baselines: `marsadm view r1` the same way, and an OpenSSH round trip.
    const views: number[] = [];
    for (let i = 0; i < 10; i++) views.push((await lab.marsadm(i % 2 ? 'alpha' : 'beta', 'view', RES)).ms);
    const sshTrue: number[] = [];
    for (let i = 0; i < 5; i++) {
      const t = performance.now();
      await lab.lab.exec('beta', 'ssh', [...lab.sshOptions('alpha'), 'alpha', 'true']);
      sshTrue.push(performance.now() - t);
    }
    const view = median(views);

    // Idle handovers.
    const runs: Handover[] = [];
    for (let i = 0; i < HANDOVERS; i++) {
      const to = i % 2 === 0 ? 'beta' : 'alpha';
      const r = await primary(lab, to);
      runs.push(r);
      verbose(`handover ${i} -> ${to}: ${r.ms.toFixed(0)} ms ${JSON.stringify(r.phases)}`);
      await sleep(200);
    }
    const walls = runs.map((r) => r.ms).sort((a, b) => a - b);
    const spread = `min ${walls[0]!.toFixed(0)}, max ${walls[walls.length - 1]!.toFixed(0)} ms`;
    const phaseNote = medians(runs.map((r) => r.phases));
    for (const p of [50, 99]) {
      report(`handover-p${p}`, percentile(walls, p) / 1000, 's', view / 1000,
        `planned \`marsadm primary ${RES} --json\` alternating beta/alpha, idle resource, ${HANDOVERS} handovers, SSH transport ` +
        `between namespaces, wall time of the command incl. node start-up (${spread}; median phases ms: ${phaseNote}) ` +
        `(target p50 <= 1 s, p99 <= 2 s); baseline: \`marsadm view ${RES}\` run the same way, p50 of 10 ` +
        `(OpenSSH \`ssh alpha true\` from beta: p50 ${median(sshTrue).toFixed(0)} ms)`);
    }
    if ((await lab.get('alpha', actualKey(RES, 'alpha', 'is-primary'))) !== '1') await primary(lab, 'alpha');

    // 64 MiB of unreplayed log on the new primary.
    const split: { total: number; fetch: number; replay: number; control: number; phases: Record<string, number>; catSeconds: number }[] = [];
    for (let run = 0; run < LOADED_RUNS; run++) {
      await lab.marsadm('beta', 'pause-fetch', RES);
      await lab.marsadm('beta', 'pause-replay', RES);
      await waitUntil('beta to stop fetching', async () => (await lab.get('beta', actualKey(RES, 'beta', 'is-copying'))) === '0');
      await writeRandom(lab, 'alpha', LOADED_BYTES);
      spawnSync('sync');
      await sleep(1000);
      await waitUntil('alpha to publish its log end', async () => {
        const at = parsePositionValue(await lab.get('alpha', actualKey(RES, 'alpha', 'log-end')));
        return !!at && statSync(path.join(lab.host('alpha').root, `resource-${RES}`, at.log)).size === at.offset;
      }, 10_000);
      const log = parsePositionValue(await lab.get('alpha', actualKey(RES, 'alpha', 'log-end')))!.log;
      const seq = parseLogName(log)!.seq;
      verbose(`handover 64 MiB run ${run}: alpha's ${log} has ${statSync(path.join(lab.host('alpha').root, `resource-${RES}`, log)).size} bytes; ` +
        `beta fetched ${await lab.get('beta', actualKey(RES, 'beta', 'fetch-pos'))}`);

      const t0 = performance.now();
      await lab.set('beta', todoKey(RES, 'beta', 'connect'), '1');
      await lab.set('beta', todoKey(RES, 'beta', 'allow-replay'), '1');
      const command = primary(lab, 'beta');
      // The log's final end is known once alpha sealed it (leave): its version link.
      let end = -1, fetchAt = 0, replayAt = 0, done = false;
      const watch = (async () => {
        while (!done && (!fetchAt || !replayAt)) {
          if (end < 0) end = parseVersion(await lab.get('alpha', versionKey(RES, seq, 'alpha')))?.offset ?? -1;
          const fetched = parsePositionValue(await lab.get('beta', actualKey(RES, 'beta', 'fetch-pos')));
          if (!fetchAt && end >= 0 && fetched?.log === log && fetched.offset >= end) fetchAt = performance.now();
          if (!replayAt && parseVersion(await lab.get('beta', versionKey(RES, seq, 'beta'))) !== null) replayAt = performance.now();
          await sleep(5);
        }
      })();
      const r = await command;
      done = true;
      await watch;
      if (!fetchAt || !replayAt) throw new Error(`handover with 64 MiB: fetch end ${fetchAt ? 'seen' : 'not seen'}, replay end ${replayAt ? 'seen' : 'not seen'} in beta's tree`);
      // The same bytes through OpenSSH, for the fetch's baseline.
      const file = path.join(lab.host('alpha').root, `resource-${RES}`, log);
      const out = path.join(lab.host('beta').dir, 'baseline-copy');
      const tc = performance.now();
      await lab.lab.exec('beta', 'sh', ['-c', `ssh ${lab.sshOptions('alpha').join(' ')} alpha cat ${file} > ${out}`]);
      const catSeconds = (performance.now() - tc) / 1000;
      rmSync(out, { force: true });
      const fetch = fetchAt - t0, replay = Math.max(0, replayAt - fetchAt), control = r.ms - (replayAt - t0);
      split.push({ total: r.ms, fetch, replay, control, phases: r.phases, catSeconds });
      verbose(`handover 64 MiB run ${run}: total ${r.ms.toFixed(0)} ms, fetch ${fetch.toFixed(0)}, replay tail ${replay.toFixed(0)}, ` +
        `control ${control.toFixed(0)}; phases ${JSON.stringify(r.phases)}; ssh cat of the whole log ${catSeconds.toFixed(2)} s`);
      await primary(lab, 'alpha'); // back, idle
      await sleep(500);
    }
    const m = (f: (s: (typeof split)[number]) => number): number => median(split.map(f));
    const each = (f: (s: (typeof split)[number]) => number): string => split.map((s) => f(s).toFixed(0)).join('/');
    const common = `64 MiB written on alpha while beta's fetch and replay were paused, then both resumed and \`marsadm primary ` +
      `${RES} --json\` started on beta; median of ${LOADED_RUNS} (runs: `;
    report('handover-64m-total', m((s) => s.total) / 1000, 's', view / 1000,
      `${common}${each((s) => s.total)} ms; phases ms: ${medians(split.map((s) => s.phases))}); baseline: marsadm view`);
    report('handover-64m-fetch', m((s) => s.fetch) / 1000, 's', m((s) => s.catSeconds),
      `${common}${each((s) => s.fetch)} ms): resume until actual-beta/fetch-pos reached alpha's log end; baseline: OpenSSH ` +
      `\`ssh alpha cat\` of alpha's whole current log into a file in beta's namespace (login included; ` +
      `${split.map((s) => s.catSeconds.toFixed(2)).join('/')} s)`);
    report('handover-64m-replay', m((s) => s.replay) / 1000, 's', null,
      `${common}${each((s) => s.replay)} ms): from the fetch's end until beta's version link for the log appeared ` +
      '(replay finished; it also ran during the fetch)');
    report('handover-64m-control', m((s) => s.control) / 1000, 's', view / 1000,
      `${common}${each((s) => s.control)} ms): the command's wall time after replay finished (become, the new log, ` +
      'the export, the command noticing, node start-up overlaps the fetch); baseline: marsadm view');
  } catch (e) {
    for (const h of ['alpha', 'beta']) console.error(`--- daemon ${h}\n${lab.daemonTail(h)}`);
    throw e;
  } finally {
    await lab.close();
  }
}
