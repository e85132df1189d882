/**
 * How marsadm fails. Every error becomes one line on stderr and an exit status:
 *
 * | status | meaning |
 * |---|---|
 * | 0 | done |
 * | 1 | the command failed or was refused (the line says why and what to run) |
 * | 2 | usage error: unknown command or option, missing or bad argument |
 * | 3 | log-check/log-cat: torn tail (the log is valid up to the reported offset) |
 */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_TORN = 3;

/** Bad command line. The message names the command and how to get help. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly exitCode = EXIT_USAGE;
}

/** A refusal or failure with a message already fit for the operator. */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(message: string, readonly exitCode: number = EXIT_FAILED, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/**
 * True for UsageError and CommandError. Checked by name, not instanceof: verbs are loaded
 * by dynamic import, and a loader may give them their own copy of this module.
 */
export function isOperatorError(error: unknown): error is UsageError | CommandError {
  return error instanceof Error && (error.name === 'UsageError' || error.name === 'CommandError') &&
    typeof (error as { exitCode?: unknown }).exitCode === 'number';
}
