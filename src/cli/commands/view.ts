/**
 * marsadm view [RES] and the view-* macros. One model (ResourceView) computed from the
 * tree; the text view, --json and each macro all print from it, so they never disagree.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';

import {
  actualKey, primaryKey, replayKey, resourceDir, sizeKey, todoKey, type MarsTree,
} from '../../tree/index.js';
import type { CommandContext, CommandRun } from '../command.js';
import { CommandError } from '../errors.js';
import { formatBytes } from '../format.js';
import { daemonAlive, liveResources, openTree } from '../tree_access.js';

export type Role = 'Primary' | 'Secondary' | 'None';
export type DiskState = 'UpToDate' | 'Detached' | 'Failed';
export type ReplState = 'Logging' | 'Replaying' | 'PausedReplay' | 'Detached' | 'DefectiveLog';

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
  /** The host's daemon publishes liveness; when false, the other fields are its last words. */
  readonly daemonAlive: boolean;
}

export interface ResourceView {
  readonly resource: string;
  readonly sizeBytes: number;
  readonly primary: string;
  readonly hosts: HostView[];
}

export async function resourceView(tree: MarsTree, res: string): Promise<ResourceView> {
  const entries = await tree.list(`${resourceDir(res)}/`);
  const hosts = entries.flatMap((e) => {
    const m = /\/data-([^/]+)$/.exec(e.key);
    return m && e.value !== null ? [m[1]!] : [];
  }).sort();
  const primary = (await tree.getValue(primaryKey(res))) ?? '(none)';
  return {
    resource: res,
    sizeBytes: Number((await tree.getValue(sizeKey(res))) ?? 0),
    primary,
    hosts: await Promise.all(hosts.map((h) => hostView(tree, res, h, primary))),
  };
}

async function hostView(tree: MarsTree, res: string, host: string, primary: string): Promise<HostView> {
  const get = async (key: string) => (await tree.getValue(key)) ?? '';
  const todo = async (sw: 'sync' | 'connect' | 'attach' | 'allow-replay') => (await get(todoKey(res, host, sw))) === '1';
  const [sync, fetch, attach, replay] = await Promise.all([todo('sync'), todo('connect'), todo('attach'), todo('allow-replay')]);
  const isPrimary = (await get(actualKey(res, host, 'is-primary'))) === '1';
  const attached = (await get(actualKey(res, host, 'is-attached'))) === '1';
  const replayCode = (await get(actualKey(res, host, 'replay-code'))) || '0';
  const device = await get(actualKey(res, host, 'device'));
  const replayLink = /^(log-[0-9]{9}-[^,]+),([0-9]+),/.exec(await get(replayKey(res, host)));
  const log = replayLink?.[1] ?? null;
  const logBytes = log ? await stat(path.join(tree.root, resourceDir(res), log)).then((s) => s.size, () => 0) : 0;
  const replayPosition = Number(replayLink?.[2] ?? 0);
  const failed = replayCode.startsWith('-');
  return {
    host,
    role: isPrimary ? 'Primary' : attached ? 'Secondary' : 'None',
    designatedPrimary: primary === host,
    diskState: failed ? 'Failed' : attached ? 'UpToDate' : 'Detached',
    replState: failed ? 'DefectiveLog' : !attached ? 'Detached' : isPrimary ? 'Logging' : replay ? 'Replaying' : 'PausedReplay',
    flags: `${sync ? 'S' : '-'}${fetch ? 'F' : '-'}${attach ? 'A' : '-'}${replay ? 'R' : '-'}`,
    device: device && device !== '(none)' ? device : null,
    openCount: Number((await get(actualKey(res, host, 'open-count'))) || 0),
    consistent: attached && !failed,
    log,
    logBytes,
    replayPosition,
    replayRest: Math.max(0, logBytes - replayPosition),
    fetchRest: 0,
    replayCode,
    daemonAlive: await daemonAlive(tree, host),
  };
}

async function views(ctx: CommandContext): Promise<{ tree: MarsTree; list: ResourceView[] }> {
  const tree = await openTree(ctx);
  const wanted = ctx.args[0];
  const all = await liveResources(tree);
  if (wanted !== undefined && !all.includes(wanted)) throw new CommandError(`no resource ${wanted} in ${tree.root}; \`marsadm view\` lists them`);
  const names = wanted === undefined ? all : [wanted];
  return { tree, list: await Promise.all(names.map((r) => resourceView(tree, r))) };
}

function viewText(v: ResourceView): string {
  const lines = [`--------- resource ${v.resource} (${formatBytes(v.sizeBytes)}), primary ${v.primary}`];
  for (const h of v.hosts) {
    const device = h.device ? `  device ${h.device} (opened ${h.openCount})` : '';
    const log = h.log ? `  log ${h.log} ${formatBytes(h.logBytes)}, replay rest ${formatBytes(h.replayRest)}` : '';
    const code = h.replayCode.startsWith('-') ? `  ERROR ${h.replayCode.slice(h.replayCode.indexOf(',') + 1)}` : '';
    const down = h.daemonAlive ? '' : '  DAEMON NOT RUNNING (start it: systemctl start phobos-daemon, or marsadm daemon)';
    lines.push(`${h.host}  ${h.role}  ${h.diskState}  ${h.replState}  ${h.flags}${device}${log}${code}${down}`);
  }
  return lines.join('\n') + '\n';
}

/** marsadm view [RES] */
export async function run(ctx: CommandContext): Promise<number> {
  const { list } = await views(ctx);
  if (ctx.options['json']) ctx.out.write(`${JSON.stringify({ resources: list })}\n`);
  else ctx.out.write(list.length ? list.map(viewText).join('') : 'no resources\n');
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
