/**
 * marsadm peer-serve: the far end of a peer connection, on stdin/stdout. Started by the
 * pipe transport, or by sshd for the cluster key (authorized_keys forces this command).
 * Reads this host's tree, logs and disk for one peer; writes nothing.
 */
import { PeerServer } from '../../peer/index.js';
import type { CommandContext } from '../command.js';
import { openTree } from '../tree_access.js';

export async function run(ctx: CommandContext): Promise<number> {
  const tree = await openTree(ctx);
  const runDir = (ctx.options['run-dir'] as string | undefined) ?? process.env['PHOBOS_RUN_DIR'] ?? '/run/phobos';
  const log = (line: string): void => void process.stderr.write(`phobos-peer-serve[${tree.host}]: ${line}\n`);
  const server = new PeerServer({ tree, runDir, log });
  const closed = new Promise<void>((resolve) => {
    process.stdin.once('end', resolve);
    process.stdin.once('close', resolve);
  });
  await server.serve({
    input: process.stdin,
    output: process.stdout,
    description: 'stdio',
    closed,
    close: () => {
      process.stdin.destroy();
      process.stdout.end();
    },
  });
  return 0;
}
