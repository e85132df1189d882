/**
 * One framed connection over a transport, used by both ends: requests with ids and
 * (possibly multi-frame) replies, unsolicited messages, two send queues (control before
 * bulk, docs/peer-protocol.md "Flow control"), keepalive and an idle timeout.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';

import {
  encodeFrame, FLAG_MORE, FrameDecoder, MessageType, ProtocolError, typeName, type Frame, type Json,
} from './frames.js';
import type { PeerTransport } from './transport.js';

/** A request the far side refused (an ERROR reply). */
export class RemoteError extends Error {
  override readonly name = 'RemoteError';
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

/** The connection went away before the reply came. */
export class ConnectionClosedError extends Error {
  override readonly name = 'ConnectionClosedError';
}

export interface ConnectionOptions {
  /** The peer's name, for log lines and errors. */
  readonly peer: string;
  readonly log: (line: string) => void;
  /**
   * Handles a request (a frame with a non-zero id and a request type); its result is sent
   * as the reply. Throwing a RemoteError sends an ERROR with its code.
   */
  readonly onRequest?: (frame: Frame, connection: PeerConnection) => Promise<OutgoingFrame[]>;
  /** Unsolicited messages (id 0). */
  readonly onMessage?: (frame: Frame) => void;
  /** Send PING this often, ms; 0 = never (the server side). @default 0 */
  readonly pingIntervalMs?: number;
  /** Close after this long without any frame received, ms. @default 30000 */
  readonly idleTimeoutMs?: number;
}

export interface OutgoingFrame {
  readonly type: MessageType;
  readonly json: Json;
  readonly payload?: Buffer;
}

interface Pending {
  readonly frames: Frame[];
  readonly resolve: (frames: Frame[]) => void;
  readonly reject: (error: Error) => void;
}

interface Queued {
  readonly buffers: Buffer[];
}

const REPLY_TYPES = new Set<number>([
  MessageType.ERROR, MessageType.PONG, MessageType.TREE_ENTRIES, MessageType.LOG_LIST_REPLY,
  MessageType.LOG_DATA, MessageType.DIGESTS_REPLY, MessageType.BLOCKS_DATA, MessageType.HELLO,
]);
const BULK_TYPES = new Set<number>([MessageType.LOG_DATA, MessageType.BLOCKS_DATA, MessageType.DIGESTS_REPLY]);

export class PeerConnection {
  private readonly decoder = new FrameDecoder();
  private readonly pending = new Map<number, Pending>();
  private readonly control: Queued[] = [];
  private readonly bulk: Queued[] = [];
  private nextId = 1;
  private writing = false;
  private lastReceived = Date.now();
  private readonly timers: NodeJS.Timeout[] = [];
  private closedError: Error | null = null;
  /** Aborted by close(): ends a wait for 'drain' without leaving a listener behind. */
  private readonly closing = new AbortController();
  /** Resolves when the connection is closed, with the reason. */
  readonly closed: Promise<Error>;
  private markClosed!: (e: Error) => void;

  constructor(readonly transport: PeerTransport, private readonly opts: ConnectionOptions) {
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
    transport.input.on('data', (chunk: Buffer) => this.receive(chunk));
    transport.input.on('error', (e: Error) => this.close(e));
    transport.output.on('error', (e: Error) => this.close(e));
    void transport.closed.then(() => this.close(new ConnectionClosedError(`connection to ${opts.peer} closed`)));
    const idle = opts.idleTimeoutMs ?? 30_000;
    this.timers.push(setInterval(() => {
      if (Date.now() - this.lastReceived > idle) this.close(new ConnectionClosedError(`${opts.peer}: nothing received for ${idle / 1000} s`));
    }, Math.min(1000, idle / 2)));
    if (opts.pingIntervalMs) {
      this.timers.push(setInterval(() => {
        this.request(MessageType.PING, {}).catch(() => undefined);
      }, opts.pingIntervalMs));
    }
    for (const t of this.timers) t.unref();
  }

  get peer(): string {
    return this.opts.peer;
  }

  get isClosed(): boolean {
    return this.closedError !== null;
  }

  /** Send a request; resolves with every frame of the reply (several when MORE was set). */
  request(type: MessageType, json: Json, payload?: Buffer): Promise<Frame[]> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffff_fff0 ? 1 : this.nextId + 1;
    const result = new Promise<Frame[]>((resolve, reject) => this.pending.set(id, { frames: [], resolve, reject }));
    this.enqueue(encodeFrame(type, id, json, payload), false);
    return result;
  }

