/**
 * log-append: 1 GiB of 64 KiB writes through the LogWriter (crc32c, no compression,
 * fdatasync at the end), against plain sequential writes of the same bytes to the same
 * filesystem. Target ratio >= 0.85; resident memory stays under 64 MiB.
 * log-replay: replay of that log onto a file, against plain pwrite of the same data.
 * Target ratio >= 0.85.
 */
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import path from 'node:path';

import { LogWriter, replayLog } from '../src/dataplane/index.js';
import { report } from './report.js';

const TOTAL = 1024 * 1024 * 1024;
const WRITE = 64 * 1024;
const INFLIGHT = 64;

/** A few distinct buffers reused round robin: the bench must not hold 1 GiB itself. */
function payloads(): Buffer[] {
  return Array.from({ length: INFLIGHT * 2 }, () => randomFillSync(Buffer.allocUnsafe(WRITE)));
}

function plainWrites(file: string, bufs: Buffer[]): number {
  const t = performance.now();
  const fd = openSync(file, 'w');
  for (let at = 0, i = 0; at < TOTAL; at += WRITE, i++) writeSync(fd, bufs[i % bufs.length]!, 0, WRITE, at);
  fdatasyncSync(fd);
  closeSync(fd);
  return (performance.now() - t) / 1000;
}

async function logAppend(file: string, bufs: Buffer[]): Promise<{ seconds: number }> {
  const t = performance.now();
  const log = await LogWriter.open(file);
  // Keep INFLIGHT writes queued: a counter and one waiter, O(1) per write.
  let inflight = 0;
  let wake: (() => void) | null = null;
  const settled = () => {
    inflight--;
    wake?.();
    wake = null;
  };
  for (let at = 0, i = 0; at < TOTAL; at += WRITE, i++) {
    inflight++;
    log.write(at, bufs[i % bufs.length]!).then(settled, (e: unknown) => { throw e; });
    if (inflight >= INFLIGHT) await new Promise<void>((resolve) => { wake = resolve; });
  }
  while (inflight > 0) await new Promise<void>((resolve) => { wake = resolve; });
  await log.sync();
  const seconds = (performance.now() - t) / 1000;
  await log.close();
  return { seconds };
}

/** Peak growth of resident memory while fn runs, MiB. */
async function rssGrowthMiB<T>(fn: () => Promise<T>): Promise<{ result: T; growthMiB: number }> {
  const base = process.memoryUsage().rss;
  let peak = base;
  const sample = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 10);
  try {
    const result = await fn();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { result, growthMiB: (peak - base) / 1024 / 1024 };
  } finally {
    clearInterval(sample);
  }
}

/**
 * Runs are interleaved (baseline, measured, baseline, measured) and the best of each
 * kept: on a shared virtual disk the first gigabyte after a delete is slower, and
 * interleaving spreads that over both sides.
 */
export async function runLogAppendAndReplay(opts: { replay: boolean; appendFigures?: boolean }): Promise<void> {
  const dir = mkdtempSync(path.join(process.env['PHOBOS_BENCH_DIR'] ?? '/var/tmp', 'phobos-bench-'));
  const mb = TOTAL / 1e6;
  const plainFile = path.join(dir, 'plain');
  const logFile = path.join(dir, 'log-000000001-bench');
  try {
    const bufs = payloads();
    let plain = Infinity, append = Infinity, plainGrowth = 0, appendGrowth = 0;
    for (let round = 0; round < 2; round++) {
      const p = await rssGrowthMiB(async () => plainWrites(plainFile, bufs));
      rmSync(plainFile);
      plain = Math.min(plain, p.result);
      plainGrowth = Math.max(plainGrowth, p.growthMiB);
      rmSync(logFile, { force: true });
      const a = await rssGrowthMiB(() => logAppend(logFile, bufs));
      append = Math.min(append, a.result.seconds);
      appendGrowth = Math.max(appendGrowth, a.growthMiB);
    }
    if (opts.appendFigures ?? true) {
      report('log-append', mb / append, 'MB/s', mb / plain, '1 GiB of 64 KiB writes, fdatasync at the end; baseline plain sequential writes + fdatasync; best of 2, interleaved');
      report('log-append-memory', appendGrowth, 'MiB', plainGrowth, 'peak resident memory growth during the append (target < 64 MiB); baseline the same for the plain writes');
    }
    if (!opts.replay) return;
    const best: Record<'plain' | 'auto' | 'on', number> = { plain: Infinity, auto: Infinity, on: Infinity };
    let usedDirect = false;
    for (let round = 0; round < 2; round++) {
      best.plain = Math.min(best.plain, plainWrites(plainFile, bufs));
      rmSync(plainFile);
      for (const direct of ['auto', 'on'] as const) {
        const target = path.join(dir, `replica-${direct}`);
        const t = performance.now();
        const r = await replayLog(logFile, target, { create: true, direct });
        best[direct] = Math.min(best[direct], (performance.now() - t) / 1000);
        if (r.status !== 'end') throw new Error(`replay ended ${r.status}`);
        if (direct === 'on') usedDirect = r.direct;
        rmSync(target);
      }
    }
    const note = 'replay of the 1 GiB log onto a new file + fdatasync; baseline plain pwrite of the same data + fdatasync; best of 2, interleaved';
    report('log-replay', mb / best.auto, 'MB/s', mb / best.plain, `${note}; buffered (direct=auto on a file)`);
    report('log-replay-odirect', mb / best.on, 'MB/s', mb / best.plain, `${note}; ${usedDirect ? 'O_DIRECT, coalesced 4 MiB writes' : 'O_DIRECT unavailable, buffered'}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
