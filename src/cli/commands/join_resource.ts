/**
 * marsadm join-resource RES DISK: become a secondary of RES with DISK, by fast full sync
 * from the primary, then log replay (docs/replication.md). Waits until the sync is done,
 * with a progress bar on a terminal (--json: one progress object per line).
 * marsadm leave-resource RES: stop being a member (secondary only); the disk keeps its data.
 */
import { readdir, rm, stat, truncate } from 'node:fs/promises';
import path from 'node:path';

import { native } from '../../dataplane/native.js';
import { parseLogName, parseReplayValue, replayValue } from '../../replication/log_names.js';
import {
  actualKey, checkName, dataKey, deviceKey, hostActualKey, primaryKey, replayKey, resourceDir, resourceKey, sizeKey, todoKey, versionKey,
  type MarsTree,
} from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { ProgressBar } from '../progress.js';
import { ALIVE_WINDOW_MS, daemonAlive, openTree, timeoutMs, waitFor } from '../tree_access.js';

export async function joinResource(ctx: CommandContext): Promise<number> {
  const [resArg, diskArg] = ctx.args as [string, string];
  const res = nameOrFail(resArg);
  const disk = path.resolve(diskArg);
  const tree = await openTree(ctx);
  const host = tree.host;
  const size = Number(await tree.getValue(sizeKey(res)) ?? NaN);
  if (!Number.isFinite(size)) throw new CommandError(`no resource ${res} in the cluster; \`marsadm view\` lists them (or wait for the tree: \`marsadm wait-cluster\`)`);
  const current = await tree.getValue(dataKey(res, host));
  if (current !== undefined) {
    if (current !== disk) throw new CommandError(`${host} is already a member of ${res} with disk ${current}; leave-resource first to change disks`);
    if (!ctx.options['json']) ctx.out.write(`${host} is already a member of ${res} with ${disk}\n`);
    return await awaitSync(ctx, tree, res, size);
  }
  const primary = await tree.getValue(primaryKey(res));
  if (!primary || primary === '(none)') throw new CommandError(`resource ${res} has no primary to sync from; make one primary first (marsadm primary ${res} on it)`);
  if (primary === host) throw new CommandError(`${host} is the primary of ${res} already`);
  const st = await stat(disk).catch(() => null);
  if (!st || !(st.isFile() || st.isBlockDevice())) throw new CommandError(`disk ${disk} does not exist; give a block device, or create a file (truncate -s ${size} ${disk})`);
  // A regular file is test mode: grown (sparse) to the size, as create-resource does.
  const diskSize = st.isFile() ? Math.max(st.size, size) : native.deviceSize(disk);
  if (diskSize < size) throw new CommandError(`disk ${disk} has ${diskSize} bytes, the resource ${size}; use a disk at least that large`);
  const start = parseReplayValue(await tree.getValue(replayKey(res, primary)));
  if (!start) throw new CommandError(`the primary ${primary} has not published its log position yet; retry in a few seconds`);
  if (ctx.options['dry-run']) {
    ctx.out.write(`would join ${res} with ${disk}: full sync from ${primary}, replay from ${start.log}\n`);
    return 0;
  }
  // Replay starts at the beginning of the primary's current log; the version chain is
  // continued from the primary's previous link, as if we had replayed it ourselves.
  const seq = parseLogName(start.log)!.seq;
  const previous = await tree.getValue(versionKey(res, seq - 1, parseLogName(start.log)!.origin))
    ?? await tree.getValue(versionKey(res, seq - 1, primary));
  if (previous !== undefined) await tree.set(versionKey(res, seq - 1, host), previous);
  await tree.set(replayKey(res, host), replayValue({ log: start.log, offset: 0 }));
  await tree.set(resourceKey(res, `syncstatus-${host}`), '0');
  await tree.set(actualKey(res, host, 'sync-target'), '(none)');
  await tree.set(deviceKey(res, host), res);
  for (const sw of ['connect', 'sync', 'allow-replay', 'attach'] as const) await tree.set(todoKey(res, host, sw), '1');
  if (st.isFile() && st.size < size) await truncate(disk, size);
  await tree.set(dataKey(res, host), disk);
  if (ctx.options['json']) ctx.out.write(`${JSON.stringify({ resource: res, host, joined: disk, syncFrom: primary })}\n`);
  else ctx.out.write(`joined ${res} with ${disk}: fast full sync from ${primary}\n`);
  return await awaitSync(ctx, tree, res, size);
}