  /** Send a request whose reply is a single frame (or an ERROR, thrown as RemoteError). */
  async call(type: MessageType, json: Json, payload?: Buffer): Promise<Frame> {
    const frames = await this.request(type, json, payload);
    return frames[frames.length - 1]!;
  }

  /** Send an unsolicited message (id 0). */
  notify(type: MessageType, json: Json, payload?: Buffer): void {
    if (this.closedError) return;
    this.enqueue(encodeFrame(type, 0, json, payload), BULK_TYPES.has(type));
  }

  /** Send a reply of one or more frames to request `id`. */
  reply(id: number, frames: readonly OutgoingFrame[]): void {
    if (this.closedError) return;
    frames.forEach((f, i) => {
      const more = i < frames.length - 1 ? FLAG_MORE : 0;
      this.enqueue(encodeFrame(f.type, id, f.json, f.payload, more), BULK_TYPES.has(f.type));
    });
  }

  close(reason: Error = new ConnectionClosedError(`connection to ${this.opts.peer} closed`)): void {
    if (this.closedError) return;
    this.closedError = reason;
    this.closing.abort(reason);
    for (const t of this.timers) clearInterval(t);
    for (const p of this.pending.values()) p.reject(reason);
    this.pending.clear();
    this.control.length = 0;
    this.bulk.length = 0;
    this.transport.close();
    this.markClosed(reason);
  }

  private receive(chunk: Buffer): void {
    if (this.closedError) return;
    this.lastReceived = Date.now();
    let frames: Frame[];
    try {
      frames = this.decoder.push(chunk);
    } catch (e) {
      this.protocolError((e as Error).message);
      return;
    }
    for (const frame of frames) {
      if (this.closedError) return;
      this.dispatch(frame);
    }
  }

  private dispatch(frame: Frame): void {
    if (frame.id === 0) {
      this.opts.onMessage?.(frame);
      return;
    }
    const pending = this.pending.get(frame.id);
    if (pending && REPLY_TYPES.has(frame.type)) {
      if (frame.type === MessageType.ERROR) {
        this.pending.delete(frame.id);
        pending.reject(new RemoteError(`${this.opts.peer}: ${String(frame.json['message'])}`, String(frame.json['code'] ?? 'EREMOTE')));
        return;
      }
      pending.frames.push(frame);
      if (frame.flags & FLAG_MORE) return;
      this.pending.delete(frame.id);
      pending.resolve(pending.frames);
      return;
    }
    if (frame.type === MessageType.PING) {
      this.reply(frame.id, [{ type: MessageType.PONG, json: {} }]);
      return;
    }
    if (!this.opts.onRequest || REPLY_TYPES.has(frame.type) && frame.type !== MessageType.HELLO) {
      this.protocolError(`unexpected ${typeName(frame.type)} (id ${frame.id})`);
      return;
    }
    this.opts.onRequest(frame, this).then(
      (reply) => this.reply(frame.id, reply),
      (e: Error) => this.reply(frame.id, [{
        type: MessageType.ERROR,
        json: { code: e instanceof RemoteError ? e.code : 'EIO', message: e.message },
      }]),
    );
  }

  private protocolError(message: string): void {
    this.opts.log(`peer ${this.opts.peer}: protocol error: ${message}; closing the connection`);
    this.close(new ProtocolError(`${this.opts.peer}: ${message}`));
  }

  private enqueue(buffers: Buffer[], bulk: boolean): void {
    (bulk ? this.bulk : this.control).push({ buffers });
    if (!this.writing) void this.writeLoop();
  }

  /**
   * One frame at a time, control first; waits for drain so bulk never piles up ahead.
   * A frame's header and payload go out corked, as one writev: no copy to join them.
   */
  private async writeLoop(): Promise<void> {
    this.writing = true;
    try {
      const out = this.transport.output;
      for (;;) {
        const next = this.control.shift() ?? this.bulk.shift();
        if (!next || this.closedError) break;
        // Not a race against this.closed: each race would leave a reaction on it for the
        // connection's lifetime (signal.ts untilAborted).
        if (!writeCorked(out, next.buffers)) await once(out, 'drain', { signal: this.closing.signal }).catch(() => undefined);
      }
    } catch (e) {
      this.close(e as Error);
    } finally {
      this.writing = false;
    }
  }
}

/** Write the buffers as one batch (a single writev); false when the stream wants a drain. */
function writeCorked(out: Writable, buffers: readonly Buffer[]): boolean {
  if (buffers.length === 1) return out.write(buffers[0]!);
  out.cork();
  let ok = true;
  for (const b of buffers) ok = out.write(b) && ok;
  out.uncork();
  return ok;
}
