/**
 * The three flows of data into a host (the full sync, fetching, replay) as the
 * view-<flow>-{rest,percent,rate,remain} macros measure them (docs/marsadm.md "Views").
 * The daemon publishes positions, not speeds, so a rate is two samples of the position
 * some time apart.
 */
import { parseLogName } from '../../replication/log_names.js';
import type { HostView } from './view.js';

export type Flow = 'sync' | 'fetch' | 'replay';

/** Where a flow stands on one host at one moment. */
export interface FlowState {
  /** Bytes done: synced bytes of the disk, or the position in the current log. */
  readonly done: number;
  /** Bytes still to do (the view-<flow>-rest value). */
  readonly rest: number;
  /** The log the position is in (fetch, replay), else null. */
  readonly log: string | null;
  /** That log's size as known then. */
  readonly logBytes: number;
}

export function flowState(h: HostView | undefined, flow: Flow): FlowState {
  if (!h) return { done: 0, rest: 0, log: null, logBytes: 0 };
  if (flow === 'sync') {
    return { done: h.sync.syncedBytes, rest: Math.max(0, h.sync.sizeBytes - h.sync.syncedBytes), log: null, logBytes: 0 };
  }
  const done = flow === 'fetch' ? h.fetchedBytes : h.replayPosition;
  return { done, rest: flow === 'fetch' ? h.fetchRest : h.replayRest, log: h.log, logBytes: h.logBytes };
}

/** done / (done + rest) in whole percent, rounded down; 100 when there is nothing at all. */
export function flowPercent(s: FlowState): number {
  const total = s.done + s.rest;
  return total === 0 ? 100 : Math.floor((100 * s.done) / total);
}

/**
 * Bytes of progress from `before` to `after`. Across a log switch it counts the rest of
 * the old log (as far as it was known at `before`) plus the position in the new one; a
 * position that went back (a sync restarted) counts as no progress.
 */
export function progressBytes(before: FlowState, after: FlowState): number {
  if (before.log === after.log) return Math.max(0, after.done - before.done);
  const from = before.log ? parseLogName(before.log)?.seq : undefined;
  const to = after.log ? parseLogName(after.log)?.seq : undefined;
  if (from === undefined || to === undefined || to <= from) return 0;
  return Math.max(0, before.logBytes - before.done) + after.done;
}

/** Bytes per second, rounded. */
export function flowRate(before: FlowState, after: FlowState, elapsedMs: number): number {
  return elapsedMs > 0 ? Math.round((progressBytes(before, after) * 1000) / elapsedMs) : 0;
}

/** Seconds until rest is done at rate, rounded up; 0 when done, -1 when nothing moved. */
export function remainSeconds(rest: number, rateBytesPerS: number): number {
  if (rest === 0) return 0;
  return rateBytesPerS > 0 ? Math.ceil(rest / rateBytesPerS) : -1;
}
