/**
 * npm run demo -- --crash: one host, end to end, as an operator would see it.
 *
 *   marsadm create-cluster; marsadm daemon &; marsadm create-resource demo disk.img 256M
 *   a write workload through the NBD export (sequential 1 MiB and random 4 KiB, some FUA)
 *   kill -9 of the daemon in the middle of it; restart; every acknowledged write checked
 *   marsadm view; marsadm log-check of every log
 *
 * Everything lives in a temp dir that is removed at the end; every process it starts is
 * stopped. Usage: npm run demo -- --crash [--json] [--keep]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { NbdClient } from '../nbd/index.js';
import { ProgressBar } from '../cli/progress.js';
import { formatBytes } from '../cli/format.js';

const MARSADM = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'cli', 'main.js');
const BLOCK = 4096;
const DISK_BYTES = 256 << 20;
const BLOCKS = DISK_BYTES / BLOCK;
const json = process.argv.includes('--json');
const keep = process.argv.includes('--keep');
const say = (line: string) => { if (!json) console.log(line); };

let dir = '';
let env: NodeJS.ProcessEnv = {};
let socket = '';

/** Run marsadm, echoing the command like a shell session. */
async function marsadm(...args: string[]): Promise<string> {
  say(`$ marsadm ${args.join(' ')}`);
  const child = spawn(process.execPath, [MARSADM, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number>((r) => child.once('exit', (c) => r(c ?? 1)));
  if (out && !json) process.stdout.write(`${out.trimEnd().replace(/^/gm, '  ')}\n`);
  if (code !== 0) throw new Error(`marsadm ${args[0]} exited ${code}: ${err.trim()}`);
  return out;
}

function startDaemon(): Promise<ChildProcess> {
  say('$ marsadm daemon &');
  const child = spawn(process.execPath, [MARSADM, 'daemon'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      log += d.toString();
      if (log.includes(': started on ')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`daemon exited ${code}: ${log}`)));
  });
}

async function stop(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

/** Connect once the restarted daemon has recovered and listens. */
async function connectWhenServed(): Promise<NbdClient> {
  for (let i = 0; ; i++) {
    try {
      return await NbdClient.connect(socket, 'demo');
    } catch (error) {
      if (i > 400) throw error;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}

/** Each 4 KiB block written carries (write id, block index), so any block can be checked. */
function blockData(id: number, first: number, count: number): Buffer {
  const b = Buffer.alloc(count * BLOCK);
  for (let i = 0; i < count; i++) {
    b.writeUInt32LE(id, i * BLOCK);
    b.writeUInt32LE(first + i, i * BLOCK + 4);
    b.fill(id & 0xff, i * BLOCK + 8, (i + 1) * BLOCK);   // compressible filler
  }
  return b;
}

async function main(): Promise<number> {
  dir = mkdtempSync(path.join(os.tmpdir(), 'phobos-demo-'));
  env = { ...process.env, MARS_ROOT: path.join(dir, 'mars'), MARS_HOST: 'alpha', PHOBOS_RUN_DIR: path.join(dir, 'run') };
  socket = path.join(dir, 'run', 'demo.nbd');
  const started = performance.now();
  writeFileSync(path.join(dir, 'disk.img'), '');
  await marsadm('create-cluster');
  let daemon = await startDaemon();
  try {
    await marsadm('create-resource', 'demo', path.join(dir, 'disk.img'), '256M');

    // Workload until the kill: 16 writers, 3/4 sequential 1 MiB, 1/4 random 4 KiB, 1/16 FUA.
    say('writing through the NBD export; the daemon gets kill -9 after 2 s ...');
    const client = await NbdClient.connect(socket, 'demo');
    const acked = new Int32Array(BLOCKS).fill(-1);   // id of the last acknowledged write per block
    const inflight = new Map<number, { id: number; first: number; count: number }>();
    let id = 0, seq = 0, ackedBytes = 0, killed = false;
    const bar = new ProgressBar('write', 2000);
    const t0 = performance.now();
    const killer = setTimeout(() => { killed = true; void stop(daemon, 'SIGKILL'); }, 2000);
    const busy = new Set<number>();
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (!killed) {
        const myId = ++id;
        const random = myId % 4 === 0;
        const count = random ? 1 : 256;
        const first = random ? Math.floor(Math.random() * BLOCKS) : seq;
        if (!random) seq = (seq + 256) % BLOCKS;
        if (busy.has(first)) continue;
        busy.add(first);
        inflight.set(myId, { id: myId, first, count });
        try {
          await client.write(first * BLOCK, blockData(myId, first, count), myId % 16 === 0);
        } catch {
          return;   // the daemon is gone: this write stays unacknowledged
        }
        busy.delete(first);
        inflight.delete(myId);
        for (let i = 0; i < count; i++) acked[first + i] = myId;
        ackedBytes += count * BLOCK;
        bar.update(performance.now() - t0);
      }
    }));
    clearTimeout(killer);
    bar.done();
    await client.disconnect().catch(() => undefined);
    const ackedWrites = id - inflight.size;
    say(`daemon killed with SIGKILL: ${ackedWrites} writes (${formatBytes(ackedBytes)}) acknowledged, ${inflight.size} in flight`);

    daemon = await startDaemon();
    const t1 = performance.now();
    const again = await connectWhenServed();
    const recoverMs = performance.now() - t1;
    const image = Buffer.alloc(DISK_BYTES);
    for (let at = 0; at < DISK_BYTES; at += 16 << 20) (await again.read(at, 16 << 20)).copy(image, at);
    await again.disconnect();
    let checked = 0, bad = 0;
    const maybe = new Map<number, number>();
    for (const w of inflight.values()) for (let i = 0; i < w.count; i++) maybe.set(w.first + i, w.id);
    for (let b = 0; b < BLOCKS; b++) {
      if (acked[b]! < 0) continue;
      const got = image.readUInt32LE(b * BLOCK);
      if ((got !== acked[b] && got !== maybe.get(b)) || image.readUInt32LE(b * BLOCK + 4) !== b) bad++;
      checked++;
    }
    say(`restarted: recovered and serving again after ${recoverMs.toFixed(0)} ms; ${checked} acknowledged blocks checked, ${bad} wrong`);

    const view = await marsadm('view');
    for (const log of readdirSync(path.join(dir, 'mars', 'resource-demo')).filter((f) => f.startsWith('log-'))) {
      await marsadm('log-check', path.join(dir, 'mars', 'resource-demo', log));
    }
    const figures = {
      ackedWrites, ackedBytes, inflightAtKill: inflight.size, blocksChecked: checked, blocksWrong: bad,
      recoverMs: Math.round(recoverMs), writeMBps: Number((ackedBytes / 1e6 / 2).toFixed(1)),
      seconds: Number(((performance.now() - started) / 1000).toFixed(1)), viewLines: view.trim().split('\n').length,
    };
    if (json) console.log(JSON.stringify(figures));
    say(bad === 0 ? 'every acknowledged write survived the kill' : `${bad} acknowledged blocks were LOST`);
    return bad === 0 ? 0 : 1;
  } finally {
    await stop(daemon, 'SIGTERM');
  }
}

export function runCrashDemo(): Promise<void> {
  return main().then((code) => {
    process.exitCode = code;
  }, (error: unknown) => {
    console.error(`demo failed: ${(error as Error).message}`);
    process.exitCode = 1;
  }).finally(() => {
    if (keep) console.log(`kept ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  });
}
