/**
 * ship-ssh: log shipping throughput alpha -> beta over the real SSH transport between two
 * network namespaces (bench/_ssh_lab.ts), target >= 0.8 x `ssh cat` of the same bytes.
 *
 * beta joins the resource, then pauses fetch and replay; 512 MiB of random data are
 * written through alpha's export (64 MiB device, written over 8 times), so alpha's log
 * holds them; the page cache is flushed (sync) and left to settle. Then beta's fetch
 * switch is set (`todo-beta/connect = 1`, what resume-fetch writes, straight into beta's
 * tree) and we time until beta's copy of the log has the primary's size (the replica
 * writes a reply only when it and every earlier one are in, so size = contiguous bytes),
 * and report when `actual-beta/fetch-pos` said so too.
 *
 * Baselines, same run, same namespaces, same direction, into a file on beta's filesystem:
 * OpenSSH `ssh alpha cat <log>` run in beta's namespace with its defaults (chacha20-poly1305
 * with this OpenSSH; ssh2 negotiates aes128-gcm), timed from the first byte received to
 * the last (login excluded: the daemon's link is long-lived). First of three copies (it
 * writes into page-cache pages nobody touched lately, as the transfer does) and best of
 * three; OpenSSH with aes128-gcm (best of two), so a cipher difference and a transport
 * difference can be told apart; and a diagnostic, `ship-ssh-transport-only`: the
 * replica's fetch loop without the daemon (bench/_ssh_fetch_client.ts) over the same SSH
 * transport to the real peer-serve. Details and numbers: docs/benchmarks.md.
 */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { rmSync, statSync } from 'node:fs';
import path from 'node:path';

import { NbdClient } from '../src/nbd/index.js';
import { actualKey, todoKey } from '../src/tree/index.js';
import { profileWindow, sleep } from './_cluster.js';
import type { FetchClientArgs } from './_ssh_fetch_client.js';
import { commOf, SSH_PORT, SshLab, ticksOf, verbose, waitUntil } from './_ssh_lab.js';
import { report } from './report.js';

const RES = 'ship';
const DEVICE = 64 << 20;
const WRITE_BYTES = Number(process.env['PHOBOS_BENCH_SHIP_MIB'] ?? 512) << 20;
const WRITE_SIZE = 1 << 20;
const INFLIGHT = 16;

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

