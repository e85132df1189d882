/**
 * marsadm invalidate RES: throw away this host's version of RES and take the designated
 * primary's, by fast full sync (only differing blocks travel) and replay from the start
 * of the primary's current log. The way out of a split brain on the losing side, and of
 * a replica that cannot replay (DefectiveLog). See docs/handover.md "Split brain".
 *
 * All switches off (the replica stops), the tree edits, all switches on: a fresh replica
 * starts from the new position. Safe to retry: every step is idempotent.
 */
import { readdir, rm, truncate } from 'node:fs/promises';
import path from 'node:path';

import { parseVersion, type VersionLink } from '../../replication/versions.js';
import { parseLogName, parseReplayValue, replayValue } from '../../replication/log_names.js';
import {
  actualKey, dataKey, primaryKey, replayKey, resourceDir, resourceKey, sizeKey, todoKey, versionKey, type MarsTree,
} from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { openTree, waitFor } from '../tree_access.js';
import { awaitSync } from './join_resource.js';

export async function run(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0]!;
  const tree = await openTree(ctx);
  const me = tree.host;
  const size = Number(await tree.getValue(sizeKey(res)) ?? NaN);
  if (!Number.isFinite(size)) throw new CommandError(`no resource ${res}; \`marsadm view\` lists them`);
  if ((await tree.getValue(dataKey(res, me))) === undefined) throw new CommandError(`${me} is not a member of ${res}; nothing to invalidate`);
  const primary = (await tree.getValue(primaryKey(res))) ?? '(none)';
  if (primary === me) {
    throw new CommandError(`${me} is the designated primary of ${res}: its version is the one others follow; ` +
      `make the survivor primary first (marsadm primary ${res} on it), then invalidate here`);
  }
  if (primary === '(none)') throw new CommandError(`${res} has no designated primary to take the data from; make one primary first (marsadm primary ${res})`);
  const start = parseReplayValue(await tree.getValue(replayKey(res, primary)));
  if (!start) throw new CommandError(`${primary} has not published its log position for ${res} yet; retry in a few seconds`);
  if (ctx.options['dry-run']) {
    ctx.out.write(`would discard ${me}'s version of ${res}: version links from ${start.log} on and log copies after it, ` +
      `then fast full sync from ${primary} and replay from ${start.log}\n`);
    return 0;
  }
  await setAttach(ctx, tree, res, '0');
  await resetPosition(tree, res, primary, start.log);
  await setAttach(ctx, tree, res, '1');
  if (!ctx.options['json']) ctx.out.write(`invalidated ${me}'s version of ${res}: fast full sync from ${primary}\n`);
  return await awaitSync(ctx, tree, res, size);
}

async function setAttach(ctx: CommandContext, tree: MarsTree, res: string, value: '0' | '1'): Promise<void> {
  const me = tree.host;
  for (const sw of ['attach', 'connect', 'allow-replay', 'sync'] as const) {
    if ((await tree.getValue(todoKey(res, me, sw))) !== value) await tree.set(todoKey(res, me, sw), value);
  }
  await waitFor(ctx, tree, `${res}: actual-${me}/is-attached = ${value}`,
    async () => ((await tree.getValue(actualKey(res, me, 'is-attached'))) ?? '0') === value);
}

/**
 * A log of our own whose end the primary's history does not share. If that history holds
 * the log too (a forced failover ended it earlier), keep the part it holds: the same log
 * name is the same bytes up to the shorter end, and replay needs the file, which only we
 * have for sure. Otherwise its data is what invalidate discards (left in place, the
 * daemon would seal it again).
 */
async function dropOwnTail(tree: MarsTree, res: string, log: string, theirs: VersionLink | null): Promise<void> {
  const copy = path.join(tree.root, resourceDir(res), log);
  if (theirs && theirs.log === log) await truncate(copy, theirs.offset).catch(() => undefined);
  else await rm(copy, { force: true });
}

/** Start over at the beginning of `log` (the primary's current one), as join-resource does. */
async function resetPosition(tree: MarsTree, res: string, primary: string, log: string): Promise<void> {
  const me = tree.host;
  const seq = parseLogName(log)!.seq;
  // Our links from the split point on go: every one the primary's history does not share
  // (else view would go on reporting the split brain), and those the sync replaces.
  for (const e of await tree.list(`${resourceDir(res)}/version-`)) {
    const m = /\/version-([0-9]{9})-(.+)$/.exec(e.key);
    if (e.value === null || !m || m[2] !== me) continue;
    const theirs = parseVersion(await tree.getValue(versionKey(res, Number(m[1]), primary)));
    const ours = parseVersion(e.value);
    if (Number(m[1]) < seq - 1 && theirs?.digest === ours?.digest) continue;
    await tree.delete(e.key);
    if (ours && parseLogName(ours.log)?.origin === me && theirs?.digest !== ours.digest) await dropOwnTail(tree, res, ours.log, theirs);
  }
  const previous = await tree.getValue(versionKey(res, seq - 1, parseLogName(log)!.origin)) ?? await tree.getValue(versionKey(res, seq - 1, primary));
  if (previous !== undefined) await tree.set(versionKey(res, seq - 1, me), previous);
  const dir = path.join(tree.root, resourceDir(res));
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    const name = parseLogName(f);
    if (name && name.seq >= seq && f !== log) await rm(path.join(dir, f), { force: true });
  }
  await tree.set(replayKey(res, me), replayValue({ log, offset: 0 }));
  await tree.set(resourceKey(res, `syncstatus-${me}`), '0');
  await tree.set(actualKey(res, me, 'sync-target'), '(none)');
}
