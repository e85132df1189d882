/**
 * Log file names and replay positions: `log-000000007-alpha` is log 7 written by alpha
 * (its origin); a position is a log and a byte offset in it, ordered by (seq, offset).
 */
import { NAME_SOURCE } from '../tree/names.js';

const LOG_NAME = new RegExp(`^log-([0-9]{9})-(${NAME_SOURCE})$`);

export interface LogName {
  readonly name: string;
  readonly seq: number;
  readonly origin: string;
}

export function parseLogName(name: string): LogName | null {
  const m = LOG_NAME.exec(name);
  return m ? { name, seq: Number(m[1]), origin: m[2]! } : null;
}

export function logName(seq: number, origin: string): string {
  return `log-${String(seq).padStart(9, '0')}-${origin}`;
}

/** A point in a resource's history: everything before `offset` of `log`. */
export interface LogPosition {
  readonly log: string;
  readonly offset: number;
}

/** Negative if a is before b. Logs compare by sequence number. */
export function comparePositions(a: LogPosition, b: LogPosition): number {
  const sa = parseLogName(a.log)?.seq ?? -1;
  const sb = parseLogName(b.log)?.seq ?? -1;
  return sa !== sb ? sa - sb : a.offset - b.offset;
}

/** `log-<seq>-<origin>,<pos>,<len>` (the replay-<host> value) -> position. */
export function parseReplayValue(value: string | undefined): LogPosition | null {
  if (!value) return null;
  const m = /^(log-[0-9]{9}-[^,]+),([0-9]+),([0-9]+)$/.exec(value);
  return m && parseLogName(m[1]!) ? { log: m[1]!, offset: Number(m[2]) } : null;
}

export function replayValue(p: LogPosition): string {
  return `${p.log},${p.offset},0`;
}

/** `log-...,<offset>` (sync targets and fetch positions in actual-<host>/*) -> position. */
export function parsePositionValue(value: string | undefined): LogPosition | null {
  if (!value) return null;
  const m = /^(log-[0-9]{9}-[^,]+),([0-9]+)$/.exec(value);
  return m && parseLogName(m[1]!) ? { log: m[1]!, offset: Number(m[2]) } : null;
}

export function positionValue(p: LogPosition): string {
  return `${p.log},${p.offset}`;
}
