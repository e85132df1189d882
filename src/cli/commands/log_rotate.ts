/**
 * marsadm log-rotate RES: start the next transaction log on the primary. Creates the
 * empty file log-<N+1>-<host>; the daemon drains writeback, seals the current log and
 * switches (it reports the new log in replay-<host>).
 */
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';

import { logName, seqOf } from '../../daemon/index.js';
import { primaryKey, replayKey, resourceDir } from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { openTree, waitFor } from '../tree_access.js';

export async function run(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0]!;
  const tree = await openTree(ctx);
  const primary = await tree.getValue(primaryKey(res));
  if (primary === undefined) throw new CommandError(`no resource ${res}; \`marsadm view\` lists them`);
  if (primary !== tree.host) {
    throw new CommandError(`resource ${res}: logs are rotated on the primary (${primary}), not on ${tree.host}; run it there`);
  }
  const dir = path.join(tree.root, resourceDir(res));
  const logs = (await readdir(dir)).filter((f) => /^log-[0-9]{9}-/.test(f));
  const next = logName(logs.reduce((m, f) => Math.max(m, seqOf(f)), 0) + 1, tree.host);
  if (ctx.options['dry-run']) {
    ctx.out.write(`would start ${next}\n`);
    return 0;
  }
  await (await open(path.join(dir, next), 'wx', 0o644)).close();
  await waitFor(ctx, tree, `${res} to switch to ${next} (replay-${tree.host})`,
    async () => ((await tree.getValue(replayKey(res, tree.host))) ?? '').startsWith(`${next},`));
  ctx.out.write(`${res}: now logging to ${next}\n`);
  return 0;
}
