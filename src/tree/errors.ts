/**
 * Errors of the tree. One class, `TreeError`, with a stable string `code` that `marsadm`
 * maps to an exit status; the message is the one line an operator reads, naming the
 * thing and the fix. Lock timeouts are the data plane's `LockTimeoutError`.
 */

export type TreeErrorCode =
  /** A resource or host name that is not allowed. */
  | 'EPHOBOS_NAME'
  /** A key that is malformed, unknown, or held by a regular file or directory. */
  | 'EPHOBOS_KEY'
  /** A value that does not fit its key's format. */
  | 'EPHOBOS_VALUE'
  /** The root holds no tree, or a tree without a cluster `uuid`. */
  | 'EPHOBOS_NOT_CLUSTER';

export class TreeError extends Error {
  override readonly name = 'TreeError';
  constructor(readonly code: TreeErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
