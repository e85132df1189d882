/**
 * marsadm view [RES] and the view-* macros. One model (ResourceView) computed from the
 * tree; the text view, --json and each macro all print from it, so they never disagree.
 */
import { statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { findSplitBrain, type SplitBrain } from '../../replication/split_brain.js';
// From the tree's modules, not tree/index.js (here, in tree_access.ts, _member_histories.ts
// and log_names.ts): the index also loads TreeWatcher, which no view needs (~6 ms a view).
import { actualKey, primaryKey, replayKey, resourceDir, resourceKey, sizeKey, todoKey } from '../../tree/keys.js';
import type { MarsTree } from '../../tree/mars_tree.js';
import type { TodoSwitch } from '../../tree/types.js';
import type { CommandContext, CommandRun } from '../command.js';
import { CommandError } from '../errors.js';
import { formatBytes } from '../format.js';
import { daemonAlive, openTree } from '../tree_access.js';
import { flowPercent, flowRate, flowState, remainSeconds, type Flow } from './_flows.js';
import { memberHistories } from './_member_histories.js';

export type Role = 'Primary' | 'Secondary' | 'None';
/** Outdated: consistent but old, the state an Orphan is left in. */
export type DiskState = 'UpToDate' | 'Inconsistent' | 'Outdated' | 'Detached' | 'Failed';
/**
 * VersionMismatch and SplitBrain: replay stopped at a diverging version link (replay-code
 * -3). Orphan: the primary has logs this host can no longer get (-4; repair: invalidate).
 * Emergency: logging for the resource stopped for lack of space (actual-<host>/emergency).
 * StartFailed: designated primary, but the device could not be started (-1: disk in use,
 * missing, ...; the disk itself is as it was).
 */
export type ReplState = 'Logging' | 'Replaying' | 'PausedReplay' | 'Detached' | 'DefectiveLog' | 'VersionMismatch' |
  'SplitBrain' | 'Orphan' | 'Emergency' | 'StartFailed';

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
  /** The members' version histories diverge: the split point and each side's extra bytes. */
  readonly splitBrain: SplitBrain | null;
}

const RESOURCE_PREFIX = 'resource-';

/** What the key `resource-<res>/<leaf>` (leaf at leafAt) adds: '' for size, a member for data-<host>, else null. */
function sizeOrMember(key: string, leafAt: number): string | null {
  if (key.length === leafAt + 'size'.length && key.endsWith('size')) return '';
  const hostAt = leafAt + 'data-'.length;
  return key.length > hostAt && key.startsWith('data-', leafAt) && !key.includes('/', hostAt) ? key.slice(hostAt) : null;
}

/** The tree as one map, read in one walk: a view never mixes two moments much. */
export class TreeSnapshot {
  /** Host -> its daemon published its liveness recently; filled by readLiveness(). */
  private readonly alive = new Map<string, boolean>();

  private constructor(
    private readonly tree: MarsTree,
    private readonly map: ReadonlyMap<string, string | null>,
    /** Resource -> hosts with a disk in it; resources whose size is set (not deleted). */
    private readonly index: ReadonlyMap<string, string[]>,
    /** Resource -> its keys: a per-resource lookup must not scan 1000 resources' keys. */
    private readonly keysOf: ReadonlyMap<string, string[]>,
  ) {}

  get root(): string {
    return this.tree.root;
  }

  /** Snapshot `tree` from `values`, its links' values: a walk already under way, else a new one. */
  static async take(tree: MarsTree, values: Promise<ReadonlyMap<string, string | null>> = tree.values('')): Promise<TreeSnapshot> {
    const map = await values;
    const index = new Map<string, string[]>();
    const keysOf = new Map<string, string[]>();
    // This loop sees every key of the tree (9000 at 1000 resources), so it allocates
    // nothing per key: forEach, not for-of (its [key, value] pairs came to 2 MB, views run
    // without the optimizing compiler: main.ts), and string tests, not a regex and a slice.
    // The walk lists a directory's keys together: a key's resource is usually the previous
    // key's, found without a lookup.
    let dir = '', res = '', keys: string[] = [];
    map.forEach((value, key) => {
      if (value === null || !key.startsWith(RESOURCE_PREFIX)) return;
      const slash = key.indexOf('/');
      if (slash < 0) return; // a link named resource-* at the root is in no resource
      if (slash !== dir.length - 1 || !key.startsWith(dir)) {
        dir = key.slice(0, slash + 1);
        res = key.slice(RESOURCE_PREFIX.length, slash);
        keys = keysOf.get(res) ?? [];
        keysOf.set(res, keys);
      }
      keys.push(key);
      const member = res === '' ? null : sizeOrMember(key, slash + 1);
      if (member === null) return;
      const hosts = index.get(res) ?? [];
      if (member) hosts.push(member);
      index.set(res, hosts);
    });
    for (const [res, hosts] of index) {
      if (map.get(sizeKey(res)) == null) index.delete(res);
      else hosts.sort();
    }
    return new TreeSnapshot(tree, map, index, keysOf);
  }

