/**
 * failover: forced failover between two hosts in network namespaces, daemons over the
 * real SSH transport (bench/_ssh_lab.ts). RUNS (10) runs, alternating direction:
 *
 *  1. the current primary's cable is cut (lab.linkDown: its veth's bridge end goes down,
 *     packets vanish, nothing sends a reset);
 *  2. t0; on the other host, in its namespace: `marsadm disconnect r1`, then
 *     `marsadm primary --force r1`; meanwhile this process tries an NBD connection to that
 *     host's export socket every 5 ms and watches its tree;
 *  3. exported = the first NBD handshake that succeeds on the new primary's socket.
 *
 * Figures: t0 -> exported, p50 (target <= 0.5 s; both commands, node start-up included,
 * as an operator types them); and the daemon's part, from the moment the new `primary`
 * link is in the new primary's tree (polled every 5 ms) to exported. Baseline: `marsadm
 * view r1` run the same way (p50); the commands' own wall times are in the note.
 *
 * Reset between runs: the cable is restored; the old primary hears of the newer `primary`
 * link, leaves (seals its log) and becomes a secondary; nothing was written meanwhile, so
 * normally no split brain. The run waits until the old primary is a healthy secondary
 * again (not primary, replay code 0, replaying the new primary's log); if `view` reports a
 * split brain, `marsadm invalidate r1` on the old primary and a wait for its sync.
 */
import { NbdClient } from '../src/nbd/index.js';
import { parseReplayValue } from '../src/replication/log_names.js';
import { actualKey, primaryKey, replayKey, resourceKey } from '../src/tree/index.js';
import { sleep } from './_cluster.js';
import { median, percentile, SshLab, verbose, waitUntil } from './_ssh_lab.js';
import { report } from './report.js';

const RES = 'r1';
const DEVICE = 32 << 20;
const RUNS = Number(process.env['PHOBOS_BENCH_FAILOVERS'] ?? 10);

async function exported(socket: string): Promise<boolean> {
  const device = await NbdClient.connect(socket, RES).catch(() => null);
  if (!device) return false;
  await device.disconnect().catch(() => undefined);
  return true;
}

/** Until `old` is a healthy secondary of `primary` again; invalidate on a split brain. */
async function rejoin(lab: SshLab, old: string, primary: string): Promise<string> {
  let how = 'rejoined';
  await waitUntil(`${old} to leave (is-primary = 0)`, async () => (await lab.get(old, actualKey(RES, old, 'is-primary'))) === '0', 60_000, 50);
  const split = (await lab.marsadm(primary, 'view-is-split-brain', RES)).stdout.trim();
  if (split === '1') {
    how = 'split brain, invalidated';
    await lab.marsadm(old, 'invalidate', RES);
    await waitUntil(`${old}'s sync`, async () => (await lab.get(old, resourceKey(RES, `syncstatus-${old}`))) === String(DEVICE), 120_000, 100);
  }
  await waitUntil(`${old} to replay ${primary}'s new log`, async () => {
    const end = (await lab.get(primary, actualKey(RES, primary, 'log-end'))).split(',')[0];
    const replay = parseReplayValue(await lab.get(old, replayKey(RES, old)));
    return !!end && replay?.log === end && (await lab.get(old, actualKey(RES, old, 'replay-code'))) === '0';
  }, 120_000, 50);
  return how;
}

export async function runFailoverSsh(): Promise<void> {
  const lab = await SshLab.cluster('phbench-fail', ['alpha', 'beta']);
  const down = new Set<string>();
  try {
    await lab.replicated(RES, ['alpha', 'beta'], DEVICE);
    const views: number[] = [];
    for (let i = 0; i < 6; i++) views.push((await lab.marsadm(i % 2 ? 'alpha' : 'beta', 'view', RES)).ms);
    const view = median(views);

    const total: number[] = [], daemon: number[] = [], disconnectMs: number[] = [], forceMs: number[] = [], resets: string[] = [];
    let primary = 'alpha';
    for (let run = 0; run < RUNS; run++) {
      const old = primary, next = primary === 'alpha' ? 'beta' : 'alpha';
      await lab.lab.linkDown(old);
      down.add(old);
      const socket = lab.socket(next, RES);
      const t0 = performance.now();
      let exportedAt = 0, linkAt = 0, stop = false;
      const watch = (async () => {
        while (!stop && (!exportedAt || !linkAt)) {
          if (!linkAt && (await lab.get(next, primaryKey(RES))) === next) linkAt = performance.now();
          if (!exportedAt && await exported(socket)) exportedAt = performance.now();
          await sleep(5);
        }
      })();
      disconnectMs.push((await lab.marsadm(next, 'disconnect', RES)).ms);
      forceMs.push((await lab.marsadm(next, 'primary', '--force', RES)).ms);
      await waitUntil(`${next}'s export`, () => exportedAt > 0, 30_000, 5);
      stop = true;
      await watch;
      total.push(exportedAt - t0);
      daemon.push(exportedAt - linkAt);
      primary = next;
      await lab.lab.linkUp(old);
      down.delete(old);
      const t = performance.now();
      resets.push(await rejoin(lab, old, next));
      verbose(`failover ${run} ${old} -> ${next}: exported after ${(exportedAt - t0).toFixed(0)} ms (daemon ${(exportedAt - linkAt).toFixed(0)} ms; ` +
        `disconnect ${disconnectMs[run]!.toFixed(0)}, primary --force ${forceMs[run]!.toFixed(0)} ms); reset: ${resets[run]} in ${((performance.now() - t) / 1000).toFixed(1)} s`);
    }
    const sorted = (xs: number[]): number[] => [...xs].sort((a, b) => a - b);
    const range = (xs: number[]): string => `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)} ms`;
    const invalidated = resets.filter((r) => r !== 'rejoined').length;
    report('failover-p50', percentile(sorted(total), 50) / 1000, 's', view / 1000,
      `old primary's cable cut, then \`marsadm disconnect ${RES}\` + \`marsadm primary --force ${RES}\` on the other host ` +
      `(namespaces, SSH transport) until its export accepts an NBD connection; ${RUNS} runs alternating direction ` +
      `(${range(total)}; p99 ${percentile(sorted(total), 99).toFixed(0)} ms; disconnect p50 ${median(disconnectMs).toFixed(0)} ms, ` +
      `primary --force p50 ${median(forceMs).toFixed(0)} ms, node start-up included; ${invalidated} of ${RUNS} resets needed invalidate) ` +
      `(target p50 <= 0.5 s); baseline: \`marsadm view ${RES}\` run the same way, p50`);
    report('failover-daemon-p50', percentile(sorted(daemon), 50) / 1000, 's', view / 1000,
      `the daemon's part of the same runs: from \`primary\` = the new host in its tree (written by primary --force, polled ` +
      `every 5 ms) until its export accepts an NBD connection (${range(daemon)}); baseline: marsadm view, p50`);
  } catch (e) {
    for (const h of ['alpha', 'beta']) console.error(`--- daemon ${h}\n${lab.daemonTail(h)}`);
    throw e;
  } finally {
    for (const h of down) await lab.lab.linkUp(h).catch(() => undefined);
    await lab.close();
  }
}
