/**
 * The NBD layer: the server that exports a resource's device over a UNIX socket, a
 * pipelined client, and the wire protocol both speak. docs/nbd.md is the reference.
 */
export { NbdClient, type NbdClientOptions } from './nbd_client.js';
export { NbdOptionSession } from './nbd_option_session.js';
export { DEFAULT_MAX_REQUEST_BYTES, NbdServer, type NbdServerEvents } from './nbd_server.js';
export { NbdConnectionError, NbdOptionError, NbdProtocolError, NbdRequestError, type NbdProtocolErrorCode } from './errors.js';
export * as nbdProtocol from './protocol.js';
export type * from './types.js';
