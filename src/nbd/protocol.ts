/**
 * The NBD wire protocol, fixed newstyle handshake and simple replies: numbers, byte
 * layouts, encoders, decoders and the incremental frame readers of both directions.
 * Knows nothing of sockets; the server and the client feed it bytes. All fields are
 * big endian. docs/nbd.md says which subset Phobos speaks and why.
 *
 * Handshake (server first):
 *   S: "NBDMAGIC" | IHAVEOPT (u64) | handshake flags (u16)
 *   C: client flags (u32)
 *   C: IHAVEOPT (u64) | option (u32) | length (u32) | data      (repeated)
 *   S: REPLY_MAGIC (u64) | option (u32) | reply type (u32) | length (u32) | data
 * Transmission:
 *   C: REQUEST_MAGIC (u32) | cmd flags (u16) | type (u16) | handle (u64) | offset (u64) | length (u32) [| data]
 *   S: SIMPLE_REPLY_MAGIC (u32) | error (u32) | handle (u64) [| data]
 */
import { NbdProtocolError } from './errors.js';
import type { NbdBlockSize, NbdExportInfo, NbdGoRequest, NbdOptionReply, NbdRequest, NbdSimpleReply } from './types.js';

// ---- magics ---------------------------------------------------------------------------

/** "NBDMAGIC", the first 8 bytes the server sends. */
export const NBDMAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": the server's second word, and the start of every option. */
export const IHAVEOPT = 0x49484156454f5054n;
/** Start of every option reply. */
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
/** Start of every request. */
export const REQUEST_MAGIC = 0x25609513;
/** Start of every simple reply. */
export const SIMPLE_REPLY_MAGIC = 0x67446698;
/** Start of a structured reply; Phobos never negotiates them, a client refuses one. */
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// ---- handshake flags (server, u16) and client flags (u32): the same bits ------------------

export const NBD_FLAG_FIXED_NEWSTYLE = 1;
export const NBD_FLAG_NO_ZEROES = 2;
/** The handshake flags the Phobos server sends. */
export const SERVER_HANDSHAKE_FLAGS = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES;

// ---- options ----------------------------------------------------------------------------

export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;

/** Longest option payload a server reads; longer ones close the connection. */
export const MAX_OPTION_BYTES = 65536;
/** Longest export name, bytes (the protocol's limit). */
export const MAX_EXPORT_NAME_BYTES = 4096;

// ---- option reply types -----------------------------------------------------------------

export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
const REP_ERR = 0x80000000;
export const NBD_REP_ERR_UNSUP = REP_ERR + 1;
export const NBD_REP_ERR_POLICY = REP_ERR + 2;
export const NBD_REP_ERR_INVALID = REP_ERR + 3;
export const NBD_REP_ERR_PLATFORM = REP_ERR + 4;
export const NBD_REP_ERR_TLS_REQD = REP_ERR + 5;
export const NBD_REP_ERR_UNKNOWN = REP_ERR + 6;
export const NBD_REP_ERR_SHUTDOWN = REP_ERR + 7;
export const NBD_REP_ERR_BLOCK_SIZE_REQD = REP_ERR + 8;
export const NBD_REP_ERR_TOO_BIG = REP_ERR + 9;

/** True for an error reply type (bit 31 set). */
export const isErrorReply = (type: number): boolean => type >= REP_ERR;

// ---- info types (inside NBD_REP_INFO) ---------------------------------------------------

export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_NAME = 1;
export const NBD_INFO_DESCRIPTION = 2;
export const NBD_INFO_BLOCK_SIZE = 3;

// ---- transmission flags (u16) -----------------------------------------------------------

