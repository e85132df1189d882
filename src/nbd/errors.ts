/**
 * Errors of the NBD layer. Four families, each with a stable `code`:
 * - NbdProtocolError: the peer broke the protocol (bad magic, bad length); the connection
 *   is out of sync and gets closed. The message names the offending value.
 * - NbdOptionError: the server refused an option during the handshake (NBD_REP_ERR_*).
 * - NbdRequestError: the server replied an error number to a request (ENOSPC, EIO, ...).
 * - NbdConnectionError: the connection ended while something still waited on it.
 */

/** Why a frame was refused. */
export type NbdProtocolErrorCode =
  | 'bad-magic'
  | 'bad-flags'
  | 'bad-length'
  | 'bad-handle'
  | 'unexpected-reply'
  | 'unsupported';

/** The peer sent bytes that do not follow the protocol. */
export class NbdProtocolError extends Error {
  override readonly name = 'NbdProtocolError';
  constructor(
    message: string,
    readonly code: NbdProtocolErrorCode,
    /** The offending value, as read. */
    readonly got?: number | bigint,
  ) {
    super(message);
  }
}

/** The server answered an option with an error reply. */
export class NbdOptionError extends Error {
  override readonly name = 'NbdOptionError';
  constructor(
    message: string,
    /** NBD_REP_ERR_* spelled as in the protocol, e.g. 'NBD_REP_ERR_UNKNOWN'. */
    readonly code: string,
    /** The option refused, e.g. 'NBD_OPT_GO'. */
    readonly option: string,
    /** The reply type number. */
    readonly replyType: number,
  ) {
    super(message);
  }
}

/** The server replied an error number to a request. */
export class NbdRequestError extends Error {
  override readonly name = 'NbdRequestError';
  constructor(
    message: string,
    /** errno name, e.g. 'ENOSPC'; 'EUNKNOWN<n>' for a number the protocol does not define. */
    readonly code: string,
    /** The NBD error number. */
    readonly errno: number,
    /** The command, e.g. 'write'. */
    readonly command: string,
    readonly offset: number,
    readonly length: number,
  ) {
    super(message);
  }
}

/** The connection closed (or failed) while a request or a handshake step waited. */
export class NbdConnectionError extends Error {
  override readonly name = 'NbdConnectionError';
  readonly code = 'ECONNRESET';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
