/**
 * marsadm cron: housekeeping, run every few minutes (systemd timer or cron):
 *  - on the primary, rotate a resource's log once it is larger than --rotate-bytes
 *    (default 1 GiB) or older than --rotate-age seconds (default 86400);
 *  - cluster-wide, delete the logs every member has replayed (log-delete-all).
 * marsadm log-delete-all RES: the second step for one resource, now.
 *
 * Deletion is decided once for everyone: the shared key
 * `resource-<res>/userspace/log-delete-below` = N (it only grows) tells every daemon to
 * delete its copies of logs numbered below N. N is the lowest log any member still
 * replays (or writes back), so no host ever deletes a log another member needs: all
 * copies go, or none.
 */
import { open, readdir, stat } from 'node:fs/promises';
import path from 'node:path';

import { parseLogName, parseReplayValue } from '../../replication/log_names.js';
import { actualKey, replayKey, resourceDir, resourceKey, type MarsTree } from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { liveResources, openTree } from '../tree_access.js';

export const DELETE_BELOW = 'userspace/log-delete-below';

export async function cron(ctx: CommandContext): Promise<number> {
  const tree = await openTree(ctx);
  const rotateBytes = Number(ctx.options['rotate-bytes'] ?? 1 << 30);
  const rotateAgeS = Number(ctx.options['rotate-age'] ?? 86_400);
  for (const res of await liveResources(tree)) {
    if ((await tree.getValue(actualKey(res, tree.host, 'is-primary'))) === '1') await rotateIfDue(ctx, tree, res, rotateBytes, rotateAgeS);
    await deleteReplayed(ctx, tree, res);
  }
  return 0;
}

export async function logDeleteAll(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0]!;
  const tree = await openTree(ctx);
  if (!(await liveResources(tree)).includes(res)) throw new CommandError(`no resource ${res}; \`marsadm view\` lists them`);
  await deleteReplayed(ctx, tree, res);
  return 0;
}

async function rotateIfDue(ctx: CommandContext, tree: MarsTree, res: string, bytes: number, ageS: number): Promise<void> {
  const dir = path.join(tree.root, resourceDir(res));
  const own = (await readdir(dir)).map(parseLogName).filter((l) => l?.origin === tree.host).sort((a, b) => a!.seq - b!.seq);
  const current = own[own.length - 1];
  if (!current) return;
  const st = await stat(path.join(dir, current.name));
  const ageMs = Date.now() - (st.birthtimeMs || st.ctimeMs);
  if (st.size === 0 || (st.size < bytes && ageMs < ageS * 1000)) return;
  const all = (await readdir(dir)).map(parseLogName).filter((l) => l !== null);
  const next = `log-${String(Math.max(...all.map((l) => l!.seq)) + 1).padStart(9, '0')}-${tree.host}`;
  if (ctx.options['dry-run']) {
    ctx.out.write(`would rotate ${res}: ${current.name} (${st.size} bytes) -> ${next}\n`);
    return;
  }
  await (await open(path.join(dir, next), 'wx', 0o644)).close();
  ctx.out.write(`${res}: rotated ${current.name} (${st.size} bytes) -> ${next}\n`);
}

/** Raise log-delete-below to the lowest log any member still needs. */
async function deleteReplayed(ctx: CommandContext, tree: MarsTree, res: string): Promise<void> {
  const members = (await tree.list(`${resourceDir(res)}/`))
    .filter((e) => e.value !== null && /\/data-[^/]+$/.test(e.key))
    .map((e) => e.key.slice(e.key.lastIndexOf('/data-') + 6));
  let lowest = Infinity;
  for (const host of members) {
    const pos = parseReplayValue(await tree.getValue(replayKey(res, host)));
    lowest = Math.min(lowest, pos ? parseLogName(pos.log)!.seq : 0);
  }
  if (!Number.isFinite(lowest) || lowest <= 1) return;
  const key = resourceKey(res, DELETE_BELOW);
  const current = Number((await tree.getValue(key)) ?? 0);
  if (lowest <= current) return;
  if (ctx.options['dry-run']) {
    ctx.out.write(`would delete the logs of ${res} below ${lowest} on every member\n`);
    return;
  }
  await tree.set(key, String(lowest));
  ctx.out.write(`${res}: logs below ${lowest} are replayed by every member (${members.join(', ')}); each member deletes its copies\n`);
}
