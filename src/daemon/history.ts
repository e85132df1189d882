/**
 * What the version links in the tree say about a resource's history, as the daemon needs
 * it to decide whether this host may become primary (docs/handover.md "The rule the
 * daemon follows"). Pure functions over one values snapshot of the tree.
 */
import { parseLogName, parsePositionValue } from '../replication/log_names.js';
import { parseVersion, type VersionLink } from '../replication/versions.js';

type Values = ReadonlyMap<string, string | null>;

/** Every version link of a resource: `version-<seq>-<host>` -> link. */
export function versionLinks(res: string, values: Values): Map<string, VersionLink> {
  const prefix = `resource-${res}/version-`;
  const links = new Map<string, VersionLink>();
  for (const [key, value] of values) {
    if (!key.startsWith(prefix) || value === null) continue;
    const link = parseVersion(value);
    if (link) links.set(key.slice(`resource-${res}/`.length), link);
  }
  return links;
}

/** Hosts with a disk for the resource (`data-<host>`). */
export function members(res: string, values: Values): string[] {
  const prefix = `resource-${res}/data-`;
  return [...values].filter(([k, v]) => k.startsWith(prefix) && v !== null).map(([k]) => k.slice(prefix.length));
}

/** `log` has an end in the history: some host wrote a version link naming it. */
function finished(log: string, links: ReadonlyMap<string, VersionLink>): boolean {
  for (const link of links.values()) if (link.log === log) return true;
  return false;
}

/**
 * `host` still says it serves, on `log`, but another host ended that log (a forced
 * failover) while `host` never sealed it: whatever `host` writes there is a split brain,
 * and nobody waits for it. (Seen when `host` is cut off: its is-primary is stale here.)
 */
function abandoned(log: string, host: string, links: ReadonlyMap<string, VersionLink>): boolean {
  const name = parseLogName(log);
  if (!name) return false;
  const own = `version-${String(name.seq).padStart(9, '0')}-${host}`;
  let endedByOther = false;
  for (const [key, link] of links) {
    if (link.log !== log) continue;
    if (key === own) return false;
    endedByOther = true;
  }
  return endedByOther;
}

/** The highest-numbered log its origin sealed, with the origin's link. */
function newestSealed(links: ReadonlyMap<string, VersionLink>): VersionLink | null {
  let best: VersionLink | null = null;
  for (const [key, link] of links) {
    const name = parseLogName(link.log);
    if (!name || key !== `version-${String(name.seq).padStart(9, '0')}-${name.origin}`) continue;
    if (!best || name.seq > parseLogName(best.log)!.seq) best = link;
  }
  return best;
}

/**
 * May `me` become primary without losing anything another host wrote? Only when no other
 * member serves, every log another member wrote has an end in the history, and our
 * version link for the newest sealed log equals its origin's (we replayed all of it).
 */
export function caughtUp(res: string, me: string, values: Values): boolean {
  const links = versionLinks(res, values);
  for (const host of members(res, values)) {
    if (host === me) continue;
    const end = parsePositionValue(values.get(`resource-${res}/actual-${host}/log-end`) ?? undefined);
    const serving = values.get(`resource-${res}/actual-${host}/is-primary`) === '1';
    if (serving && !(end && abandoned(end.log, host, links))) return false;
    if (end && end.offset > 0 && !finished(end.log, links)) return false;
  }
  const last = newestSealed(links);
  if (!last) return true;
  const name = parseLogName(last.log)!;
  if (name.origin === me) return true;
  const mine = links.get(`version-${String(name.seq).padStart(9, '0')}-${me}`);
  return mine !== undefined && mine.digest === last.digest;
}

/** Our own link for `log` exists: we sealed it and never append to it again. */
export function sealedByUs(res: string, me: string, log: string, values: Values): boolean {
  const name = parseLogName(log);
  if (!name) return false;
  const link = parseVersion(values.get(`resource-${res}/version-${String(name.seq).padStart(9, '0')}-${me}`) ?? undefined);
  return link !== null && link.log === log;
}
