/** marsadm help [COMMAND] */
import type { CommandContext } from '../command.js';
import { findCommand } from '../command_table.js';
import { UsageError } from '../errors.js';
import { commandHelp, overview } from '../help_text.js';

export async function run(ctx: CommandContext): Promise<number> {
  const name = ctx.args[0];
  if (name === undefined) {
    ctx.out.write(overview());
    return 0;
  }
  const spec = findCommand(name);
  if (!spec) throw new UsageError(`marsadm help: unknown command '${name}'; run \`marsadm help\` for the list`);
  ctx.out.write(commandHelp(spec));
  return 0;
}