export const NBD_FLAG_HAS_FLAGS = 1;
export const NBD_FLAG_READ_ONLY = 2;
export const NBD_FLAG_SEND_FLUSH = 4;
export const NBD_FLAG_SEND_FUA = 8;
export const NBD_FLAG_ROTATIONAL = 16;
export const NBD_FLAG_SEND_TRIM = 32;
export const NBD_FLAG_SEND_WRITE_ZEROES = 64;
export const NBD_FLAG_SEND_DF = 128;
export const NBD_FLAG_CAN_MULTI_CONN = 256;
export const NBD_FLAG_SEND_CACHE = 1024;
export const NBD_FLAG_SEND_FAST_ZERO = 2048;

// ---- commands and their flags -----------------------------------------------------------

export const NBD_CMD_READ = 0;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;

export const NBD_CMD_FLAG_FUA = 1;
export const NBD_CMD_FLAG_NO_HOLE = 2;
export const NBD_CMD_FLAG_DF = 4;
export const NBD_CMD_FLAG_FAST_ZERO = 16;

// ---- error numbers (errno values, fixed by the protocol) ----------------------------------

/** The error numbers a simple reply may carry, by errno name. */
export const NBD_ERRNO = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrnoName = keyof typeof NBD_ERRNO;

/** Host error codes that the protocol spells differently. */
const ERRNO_ALIASES: Readonly<Record<string, NbdErrnoName>> = {
  EROFS: 'EPERM',
  EACCES: 'EPERM',
  EDQUOT: 'ENOSPC',
  EFBIG: 'ENOSPC',
  EOPNOTSUPP: 'ENOTSUP',
  ERANGE: 'EINVAL',
};

/** The NBD error number for an error thrown by a device; anything unknown is EIO. */
export function errnoOf(error: unknown): number {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  if (typeof code !== 'string') return NBD_ERRNO.EIO;
  const name = Object.hasOwn(NBD_ERRNO, code) ? (code as NbdErrnoName)
    : Object.hasOwn(ERRNO_ALIASES, code) ? ERRNO_ALIASES[code] : undefined;
  return name ? NBD_ERRNO[name] : NBD_ERRNO.EIO;
}

/** The errno name of an NBD error number, e.g. 28 → 'ENOSPC'. */
export function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(NBD_ERRNO)) if (value === errno) return name;
  return `EUNKNOWN${errno}`;
}

// ---- names for messages -----------------------------------------------------------------

const OPTION_NAMES: Readonly<Record<number, string>> = {
  1: 'NBD_OPT_EXPORT_NAME', 2: 'NBD_OPT_ABORT', 3: 'NBD_OPT_LIST', 4: 'NBD_OPT_PEEK_EXPORT',
  5: 'NBD_OPT_STARTTLS', 6: 'NBD_OPT_INFO', 7: 'NBD_OPT_GO', 8: 'NBD_OPT_STRUCTURED_REPLY',
  9: 'NBD_OPT_LIST_META_CONTEXT', 10: 'NBD_OPT_SET_META_CONTEXT', 11: 'NBD_OPT_EXTENDED_HEADERS',
};
const REPLY_NAMES: Readonly<Record<number, string>> = {
  [NBD_REP_ACK]: 'NBD_REP_ACK', [NBD_REP_SERVER]: 'NBD_REP_SERVER', [NBD_REP_INFO]: 'NBD_REP_INFO',
  [NBD_REP_ERR_UNSUP]: 'NBD_REP_ERR_UNSUP', [NBD_REP_ERR_POLICY]: 'NBD_REP_ERR_POLICY',
  [NBD_REP_ERR_INVALID]: 'NBD_REP_ERR_INVALID', [NBD_REP_ERR_PLATFORM]: 'NBD_REP_ERR_PLATFORM',
  [NBD_REP_ERR_TLS_REQD]: 'NBD_REP_ERR_TLS_REQD', [NBD_REP_ERR_UNKNOWN]: 'NBD_REP_ERR_UNKNOWN',
  [NBD_REP_ERR_SHUTDOWN]: 'NBD_REP_ERR_SHUTDOWN', [NBD_REP_ERR_BLOCK_SIZE_REQD]: 'NBD_REP_ERR_BLOCK_SIZE_REQD',
  [NBD_REP_ERR_TOO_BIG]: 'NBD_REP_ERR_TOO_BIG',
};
const COMMAND_NAMES: Readonly<Record<number, string>> = {
  0: 'read', 1: 'write', 2: 'disc', 3: 'flush', 4: 'trim', 5: 'cache', 6: 'write-zeroes',
};

