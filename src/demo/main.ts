#!/usr/bin/env node
/**
 * npm run demo: the data path on one machine, end to end. A workload (sequential and
 * random writes, zeroed ranges, FUA writes) goes through the LogWriter while the
 * "primary disk" gets the same writes, as write-back would; then the log is verified
 * and replayed onto a "secondary disk", and the two disks' block digests are compared.
 * Until the cluster exists this is the whole story; later issues add hosts.
 *
 * Usage: npm run demo [-- --json] [-- --size MiB]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { ProgressBar } from '../cli/progress.js';
import { formatBytes } from '../cli/format.js';
import { blockDigests, checkLog, codecStatus, LogWriter, replayLog } from '../dataplane/index.js';

interface DemoFigures {
  deviceBytes: number;
  writes: number;
  zeroRanges: number;
  durableWrites: number;
  logBytes: number;
  compressionRatio: number;
  codec: string;
  fdatasyncs: number;
  appendMBps: number;
  replayMBps: number;
  replayedRecords: number;
  blocksCompared: number;
  identical: boolean;
}

function args(): { json: boolean; sizeMiB: number } {
  const argv = process.argv.slice(2);
  const at = argv.indexOf('--size');
  return { json: argv.includes('--json'), sizeMiB: at >= 0 ? Number(argv[at + 1]) : 256 };
}

/** Random bytes (xorshift), or log-like text lines that compress well. */
function fill(buf: Buffer, seed: number, text: boolean): Buffer {
  if (text) {
    const line = Buffer.from(`2026-11-22 12:00:00 app[${seed}]: order ${seed * 7} committed, ${seed % 97} items\n`);
    for (let i = 0; i < buf.length; i += line.length) line.copy(buf, i);
    return buf;
  }
  let x = seed | 1;
  for (let i = 0; i < buf.length; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    buf.writeInt32LE(x | 0, i);
  }
  return buf;
}

async function main(): Promise<number> {
  const { json, sizeMiB } = args();
  const deviceBytes = sizeMiB * 1024 * 1024;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'phobos-demo-'));
  const logPath = path.join(dir, 'log-000000001-demo');
  const primaryPath = path.join(dir, 'primary.img');
  const secondaryPath = path.join(dir, 'secondary.img');
  const codec = codecStatus('lz4').available ? 'lz4' : 'none';
  const say = (line: string) => { if (!json) console.log(line); };

  try {
    say(`Phobos demo: ${formatBytes(deviceBytes)} device, log in ${dir}`);
    const primary = await open(primaryPath, 'w+');
    await primary.truncate(deviceBytes);
    const log = await LogWriter.open(logPath, { codec });

    // Workload: 3/4 sequential 64 KiB, 1/4 random 4 KiB; every 16th a zeroed range; every
    // 8th a FUA write (settles only once the log is durable).
    const bar = new ProgressBar('write', deviceBytes);
    let written = 0, writes = 0, zeroRanges = 0, durableWrites = 0, seq = 0;
    const inflight = new Set<Promise<void>>();
    const t0 = performance.now();
    while (written < deviceBytes) {
      const i = writes + zeroRanges;
      let op: Promise<unknown>;
      let devWrite: Promise<unknown>;
      if (i % 16 === 15) {
        const offset = (i * 7919 * 4096) % (deviceBytes - 65536);
        op = log.zero(offset, 65536);
        devWrite = primary.write(Buffer.alloc(65536), 0, 65536, offset);
        zeroRanges++;
      } else {
        const random = i % 4 === 3;
        const size = random ? 4096 : 65536;
        const offset = random ? ((i * 104729) % (deviceBytes / 4096)) * 4096 : seq;
        if (!random) seq = (seq + size) % deviceBytes;
        const data = fill(Buffer.allocUnsafe(size), i + 1, i % 2 === 0);
        const durable = i % 8 === 7;
        op = log.write(offset, data, { durable });
        devWrite = primary.write(data, 0, size, offset);
        durableWrites += durable ? 1 : 0;
        writes++;
        written += size;
      }
      const both: Promise<void> = Promise.all([op, devWrite]).then(() => { inflight.delete(both); });
      inflight.add(both);
      if (inflight.size >= 32) await Promise.race(inflight);
      bar.update(written);
    }
    await Promise.all(inflight);
    await log.close();
    await primary.sync();
    await primary.close();
    const appendSeconds = (performance.now() - t0) / 1000;
    bar.done();

    const check = await checkLog(logPath);
    say(`log: ${check.records} records, ${formatBytes(check.validBytes)}, ${check.status === 'end' ? 'verified' : check.status}, ` +
      `compression ${codec} ratio ${check.compressionRatio.toFixed(2)}, ${log.syncs} fdatasyncs for ${durableWrites} FUA writes`);

    const t1 = performance.now();
    const replay = await replayLog(logPath, secondaryPath, { create: true });
    const replaySeconds = (performance.now() - t1) / 1000;
    const secondary = await open(secondaryPath, 'r+');
    await secondary.truncate(deviceBytes);
    await secondary.close();
    say(`replay: ${replay.records} records, ${formatBytes(replay.bytes)} applied in ${replaySeconds.toFixed(2)} s`);

    const [a, b] = await Promise.all([blockDigests(primaryPath), blockDigests(secondaryPath)]);
    const identical = a.length === b.length && a.every((d, k) => d === b[k]);
    const figures: DemoFigures = {
      deviceBytes, writes, zeroRanges, durableWrites,
      logBytes: check.validBytes,
      compressionRatio: Number(check.compressionRatio.toFixed(3)),
      codec,
      fdatasyncs: log.syncs,
      appendMBps: Number((written / 1e6 / appendSeconds).toFixed(1)),
      replayMBps: Number((replay.bytes / 1e6 / replaySeconds).toFixed(1)),
      replayedRecords: replay.records,
      blocksCompared: a.length,
      identical,
    };
    if (json) console.log(JSON.stringify(figures));
    say(`digests: ${a.length} blocks of 64 KiB compared, primary and secondary ${identical ? 'IDENTICAL' : 'DIFFER'}`);
    say(`throughput: append ${figures.appendMBps} MB/s (log + primary disk), replay ${figures.replayMBps} MB/s`);
    return identical && check.status === 'end' && replay.status === 'end' ? 0 : 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then((code) => {
  process.exitCode = code;
}, (error: unknown) => {
  console.error(`demo failed: ${(error as Error).message}`);
  process.exitCode = 1;
});
