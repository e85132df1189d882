#!/usr/bin/env node
/**
 * marsadm: the Phobos admin tool. Parses the command line, finds the verb in the command
 * table, runs it, and turns any failure into one line and an exit status (errors.ts).
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import type { CommandContext } from './command.js';
import { findCommand } from './command_table.js';
import { EXIT_FAILED, EXIT_USAGE, isOperatorError, UsageError } from './errors.js';
import { commandHelp, overview } from './help_text.js';
import { parseCommandLine } from './options.js';

export async function main(argv: readonly string[], out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr): Promise<number> {
  try {
    const line = parseCommandLine(argv, (name) => findCommand(name)?.options ?? []);
    if (line.command === undefined) {
      out.write(overview());
      return line.options['help'] ? 0 : EXIT_USAGE;
    }
    const spec = findCommand(line.command);
    if (!spec) {
      throw new UsageError(`marsadm: unknown command '${line.command}'; run \`marsadm help\` for the list`);
    }
    if (line.options['help']) {
      out.write(commandHelp(spec));
      return 0;
    }
    if (line.args.length < spec.minArgs || line.args.length > spec.maxArgs) {
      throw new UsageError(`marsadm ${spec.name}: expected ${spec.synopsis || 'no arguments'}, ` +
        `got ${line.args.length} argument(s); see \`marsadm ${spec.name} --help\``);
    }
    const ctx: CommandContext = { args: line.args, options: line.options, out, err };
    return await (await spec.load())(ctx);
  } catch (error) {
    if (isOperatorError(error)) {
      err.write(`${error.message}\n`);
      return error.exitCode;
    }
    err.write(`marsadm: ${(error as Error).message ?? String(error)}\n`);
    return error instanceof Error && 'code' in error && error.code === 'EPHOBOS_ARG' ? EXIT_USAGE : EXIT_FAILED;
  }
}

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
}

// Run when executed directly (the bin, through its symlink), not when imported by tests.
if (isEntryPoint()) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  }, (error: unknown) => {
    process.stderr.write(`marsadm: internal error: ${String(error)}\n`);
    process.exitCode = EXIT_FAILED;
  });
}
