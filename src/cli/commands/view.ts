/**
 * marsadm view [RES] and the view-* macros. One model (ResourceView) computed from the
 * tree; the text view, --json and each macro all print from it, so they never disagree.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';

import {
  actualKey, primaryKey, replayKey, resourceDir, resourceKey, sizeKey, todoKey, type MarsTree,
} from '../../tree/index.js';
import type { CommandContext, CommandRun } from '../command.js';
import { CommandError } from '../errors.js';
import { formatBytes } from '../format.js';
import { daemonAlive, openTree } from '../tree_access.js';

export type Role = 'Primary' | 'Secondary' | 'None';
export type DiskState = 'UpToDate' | 'Inconsistent' | 'Detached' | 'Failed';
export type ReplState = 'Logging' | 'Replaying' | 'PausedReplay' | 'Detached' | 'DefectiveLog' | 'VersionMismatch' | 'SplitBrain';

/** One host's part in a resource. */
export interface HostView {
  readonly host: string;
  readonly role: Role;
  /** `primary` names this host. */
  readonly designatedPrimary: boolean;
  readonly diskState: DiskState;
  readonly replState: ReplState;
  /** MARS-style switch flags: S sync, F fetch, A attach, R replay; '-' when off. */
  readonly flags: string;
  /** Where the device is served, or null. */
  readonly device: string | null;
  readonly openCount: number;
  readonly consistent: boolean;
  /** Current log file, its size, and the written-back/replayed position in it. */
  readonly log: string | null;
  readonly logBytes: number;
  readonly replayPosition: number;
  /** Bytes of log not yet applied to this host's disk. */
  readonly replayRest: number;
  /** Bytes of log not yet fetched from peers (0 without peers). */
  readonly fetchRest: number;
  /** replay-code: 0, or negative with a reason. */
  readonly replayCode: string;
  /** Fast full sync: bytes done of the resource's size, whether it runs, bytes sent so far. */
  readonly sync: { readonly syncedBytes: number; readonly sizeBytes: number; readonly running: boolean; readonly sentBytes: number };
  /** Origin log position replay must pass before the disk is consistent after a sync, or null. */
  readonly syncTarget: string | null;
  /** Bytes of the current log in this host's copy (secondaries), from actual-<host>/fetch-pos. */
  readonly fetchedBytes: number;
  /** The host's daemon publishes liveness; when false, the other fields are its last words. */
  readonly daemonAlive: boolean;
}

export interface ResourceView {
  readonly resource: string;
  readonly sizeBytes: number;
  readonly primary: string;
  readonly hosts: HostView[];
}

/** The tree as one map, read in one walk: a view never mixes two moments much. */
export class TreeSnapshot {
  private readonly alive = new Map<string, Promise<boolean>>();

  private constructor(
    private readonly tree: MarsTree,
    private readonly map: ReadonlyMap<string, string | null>,
    /** Resource -> hosts with a disk in it; resources whose size is set (not deleted). */
    private readonly index: ReadonlyMap<string, string[]>,
  ) {}

  get root(): string {
    return this.tree.root;
  }

  static async take(tree: MarsTree): Promise<TreeSnapshot> {
    const map = await tree.values('');
    const index = new Map<string, string[]>();
    for (const [key, value] of map) {
      if (!key.startsWith('resource-') || value === null) continue;
      const m = /^resource-([^/]+)\/(size|data-([^/]+))$/.exec(key);
      if (!m) continue;
      const hosts = index.get(m[1]!) ?? [];
      if (m[3]) hosts.push(m[3]);
      index.set(m[1]!, hosts);
    }
    for (const [res, hosts] of index) {
      if (map.get(sizeKey(res)) == null) index.delete(res);
      else hosts.sort();
    }
    return new TreeSnapshot(tree, map, index);
  }

  value(key: string): string | undefined {
    return this.map.get(key) ?? undefined;
  }

  /** Resources whose size is set (deleted ones keep only tombstones). */
  resources(): string[] {
    return [...this.index.keys()].sort();
  }

  /** Hosts with a disk in res. */
  hosts(res: string): string[] {
    return this.index.get(res) ?? [];
  }

  /**
   * The daemon on host published its liveness recently. The promise is cached, not the
   * answer: host views are built concurrently and must share one read per host.
   */
  daemonAlive(host: string): Promise<boolean> {
    let alive = this.alive.get(host);
    if (alive === undefined) {
      alive = daemonAlive(this.tree, host);
      this.alive.set(host, alive);
    }
    return alive;
  }
}

