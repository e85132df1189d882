/**
 * The command log (docs/marsadm.md "Command log"): every marsadm invocation, with its
 * arguments and outcome, goes to syslog/the journal with tag `marsadm` (/dev/log),
 * and is appended to $PHOBOS_COMMAND_LOG when that is set. After an incident the question
 * is always "who ran what, where, and did it work": this answers it on every host.
 *
 * @example
 * // journalctl -t marsadm
 * // ... marsadm[4711]: alpha: marsadm primary r1 -> exit 1: marsadm primary: cannot reach ...
 */
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
 * Log one command. Never throws: no syslog or an unwritable log file must not
 * change the command's result; the file problem is reported on `err`.
 */
export async function logCommand(r: CommandRecord, err: NodeJS.WritableStream,
  env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const line = formatCommandRecord(r);
  const file = env['PHOBOS_COMMAND_LOG'];
  await Promise.all([
    env['PHOBOS_NO_SYSLOG'] === '1' ? undefined : toSyslog(line, r.exitCode === 0, env),
    file ? appendFile(file, `${new Date().toISOString()} [${process.pid}] ${line}\n`).catch((e: Error) => {
      err.write(`marsadm: cannot append to the command log ${file} (PHOBOS_COMMAND_LOG): ${e.message}\n`);
    }) : undefined,
  ]);
}

/** Where syslog listens on every Linux host (journald or rsyslog). */
const SYSLOG_SOCKET = '/dev/log';
/** Facility user (1) times 8, plus severity notice (5) or err (3). */
const PRIORITY_NOTICE = 13;
const PRIORITY_ERR = 11;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * One datagram to the syslog socket, as logger(1) or syslog(3) would send it:
 * `<13>Dec  8 03:30:00 marsadm[4711]: alpha: marsadm view -> exit 0` (RFC 3164, local time;
 * journald takes `marsadm` as the identifier). Sent by the addon, since Node has no UNIX
 * datagram sockets: starting logger(1) cost each run the child_process modules and a
 * fork, ~11 ms of a view at 1000 resources (paired runs on the dev VM). Never throws and
 * never blocks: no syslog (no socket, a full queue, no addon) loses the line, not the
 * command. PHOBOS_SYSLOG_SOCKET names another socket (a container's, or a test's).
 */
async function toSyslog(line: string, ok: boolean, env: NodeJS.ProcessEnv): Promise<void> {
  try {
    const { native } = await import('../dataplane/native.js');
    native.sendUnixDatagram(env['PHOBOS_SYSLOG_SOCKET'] || SYSLOG_SOCKET, syslogDatagram(line, ok, new Date(), process.pid));
  } catch {
    // no addon: the command's result stands
  }
}

/** The datagram for `line`: priority, local timestamp, tag with pid, the line. */
export function syslogDatagram(line: string, ok: boolean, at: Date, pid: number): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  const stamp = `${MONTHS[at.getMonth()]} ${String(at.getDate()).padStart(2, ' ')} ` +
    `${two(at.getHours())}:${two(at.getMinutes())}:${two(at.getSeconds())}`;
  return `<${ok ? PRIORITY_NOTICE : PRIORITY_ERR}>${stamp} marsadm[${pid}]: ${line}`;
}
