/**
 * marsadm create-resource RES DISK [SIZE]: create a resource on this host, which becomes
 * its primary. DISK is a block device, or a regular file (sparse test mode; grown to SIZE).
 */
import { constants } from 'node:fs';
import { open, stat, truncate } from 'node:fs/promises';
import path from 'node:path';

import { native } from '../../dataplane/native.js';
import {
  actualKey, checkName, dataKey, deviceKey, primaryKey, sizeKey, todoKey, type LamportStamp, type MarsTree,
} from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { parseInteger } from '../options.js';
import { daemonRefusal, liveResources, openTree, waitFor } from '../tree_access.js';

export async function run(ctx: CommandContext): Promise<number> {
  const [resArg, diskArg, sizeArg] = ctx.args as [string, string, string | undefined];
  const res = checkNameOrFail('resource', resArg);
  const disk = path.resolve(diskArg);
  const tree = await openTree(ctx);
  const wantedSize = sizeArg === undefined ? undefined : parseInteger('size', sizeArg);
  const host = tree.host;

  const existing = await tree.getValue(sizeKey(res));
  if (existing !== undefined) {
    if ((await tree.getValue(dataKey(res, host))) === disk && (wantedSize === undefined || String(wantedSize) === existing)) {
      ctx.out.write(`resource ${res} already exists on ${host} with disk ${disk}\n`);
      if ((await tree.getValue(actualKey(res, host, 'is-primary'))) === '1') return 0;
      // A retry after a refusal (disk in use, ...): asking again makes the daemon retry now.
      const asked = await tree.set(todoKey(res, host, 'attach'), '1');
      return await awaitPrimary(ctx, tree, res, asked?.stamp ?? 0);
    }
    throw new CommandError(`resource ${res} already exists; pick another name, or delete it first with \`marsadm delete-resource ${res}\``);
  }
  await refuseDiskInUse(tree, disk);
  const size = await checkDisk(disk, wantedSize);
  if (ctx.options['dry-run']) {
    ctx.out.write(`would create resource ${res} on ${disk} (${size} bytes) with ${host} as primary\n`);
    return 0;
  }
  const st = await stat(disk);
  if (st.isFile() && st.size < size) await truncate(disk, size);
  await tree.set(sizeKey(res), String(size));
  await tree.set(dataKey(res, host), disk);
  await tree.set(deviceKey(res, host), res);
  for (const sw of ['connect', 'sync', 'allow-replay'] as const) await tree.set(todoKey(res, host, sw), '1');
  await tree.set(primaryKey(res), host);
  const asked = await tree.set(todoKey(res, host, 'attach'), '1');
  ctx.out.write(`created resource ${res}: ${size} bytes on ${disk}, primary ${host}\n`);
  return await awaitPrimary(ctx, tree, res, asked?.stamp ?? 0);
}

/** Wait for the daemon to serve the device; `since`: the stamp of the switch that asked. */
async function awaitPrimary(ctx: CommandContext, tree: MarsTree, res: string, since: LamportStamp): Promise<number> {
  await waitFor(ctx, tree, `resource ${res} to become primary (actual-${tree.host}/is-primary = 1)`,
    async () => (await tree.getValue(actualKey(res, tree.host, 'is-primary'))) === '1',
    daemonRefusal(tree, res, tree.host, since));
  return 0;
}

function checkNameOrFail(kind: 'resource', name: string): string {
  try {
    return checkName(kind, name);
  } catch (e) {
    throw new CommandError((e as Error).message);
  }
}

/** The disk must exist, be a block device or a regular file, and be big enough. */
async function checkDisk(disk: string, wanted: number | undefined): Promise<number> {
  const st = await stat(disk).catch(() => {
    throw new CommandError(`disk ${disk} does not exist; give a block device, or create a file first (e.g. truncate -s 1G ${disk})`);
  });
  if (st.isFile()) {
    const size = wanted ?? st.size;
    if (size <= 0) throw new CommandError(`disk ${disk} is an empty file; give a SIZE (e.g. marsadm create-resource RES ${disk} 1G)`);
    return size;
  }
  if (!st.isBlockDevice()) throw new CommandError(`disk ${disk} is neither a block device nor a regular file`);
  // O_EXCL on a block device fails with EBUSY while it is mounted or held by another user.
  const handle = await open(disk, constants.O_RDWR | constants.O_EXCL).catch((e: NodeJS.ErrnoException) => {
    throw new CommandError(e.code === 'EBUSY'
      ? `disk ${disk} is in use (mounted, or held by another program); free it first`
      : `cannot open disk ${disk}: ${e.message}`);
  });
  await handle.close();
  const size = native.deviceSize(disk);
  if (wanted !== undefined && wanted > size) {
    throw new CommandError(`disk ${disk} has ${size} bytes, less than the ${wanted} asked for; use a larger disk or a smaller SIZE`);
  }
  return wanted ?? size;
}

/** No other resource on this host may use the same disk. */
async function refuseDiskInUse(tree: MarsTree, disk: string): Promise<void> {
  for (const other of await liveResources(tree)) {
    if ((await tree.getValue(dataKey(other, tree.host))) === disk) {
      throw new CommandError(`disk ${disk} is already used by resource ${other}; give another disk`);
    }
  }
}
