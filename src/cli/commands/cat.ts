/** marsadm cat FILE: print a regular file of the tree (status and message files). */
import { readFile, realpath } from 'node:fs/promises';
import path from 'node:path';

import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { openTree } from '../tree_access.js';

export async function run(ctx: CommandContext): Promise<number> {
  const tree = await openTree(ctx);
  const root = await realpath(tree.root);
  const file = await realpath(path.resolve(tree.root, ctx.args[0]!)).catch(() => {
    throw new CommandError(`marsadm cat: ${ctx.args[0]} does not exist under ${tree.root}`);
  });
  if (!file.startsWith(`${root}/`)) throw new CommandError(`marsadm cat: ${ctx.args[0]} is outside the tree ${tree.root}`);
  if (/\/log-[0-9]{9}-[^/]+$/.test(file)) throw new CommandError(`marsadm cat: ${ctx.args[0]} is a transaction log; use \`marsadm log-cat\``);
  ctx.out.write(await readFile(file).catch((e: Error) => {
    throw new CommandError(`marsadm cat: ${e.message}`);
  }));
  return 0;
}
