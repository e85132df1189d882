/**
 * compress: lz4 and zstd (level 1) MB/s and size ratio on a mixed corpus (zeros, text,
 * random, 64 MiB in 4 KiB blocks), in 64 KiB and 1 MiB records. Baseline: node's zlib
 * deflate level 1 on the same corpus and records, the only codec Node 20 ships.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';

import { codecRoundTrip, codecStatus } from '../src/dataplane/index.js';
import { report } from './report.js';

function corpus(bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  const text = Buffer.from('2026-11-22T04:00:00Z db-1 postgres[812]: checkpoint complete: wrote 1893 buffers (11.6%)\n');
  let x = 12345;
  for (let block = 0; block < bytes / 4096; block++) {
    const kind = block % 3;
    const at = block * 4096;
    if (kind === 1) {
      for (let i = 0; i < 4096; i += text.length) text.copy(out, at + i, 0, Math.min(text.length, 4096 - i));
    } else if (kind === 2) {
      for (let i = 0; i < 4096; i += 4) {
        x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
        out.writeInt32LE(x | 0, at + i);
      }
    }
  }
  return out;
}

export async function runCompress(): Promise<void> {
  const data = corpus(64 * 1024 * 1024);
  for (const record of [64 * 1024, 1024 * 1024]) {
    const label = record === 65536 ? '64k' : '1m';
    let deflated = 0;
    const chunks: Buffer[] = [];
    const t = performance.now();
    for (let at = 0; at < data.length; at += record) chunks.push(deflateRawSync(data.subarray(at, at + record), { level: 1 }));
    const deflateMBps = data.length / 1e6 / ((performance.now() - t) / 1000);
    for (const c of chunks) deflated += c.length;
    const deflateRatio = data.length / deflated;
    const t2 = performance.now();
    for (const c of chunks) inflateRawSync(c);
    const inflateMBps = data.length / 1e6 / ((performance.now() - t2) / 1000);
    for (const codec of ['lz4', 'zstd'] as const) {
      if (!codecStatus(codec).available) {
        console.error(`compress: ${codec} unavailable: ${codecStatus(codec).error}`);
        continue;
      }
      let best = { compressNs: Infinity, decompressNs: Infinity, outputBytes: 0 };
      for (let i = 0; i < 2; i++) {
        const r = await codecRoundTrip(codec, data, record);
        best = { compressNs: Math.min(best.compressNs, r.compressNs), decompressNs: Math.min(best.decompressNs, r.decompressNs), outputBytes: r.outputBytes };
      }
      const mb = data.length / 1e6;
      report(`compress-${codec}-${label}`, mb / (best.compressNs / 1e9), 'MB/s', deflateMBps, 'baseline zlib deflate level 1, same corpus and records');
      report(`decompress-${codec}-${label}`, mb / (best.decompressNs / 1e9), 'MB/s', inflateMBps, 'uncompressed MB per second; baseline zlib inflate of the deflate output');
      report(`ratio-${codec}-${label}`, data.length / best.outputBytes, 'x', deflateRatio, 'size ratio; baseline deflate level 1');
    }
  }
}
