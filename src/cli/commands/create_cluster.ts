/**
 * marsadm create-cluster [ADDRESS]: make this host the first member of a new cluster.
 * ADDRESS is where peers reach it over SSH; the host name by default, as join-cluster.
 */
import { randomUUID } from 'node:crypto';

import { ipKey, UUID_KEY } from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { openTree } from '../tree_access.js';

export async function run(ctx: CommandContext): Promise<number> {
  const tree = await openTree(ctx, { create: true, requireCluster: false });
  const uuid = await tree.getValue(UUID_KEY);
  if (uuid !== undefined) {
    if ((await tree.getValue(ipKey(tree.host))) !== undefined) {
      ctx.out.write(`${tree.root} is already cluster ${uuid} with ${tree.host} as a member; nothing to do\n`);
      return 0;
    }
    throw new CommandError(`${tree.root} already belongs to cluster ${uuid}, without ${tree.host}; ` +
      'use `marsadm join-cluster` on a new host, or another --root');
  }
  if (ctx.options['dry-run']) {
    ctx.out.write(`would create cluster in ${tree.root} with member ${tree.host}\n`);
    return 0;
  }
  const [address] = ctx.args as [string | undefined];
  await tree.set(ipKey(tree.host), address ?? tree.host);
  await tree.set(UUID_KEY, randomUUID());
  ctx.out.write(`created cluster ${await tree.getValue(UUID_KEY)} in ${tree.root}, member ${tree.host}\n`);
  return 0;
}