  value(key: string): string | undefined {
    return this.map.get(key) ?? undefined;
  }

  /** Live links whose key starts with prefix (tombstones left out). */
  *entries(prefix: string): Iterable<readonly [string, string]> {
    const slash = prefix.indexOf('/');
    const keys = prefix.startsWith('resource-') && slash > 0
      ? this.keysOf.get(prefix.slice('resource-'.length, slash)) ?? [] : this.map.keys();
    for (const key of keys) {
      const value = this.map.get(key);
      if (value != null && key.startsWith(prefix)) yield [key, value];
    }
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
   * Read, once per host, whether its daemon published its liveness recently: before the
   * views, so that they are computed without waiting (an await and a promise per resource
   * and host took ~10 ms and 1.5 MB at 1000 resources).
   */
  async readLiveness(hosts: Iterable<string>): Promise<void> {
    const unread = [...new Set(hosts)].filter((h) => !this.alive.has(h));
    const answers = await Promise.all(unread.map((h) => daemonAlive(this.tree, h)));
    unread.forEach((h, i) => this.alive.set(h, answers[i]!));
  }

  /** The daemon on host published its liveness recently (as readLiveness() found). */
  daemonAlive(host: string): boolean {
    const alive = this.alive.get(host);
    if (alive === undefined) throw new Error(`internal: the liveness of ${host} was not read`);
    return alive;
  }
}

/** The view of res; the liveness of its members must have been read (TreeSnapshot.readLiveness). */
export function resourceView(snap: TreeSnapshot, res: string): ResourceView {
  const primary = snap.value(primaryKey(res)) ?? '(none)';
  const sizeBytes = Number(snap.value(sizeKey(res)) ?? 0);
  const hosts = snap.hosts(res);
  return {
    resource: res,
    sizeBytes,
    primary,
    hosts: hosts.map((h) => hostView(snap, res, h, primary, sizeBytes)),
    // A split brain is between two histories: one member has nothing to diverge from.
    splitBrain: hosts.length < 2 ? null : findSplitBrain(memberHistories(snap, res, hosts)),
  };
}

/** `log-...,<n>` -> [log, n], or null. */
function logAndOffset(value: string): [string, number] | null {
  const m = /^(log-[0-9]{9}-[^,]+),([0-9]+)$/.exec(value);
  return m ? [m[1]!, Number(m[2])] : null;
}

function hostView(snap: TreeSnapshot, res: string, host: string, primary: string, sizeBytes: number): HostView {
  const get = (key: string) => snap.value(key) ?? '';
  // The host's two directories, built (names checked) once; a lookup appends a name. A
  // key builder per lookup checked both names again and built three strings each time.
  const todoDir = todoKey(res, host, ''), actualDir = actualKey(res, host, '');
  const todo = (sw: TodoSwitch) => get(todoDir + sw) === '1';
  const indicator = (name: string) => get(actualDir + name);
  const [sync, fetch, attach, replay] = [todo('sync'), todo('connect'), todo('attach'), todo('allow-replay')];
  const isPrimary = indicator('is-primary') === '1';
  const attached = indicator('is-attached') === '1';
  const replayCode = indicator('replay-code') || '0';
  const device = indicator('device');
  const replayLink = /^(log-[0-9]{9}-[^,]+),([0-9]+),/.exec(get(replayKey(res, host)));
  const log = replayLink?.[1] ?? null;
  // The log's end: what its origin published (actual-<origin>/log-end), else our copy's size.
  const origin = log ? log.slice(14) : '';
  const published = logAndOffset(get(actualKey(res, origin || host, 'log-end')));
  const logBytes = !log ? 0 : published && published[0] === log ? published[1] : logFileBytes(snap.root, res, log);
  const replayPosition = Number(replayLink?.[2] ?? 0);
  const fetchPos = logAndOffset(indicator('fetch-pos'));
  const fetchedBytes = isPrimary || origin === host ? logBytes : fetchPos && fetchPos[0] === log ? fetchPos[1] : 0;
  const syncedBytes = Number(get(resourceKey(res, `syncstatus-${host}`)) || sizeBytes);
  const target = indicator('sync-target');
  const syncTarget = target && target !== '(none)' ? target : null;
  const failure = failureState(replayCode, isPrimary);
  // A refused start says nothing about the disk's data; the other failures stop replay.
  const failed = failure !== null && failure !== 'StartFailed';
  const emergency = isEmergency(indicator('emergency'), indicator('is-emergency'));
  // Synced and past any sync target. An Orphan's disk stays usable: consistent, only old.
  const usable = attached && syncedBytes >= sizeBytes && !syncTarget;
  return {
    host,
    role: isPrimary ? 'Primary' : attached ? 'Secondary' : 'None',
    designatedPrimary: primary === host,
    diskState: failure === 'Orphan' ? (usable ? 'Outdated' : 'Failed') : failed ? 'Failed' : !attached ? 'Detached'
      : usable ? 'UpToDate' : 'Inconsistent',
    replState: failure ?? (emergency ? 'Emergency' : !attached ? 'Detached' : isPrimary ? 'Logging' : replay ? 'Replaying' : 'PausedReplay'),
    flags: `${sync ? 'S' : '-'}${fetch ? 'F' : '-'}${attach ? 'A' : '-'}${replay ? 'R' : '-'}`,
    device: device && device !== '(none)' ? device : null,
    openCount: Number(indicator('open-count') || 0),
    consistent: usable && (!failed || failure === 'Orphan'),
    log,
    logBytes,
    replayPosition,
    replayRest: Math.max(0, (isPrimary ? logBytes : fetchedBytes) - replayPosition),
    fetchRest: Math.max(0, logBytes - fetchedBytes),
    replayCode,
    sync: {
      syncedBytes, sizeBytes,
      running: indicator('is-syncing') === '1',
      sentBytes: Number(indicator('sync-sent') || 0),
    },
    syncTarget,
    fetchedBytes,
    daemonAlive: snap.daemonAlive(host),
  };
}

/**
 * The size of this host's copy of a log, 0 if it has none. Synchronous: only a log whose
 * end its origin has not published is looked at, rarely more than a few per view.
 */
function logFileBytes(root: string, res: string, log: string): number {
  try {
    return statSync(path.join(root, resourceDir(res), log)).size;
  } catch {
    return 0;
  }
}

/**
 * The replstate a negative replay-code stands for, or null when replay is fine. A replica
 * shows why it stopped (the reason word after the code); anything else is DefectiveLog.
 */
function failureState(replayCode: string, isPrimary: boolean): ReplState | null {
  if (!replayCode.startsWith('-')) return null;
  if (replayCode.startsWith('-1,')) return 'StartFailed';
  const reason = /^-[0-9]+,([A-Za-z]+)/.exec(replayCode)?.[1];
  const known = reason === 'VersionMismatch' || reason === 'SplitBrain' || reason === 'Orphan';
  return known && !isPrimary ? reason : 'DefectiveLog';
}

/** actual-<host>/emergency above 0 (MARS counts levels 1-4), or the is-emergency flag. */
function isEmergency(level: string, flag: string): boolean {
  return (level !== '' && level !== '0') || flag === '1';
}

/** The views of the tree, or of RES; from `treeValues` when the tree has been read already (ctx.treeValues). */
async function views(ctx: CommandContext, treeValues?: CommandContext['treeValues']): Promise<{ tree: MarsTree; list: ResourceView[] }> {
  const tree = await openTree(ctx);
  const snap = await TreeSnapshot.take(tree, treeValues);
  const wanted = ctx.args[0];
  const all = snap.resources();
  if (wanted !== undefined && !all.includes(wanted)) throw new CommandError(`no resource ${wanted} in ${tree.root}; \`marsadm view\` lists them`);
  const names = wanted === undefined ? all : [wanted];
  await snap.readLiveness(names.flatMap((r) => snap.hosts(r)));
  return { tree, list: names.map((r) => resourceView(snap, r)) };
}

function viewText(v: ResourceView, self: string): string {
  const lines = [`--------- resource ${v.resource} (${formatBytes(v.sizeBytes)}), primary ${v.primary}`];
  if (v.splitBrain) lines.push(splitBrainText(v.resource, v.splitBrain));
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

/** `SPLIT BRAIN after log-000000004-alpha: alpha 12.0 MiB, beta 3.0 MiB only on that side; ...` */
function splitBrainText(res: string, split: SplitBrain): string {
  const sides = split.hosts.map((h) => `${h.host} ${formatBytes(h.bytesAfterSplit)}`).join(', ');
  return `SPLIT BRAIN after ${split.after ?? '(no common log)'}: ${sides} only on that side; ` +
    `on each host whose version is to go: marsadm invalidate ${res}`;
}

/** marsadm view [RES] */
export async function run(ctx: CommandContext): Promise<number> {
  const { tree, list } = await views(ctx, ctx.treeValues);
  if (ctx.options['json']) ctx.out.write(`${JSON.stringify({ resources: list })}\n`);
  else ctx.out.write(list.length ? list.map((v) => viewText(v, tree.host)).join('') : 'no resources\n');
  return 0;
}

/** A macro's value for one resource, from this host's view of it (h) or the resource-wide one. */
type Pick = (v: ResourceView, h: HostView | undefined) => string | number;
/** A rate-like macro's value from two views of this host, elapsedMs apart. */
type SampledPick = (before: HostView | undefined, after: HostView | undefined, elapsedMs: number) => number;

const FLOWS: readonly Flow[] = ['sync', 'fetch', 'replay'];

/** What each macro prints; their help text is in the command table. */
export const VIEW_MACROS: Readonly<Record<string, { readonly pick: Pick }>> = {
  'view-role': { pick: (_v, h) => h?.role ?? 'None' },
  'view-state': { pick: (_v, h) => `${h?.diskState ?? 'Detached'}/${h?.replState ?? 'Detached'}` },
  'view-diskstate': { pick: (_v, h) => h?.diskState ?? 'Detached' },
  'view-replstate': { pick: (_v, h) => h?.replState ?? 'Detached' },
  'view-flags': { pick: (_v, h) => h?.flags ?? '----' },
  'view-is-primary': { pick: (_v, h) => (h?.role === 'Primary' ? 1 : 0) },
  'view-get-primary': { pick: (v) => v.primary },
  'view-is-consistent': { pick: (_v, h) => (h?.consistent ? 1 : 0) },
  'view-device-opened': { pick: (_v, h) => h?.openCount ?? 0 },
  'view-is-split-brain': { pick: (v) => (v.splitBrain ? 1 : 0) },
  'view-sync-rest': { pick: (_v, h) => flowState(h, 'sync').rest },
  'view-replay-rest': { pick: (_v, h) => h?.replayRest ?? 0 },
  'view-fetch-rest': { pick: (_v, h) => h?.fetchRest ?? 0 },
  ...Object.fromEntries(FLOWS.map((f) => [`view-${f}-percent`, { pick: (_v: ResourceView, h: HostView | undefined) => flowPercent(flowState(h, f)) }])),
};

/** Macros that need two samples: the daemon publishes positions, not speeds. */
export const SAMPLED_MACROS: Readonly<Record<string, { readonly pick: SampledPick }>> = Object.fromEntries(FLOWS.flatMap((f) => [
  [`view-${f}-rate`, { pick: (a: HostView | undefined, b: HostView | undefined, ms: number) => flowRate(flowState(a, f), flowState(b, f), ms) }],
  [`view-${f}-remain`, {
    pick: (a: HostView | undefined, b: HostView | undefined, ms: number) =>
      remainSeconds(flowState(b, f).rest, flowRate(flowState(a, f), flowState(b, f), ms)),
  }],
]));

/** --sample-ms default: long enough to see a busy flow move, short enough for a prompt. */
export const DEFAULT_SAMPLE_MS = 1000;

interface MacroRow {
  readonly resource: string;
  readonly host: string;
  readonly value: string | number;
}

/** The run function of view-<name>: one value per resource for this host. */
export function macro(name: string): CommandRun {
  return async (ctx) => {
    const rows = name in SAMPLED_MACROS ? await sampledRows(ctx, SAMPLED_MACROS[name]!.pick) : await rowsOf(ctx, VIEW_MACROS[name]!.pick);
    if (ctx.options['json']) ctx.out.write(`${JSON.stringify(ctx.args[0] !== undefined ? rows[0] : rows)}\n`);
    else if (ctx.args[0] !== undefined) ctx.out.write(`${rows[0]!.value}\n`);
    else for (const r of rows) ctx.out.write(`${r.resource} ${r.value}\n`);
    return 0;
  };
}

async function rowsOf(ctx: CommandContext, pick: Pick): Promise<MacroRow[]> {
  const { tree, list } = await views(ctx, ctx.treeValues);
  return list.map((v) => ({ resource: v.resource, host: tree.host, value: pick(v, mine(v, tree.host)) }));
}

/** Two views --sample-ms apart; a resource that vanished in between is left out. */
async function sampledRows(ctx: CommandContext, pick: SampledPick): Promise<MacroRow[]> {
  const first = await views(ctx, ctx.treeValues);
  const startedMs = Date.now();
  await sleep(Number(ctx.options['sample-ms'] ?? DEFAULT_SAMPLE_MS));
  const second = await views(ctx); // a fresh walk
  const elapsedMs = Date.now() - startedMs;
  const host = second.tree.host;
  return second.list.flatMap((after) => {
    const before = first.list.find((v) => v.resource === after.resource);
    return before ? [{ resource: after.resource, host, value: pick(mine(before, host), mine(after, host), elapsedMs) }] : [];
  });
}

function mine(v: ResourceView, host: string): HostView | undefined {
  return v.hosts.find((h) => h.host === host);
}
