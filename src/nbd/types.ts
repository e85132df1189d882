/**
 * Types of the NBD layer: the block device the server exports, the server's options and
 * the typed wire messages. docs/nbd.md explains the protocol subset and each choice;
 * protocol.ts holds the numbers and the byte layouts.
 */

/**
 * What the server exports. The daemon plugs its engine in here; tests use a Buffer.
 * Errors thrown by any method should carry an errno-style `code` ('EIO', 'ENOSPC',
 * 'EINVAL', 'EPERM', ...); the server maps it to an NBD error number (unknown: EIO).
 */
export interface BlockDevice {
  /** Export size, bytes. */
  readonly sizeBytes: number;
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * fua: the write must be durable before the promise settles. `data` is handed over: the
   * server never touches it again, so the device may keep it rather than copy it.
   */
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  /** Everything completed before this call must be durable when it settles. */
  flush(): Promise<void>;
  /** TRIM and WRITE_ZEROES both map here: the range reads as zeros afterwards. */
  zero(offset: number, length: number, fua: boolean): Promise<void>;
}

/** Options of `NbdServer`. */
export interface NbdServerOptions {
  /** Path of the UNIX socket to listen on, e.g. `/run/phobos/<res>.nbd`. */
  readonly socketPath: string;
  /** The export's name. The default export ('') is served as the same device. */
  readonly exportName: string;
  readonly device: BlockDevice;
  /** Advertise READ_ONLY and refuse WRITE, TRIM and WRITE_ZEROES with EPERM. @default false */
  readonly readOnly?: boolean;
  /** Largest READ or WRITE payload accepted, bytes; longer requests get EINVAL. @default 33554432 (32 MiB) */
  readonly maxRequestBytes?: number;
  /** Minimum block size announced in NBD_INFO_BLOCK_SIZE, bytes (power of two). @default 1 */
  readonly minBlockBytes?: number;
  /** Preferred block size announced in NBD_INFO_BLOCK_SIZE, bytes (power of two). @default 4096 */
  readonly preferredBlockBytes?: number;
  /** Requests one connection may have at the device at once; reading pauses beyond. @default 128 */
  readonly maxInFlight?: number;
  /** How long `close()` lets in-flight requests finish before cutting connections, ms. @default 10000 */
  readonly closeTimeoutMs?: number;
  /** How long a client may take to finish the handshake, ms. @default 30000 */
  readonly handshakeTimeoutMs?: number;
}

/** One request of the transmission phase, as read from the wire. */
export interface NbdRequest {
  /** NBD_CMD_FLAG_* bits. */
  readonly flags: number;
  /** NBD_CMD_* number. */
  readonly type: number;
  /** The client's cookie, echoed in the reply. */
  readonly handle: bigint;
  /** Byte offset on the export. Values beyond 2^53 are inexact but always out of range. */
  readonly offset: number;
  /** Bytes to read, write, trim or zero. */
  readonly length: number;
  /** WRITE payload; null for other commands and for a WRITE longer than the limit. */
  readonly data: Buffer | null;
  /** True for a READ or WRITE longer than the limit (its payload was skipped). */
  readonly oversize: boolean;
}

/** The header of a simple reply; `data` follows for a successful READ. */
export interface NbdSimpleReply {
  /** NBD error number (errno values); 0 is success. */
  readonly error: number;
  readonly handle: bigint;
  /** READ payload; null otherwise. */
  readonly data: Buffer | null;
}

/** An option the client sends during the handshake. */
export interface NbdOption {
  /** NBD_OPT_* number. */
  readonly option: number;
  readonly data: Buffer;
}

/** The server's reply to an option (not used for NBD_OPT_EXPORT_NAME). */
export interface NbdOptionReply {
  /** The option replied to. */
  readonly option: number;
  /** NBD_REP_* number; bit 31 marks an error. */
  readonly type: number;
  readonly data: Buffer;
}

/** The payload of NBD_OPT_INFO and NBD_OPT_GO. */
export interface NbdGoRequest {
  readonly name: string;
  /** NBD_INFO_* numbers the client asks for. */
  readonly infos: readonly number[];
}

/** What the handshake tells a client about the export. */
export interface NbdExportInfo {
  /** Export size, bytes. */
  readonly sizeBytes: number;
  /** NBD_FLAG_* transmission flags. */
  readonly transmissionFlags: number;
  /** From NBD_INFO_BLOCK_SIZE, when the server sent it. */
  readonly blockSize?: NbdBlockSize;
}

/** NBD_INFO_BLOCK_SIZE. */
export interface NbdBlockSize {
  readonly minBytes: number;
  readonly preferredBytes: number;
  readonly maxBytes: number;
}

/** Lifecycle of one server connection. */
export type NbdConnectionPhase =
  /** Greeting sent, options being haggled. Not counted as open. */
  | 'handshake'
  /** Serving requests. Counted as open. */
  | 'transmission'
  /** No new requests go to the device (DISC or server close); in-flight ones finish. */
  | 'draining'
  /** Socket closed. */
  | 'closed';
