/**
 * Replay: apply a log's records, in order, to a target (a regular file or a block
 * device). Replay is idempotent: every record writes absolute data, so applying a range
 * twice leaves the same target. Nothing past the last good record is ever written.
 */
import { native } from './native.js';
import type { ReplayResult } from './types.js';

export interface ReplayOptions {
  /** Log offset of the first record to apply. @default 0 */
  from?: number;
  /** Apply only records that end at or before this log offset; 0 = no limit. @default 0 */
  to?: number;
  /** Sequence number of the record at `from`; 0 accepts any. @default 0 */
  expectSeq?: number;
  /** The log is complete (see ScanOptions.final). @default true */
  final?: boolean;
  /**
   * O_DIRECT for aligned writes: `auto` uses it on block devices only, where it keeps
   * replay from flooding the page cache.
   * @default 'auto'
   */
  direct?: 'auto' | 'on' | 'off';
  /** Create the target file if missing (test mode on sparse files). @default false */
  create?: boolean;
}

/** Apply records; resolves with the log position reached and how the walk ended. */
export function replayLog(logPath: string, targetPath: string, options: ReplayOptions = {}): Promise<ReplayResult> {
  return native.replayLog(logPath, targetPath, options);
}