export const optionName = (option: number): string => OPTION_NAMES[option] ?? `option ${option}`;
export const replyName = (type: number): string => REPLY_NAMES[type] ?? `reply type 0x${type.toString(16)}`;
export const commandName = (type: number): string => COMMAND_NAMES[type] ?? `command ${type}`;

const hex = (v: number | bigint, digits: number): string => `0x${v.toString(16).padStart(digits, '0')}`;

// ---- sizes ------------------------------------------------------------------------------

export const GREETING_BYTES = 18;
export const OPTION_HEADER_BYTES = 16;
export const OPTION_REPLY_HEADER_BYTES = 20;
export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_HEADER_BYTES = 16;
/** Zero padding after the NBD_OPT_EXPORT_NAME reply unless NO_ZEROES was agreed. */
export const EXPORT_NAME_PAD_BYTES = 124;

// ---- handshake encoders and decoders ------------------------------------------------------

/** The server's greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.allocUnsafe(GREETING_BYTES);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

/** The handshake flags of a greeting; throws on a foreign or old-style server. */
export function decodeGreeting(b: Buffer): number {
  const magic = b.readBigUInt64BE(0);
  if (magic !== NBDMAGIC) {
    throw new NbdProtocolError(`bad greeting magic ${hex(magic, 16)}, expected ${hex(NBDMAGIC, 16)} ("NBDMAGIC"): not an NBD server`, 'bad-magic', magic);
  }
  const style = b.readBigUInt64BE(8);
  if (style !== IHAVEOPT) {
    throw new NbdProtocolError(`bad greeting magic ${hex(style, 16)}, expected ${hex(IHAVEOPT, 16)} ("IHAVEOPT"): oldstyle servers are not supported`, 'bad-magic', style);
  }
  return b.readUInt16BE(16);
}

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

/** One option: IHAVEOPT, option, length, data. */
export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(OPTION_HEADER_BYTES + data.length);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, OPTION_HEADER_BYTES);
  return b;
}

/** The header of an option: its number and payload length; throws on a bad magic. */
export function decodeOptionHeader(b: Buffer): { option: number; length: number } {
  const magic = b.readBigUInt64BE(0);
  if (magic !== IHAVEOPT) {
    throw new NbdProtocolError(`bad option magic ${hex(magic, 16)}, expected ${hex(IHAVEOPT, 16)} ("IHAVEOPT")`, 'bad-magic', magic);
  }
  return { option: b.readUInt32BE(8), length: b.readUInt32BE(12) };
}

/** One option reply: REPLY_MAGIC, option, reply type, length, data. */
export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.allocUnsafe(OPTION_REPLY_HEADER_BYTES + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, OPTION_REPLY_HEADER_BYTES);
  return b;
}

/** The header of an option reply; throws on a bad magic. */
export function decodeOptionReplyHeader(b: Buffer): { option: number; type: number; length: number } {
  const magic = b.readBigUInt64BE(0);
  if (magic !== OPTION_REPLY_MAGIC) {
    throw new NbdProtocolError(`bad option reply magic ${hex(magic, 16)}, expected ${hex(OPTION_REPLY_MAGIC, 16)}`, 'bad-magic', magic);
  }
  return { option: b.readUInt32BE(8), type: b.readUInt32BE(12), length: b.readUInt32BE(16) };
}

/** A complete option reply, with the reply's payload; `header` holds the first 20 bytes. */
export function decodeOptionReply(header: Buffer, data: Buffer): NbdOptionReply {
  const { option, type } = decodeOptionReplyHeader(header);
  return { option, type, data };
}

