/**
 * Split brain from the version chains (docs/handover.md "Split brain"): two members have
 * different histories when, for some log sequence number both have a version link for,
 * the digests differ (the chain makes every later link differ too), or when one declared a
 * log finished at a position that the other, still writing it, has gone past, or when
 * both are writing logs of the same number.
 */
import { parseLogName, type LogPosition } from './log_names.js';
import type { VersionLink } from './versions.js';

/** What one member says about its history. */
export interface HostHistory {
  readonly host: string;
  /** Its version links by log sequence number. */
  readonly versions: ReadonlyMap<number, VersionLink>;
  /** Where it is beyond its last link: the primary's log end, a replica's replay position. */
  readonly tail: LogPosition | null;
}

export interface SplitBrain {
  /** The last log both sides agree on (the split point), or null: they share nothing. */
  readonly after: string | null;
  /** Every member on either side, with how much it has that the other side lacks. */
  readonly hosts: readonly { readonly host: string; readonly bytesAfterSplit: number }[];
}

/** The first diverging pair of members, or null when all histories are prefixes of one. */
export function findSplitBrain(histories: readonly HostHistory[]): SplitBrain | null {
  for (let i = 0; i < histories.length; i++) {
    for (let j = i + 1; j < histories.length; j++) {
      const split = splitBetween(histories[i]!, histories[j]!);
      if (split) return split;
    }
  }
  return null;
}

function splitBetween(a: HostHistory, b: HostHistory): SplitBrain | null {
  let agreed: VersionLink | null = null;
  let diverged: number | null = null;
  for (const seq of [...a.versions.keys()].sort((x, y) => x - y)) {
    const va = a.versions.get(seq)!, vb = b.versions.get(seq);
    if (!vb) continue;
    if (va.digest === vb.digest) agreed = va;
    else {
      diverged = seq;
      break;
    }
  }
  diverged ??= tailConflict(a, b) ?? tailConflict(b, a);
  if (diverged === null) return null;
  const agreedSeq = agreed ? parseLogName(agreed.log)!.seq : 0;
  return {
    after: agreed?.log ?? null,
    hosts: [a, b].map((h) => ({ host: h.host, bytesAfterSplit: bytesAfter(h, agreedSeq, h === a ? b : a) })),
  };
}

/**
 * The sequence number at which `writer`'s live tail contradicts `other`: `other` sealed
 * that log at an earlier offset, or `other` is on a log of the same number by another origin.
 */
function tailConflict(writer: HostHistory, other: HostHistory): number | null {
  const tail = writer.tail;
  if (!tail) return null;
  const seq = parseLogName(tail.log)?.seq;
  if (seq === undefined) return null;
  const sealed = other.versions.get(seq);
  if (sealed && sealed.log === tail.log && tail.offset > sealed.offset) return seq;
  if (sealed && sealed.log !== tail.log) return seq;
  if (other.tail && other.tail.log !== tail.log && parseLogName(other.tail.log)?.seq === seq) return seq;
  return null;
}

/** Bytes `h` holds after the split: its logs past `agreedSeq`, minus what `other` shares of the first. */
function bytesAfter(h: HostHistory, agreedSeq: number, other: HostHistory): number {
  const ends = new Map<string, number>();
  for (const [seq, v] of h.versions) if (seq > agreedSeq) ends.set(v.log, v.offset);
  if (h.tail && (parseLogName(h.tail.log)?.seq ?? 0) > agreedSeq) ends.set(h.tail.log, Math.max(ends.get(h.tail.log) ?? 0, h.tail.offset));
  let total = 0;
  for (const [log, end] of ends) total += Math.max(0, end - sharedPrefix(other, log));
  return total;
}

/** How much of `log` the other side has too (the same log name is the same bytes up to the shorter end). */
function sharedPrefix(other: HostHistory, log: string): number {
  const seq = parseLogName(log)!.seq;
  const v = other.versions.get(seq);
  let shared = v && v.log === log ? v.offset : 0;
  if (other.tail?.log === log) shared = Math.max(shared, other.tail.offset);
  return shared;
}
