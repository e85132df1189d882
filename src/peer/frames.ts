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
  /** The payload as one buffer; joined (one copy) on first use when it arrived in pieces. */
  readonly payload: Buffer;
  /** The payload as it arrived from the stream, in order: no copy (for writev). */
  readonly payloadParts: readonly Buffer[];
  readonly payloadLength: number;
}

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

const EMPTY = Buffer.alloc(0);

/**
 * One frame as a header+json buffer and the payload, kept apart: the bulk bytes are never
 * copied here (the connection writes both with one writev).
 */
export function encodeFrame(type: MessageType, id: number, json: Json, payload: Buffer = EMPTY, flags = 0): Buffer[] {
  const text = JSON.stringify(json);
  const jsonBytes = Buffer.byteLength(text);
  if (jsonBytes > MAX_JSON_BYTES) throw new ProtocolError(`${typeName(type)}: JSON part of ${jsonBytes} bytes exceeds ${MAX_JSON_BYTES}`);
  if (payload.length > MAX_PAYLOAD_BYTES) throw new ProtocolError(`${typeName(type)}: payload of ${payload.length} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  const head = Buffer.allocUnsafe(HEADER_BYTES + jsonBytes);
  head.writeUInt32LE(HEADER_BYTES - 4 + jsonBytes + payload.length, 0);
  head.writeUInt8(type, 4);
  head.writeUInt8(flags, 5);
  head.writeUInt16LE(0, 6);
  head.writeUInt32LE(id >>> 0, 8);
  head.writeUInt32LE(jsonBytes, 12);
  head.write(text, HEADER_BYTES, 'utf8');
  return payload.length ? [head, payload] : [head];
}

/**
 * Cuts a byte stream into frames. push() returns the complete frames so far and throws
 * ProtocolError on the first bad one; after that the stream is unusable (close it).
 *
 * A stream delivers at most 64 KiB per chunk, so a 1 MiB frame spans some 17 chunks:
 * its payload is handed on as views of those chunks (payloadParts), never copied here.
 * Only a header or JSON part split between chunks is joined, and those are small.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    if (chunk.length === 0) return frames;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (this.buffered >= 4) {
      const length = this.peekLength();
      if (length < HEADER_BYTES - 4 || length > MAX_FRAME_BYTES) {
        throw new ProtocolError(`frame length ${length} outside ${HEADER_BYTES - 4}..${MAX_FRAME_BYTES}`);
      }
      if (this.buffered < 4 + length) break;
      frames.push(this.decodeNext(4 + length));
    }
    return frames;
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= 4) return first.readUInt32LE(0);
    return Buffer.concat(this.chunks, 4).readUInt32LE(0);
  }

  /** Decode the frame of `frameBytes` bytes at the front (all of it is buffered). */
  private decodeNext(frameBytes: number): Frame {
    const head = this.takeJoined(HEADER_BYTES);
    const type = head.readUInt8(4);
    const flags = head.readUInt8(5);
    const reserved = head.readUInt16LE(6);
    const id = head.readUInt32LE(8);
    const jsonLength = head.readUInt32LE(12);
    if (!KNOWN_TYPES.has(type)) throw new ProtocolError(`unknown message type ${type}`);
    if (reserved !== 0 || (flags & ~FLAG_MORE) !== 0) throw new ProtocolError(`${typeName(type)}: reserved bits set`);
    if (jsonLength > MAX_JSON_BYTES || HEADER_BYTES + jsonLength > frameBytes) {
      throw new ProtocolError(`${typeName(type)}: JSON length ${jsonLength} does not fit the frame`);
    }
    const payloadLength = frameBytes - HEADER_BYTES - jsonLength;
    if (payloadLength > MAX_PAYLOAD_BYTES) throw new ProtocolError(`${typeName(type)}: payload exceeds ${MAX_PAYLOAD_BYTES} bytes`);
    const json = parseJsonPart(type, this.takeJoined(jsonLength));
    return new DecodedFrame(type as MessageType, flags, id, json, this.take(payloadLength), payloadLength);
  }

  /** The next n bytes as views of the buffered chunks, removed from the front. */
  private take(n: number): Buffer[] {
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const first = this.chunks[0]!;
      if (first.length <= left) {
        parts.push(first);
        this.chunks.shift();
        left -= first.length;
      } else {
        parts.push(first.subarray(0, left));
        this.chunks[0] = first.subarray(left);
        left = 0;
      }
    }
    this.buffered -= n;
    return parts;
  }

  /** The next n bytes as one buffer: a view when they lie in one chunk, else a copy. */
  private takeJoined(n: number): Buffer {
    return joinParts(this.take(n), n);
  }
}

function joinParts(parts: readonly Buffer[], length: number): Buffer {
  if (parts.length === 1) return parts[0]!;
  return parts.length === 0 ? EMPTY : Buffer.concat(parts, length);
}

function parseJsonPart(type: number, bytes: Buffer): Json {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new ProtocolError(`${typeName(type)}: JSON part does not parse`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ProtocolError(`${typeName(type)}: JSON part is not an object`);
  }
  return json as Json;
}

class DecodedFrame implements Frame {
  private joined: Buffer | null = null;

  constructor(
    readonly type: MessageType,
    readonly flags: number,
    readonly id: number,
    readonly json: Json,
    readonly payloadParts: readonly Buffer[],
    readonly payloadLength: number,
  ) {}

  get payload(): Buffer {
    this.joined ??= joinParts(this.payloadParts, this.payloadLength);
    return this.joined;
  }
}
