/**
 * marsadm secondary RES: no host is designated primary any more; the primary stops
 * serving the device. Written with MARS's weak stamp (the old stamp + 1), so a concurrent
 * `primary` elsewhere wins (reference/mars.md 1.1).
 */
import { actualKey, primaryKey } from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { daemonAlive, openTree, waitFor } from '../tree_access.js';

export async function run(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0]!;
  const tree = await openTree(ctx);
  const primary = await tree.getValue(primaryKey(res));
  if (primary === undefined) throw new CommandError(`no resource ${res}; \`marsadm view\` lists them`);
  const opened = Number(await tree.getValue(actualKey(res, tree.host, 'open-count')) ?? 0);
  if (opened > 0 && !ctx.options['force']) {
    throw new CommandError(`resource ${res}: the device is open (${opened} users) on ${tree.host}; unmount or stop them first, or use --force`);
  }
  if (ctx.options['dry-run']) {
    ctx.out.write(`would set primary of ${res} to (none) (now ${primary})\n`);
    return 0;
  }
  if (primary !== '(none)') await tree.set(primaryKey(res), '(none)', { weak: true });
  if (primary === tree.host || (await daemonAlive(tree))) {
    await waitFor(ctx, tree, `${res} to leave primary (actual-${tree.host}/is-primary = 0)`,
      async () => (await tree.getValue(actualKey(res, tree.host, 'is-primary'))) !== '1');
  }
  return 0;
}