export async function resourceView(snap: TreeSnapshot, res: string): Promise<ResourceView> {
  const primary = snap.value(primaryKey(res)) ?? '(none)';
  return {
    resource: res,
    sizeBytes: Number(snap.value(sizeKey(res)) ?? 0),
    primary,
    hosts: await Promise.all(snap.hosts(res).map((h) => hostView(snap, res, h, primary))),
  };
}

/** `log-...,<n>` -> [log, n], or null. */
function logAndOffset(value: string): [string, number] | null {
  const m = /^(log-[0-9]{9}-[^,]+),([0-9]+)$/.exec(value);
  return m ? [m[1]!, Number(m[2])] : null;
}

async function hostView(snap: TreeSnapshot, res: string, host: string, primary: string): Promise<HostView> {
  const get = (key: string) => snap.value(key) ?? '';
  const todo = (sw: 'sync' | 'connect' | 'attach' | 'allow-replay') => get(todoKey(res, host, sw)) === '1';
  const [sync, fetch, attach, replay] = [todo('sync'), todo('connect'), todo('attach'), todo('allow-replay')];
  const isPrimary = get(actualKey(res, host, 'is-primary')) === '1';
  const attached = get(actualKey(res, host, 'is-attached')) === '1';
  const replayCode = get(actualKey(res, host, 'replay-code')) || '0';
  const device = get(actualKey(res, host, 'device'));
  const replayLink = /^(log-[0-9]{9}-[^,]+),([0-9]+),/.exec(get(replayKey(res, host)));
  const log = replayLink?.[1] ?? null;
  // The log's end: what its origin published (actual-<origin>/log-end), else our copy's size.
  const origin = log ? log.slice(14) : '';
  const published = logAndOffset(get(actualKey(res, origin || host, 'log-end')));
  const logBytes = !log ? 0 : published && published[0] === log ? published[1]
    : await stat(path.join(snap.root, resourceDir(res), log)).then((s) => s.size, () => 0);
  const replayPosition = Number(replayLink?.[2] ?? 0);
  const failed = replayCode.startsWith('-');
  const fetchPos = logAndOffset(get(actualKey(res, host, 'fetch-pos')));
  const fetchedBytes = isPrimary || origin === host ? logBytes : fetchPos && fetchPos[0] === log ? fetchPos[1] : 0;
  const sizeBytes = Number(snap.value(sizeKey(res)) ?? 0);
  const syncedBytes = Number(get(resourceKey(res, `syncstatus-${host}`)) || sizeBytes);
  const target = get(actualKey(res, host, 'sync-target'));
  const syncTarget = target && target !== '(none)' ? target : null;
  const reason = failed ? /^-[0-9]+,([A-Za-z]+)/.exec(replayCode)?.[1] : undefined;
  const failure: ReplState = reason === 'VersionMismatch' || reason === 'SplitBrain' ? reason : 'DefectiveLog';
  return {
    host,
    role: isPrimary ? 'Primary' : attached ? 'Secondary' : 'None',
    designatedPrimary: primary === host,
    diskState: failed ? 'Failed' : !attached ? 'Detached' : syncedBytes < sizeBytes || syncTarget ? 'Inconsistent' : 'UpToDate',
    replState: failed ? failure : !attached ? 'Detached' : isPrimary ? 'Logging' : replay ? 'Replaying' : 'PausedReplay',
    flags: `${sync ? 'S' : '-'}${fetch ? 'F' : '-'}${attach ? 'A' : '-'}${replay ? 'R' : '-'}`,
    device: device && device !== '(none)' ? device : null,
    openCount: Number(get(actualKey(res, host, 'open-count')) || 0),
    consistent: attached && !failed && syncedBytes >= sizeBytes && !syncTarget,
    log,
    logBytes,
    replayPosition,
    replayRest: Math.max(0, (isPrimary ? logBytes : fetchedBytes) - replayPosition),
    fetchRest: Math.max(0, logBytes - fetchedBytes),
    replayCode,
    sync: {
      syncedBytes, sizeBytes,
      running: get(actualKey(res, host, 'is-syncing')) === '1',
      sentBytes: Number(get(actualKey(res, host, 'sync-sent')) || 0),
    },
    syncTarget,
    fetchedBytes,
    daemonAlive: await snap.daemonAlive(host),
  };
}

