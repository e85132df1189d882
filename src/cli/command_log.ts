/**
 * The command log (docs/marsadm.md "Command log"): every marsadm invocation, with its
 * arguments and outcome, goes to syslog/the journal through logger(1) with tag `marsadm`,
 * and is appended to $PHOBOS_COMMAND_LOG when that is set. After an incident the question
 * is always "who ran what, where, and did it work": this answers it on every host.
 *
 * @example
 * // journalctl -t marsadm
 * // ... marsadm[4711]: alpha: marsadm primary r1 -> exit 1: marsadm primary: cannot reach ...
 */
import { spawn } from 'node:child_process';
import { appendFile } from 'node:fs/promises';

export interface CommandRecord {
  /** marsadm's arguments as given. */
  readonly argv: readonly string[];
  /** The host marsadm acted as (--host, MARS_HOST or the host name). */
  readonly host: string;
  readonly exitCode: number;
  /** The one-line error, when it failed with one. */
  readonly error?: string;
}

/** `alpha: marsadm primary r1 -> exit 0`, one line whatever the error text holds. */
export function formatCommandRecord(r: CommandRecord): string {
  const line = `${r.host}: marsadm ${r.argv.map(shellQuote).join(' ')} -> exit ${r.exitCode}` +
    (r.error ? `: ${r.error}` : '');
  return line.replace(/[\r\n]+/g, ' ').trim();
}

/** Quote a word only when a shell would need it, so the line can be pasted back. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Log one command. Never throws: a missing logger(1) or an unwritable log file must not
 * change the command's result; the file problem is reported on `err`.
 */
export async function logCommand(r: CommandRecord, err: NodeJS.WritableStream,
  env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const line = formatCommandRecord(r);
  const file = env['PHOBOS_COMMAND_LOG'];
  await Promise.all([
    env['PHOBOS_NO_SYSLOG'] === '1' ? undefined : toSyslog(line, r.exitCode === 0),
    file ? appendFile(file, `${new Date().toISOString()} [${process.pid}] ${line}\n`).catch((e: Error) => {
      err.write(`marsadm: cannot append to the command log ${file} (PHOBOS_COMMAND_LOG): ${e.message}\n`);
    }) : undefined,
  ]);
}

/**
 * logger -t marsadm, notice for success and err for failure; gives up silently. Not
 * awaited: logger outlives marsadm by a few milliseconds, and every command (a `view` in
 * a monitoring loop too) would otherwise pay for its start.
 */
function toSyslog(line: string, ok: boolean): Promise<void> {
  try {
    const child = spawn('logger', ['-t', 'marsadm', '-p', ok ? 'user.notice' : 'user.err', '--', line],
      { stdio: 'ignore', detached: true });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    // no logger(1): the command's result stands
  }
  return Promise.resolve();
}
