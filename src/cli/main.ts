#!/usr/bin/env node
/**
 * marsadm: the Phobos admin tool. Parses the command line, finds the verb in the command
 * table, runs it between its hooks (hooks.ts), turns any failure into one line and an exit
 * status (errors.ts), and logs the command with its outcome (command_log.ts).
 */
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';

import { resolveTreeLocation } from '../tree/tree_location.js';
import { readsWholeTree, type CommandContext, type CommandSpec } from './command.js';
import { logCommand } from './command_log.js';
import { findCommand } from './command_table.js';
import { EXIT_FAILED, EXIT_USAGE, isOperatorError, UsageError } from './errors.js';
// help_text.js and hooks.js are imported where they are used, like each verb's module:
// every module loaded on the way to a view costs each run of a monitoring loop.
import type { CommandOutcome } from './hooks.js';
import { parseCommandLine, type OptionValues } from './options.js';

export async function main(argv: readonly string[], out: NodeJS.WritableStream = process.stdout,
  err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let options: OptionValues = {};
  const outcome = await settle(async () => {
    const line = parseCommandLine(argv, (name) => findCommand(name)?.options ?? []);
    options = line.options;
    if (line.command === undefined) {
      out.write((await import('./help_text.js')).overview());
      return line.options['help'] ? 0 : EXIT_USAGE;
    }
    const spec = findCommand(line.command);
    if (!spec) {
      throw new UsageError(`marsadm: unknown command '${line.command}'; run \`marsadm help\` for the list`);
    }
    if (line.options['help']) {
      out.write((await import('./help_text.js')).commandHelp(spec));
      return 0;
    }
    if (line.args.length < spec.minArgs || line.args.length > spec.maxArgs) {
      throw new UsageError(`marsadm ${spec.name}: expected ${spec.synopsis || 'no arguments'}, ` +
        `got ${line.args.length} argument(s); see \`marsadm ${spec.name} --help\``);
    }
    return runCommand(spec, { args: line.args, options: line.options, out, err, ...startTreeWalk(spec, line.options) });
  });
  if (outcome.error !== undefined) err.write(`${outcome.error}\n`);
  if (argv.length > 0) await logCommand({ argv, host: actingHost(options), ...outcome }, err);
  return outcome.exitCode;
}

/**
 * The verb between its hooks. Hooks run only for verbs that change state, and not with
 * --dry-run (a hook may change things itself). The post hook sees the failure too.
 */
async function runCommand(spec: CommandSpec, ctx: CommandContext): Promise<number> {
  const hooks = spec.changesState === true && !ctx.options['dry-run'] ? await import('./hooks.js') : null;
  if (hooks) await hooks.runPreHook(spec, ctx);
  const outcome = await settle(async () => (await spec.load())(ctx));
  if (hooks) await hooks.runPostHook(spec, ctx, outcome);
  if (outcome.error !== undefined) throw new ReportedFailure(outcome);
  return outcome.exitCode;
}

/**
 * For a verb that reads the whole tree, start the walk now: it runs on a libuv thread
 * while the main thread loads the verb's modules (~30 ms for a view), which used to come
 * first. tree_values.js imports only the addon, so the walk starts before MarsTree's
 * modules load too. A root that cannot be resolved is left to the verb's openTree() to
 * report. The walk lists only directories that moved since the last view (the view
 * cache, docs/tree.md): ~40 ms in a view process at 1000 resources on the 2-core dev VM,
 * against ~75 ms for listing every one (PHOBOS_VIEW_CACHE=off).
 */
function startTreeWalk(spec: CommandSpec, options: OptionValues): Pick<CommandContext, 'treeValues'> {
  if (!readsWholeTree(spec)) return {};
  let root: string;
  try {
    root = resolveTreeLocation({ root: options['root'] as string | undefined, host: options['host'] as string | undefined }).root;
  } catch {
    return {};
  }
  const cached = process.env['PHOBOS_VIEW_CACHE'] !== 'off';
  const treeValues = import('../tree/tree_values.js').then((m) => cached ? m.readTreeValuesCached(root) : m.readTreeValues(root));
  // The verb sees a failed walk when it awaits it; one it never awaits (it failed first) is no crash.
  treeValues.catch(() => undefined);
  return { treeValues };
}

/** A verb's failure that has been through the post hook, carried up unchanged. */
class ReportedFailure extends Error {
  constructor(readonly outcome: CommandOutcome) {
    super(outcome.error);
  }
}

/** Run fn and turn what it threw into an exit status and the line to print. */
async function settle(fn: () => Promise<number>): Promise<CommandOutcome> {
  try {
    return { exitCode: await fn() };
  } catch (error) {
    if (error instanceof ReportedFailure) return error.outcome;
    if (isOperatorError(error)) return { exitCode: error.exitCode, error: error.message };
    const coded = error instanceof Error && 'code' in error && error.code === 'EPHOBOS_ARG';
    return { exitCode: coded ? EXIT_USAGE : EXIT_FAILED, error: `marsadm: ${(error as Error).message ?? String(error)}` };
  }
}

/** The host the command acted as, for the log; the raw option when it is not a valid name. */
function actingHost(options: OptionValues): string {
  try {
    return resolveTreeLocation({ host: options['host'] as string | undefined }).host;
  } catch {
    return String(options['host'] ?? process.env['MARS_HOST'] ?? '?');
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

/** The command line names a verb that reads the whole tree once (a view); a bad one is main()'s to report. */
function namesAView(argv: readonly string[]): boolean {
  try {
    const verb = parseCommandLine(argv, (name) => findCommand(name)?.options ?? []).command;
    const spec = verb === undefined ? undefined : findCommand(verb);
    return spec !== undefined && readsWholeTree(spec);
  } catch {
    return false;
  }
}

/** Resolves once everything written to stream so far is out (a pipe takes it in 64 KiB parts). */
function flushed(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => stream.write('', () => resolve()));
}

/**
 * A reader that went away (`marsadm view | head -1`) is the reader's choice, not a failure:
 * without a handler node dies of the EPIPE with a stack trace, possibly in the middle of
 * a state change. The rest of the output is dropped and the command ends as it would
 * have; any other error on the stream still ends the process.
 */
function ignoreClosedReader(stream: NodeJS.WriteStream): void {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
}

// Run when executed directly (the bin, through its symlink), not when imported by tests.
if (isEntryPoint()) {
  const argv = process.argv.slice(2);
  const view = namesAView(argv);
  // A view is over before V8's optimizing compiler pays off: at 1000 resources it spent
  // ~180 ms of CPU compiling the tree loops and hostView on background threads, taken
  // from the tree walk on a 2-core host, and node waits for unfinished compiles before
  // it exits. The baseline compiler alone (--max-opt=1) made the view ~70 ms faster there,
  // and no slower at 5000 resources. Only views: the daemon, peer-serve and log-cat run
  // long or loop over big inputs, where optimized code wins.
  if (view) setFlagsFromString('--max-opt=1');
  ignoreClosedReader(process.stdout);
  ignoreClosedReader(process.stderr);
  main(argv).then(async (code) => {
    process.exitCode = code;
    // A view has nothing left to do once its output is out; exiting then spares node
    // freeing its heap page by page at the end (~15 ms at 1000 resources on the dev VM,
    // some 200 munmap and madvise calls). Other verbs end the ordinary way.
    if (view) {
      await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
      process.exit(code);
    }
  }, (error: unknown) => {
    process.stderr.write(`marsadm: internal error: ${String(error)}\n`);
    process.exitCode = EXIT_FAILED;
  });
}
