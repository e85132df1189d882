/**
 * marsadm delete-resource RES [--force]: stop serving, then remove the resource from the
 * tree (tombstones, so peers learn it too) and delete its logs.
 */
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';

import { actualKey, resourceDir, sizeKey, todoKey } from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { daemonAlive, openTree, waitFor } from '../tree_access.js';

export async function run(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0]!;
  const tree = await openTree(ctx);
  const entries = await tree.list(`${resourceDir(res)}/`);
  if (entries.length === 0) throw new CommandError(`no resource ${res} in ${tree.root}; \`marsadm view\` lists them`);
  if ((await tree.get(sizeKey(res)))?.value === null && entries.every((e) => e.value === null)) {
    ctx.out.write(`resource ${res} is already deleted\n`);
    return 0;
  }
  const opened = Number(await tree.getValue(actualKey(res, tree.host, 'open-count')) ?? 0);
  if (opened > 0 && !ctx.options['force']) {
    throw new CommandError(`resource ${res}: its device is open (${opened} users); stop them first, or use --force`);
  }
  if (ctx.options['dry-run']) {
    ctx.out.write(`would detach ${res} and delete its ${entries.length} keys and its logs\n`);
    return 0;
  }
  await tree.set(todoKey(res, tree.host, 'attach'), '0');
  if (await daemonAlive(tree)) {
    await waitFor(ctx, tree, `resource ${res} to detach (actual-${tree.host}/is-attached = 0)`,
      async () => (await tree.getValue(actualKey(res, tree.host, 'is-attached'))) !== '1');
  } else if (!ctx.options['force']) {
    throw new CommandError(`the daemon on ${tree.host} is not running, so ${res} cannot be detached safely; ` +
      'start it and retry, or use --force if it is surely stopped');
  }
  for (const e of await tree.list(`${resourceDir(res)}/`)) if (e.value !== null) await tree.delete(e.key);
  const dir = path.join(tree.root, resourceDir(res));
  for (const f of await readdir(dir)) if (/^log-[0-9]{9}-/.test(f)) await rm(path.join(dir, f), { force: true });
  ctx.out.write(`deleted resource ${res}\n`);
  return 0;
}