async function fillLog(socket: string): Promise<void> {
  const device = await NbdClient.connect(socket, RES);
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

const q = (w: string): string => `'${w.replace(/'/g, `'\\''`)}'`;

/**
 * Seconds OpenSSH takes to stream `file` from alpha into `out` in beta's namespace, from
 * the first byte received to the last (login and start-up excluded: the daemon's link is
 * long-lived): `ssh alpha cat file | { dd 1 byte; t0; cat >> out; t1; }`.
 */
async function sshCatSeconds(lab: SshLab, file: string, out: string, size: number, extra: readonly string[] = []): Promise<number> {
  const ssh = ['ssh', ...extra, ...lab.sshOptions('alpha'), 'alpha', `cat ${file}`].map(q).join(' ');
  const script = `${ssh} | { dd bs=1 count=1 of=${q(out)} status=none; a=$(date +%s%N); cat >> ${q(out)}; b=$(date +%s%N); echo $((b-a)); }`;
  const r = await lab.lab.exec('beta', 'bash', ['-c', script], { check: false, timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(`baseline ssh cat failed (${r.code}): ${r.stderr.trim()}`);
  if (sizeOf(out) !== size) throw new Error(`baseline copy has ${sizeOf(out)} bytes, not ${size}`);
  rmSync(out, { force: true });
  return Number(r.stdout.trim()) / 1e9;
}

/** The replica's fetch without the daemon (bench/_ssh_fetch_client.ts): seconds and client CPU %. */
async function transportSeconds(lab: SshLab, log: string, size: number, out: string): Promise<{ seconds: number; cpu: number }> {
  const args: FetchClientArgs = {
    key: path.join(lab.host('beta').sshDir, 'cluster_ed25519'), hostKey: lab.host('alpha').sshd!.hostKeyBlob.toString('base64'),
    host: 'alpha', address: lab.address('alpha'), port: SSH_PORT, uuid: await lab.get('alpha', 'uuid'), self: 'beta',
    res: RES, log, size, window: 8, out,
  };
  const client = new URL('./_ssh_fetch_client.ts', import.meta.url).pathname;
  const r = await lab.lab.exec('beta', process.execPath, ['--import', 'tsx', client, JSON.stringify(args)], { check: false, timeoutMs: 300_000 });
  rmSync(out, { force: true });
  const result = JSON.parse(r.stdout.trim().split('\n').pop() || '{}') as { bytes?: number; ms?: number; cpuPercent?: number; error?: string };
  if (result.bytes !== size) throw new Error(`fetch client: ${result.error ?? `${result.bytes} bytes of ${size}`} ${r.stderr.trim().slice(-500)}`);
  return { seconds: result.ms! / 1000, cpu: result.cpuPercent! };
}

export async function runShipSsh(): Promise<void> {
  const lab = await SshLab.cluster('phbench-ship', ['alpha', 'beta']);
  try {
    const alphaDisk = lab.disk('alpha', 'disk', DEVICE);
    const betaDisk = lab.disk('beta', 'disk', DEVICE);
    await lab.marsadm('alpha', 'create-resource', RES, alphaDisk);
    await waitUntil('beta to learn of the resource', async () => (await lab.get('beta', `resource-${RES}/replay-alpha`)) !== '');
    await lab.marsadm('beta', 'join-resource', RES, betaDisk);
    await lab.marsadm('beta', 'pause-fetch', RES);
    await lab.marsadm('beta', 'pause-replay', RES);
    await waitUntil('beta to stop fetching', async () => (await lab.get('beta', actualKey(RES, 'beta', 'is-copying'))) === '0');

    await fillLog(lab.socket('alpha', RES));
    spawnSync('sync');
    await sleep(2000);
    const logName = 'log-000000001-alpha';
    const source = path.join(lab.host('alpha').root, `resource-${RES}`, logName);
    const copy = path.join(lab.host('beta').root, `resource-${RES}`, logName);
    const target = sizeOf(source);
    const start = sizeOf(copy);

    const pids = [...await lab.namespacePids('alpha'), ...await lab.namespacePids('beta')];
    const before = ticksOf(pids);
    profileWindow(pids.filter((p) => commOf(p) === 'node')); // PHOBOS_BENCH_PROFILE: the transfer only
    const t = performance.now();
    await lab.set('beta', todoKey(RES, 'beta', 'connect'), '1');
    await waitUntil('beta\'s copy of the log to reach the primary\'s size', () => sizeOf(copy) >= target, 300_000, 5);
    const seconds = (performance.now() - t) / 1000;
    await waitUntil('actual-beta/fetch-pos to say so', async () => (await lab.get('beta', actualKey(RES, 'beta', 'fetch-pos'))) === `${logName},${target}`, 30_000, 5);
    const published = (performance.now() - t) / 1000;
    profileWindow(pids.filter((p) => commOf(p) === 'node'));
    // Who burnt the CPU during the transfer (peer-serve runs in alpha's namespace, under sshd).
    const nowPids = [...await lab.namespacePids('alpha'), ...await lab.namespacePids('beta')];
    const after = ticksOf(nowPids);
    const alphaPids = new Set(await lab.namespacePids('alpha'));
    const shares = [...after].map(([pid, ticks]) => ({
      what: `${alphaPids.has(pid) ? 'alpha' : 'beta'}:${commOf(pid)}(${pid})`, pct: (ticks - (before.get(pid) ?? 0)) / seconds,
    })).filter((s) => s.pct >= 1).sort((a, b) => b.pct - a.pct);
    const cpu = shares.map((s) => `${s.what} ${s.pct.toFixed(0)} %`).join(', ');
    verbose(`ship-ssh: ${seconds.toFixed(2)} s to size, ${published.toFixed(2)} s to fetch-pos; CPU: ${cpu}`);
    const shipped = target - start;

    // Baselines between the same namespaces, same direction, into a file on beta.
    const out = path.join(lab.host('beta').dir, 'baseline-copy');
    const copies: number[] = [];
    for (let i = 0; i < 3; i++) copies.push(await sshCatSeconds(lab, source, out, target));
    const gcm: number[] = [];
    for (let i = 0; i < 2; i++) gcm.push(await sshCatSeconds(lab, source, out, target, ['-c', 'aes128-gcm@openssh.com']));
    const bare: { seconds: number; cpu: number }[] = [];
    for (let i = 0; i < 2; i++) bare.push(await transportSeconds(lab, logName, target, out));
    const mbs = shipped / 1e6 / seconds;
    const mib = (shipped / 2 ** 20).toFixed(0);
    const list = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join('/');
    report('ship-ssh', mbs, 'MB/s', target / 1e6 / copies[0]!,
      `${mib} MiB of log fetched by a paused secondary after todo-beta/connect=1, SSH transport (ssh2, aes128-gcm) between ` +
      `two namespaces, replay paused, until the copy has the primary's size (${seconds.toFixed(2)} s; fetch-pos published ` +
      `at ${published.toFixed(2)} s) (target ratio >= 0.8); baseline: OpenSSH \`ssh alpha cat log\` into a file in beta's ` +
      `namespace, default cipher (chacha20-poly1305), first byte to last, first of 3 (${list(copies)} s). ` +
      `CPU during the transfer (% of a core): ${cpu}`);
    report('ship-ssh-best', mbs, 'MB/s', target / 1e6 / Math.min(...copies),
      'the same transfer; baseline: the best of the 3 OpenSSH copies (later ones reuse page-cache pages the first one freed)');
    report('ship-ssh-vs-gcm', mbs, 'MB/s', target / 1e6 / Math.min(...gcm),
      `the same transfer; baseline: OpenSSH ssh cat with -c aes128-gcm@openssh.com (the cipher ssh2 negotiates), best of 2 (${list(gcm)} s)`);
    const bestBare = bare.reduce((a, b) => (a.seconds <= b.seconds ? a : b));
    report('ship-ssh-transport-only', target / 1e6 / bestBare.seconds, 'MB/s', target / 1e6 / Math.min(...copies),
      `diagnostic: the replica's fetch minus the daemon (bench/_ssh_fetch_client.ts: SSH transport + real peer-serve, ` +
      `LOG_READ 8 x 1 MiB in flight, written in order to a file), best of 2 (${list(bare.map((b) => b.seconds))} s, client CPU ` +
      `${bare.map((b) => b.cpu.toFixed(0)).join('/')} %); baseline: the best OpenSSH copy`);
  } catch (e) {
    for (const h of ['alpha', 'beta']) console.error(`--- daemon ${h}\n${lab.daemonTail(h)}`);
    throw e;
  } finally {
    await lab.close();
  }
}