/** Wait for the sync, showing progress; the timeout counts from the last progress. */
export async function awaitSync(ctx: CommandContext, tree: MarsTree, res: string, size: number): Promise<number> {
  const key = resourceKey(res, `syncstatus-${tree.host}`);
  const bar = ctx.options['json'] ? null : new ProgressBar('sync', size);
  let last = -1;
  let lastChange = Date.now();
  for (;;) {
    const done = Number(await tree.getValue(key) ?? size);
    if (done !== last) {
      last = done;
      lastChange = Date.now();
      bar?.update(done);
      if (ctx.options['json']) ctx.out.write(`${JSON.stringify({ resource: res, host: tree.host, syncedBytes: done, sizeBytes: size })}\n`);
    }
    if (done >= size) break;
    if (Date.now() - lastChange > timeoutMs(ctx)) {
      throw new CommandError(`sync of ${res} made no progress for ${Math.round(timeoutMs(ctx) / 1000)} s (${done} of ${size} bytes)` +
        `${await whySyncWaits(tree, res)}, then rerun this command to keep waiting`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  bar?.done();
  if (!ctx.options['json']) ctx.out.write(`sync of ${res} done; the disk is consistent once replay passes the primary's position at sync end (marsadm view ${res})\n`);
  return 0;
}

/**
 * What the daemon's indicators say about a sync that does not move, as "; <reason>; <fix>":
 * an operator at 3 a.m. (and a CI log) needs the cause, not only the symptom.
 */
async function whySyncWaits(tree: MarsTree, res: string): Promise<string> {
  const me = tree.host;
  if (!(await daemonAlive(tree))) return `; the daemon on ${me} is not running: start it`;
  const indicator = (name: string) => tree.getValue(actualKey(res, me, name));
  if ((await indicator('is-attached')) !== '1') return `; ${res} is not attached on ${me}: marsadm attach ${res}`;
  if ((await tree.getValue(todoKey(res, me, 'sync'))) !== '1') return `; sync is paused on ${me}: marsadm resume-sync ${res}`;
  const code = (await indicator('replay-code')) ?? '0';
  if (code.startsWith('-')) return `; the replica on ${me} stopped: ${code.slice(code.indexOf(',') + 1)}`;
  const primary = await tree.getValue(primaryKey(res));
  if (!primary || primary === '(none)') return `; ${res} has no designated primary to sync from: marsadm primary ${res} on the survivor`;
  const heard = await tree.get(hostActualKey(primary, 'time'));
  const silentS = heard ? Math.round((Date.now() - heard.stamp / 1000) / 1000) : Infinity;
  if (silentS * 1000 > ALIVE_WINDOW_MS) {
    return `; nothing heard from the primary ${primary} for ${Number.isFinite(silentS) ? `${silentS} s` : 'ever'}: check the link to it (marsadm view)`;
  }
  const syncing = (await indicator('is-syncing')) === '1';
  return `; the primary ${primary} is reachable and the daemon on ${me} says it is ${syncing ? '' : 'not '}syncing: see its log (journalctl -u phobos-daemon)`;
}

export async function leaveResource(ctx: CommandContext): Promise<number> {
  const res = nameOrFail(ctx.args[0]!);
  const tree = await openTree(ctx);
  const host = tree.host;
  if ((await tree.getValue(dataKey(res, host))) === undefined) {
    ctx.out.write(`${host} is not a member of ${res}; nothing to do\n`);
    return 0;
  }
  if ((await tree.getValue(primaryKey(res))) === host) {
    throw new CommandError(`${host} is the primary of ${res}; hand over first (marsadm primary ${res} on another member), or delete-resource`);
  }
  if (ctx.options['dry-run']) {
    ctx.out.write(`would detach ${res} on ${host}, remove ${host}'s keys and log copies\n`);
    return 0;
  }
  await tree.set(todoKey(res, host, 'attach'), '0');
  await waitFor(ctx, tree, `${res} to detach (actual-${host}/is-attached = 0)`,
    async () => (await tree.getValue(actualKey(res, host, 'is-attached'))) !== '1');
  const own = new Set(['todo', 'actual', 'data', 'device', 'replay', 'syncstatus'].map((k) => `${k}-${host}`));
  for (const e of await tree.list(`${resourceDir(res)}/`)) {
    if (e.value === null) continue;
    const first = e.key.slice(resourceDir(res).length + 1).split('/')[0]!;
    if (own.has(first) || first === `version-${first.slice(8, 17)}-${host}`) await tree.delete(e.key);
  }
  const dir = path.join(tree.root, resourceDir(res));
  for (const f of await readdir(dir).catch(() => [] as string[])) if (/^log-[0-9]{9}-/.test(f)) await rm(path.join(dir, f), { force: true });
  ctx.out.write(`${host} left ${res}; the disk keeps its contents\n`);
  return 0;
}

function nameOrFail(name: string): string {
  try {
    return checkName('resource', name);
  } catch (e) {
    throw new CommandError((e as Error).message);
  }
}
