/** marsadm daemon [--run-dir DIR]: run the Phobos daemon in the foreground (systemd, tests). */
import { Daemon } from '../../daemon/index.js';
import { resolveTreeLocation } from '../../tree/index.js';
import type { CommandContext } from '../command.js';

export async function run(ctx: CommandContext): Promise<number> {
  const location = resolveTreeLocation({ root: ctx.options['root'] as string | undefined, host: ctx.options['host'] as string | undefined });
  const daemon = await Daemon.start({
    ...location,
    runDir: (ctx.options['run-dir'] as string | undefined) ?? process.env['PHOBOS_RUN_DIR'] ?? '/run/phobos',
  });
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await daemon.stop();
  return 0;
}
