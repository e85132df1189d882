/**
 * marsadm peer-serve: the far end of a peer connection, on stdin/stdout. Started by the
 * pipe transport, or by sshd for the cluster key (authorized_keys forces this command).
 * Reads this host's tree, logs and disk for one peer; writes nothing.
 */
import { PeerServer } from '../../peer/index.js';
import type { CommandContext } from '../command.js';
import { openTree } from '../tree_access.js';

/** How long a closed peer-serve may take to finish (close files, flush its log) before it exits, ms. */
const EXIT_GRACE_MS = 2000;

export async function run(ctx: CommandContext): Promise<number> {
  const tree = await openTree(ctx);
  const runDir = (ctx.options['run-dir'] as string | undefined) ?? process.env['PHOBOS_RUN_DIR'] ?? '/run/phobos';
  const log = (line: string): void => void process.stderr.write(`phobos-peer-serve[${tree.host}]: ${line}\n`);
  const server = new PeerServer({ tree, runDir, log });
  const closed = new Promise<void>((resolve) => {
    process.stdin.once('end', resolve);
    process.stdin.once('close', resolve);
  });
  // A peer-serve lives for its one connection. Once that has closed (the peer's end, an
  // idle timeout, a protocol error), nothing may keep the process alive: orphans left by
  // a SIGKILLed daemon were found idling for good, each holding a watch on the whole tree.
  void closed.then(() => setTimeout(() => process.exit(0), EXIT_GRACE_MS).unref());
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
