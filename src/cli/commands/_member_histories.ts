/**
 * Each member's history of a resource, as this host's tree tells it, for split-brain
 * detection in `view` (docs/handover.md "Split brain"): its version-<seq>-<host> links,
 * and where it is beyond them: the primary's live log end, a replica's replay position.
 */
import { parsePositionValue, parseReplayValue, type LogPosition } from '../../replication/log_names.js';
import type { HostHistory } from '../../replication/split_brain.js';
import { parseVersion, type VersionLink } from '../../replication/versions.js';
import { actualKey, replayKey, resourceDir } from '../../tree/index.js';

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
  return members.map((host) => ({ host, versions: versions.get(host)!, tail: tailOf(tree, res, host) }));
}

/**
 * A primary is where its log ends (actual-<host>/log-end, published while it serves);
 * anyone else is where its replay is (replay-<host>).
 */
function tailOf(tree: TreeValues, res: string, host: string): LogPosition | null {
  if (tree.value(actualKey(res, host, 'is-primary')) === '1') {
    const end = parsePositionValue(tree.value(actualKey(res, host, 'log-end')));
    if (end) return end;
  }
  return parseReplayValue(tree.value(replayKey(res, host)));
}