async function views(ctx: CommandContext): Promise<{ tree: MarsTree; list: ResourceView[] }> {
  const tree = await openTree(ctx);
  const snap = await TreeSnapshot.take(tree);
  const wanted = ctx.args[0];
  const all = snap.resources();
  if (wanted !== undefined && !all.includes(wanted)) throw new CommandError(`no resource ${wanted} in ${tree.root}; \`marsadm view\` lists them`);
  const names = wanted === undefined ? all : [wanted];
  return { tree, list: await Promise.all(names.map((r) => resourceView(snap, r))) };
}

function viewText(v: ResourceView, self: string): string {
  const lines = [`--------- resource ${v.resource} (${formatBytes(v.sizeBytes)}), primary ${v.primary}`];
  for (const h of v.hosts) {
    const device = h.device ? `  device ${h.device} (opened ${h.openCount})` : '';
    const fetch = h.role === 'Secondary' ? `, fetch rest ${formatBytes(h.fetchRest)}` : '';
    const log = h.log ? `  log ${h.log} ${formatBytes(h.logBytes)}${fetch}, replay rest ${formatBytes(h.replayRest)}` : '';
    const s = h.sync;
    const sync = s.syncedBytes < s.sizeBytes
      ? `  sync ${Math.floor((100 * s.syncedBytes) / Math.max(1, s.sizeBytes))}% (${formatBytes(s.syncedBytes)} of ${formatBytes(s.sizeBytes)}, ${formatBytes(s.sentBytes)} sent)${s.running ? '' : ' paused'}`
      : h.syncTarget ? `  consistent once replay passes ${h.syncTarget}` : '';
    const code = h.replayCode.startsWith('-') ? `  ERROR ${h.replayCode.slice(h.replayCode.indexOf(',') + 1)}` : '';
    const down = h.daemonAlive ? '' : h.host === self
      ? '  DAEMON NOT RUNNING (start it: systemctl start phobos-daemon, or marsadm daemon)'
      : '  NO NEWS (its daemon is down, or the link to it is cut)';
    lines.push(`${h.host}  ${h.role}  ${h.diskState}  ${h.replState}  ${h.flags}${device}${log}${sync}${code}${down}`);
  }
  return lines.join('\n') + '\n';
}

/** marsadm view [RES] */
export async function run(ctx: CommandContext): Promise<number> {
  const { tree, list } = await views(ctx);
  if (ctx.options['json']) ctx.out.write(`${JSON.stringify({ resources: list })}\n`);
  else ctx.out.write(list.length ? list.map((v) => viewText(v, tree.host)).join('') : 'no resources\n');
  return 0;
}

/** The macros: one value per resource for this host (or the resource-wide value). */
/** What each macro prints; their help text is in the command table. */
export const VIEW_MACROS: Readonly<Record<string, { readonly pick: (v: ResourceView, h: HostView | undefined) => string | number }>> = {
  'view-role': { pick: (_v, h) => h?.role ?? 'None' },
  'view-state': { pick: (_v, h) => `${h?.diskState ?? 'Detached'}/${h?.replState ?? 'Detached'}` },
  'view-diskstate': { pick: (_v, h) => h?.diskState ?? 'Detached' },
  'view-replstate': { pick: (_v, h) => h?.replState ?? 'Detached' },
  'view-flags': { pick: (_v, h) => h?.flags ?? '----' },
  'view-is-primary': { pick: (_v, h) => (h?.role === 'Primary' ? 1 : 0) },
  'view-get-primary': { pick: (v) => v.primary },
  'view-is-consistent': { pick: (_v, h) => (h?.consistent ? 1 : 0) },
  'view-device-opened': { pick: (_v, h) => h?.openCount ?? 0 },
  'view-replay-rest': { pick: (_v, h) => h?.replayRest ?? 0 },
  'view-fetch-rest': { pick: (_v, h) => h?.fetchRest ?? 0 },
};

export function macro(name: string): CommandRun {
  const { pick } = VIEW_MACROS[name]!;
  return async (ctx) => {
    const { tree, list } = await views(ctx);
    const rows = list.map((v) => ({ resource: v.resource, host: tree.host, value: pick(v, v.hosts.find((h) => h.host === tree.host)) }));
    if (ctx.options['json']) ctx.out.write(`${JSON.stringify(ctx.args[0] !== undefined ? rows[0] : rows)}\n`);
    else if (ctx.args[0] !== undefined) ctx.out.write(`${rows[0]!.value}\n`);
    else for (const r of rows) ctx.out.write(`${r.resource} ${r.value}\n`);
    return 0;
  };
}