/** The reply to NBD_OPT_EXPORT_NAME: size, transmission flags, and 124 zeros unless NO_ZEROES. */
export function encodeExportNameReply(sizeBytes: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(10 + (noZeroes ? 0 : EXPORT_NAME_PAD_BYTES));
  b.writeBigUInt64BE(BigInt(sizeBytes), 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}

/** Size and flags of an NBD_OPT_EXPORT_NAME reply (the first 10 bytes). */
export function decodeExportNameReply(b: Buffer): NbdExportInfo {
  return { sizeBytes: Number(b.readBigUInt64BE(0)), transmissionFlags: b.readUInt16BE(8) };
}

/** Payload of NBD_OPT_INFO and NBD_OPT_GO: name length, name, count, info types. */
export function encodeGoRequest(request: NbdGoRequest): Buffer {
  const name = Buffer.from(request.name, 'utf8');
  const b = Buffer.allocUnsafe(4 + name.length + 2 + 2 * request.infos.length);
  b.writeUInt32BE(name.length, 0);
  name.copy(b, 4);
  let at = 4 + name.length;
  b.writeUInt16BE(request.infos.length, at);
  for (const info of request.infos) b.writeUInt16BE(info, (at += 2));
  return b;
}

/** Parses the payload of NBD_OPT_INFO / NBD_OPT_GO; throws 'bad-length' if the counts do not add up. */
export function decodeGoRequest(b: Buffer): NbdGoRequest {
  if (b.length < 6) throw new NbdProtocolError(`info request of ${b.length} bytes, at least 6 needed`, 'bad-length', b.length);
  const nameLength = b.readUInt32BE(0);
  if (nameLength > b.length - 6) {
    throw new NbdProtocolError(`export name length ${nameLength} exceeds the ${b.length}-byte request`, 'bad-length', nameLength);
  }
  const name = b.toString('utf8', 4, 4 + nameLength);
  const count = b.readUInt16BE(4 + nameLength);
  const expected = 6 + nameLength + 2 * count;
  if (b.length !== expected) {
    throw new NbdProtocolError(`info request of ${b.length} bytes, ${count} info types need ${expected}`, 'bad-length', b.length);
  }
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(b.readUInt16BE(6 + nameLength + 2 * i));
  return { name, infos };
}

/** NBD_REP_SERVER payload: name length and name. */
export function encodeServerReply(name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.allocUnsafe(4 + n.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  return b;
}

export function decodeServerReply(b: Buffer): string {
  const length = b.length >= 4 ? b.readUInt32BE(0) : -1;
  if (length < 0 || length > b.length - 4) {
    throw new NbdProtocolError(`NBD_REP_SERVER of ${b.length} bytes names ${length} bytes`, 'bad-length', length);
  }
  return b.toString('utf8', 4, 4 + length);
}

/** NBD_REP_INFO payload for NBD_INFO_EXPORT: info type, size, transmission flags. */
export function encodeInfoExport(sizeBytes: number, transmissionFlags: number): Buffer {
  const b = Buffer.allocUnsafe(12);
  b.writeUInt16BE(NBD_INFO_EXPORT, 0);
  b.writeBigUInt64BE(BigInt(sizeBytes), 2);
  b.writeUInt16BE(transmissionFlags, 10);
  return b;
}

/** NBD_REP_INFO payload for NBD_INFO_BLOCK_SIZE: info type, min, preferred, max. */
export function encodeInfoBlockSize(size: NbdBlockSize): Buffer {
  const b = Buffer.allocUnsafe(14);
  b.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  b.writeUInt32BE(size.minBytes, 2);
  b.writeUInt32BE(size.preferredBytes, 6);
  b.writeUInt32BE(size.maxBytes, 10);
  return b;
}

/** One NBD_REP_INFO payload; unknown info types come back as `{ info }` alone. */
export type NbdInfo =
  | { readonly info: typeof NBD_INFO_EXPORT; readonly sizeBytes: number; readonly transmissionFlags: number }
  | { readonly info: typeof NBD_INFO_BLOCK_SIZE; readonly blockSize: NbdBlockSize }
  | { readonly info: number };

export function decodeInfo(b: Buffer): NbdInfo {
  if (b.length < 2) throw new NbdProtocolError(`NBD_REP_INFO of ${b.length} bytes`, 'bad-length', b.length);
  const info = b.readUInt16BE(0);
  if (info === NBD_INFO_EXPORT) {
    if (b.length !== 12) throw new NbdProtocolError(`NBD_INFO_EXPORT of ${b.length} bytes, expected 12`, 'bad-length', b.length);
    return { info, sizeBytes: Number(b.readBigUInt64BE(2)), transmissionFlags: b.readUInt16BE(10) };
  }
  if (info === NBD_INFO_BLOCK_SIZE) {
    if (b.length !== 14) throw new NbdProtocolError(`NBD_INFO_BLOCK_SIZE of ${b.length} bytes, expected 14`, 'bad-length', b.length);
    return { info, blockSize: { minBytes: b.readUInt32BE(2), preferredBytes: b.readUInt32BE(6), maxBytes: b.readUInt32BE(10) } };
  }
  return { info };
}

// ---- transmission encoders ----------------------------------------------------------------

/** Reads a u64 as a number; values past 2^53 round, which only ever makes them larger than any export. */
function readU64(b: Buffer, at: number): number {
  return b.readUInt32BE(at) * 0x100000000 + b.readUInt32BE(at + 4);
}

/** A request header (28 bytes); a WRITE's payload follows separately. */
export function encodeRequestHeader(
  flags: number, type: number, handle: bigint, offset: number, length: number,
  into: Buffer = Buffer.allocUnsafe(REQUEST_HEADER_BYTES), at = 0,
): Buffer {
  into.writeUInt32BE(REQUEST_MAGIC, at);
  into.writeUInt16BE(flags, at + 4);
  into.writeUInt16BE(type, at + 6);
  into.writeBigUInt64BE(handle, at + 8);
  into.writeUInt32BE(Math.floor(offset / 0x100000000), at + 16);
  into.writeUInt32BE(offset >>> 0, at + 20);
  into.writeUInt32BE(length, at + 24);
  return into;
}

/** A simple reply header (16 bytes); a successful READ's data follows separately. */
export function encodeSimpleReplyHeader(error: number, handle: bigint): Buffer {
  const b = Buffer.allocUnsafe(SIMPLE_REPLY_HEADER_BYTES);
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  b.writeBigUInt64BE(handle, 8);
  return b;
}

// ---- incremental byte queue -----------------------------------------------------------------

/**
 * Bytes received but not yet parsed, as the chunks the stream delivered. Taking bytes
 * that lie inside one chunk returns a view of it (no copy); only spans across chunks copy.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // bytes of chunks[0] already taken
  private bytes = 0;

  get length(): number {
    return this.bytes;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
  }

  /** Takes `n` bytes (the caller checked `length >= n`). */
  take(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0 || first === undefined) return Buffer.alloc(0);
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(n - filled, c.length - this.head);
      c.copy(out, filled, this.head, this.head + k);
      filled += k;
      this.advance(k);
    }
    return out;
  }

  /** Drops up to `n` bytes; returns how many were dropped. */
  skip(n: number): number {
    const k = Math.min(n, this.bytes);
    let left = k;
    while (left > 0) {
      const c = this.chunks[0]!;
      const step = Math.min(left, c.length - this.head);
      this.advance(step);
      left -= step;
    }
    return k;
  }

  /** Everything still queued, in one buffer, leaving the queue empty. */
  drain(): Buffer {
    return this.take(this.bytes);
  }

  private advance(n: number): void {
    this.head += n;
    this.bytes -= n;
    if (this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}

// ---- frame readers --------------------------------------------------------------------------

/**
 * The server's reader of requests. Push bytes as they arrive, then call `next()` until it
 * returns null. A bad magic throws NbdProtocolError: the stream is out of sync and the
 * connection must close. A READ or WRITE longer than `maxPayloadBytes` comes back with
 * `oversize: true`; a WRITE's payload is then skipped as it arrives (it costs no memory),
 * so the connection stays usable after the EINVAL reply.
 */
export class RequestReader {
  private readonly queue = new ByteQueue();
  private header: Buffer | null = null;
  private skipping = 0;

  constructor(private readonly maxPayloadBytes: number) {}

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /** Bytes of a skipped payload still to come. */
  get skipPending(): number {
    return this.skipping;
  }

  next(): NbdRequest | null {
    if (this.skipping > 0) {
      this.skipping -= this.queue.skip(this.skipping);
      if (this.skipping > 0) return null;
    }
    if (this.header === null) {
      if (this.queue.length < REQUEST_HEADER_BYTES) return null;
      const h = this.queue.take(REQUEST_HEADER_BYTES);
      const magic = h.readUInt32BE(0);
      if (magic !== REQUEST_MAGIC) {
        throw new NbdProtocolError(`bad request magic ${hex(magic, 8)}, expected ${hex(REQUEST_MAGIC, 8)}`, 'bad-magic', magic);
      }
      this.header = h;
    }
    const h = this.header;
    const type = h.readUInt16BE(6);
    const length = h.readUInt32BE(24);
    const carriesData = type === NBD_CMD_WRITE;
    const oversize = (type === NBD_CMD_READ || carriesData) && length > this.maxPayloadBytes;
    let data: Buffer | null = null;
    if (carriesData) {
      if (oversize) {
        this.skipping = length - this.queue.skip(length);
      } else {
        if (this.queue.length < length) return null;
        data = this.queue.take(length);
      }
    }
    this.header = null;
    return {
      flags: h.readUInt16BE(4),
      type,
      handle: h.readBigUInt64BE(8),
      offset: readU64(h, 16),
      length,
      data,
      oversize,
    };
  }
}

/**
 * The client's reader of simple replies. `readLength(handle)` tells how many data bytes
 * follow a successful reply (the READ's length) or returns undefined for a handle that
 * is not in flight, which throws 'bad-handle'. A structured reply or any other magic
 * throws NbdProtocolError.
 */
export class ReplyReader {
  private readonly queue = new ByteQueue();
  private header: { error: number; handle: bigint; dataBytes: number } | null = null;

  constructor(private readonly readLength: (handle: bigint) => number | undefined) {}

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  next(): NbdSimpleReply | null {
    if (this.header === null) {
      if (this.queue.length < SIMPLE_REPLY_HEADER_BYTES) return null;
      const h = this.queue.take(SIMPLE_REPLY_HEADER_BYTES);
      const magic = h.readUInt32BE(0);
      if (magic !== SIMPLE_REPLY_MAGIC) {
        const what = magic === STRUCTURED_REPLY_MAGIC ? 'structured reply (never negotiated)' : 'bad reply magic';
        throw new NbdProtocolError(`${what} ${hex(magic, 8)}, expected ${hex(SIMPLE_REPLY_MAGIC, 8)}`, 'bad-magic', magic);
      }
      const error = h.readUInt32BE(4);
      const handle = h.readBigUInt64BE(8);
      const dataBytes = this.readLength(handle);
      if (dataBytes === undefined) {
        throw new NbdProtocolError(`reply for handle ${hex(handle, 16)}, which is not in flight`, 'bad-handle', handle);
      }
      this.header = { error, handle, dataBytes: error === 0 ? dataBytes : 0 };
    }
    const { error, handle, dataBytes } = this.header;
    if (this.queue.length < dataBytes) return null;
    this.header = null;
    return { error, handle, data: dataBytes > 0 ? this.queue.take(dataBytes) : null };
  }
}
