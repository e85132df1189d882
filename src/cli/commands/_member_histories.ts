/**
 * Each member's history of a resource, as this host's tree tells it, for split-brain
 * detection in `view` (docs/handover.md "Split brain"): its version-<seq>-<host> links,
 * and where it is beyond them: the primary's live log end, a replica's replay position.
 */
import { parseLogName, parsePositionValue, parseReplayValue, type LogPosition } from '../../replication/log_names.js';
import type { HostHistory } from '../../replication/split_brain.js';
import { parseVersion, type VersionLink } from '../../replication/versions.js';
import { actualKey, replayKey, resourceDir } from '../../tree/keys.js';

/** The part of a tree snapshot this needs. */
export interface TreeValues {
  value(key: string): string | undefined;
  /** [key, value] of every live link whose key starts with prefix. */
  entries(prefix: string): Iterable<readonly [string, string]>;
}

export function memberHistories(tree: TreeValues, res: string, members: readonly string[]): HostHistory[] {
  const versions = new Map<string, Map<number, VersionLink>>(members.map((h) => [h, new Map()]));
  for (const [key, value] of tree.entries(`${resourceDir(res)}/version-`)) {
    const m = /\/version-([0-9]{9})-([^/]+)$/.exec(key);
    const link = parseVersion(value);
    if (m && link) versions.get(m[2]!)?.set(Number(m[1]), link);
  }
  return members.map((host) => ({ host, versions: versions.get(host)!, tail: tailOf(tree, res, host, versions.get(host)!) }));
}

/**
 * A primary is where its log ends (actual-<host>/log-end, published while it serves);
 * anyone else is where its replay is (replay-<host>), unless that is a log it has a
 * version link for: the link says where that log ends in its history. (An old primary's
 * replay position sits past the SYNC_MARK that closed its log, which the link leaves out:
 * read as a tail, it would look like data beyond the seal, a split brain out of nothing.)
 */
function tailOf(tree: TreeValues, res: string, host: string, versions: ReadonlyMap<number, VersionLink>): LogPosition | null {
  if (tree.value(actualKey(res, host, 'is-primary')) === '1') {
    const end = parsePositionValue(tree.value(actualKey(res, host, 'log-end')));
    if (end) return end;
  }
  const replay = parseReplayValue(tree.value(replayKey(res, host)));
  if (!replay) return null;
  const seq = parseLogName(replay.log)?.seq;
  return seq !== undefined && versions.get(seq)?.log === replay.log ? null : replay;
}
