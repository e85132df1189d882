/** marsadm set-link KEY VALUE and get-link KEY: raw tree access for experts and scripts. */
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { openTree } from '../tree_access.js';

export async function setLink(ctx: CommandContext): Promise<number> {
  const [key, value] = ctx.args as [string, string];
  const tree = await openTree(ctx);
  try {
    await tree.set(key, value);
  } catch (e) {
    throw new CommandError(`marsadm set-link: ${(e as Error).message}`);
  }
  return 0;
}

export async function getLink(ctx: CommandContext): Promise<number> {
  const key = ctx.args[0]!;
  const tree = await openTree(ctx);
  const entry = await tree.get(key).catch((e: Error) => {
    throw new CommandError(`marsadm get-link: ${e.message}`);
  });
  if (!entry || entry.value === null) throw new CommandError(`marsadm get-link: ${key} is not set`);
  ctx.out.write(ctx.options['json'] ? `${JSON.stringify(entry)}\n` : `${entry.value}\n`);
  return 0;
}
