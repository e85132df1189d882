/**
 * Frames of the peer protocol (docs/peer-protocol.md "Framing"): a 16-byte header, a
 * JSON object, raw payload bytes. The decoder refuses anything malformed or oversized
 * before a single field of it is acted on.
 */

export const PROTOCOL_VERSION = 1;
export const HEADER_BYTES = 16;
/** Largest payload a single frame carries (log bytes, blocks). */
export const MAX_PAYLOAD_BYTES = 1 << 20;
export const MAX_JSON_BYTES = 64 << 10;
/** Largest value of the length field. */
export const MAX_FRAME_BYTES = MAX_PAYLOAD_BYTES + MAX_JSON_BYTES;

export const FLAG_MORE = 1;

export const MessageType = {
  HELLO: 1,
  ERROR: 2,
  PING: 3,
  PONG: 4,
  TREE_SUBSCRIBE: 10,
  TREE_ENTRIES: 11,
  LOG_LIST: 20,
  LOG_LIST_REPLY: 21,
  LOG_READ: 22,
  LOG_DATA: 23,
  DIGESTS: 30,
  DIGESTS_REPLY: 31,
  BLOCKS_READ: 32,
  BLOCKS_DATA: 33,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

const KNOWN_TYPES = new Set<number>(Object.values(MessageType));
const TYPE_NAMES = new Map<number, string>(Object.entries(MessageType).map(([k, v]) => [v, k]));

export function typeName(type: number): string {
  return TYPE_NAMES.get(type) ?? `type ${type}`;
}

export type Json = Record<string, unknown>;

export interface Frame {
  readonly type: MessageType;
  readonly flags: number;
  readonly id: number;
  readonly json: Json;
  readonly payload: Buffer;
}

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

const EMPTY = Buffer.alloc(0);

/** One frame as a header+json buffer and the payload (kept apart: no copy of bulk data). */
export function encodeFrame(type: MessageType, id: number, json: Json, payload: Buffer = EMPTY, flags = 0): Buffer[] {
  const text = Buffer.from(JSON.stringify(json));
  if (text.length > MAX_JSON_BYTES) throw new ProtocolError(`${typeName(type)}: JSON part of ${text.length} bytes exceeds ${MAX_JSON_BYTES}`);
  if (payload.length > MAX_PAYLOAD_BYTES) throw new ProtocolError(`${typeName(type)}: payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  const head = Buffer.allocUnsafe(HEADER_BYTES + text.length);
  head.writeUInt32LE(HEADER_BYTES - 4 + text.length + payload.length, 0);
  head.writeUInt8(type, 4);
  head.writeUInt8(flags, 5);
  head.writeUInt16LE(0, 6);
  head.writeUInt32LE(id >>> 0, 8);
  head.writeUInt32LE(text.length, 12);
  text.copy(head, HEADER_BYTES);
  return payload.length ? [head, payload] : [head];
}

/**
 * Cuts a byte stream into frames. push() returns the complete frames so far and throws
 * ProtocolError on the first bad one; after that the stream is unusable (close it).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffered < 4) break;
      const length = this.peekLength();
      if (length < HEADER_BYTES - 4 || length > MAX_FRAME_BYTES) {
        throw new ProtocolError(`frame length ${length} outside ${HEADER_BYTES - 4}..${MAX_FRAME_BYTES}`);
      }
      if (this.buffered < 4 + length) break;
      frames.push(decodeFrame(this.take(4 + length)));
    }
    return frames;
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32LE(0);
    return Buffer.concat(this.chunks).readUInt32LE(0);
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      const all = Buffer.concat(this.chunks);
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n)] : [];
    }
    this.buffered -= n;
    return out;
  }
}

function decodeFrame(buf: Buffer): Frame {
  const type = buf.readUInt8(4);
  const flags = buf.readUInt8(5);
  const reserved = buf.readUInt16LE(6);
  const id = buf.readUInt32LE(8);
  const jsonLength = buf.readUInt32LE(12);
  if (!KNOWN_TYPES.has(type)) throw new ProtocolError(`unknown message type ${type}`);
  if (reserved !== 0 || (flags & ~FLAG_MORE) !== 0) throw new ProtocolError(`${typeName(type)}: reserved bits set`);
  if (jsonLength > MAX_JSON_BYTES || HEADER_BYTES + jsonLength > buf.length) {
    throw new ProtocolError(`${typeName(type)}: JSON length ${jsonLength} does not fit the frame`);
  }
  if (buf.length - HEADER_BYTES - jsonLength > MAX_PAYLOAD_BYTES) {
    throw new ProtocolError(`${typeName(type)}: payload exceeds ${MAX_PAYLOAD_BYTES} bytes`);
  }
  let json: unknown;
  try {
    json = JSON.parse(buf.toString('utf8', HEADER_BYTES, HEADER_BYTES + jsonLength));
  } catch {
    throw new ProtocolError(`${typeName(type)}: JSON part does not parse`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ProtocolError(`${typeName(type)}: JSON part is not an object`);
  }
  return { type: type as MessageType, flags, id, json: json as Json, payload: buf.subarray(HEADER_BYTES + jsonLength) };
}
