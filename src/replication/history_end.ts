/**
 * Where a log's history ends. A log closed cleanly ends with a SYNC_MARK (docs/
 * log-format.md), which carries no data. Whether a close appended one depends on how the
 * log stopped: a primary that leaves seals after its mark; a host made primary by force
 * ended the same log where the data it had ended. Both must name the same point, or two
 * identical histories would look like a split brain: so every end (version links, the
 * published log end) leaves a final SYNC_MARK out.
 */
import { scanFileBatch } from '../dataplane/index.js';

const MARK_BYTES = 64;

/** `end` (a record boundary of `file`), less the SYNC_MARK that ends right there, if any. */
export async function historyEnd(file: string, end: number): Promise<number> {
  if (end < MARK_BYTES) return end;
  const r = await scanFileBatch(file, { from: end - MARK_BYTES, final: false, maxRecords: 1 }).catch(() => null);
  const last = r?.records[0];
  return last && last.type === 'sync-mark' && last.offset === end - MARK_BYTES && last.size === MARK_BYTES ? end - MARK_BYTES : end;
}
