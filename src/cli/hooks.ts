/**
 * Hook scripts around the verbs that change state (docs/marsadm.md "Hooks"): before
 * `marsadm primary r1` runs, `$PHOBOS_HOOK_DIR/hook-pre-primary r1` runs if it is an
 * executable file, and `hook-post-primary r1` after it, with the exit status in the
 * environment. A pre hook that fails stops the command before it changes anything: that
 * is what lets a site veto a handover (a cluster manager, a maintenance window).
 *
 * @example
 * // /etc/phobos/hooks/hook-pre-primary:  #!/bin/sh
 * //   [ -e /etc/phobos/no-handover ] && { echo "handover blocked by $0"; exit 1; }; exit 0
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import path from 'node:path';

import type { CommandContext, CommandSpec } from './command.js';
import { CommandError } from './errors.js';
import { timeoutMs } from './options.js';

/** Where hooks live unless PHOBOS_HOOK_DIR says otherwise. */
export const DEFAULT_HOOK_DIR = '/etc/phobos/hooks';

export type HookPhase = 'pre' | 'post';

/** How the command ended, for the post hook. */
export interface CommandOutcome {
  readonly exitCode: number;
  /** The one-line error the command printed, if it failed with one. */
  readonly error?: string;
}

export function hookDir(env: NodeJS.ProcessEnv = process.env): string {
  return env['PHOBOS_HOOK_DIR'] || DEFAULT_HOOK_DIR;
}

export function hookPath(phase: HookPhase, command: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.join(hookDir(env), `hook-${phase}-${command}`);
}

/**
 * Run hook-pre-<cmd>. Throws a CommandError naming the hook when it exits non-zero, is
 * killed or outlives --timeout: the command must then not run.
 */
export async function runPreHook(spec: CommandSpec, ctx: CommandContext): Promise<void> {
  const result = await runHook('pre', spec, ctx, {});
  if (result && result.failure) {
    throw new CommandError(`marsadm ${spec.name}: pre hook ${result.file} ${result.failure}` +
      `${result.lastLine ? ` (${result.lastLine})` : ''}; the command was not run`);
  }
}

/**
 * Run hook-post-<cmd> with the outcome. The command has already happened, so a failing
 * post hook only prints a warning; the command's exit status stands.
 */
export async function runPostHook(spec: CommandSpec, ctx: CommandContext, outcome: CommandOutcome): Promise<void> {
  const env: Record<string, string> = { PHOBOS_EXIT_STATUS: String(outcome.exitCode) };
  if (outcome.error !== undefined) env['PHOBOS_ERROR'] = outcome.error;
  const result = await runHook('post', spec, ctx, env);
  if (result && result.failure) {
    ctx.err.write(`marsadm ${spec.name}: warning: post hook ${result.file} ${result.failure}` +
      `${result.lastLine ? ` (${result.lastLine})` : ''}; the command itself ended with status ${outcome.exitCode}\n`);
  }
}

interface HookResult {
  readonly file: string;
  /** Why it failed ("exited with status 3"), or null when it succeeded. */
  readonly failure: string | null;
  /** The last line it printed, to quote in the error. */
  readonly lastLine: string;
}

/** null when there is no hook to run. */
async function runHook(phase: HookPhase, spec: CommandSpec, ctx: CommandContext,
  extraEnv: Record<string, string>): Promise<HookResult | null> {
  const file = hookPath(phase, spec.name);
  if (!(await isRunnable(file, ctx))) return null;
  const env = { ...process.env, ...hookEnvironment(phase, spec, ctx), ...extraEnv };
  return spawnHook(file, ctx.args, env, ctx.err, timeoutMs(ctx));
}

/** An executable regular file. A present but non-executable hook is skipped with a warning. */
async function isRunnable(file: string, ctx: CommandContext): Promise<boolean> {
  const st = await stat(file).catch(() => null);
  if (!st || !st.isFile()) return false;
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    ctx.err.write(`marsadm: hook ${file} is not executable, skipped (chmod +x it to enable it)\n`);
    return false;
  }
}

/** What a hook learns about the command besides its arguments. */
export function hookEnvironment(phase: HookPhase, spec: CommandSpec, ctx: CommandContext): Record<string, string> {
  const env: Record<string, string> = {
    PHOBOS_HOOK: phase,
    PHOBOS_COMMAND: spec.name,
    PHOBOS_ARGS: ctx.args.join(' '),
  };
  // Verbs whose synopsis starts with RES take the resource first.
  if (spec.synopsis.startsWith('RES') && ctx.args[0] !== undefined) env['PHOBOS_RESOURCE'] = ctx.args[0];
  const root = ctx.options['root'] ?? process.env['MARS_ROOT'];
  const host = ctx.options['host'] ?? process.env['MARS_HOST'];
  if (root !== undefined) env['MARS_ROOT'] = String(root);
  if (host !== undefined) env['MARS_HOST'] = String(host);
  if (ctx.options['force']) env['PHOBOS_FORCE'] = '1';
  return env;
}

/**
 * Run one hook, its output going to marsadm's stderr (stdout stays the command's). It gets
 * its own process group so that a hook outliving --timeout is killed with its children
 * (a `sleep` left behind would hold the output pipe open).
 */
function spawnHook(file: string, args: readonly string[], env: NodeJS.ProcessEnv, err: NodeJS.WritableStream,
  limitMs: number): Promise<HookResult> {
  return new Promise((resolve) => {
    let lastLine = '';
    const child = spawn(file, [...args], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const forward = (chunk: Buffer): void => {
      err.write(chunk);
      const lines = chunk.toString().split('\n').map((l) => l.trim()).filter((l) => l !== '');
      if (lines.length) lastLine = lines[lines.length - 1]!.slice(0, 200);
    };
    child.stdout.on('data', forward);
    child.stderr.on('data', forward);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, limitMs);
    const finish = (failure: string | null): void => {
      clearTimeout(timer);
      resolve({ file, failure, lastLine });
    };
    child.on('error', (e) => finish(`could not be started: ${e.message}`));
    child.on('close', (code, signal) => {
      if (timedOut) finish(`did not finish within ${Math.round(limitMs / 1000)} s (--timeout) and was killed`);
      else if (signal) finish(`was killed by ${signal}`);
      else finish(code === 0 ? null : `exited with status ${code}`);
    });
  });
}

/** SIGKILL the hook's process group (its pid: it leads the group it was started in). */
function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}
