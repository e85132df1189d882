/** marsadm daemon [--run-dir DIR] [--engine auto|kernel|user]: run the Phobos daemon in the foreground (systemd, tests). */
import { chooseEngine, ENGINE_CHOICES, type EngineChoice } from '../../dataplane/index.js';
import { Daemon } from '../../daemon/index.js';
import { UsageError } from '../errors.js';
import type { CommandContext } from '../command.js';
import { openTree } from '../tree_access.js';
import { transportFromOptions } from '../transport.js';

export async function run(ctx: CommandContext): Promise<number> {
  const tree = await openTree(ctx);
  const log = (line: string): void => void process.stderr.write(`${new Date().toISOString()} phobos-daemon[${tree.host}]: ${line}\n`);
  // Listen before starting: a SIGTERM during the first pass (recovery, serving) must still
  // drain and sync, not kill the process with writes not yet written back.
  const stopRequested = new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  const choice = (ctx.options['engine'] as string | undefined) ?? process.env['PHOBOS_ENGINE'] ?? 'auto';
  if (!ENGINE_CHOICES.includes(choice as EngineChoice)) {
    throw new UsageError(`--engine ${choice}: unknown engine; use one of ${ENGINE_CHOICES.join(', ')}`);
  }
  const engine = await chooseEngine(choice as EngineChoice);
  log(`engine: ${engine.kind} (${engine.why})`);
  const daemon = await Daemon.start({
    root: tree.root,
    host: tree.host,
    runDir: (ctx.options['run-dir'] as string | undefined) ?? process.env['PHOBOS_RUN_DIR'] ?? '/run/phobos',
    log,
    transport: transportFromOptions(ctx, tree, log),
    engine: engine.kind,
  });
  await stopRequested;
  await daemon.stop();
  return 0;
}
