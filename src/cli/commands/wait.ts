/**
 * marsadm wait-resource RES [COND] and wait-umount RES: the scripting waits. They change
 * nothing; they poll this host's copy of the tree until the daemon's indicators say so,
 * for scripts such as `marsadm down r1 && marsadm wait-resource r1 attach-off`.
 *
 * @example
 * // marsadm wait-resource r1 replay-on --timeout 30   # exit 0 once is-replaying = 1
 * // marsadm wait-umount r1                             # exit 0 once nobody has the device open
 */
import { actualKey, dataKey, type MarsTree } from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError, UsageError } from '../errors.js';
import { liveResources, openTree, waitFor } from '../tree_access.js';

/** The conditions MARS's wait-resource knows, and the indicator behind each. */
export const WAIT_INDICATORS = {
  attach: 'is-attached',
  fetch: 'is-copying',
  replay: 'is-replaying',
  sync: 'is-syncing',
} as const;
export type WaitSubject = keyof typeof WAIT_INDICATORS;

export interface WaitCondition {
  readonly subject: WaitSubject;
  /** Wait for the indicator to be 1 (on) or 0 (off). */
  readonly on: boolean;
}

/**
 * Without COND, wait for attach-on: the first thing `up`, `attach` or `join-resource`
 * brings about, and what a script needs before it uses the disk.
 */
export const DEFAULT_CONDITION: WaitCondition = { subject: 'attach', on: true };

/** `fetch-off` -> {fetch, off}; a bare subject means -on. */
export function parseWaitCondition(text: string | undefined): WaitCondition {
  if (text === undefined) return DEFAULT_CONDITION;
  const m = /^(attach|fetch|replay|sync)(?:-(on|off))?$/.exec(text);
  if (!m) {
    throw new UsageError(`marsadm wait-resource: unknown condition '${text}'; use attach, fetch, replay or sync, ` +
      'optionally with -on or -off (e.g. replay-off)');
  }
  return { subject: m[1] as WaitSubject, on: m[2] !== 'off' };
}

/** marsadm wait-resource RES [COND] */
export async function waitResource(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0]!;
  const cond = parseWaitCondition(ctx.args[1]);
  const tree = await openTree(ctx);
  await requireMember(tree, res, 'wait-resource');
  const key = actualKey(res, tree.host, WAIT_INDICATORS[cond.subject]);
  const want = cond.on ? '1' : '0';
  const name = `${cond.subject}-${cond.on ? 'on' : 'off'}`;
  const started = Date.now();
  // A missing indicator counts as 0: the daemon has not published it yet.
  await waitFor(ctx, tree, `${name} of ${res} (${key} = ${want})`,
    async () => ((await tree.getValue(key)) ?? '0') === want);
  report(ctx, { resource: res, host: tree.host, condition: name, waitedMs: Date.now() - started });
  return 0;
}

/** marsadm wait-umount RES */
export async function waitUmount(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0]!;
  const tree = await openTree(ctx);
  if (!(await liveResources(tree)).includes(res)) throw noResource(res, tree);
  const started = Date.now();
  // Members are read on every poll: one that joins meanwhile is waited for too.
  const members = async (): Promise<string[]> => membersOf(await tree.values(`resource-${res}/data-`), res);
  const hosts = await members();
  await waitFor(ctx, tree, `every member of ${res} (${hosts.join(', ')}) to close its device (actual-<host>/open-count = 0)`,
    async () => (await openOn(tree, res, await members())).length === 0);
  report(ctx, { resource: res, host: tree.host, condition: 'umount', waitedMs: Date.now() - started });
  return 0;
}

/** Members with the device open, by their published open-count. */
async function openOn(tree: MarsTree, res: string, hosts: readonly string[]): Promise<string[]> {
  const counts = await Promise.all(hosts.map(async (h) => Number((await tree.getValue(actualKey(res, h, 'open-count'))) ?? 0)));
  return hosts.filter((_h, i) => counts[i]! > 0);
}

/** Hosts with a data-<host> link in the resource directory. */
function membersOf(values: ReadonlyMap<string, string | null>, res: string): string[] {
  const prefix = `resource-${res}/data-`;
  return [...values].filter(([k, v]) => k.startsWith(prefix) && v !== null).map(([k]) => k.slice(prefix.length)).sort();
}

async function requireMember(tree: MarsTree, res: string, verb: string): Promise<void> {
  if (!(await liveResources(tree)).includes(res)) throw noResource(res, tree);
  if ((await tree.getValue(dataKey(res, tree.host))) === undefined) {
    throw new CommandError(`marsadm ${verb}: ${tree.host} is not a member of ${res}, so its daemon reports nothing for it; ` +
      `run it on a member (marsadm view ${res} lists them), or join first: marsadm join-resource ${res} DISK`);
  }
}

function noResource(res: string, tree: MarsTree): CommandError {
  return new CommandError(`no resource ${res} in ${tree.root}; \`marsadm view\` lists them`);
}

/** Silent on success (scripts test the status); --json prints what was waited for and how long. */
function report(ctx: CommandContext, result: Record<string, string | number>): void {
  if (ctx.options['json']) ctx.out.write(`${JSON.stringify(result)}\n`);
}
