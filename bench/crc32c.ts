/**
 * crc32c: GB/s over a 256 MiB buffer, against md5 from node:crypto in the same run.
 * Target (issue 2): ratio >= 15 and >= 8 GB/s.
 */
import { createHash, randomFillSync } from 'node:crypto';

import { crc32c, crc32cImplementation } from '../src/dataplane/index.js';
import { bestSeconds, report } from './report.js';

export async function runCrc32c(): Promise<void> {
  const size = 256 * 1024 * 1024;
  const buf = randomFillSync(Buffer.allocUnsafe(size));
  const gb = size / 1e9;
  const md5 = gb / await bestSeconds(3, () => createHash('md5').update(buf).digest());
  const auto = gb / await bestSeconds(6, () => crc32c(buf));
  report('crc32c', auto, 'GB/s', md5, `${crc32cImplementation()} via the addon on a worker thread; baseline md5 (node:crypto)`);
  const portable = gb / await bestSeconds(3, () => crc32c(buf, 0, 'portable'));
  report('crc32c-portable', portable, 'GB/s', md5, 'slice-by-8 fallback; baseline md5');
}
