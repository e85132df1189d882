/**
 * One server connection over any byte stream (a UNIX socket, or an in-memory duplex in
 * tests): the fixed newstyle handshake, then the transmission phase. Private to src/nbd;
 * NbdServer owns the connections and the open count.
 *
 * Concurrency: requests are read as they arrive and handed to the device at once, up to
 * `maxInFlight` requests (and a byte budget) per connection; beyond that the stream is
 * paused, so a fast client cannot queue unbounded memory. Replies go out as requests
 * complete, in any order, matched by handle.
 */
import type { Duplex } from 'node:stream';

import { StreamReader } from './_stream_reader.js';
import { NbdProtocolError } from './errors.js';
import {
  NBD_CMD_DISC, NBD_CMD_FLAG_FUA, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES, NBD_ERRNO, NBD_FLAG_FIXED_NEWSTYLE, NBD_FLAG_NO_ZEROES, NBD_INFO_BLOCK_SIZE,
  NBD_OPT_ABORT, NBD_OPT_EXPORT_NAME, NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_LIST, NBD_REP_ACK,
  NBD_REP_ERR_INVALID, NBD_REP_ERR_UNKNOWN, NBD_REP_ERR_UNSUP, NBD_REP_INFO, NBD_REP_SERVER,
  MAX_OPTION_BYTES, OPTION_HEADER_BYTES, RequestReader, SERVER_HANDSHAKE_FLAGS, commandName,
  decodeGoRequest, decodeOptionHeader, encodeExportNameReply, encodeGreeting, encodeInfoBlockSize,
  encodeInfoExport, encodeOptionReply, encodeServerReply, encodeSimpleReplyHeader, errnoOf, optionName,
} from './protocol.js';
import type { BlockDevice, NbdBlockSize, NbdConnectionPhase, NbdRequest } from './types.js';

/** What a connection needs from its server. */
export interface ConnectionContext {
  readonly exportName: string;
  readonly device: BlockDevice;
  readonly readOnly: boolean;
  readonly transmissionFlags: number;
  readonly blockSize: NbdBlockSize;
  readonly maxRequestBytes: number;
  readonly maxInFlight: number;
  /** Payload bytes in flight (and reply bytes queued) above which reading pauses. */
  readonly maxInFlightBytes: number;
  readonly handshakeTimeoutMs: number;
  /** The handshake finished: the connection now counts as open. */
  opened(conn: ServerConnection): void;
  /** The stream closed; `wasOpen` if it had finished the handshake. */
  closed(conn: ServerConnection, wasOpen: boolean): void;
  /** The peer broke the protocol or the stream failed; the connection is being closed. */
  failed(conn: ServerConnection, error: Error): void;
}

const ZERO_LENGTH = Buffer.alloc(0);

export class ServerConnection {
  private phaseNow: NbdConnectionPhase = 'handshake';
  private wasOpen = false;
  private discReceived = false;
  private reader: RequestReader;
  private inFlight = 0;
  private inFlightBytes = 0;
  /** Writes, trims and zeroes at the device; a FLUSH waits for those received before it. */
  private readonly pendingWrites = new Set<Promise<unknown>>();
  private idleWaiters: (() => void)[] = [];
  private handshakeTimer: NodeJS.Timeout | null = null;
  private readonly closedPromise: Promise<void>;

  constructor(private readonly stream: Duplex, private readonly ctx: ConnectionContext) {
    this.reader = new RequestReader(ctx.maxRequestBytes);
    this.closedPromise = new Promise((resolve) => stream.once('close', resolve));
    stream.once('close', () => this.onClose());
    stream.on('error', (e: Error) => this.ctx.failed(this, e));
    this.handshakeTimer = setTimeout(() => {
      this.ctx.failed(this, new Error(`nbd handshake not finished after ${ctx.handshakeTimeoutMs} ms`));
      this.stream.destroy();
    }, ctx.handshakeTimeoutMs);
    this.handshake().catch((e: unknown) => {
      if (this.phaseNow === 'closed') return;
      this.ctx.failed(this, e as Error);
      this.stream.destroy();
    });
  }

  get phase(): NbdConnectionPhase {
    return this.phaseNow;
  }

  /**
   * Server shutdown. During the handshake the stream is cut. In transmission, requests
   * already at the device finish (new ones get ESHUTDOWN), then the stream is ended;
   * after `timeoutMs` it is destroyed regardless.
   */
  shutdown(timeoutMs: number): Promise<void> {
    if (this.phaseNow === 'closed') return Promise.resolve();
    if (this.phaseNow === 'handshake') {
      this.stream.destroy();
      return this.closedPromise;
    }
    this.phaseNow = 'draining';
    const timer = setTimeout(() => this.stream.destroy(), timeoutMs);
    this.whenIdle(() => this.end());
    return this.closedPromise.finally(() => clearTimeout(timer));
  }

  // ---- handshake ------------------------------------------------------------------------

  private async handshake(): Promise<void> {
    const r = new StreamReader(this.stream, 'nbd handshake');
    this.stream.write(encodeGreeting(SERVER_HANDSHAKE_FLAGS));
    const clientFlags = (await r.read(4)).readUInt32BE(0);
    const known = NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES;
    if ((clientFlags & ~known) !== 0) {
      throw new NbdProtocolError(`unknown client flags 0x${clientFlags.toString(16)} (known: 0x${known.toString(16)})`, 'bad-flags', clientFlags);
    }
    const noZeroes = (clientFlags & NBD_FLAG_NO_ZEROES) !== 0;
    for (;;) {
      const { option, length } = decodeOptionHeader(await r.read(OPTION_HEADER_BYTES));
      if (length > MAX_OPTION_BYTES) {
        throw new NbdProtocolError(`${optionName(option)} of ${length} bytes, limit ${MAX_OPTION_BYTES}`, 'bad-length', length);
      }
      const data = await r.read(length);
      switch (option) {
        case NBD_OPT_EXPORT_NAME: {
          const name = data.toString('utf8');
          if (!this.serves(name)) {
            // This option has no error reply: closing is the only answer.
            throw new NbdProtocolError(`NBD_OPT_EXPORT_NAME asks for unknown export "${name}"`, 'unsupported');
          }
          this.stream.write(encodeExportNameReply(this.ctx.device.sizeBytes, this.ctx.transmissionFlags, noZeroes));
          this.startTransmission(r.detach());
          return;
        }
        case NBD_OPT_ABORT:
          r.detach();
          this.stream.end(encodeOptionReply(option, NBD_REP_ACK), () => this.stream.destroy());
          return;
        case NBD_OPT_LIST:
          if (length !== 0) {
            this.replyError(option, NBD_REP_ERR_INVALID, `NBD_OPT_LIST carries no data, got ${length} bytes`);
            break;
          }
          this.stream.write(encodeOptionReply(option, NBD_REP_SERVER, encodeServerReply(this.ctx.exportName)));
          this.stream.write(encodeOptionReply(option, NBD_REP_ACK));
          break;
        case NBD_OPT_INFO:
        case NBD_OPT_GO: {
          let request;
          try {
            request = decodeGoRequest(data);
          } catch (e) {
            this.replyError(option, NBD_REP_ERR_INVALID, (e as Error).message);
            break;
          }
          if (!this.serves(request.name)) {
            this.replyError(option, NBD_REP_ERR_UNKNOWN, `unknown export "${request.name}"`);
            break;
          }
          const info = encodeInfoExport(this.ctx.device.sizeBytes, this.ctx.transmissionFlags);
          this.stream.write(encodeOptionReply(option, NBD_REP_INFO, info));
          if (request.infos.includes(NBD_INFO_BLOCK_SIZE)) {
            this.stream.write(encodeOptionReply(option, NBD_REP_INFO, encodeInfoBlockSize(this.ctx.blockSize)));
          }
          this.stream.write(encodeOptionReply(option, NBD_REP_ACK));
          if (option === NBD_OPT_GO) {
            this.startTransmission(r.detach());
            return;
          }
          break;
        }
        default:
          this.replyError(option, NBD_REP_ERR_UNSUP, `${optionName(option)} is not supported`);
      }
    }
  }

  /** The configured export, and '' (the default export) for the same device. */
  private serves(name: string): boolean {
    return name === this.ctx.exportName || name === '';
  }

  private replyError(option: number, type: number, message: string): void {
    this.stream.write(encodeOptionReply(option, type, Buffer.from(message, 'utf8')));
  }

  // ---- transmission ---------------------------------------------------------------------

  private startTransmission(readAhead: Buffer): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    if (this.phaseNow !== 'handshake') return; // closed meanwhile
    this.phaseNow = 'transmission';
    this.wasOpen = true;
    this.ctx.opened(this);
    this.reader.push(readAhead);
    this.stream.on('data', (chunk: Buffer) => {
      this.reader.push(chunk);
      this.pump();
    });
    this.stream.on('drain', () => this.pump());
    this.pump();
  }

  private canAccept(): boolean {
    return this.inFlight < this.ctx.maxInFlight &&
      this.inFlightBytes < this.ctx.maxInFlightBytes &&
      this.stream.writableLength < this.ctx.maxInFlightBytes;
  }

  /** Hands every complete request to the device while limits allow; pauses reading beyond. */
  private pump(): void {
    if (this.phaseNow === 'closed' || this.discReceived) return;
    while (this.canAccept()) {
      let request: NbdRequest | null;
      try {
        request = this.reader.next();
      } catch (e) {
        // A bad magic: the stream is out of sync, nothing after it can be trusted.
        this.ctx.failed(this, e as Error);
        this.stream.destroy();
        return;
      }
      if (request === null) break;
      this.dispatch(request);
      if (this.discReceived || this.isClosed()) return;
    }
    if (this.canAccept()) this.stream.resume();
    else this.stream.pause();
  }

  private dispatch(req: NbdRequest): void {
    if (req.type === NBD_CMD_DISC) {
      // No reply to DISC. Requests already at the device finish, then the stream ends.
      this.discReceived = true;
      if (this.phaseNow === 'transmission') this.phaseNow = 'draining';
      this.stream.pause();
      this.whenIdle(() => this.end());
      return;
    }
    if (this.phaseNow === 'draining') {
      this.reply(req.handle, NBD_ERRNO.ESHUTDOWN, null);
      return;
    }
    const refused = this.check(req);
    if (refused !== 0) {
      this.reply(req.handle, refused, null);
      return;
    }
    if (req.length === 0 && req.type !== NBD_CMD_FLUSH) {
      this.reply(req.handle, 0, req.type === NBD_CMD_READ ? ZERO_LENGTH : null);
      return;
    }
    const bytes = req.type === NBD_CMD_READ || req.type === NBD_CMD_WRITE ? req.length : 0;
    this.inFlight++;
    this.inFlightBytes += bytes;
    const work = this.execute(req);
    const isWrite = req.type !== NBD_CMD_READ && req.type !== NBD_CMD_FLUSH;
    if (isWrite) this.pendingWrites.add(work);
    work.then(
      (data) => this.reply(req.handle, 0, data),
      (e: unknown) => this.reply(req.handle, errnoOf(e), null),
    ).finally(() => {
      if (isWrite) this.pendingWrites.delete(work);
      this.inFlight--;
      this.inFlightBytes -= bytes;
      if (this.inFlight === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
      this.pump();
    });
  }

  /** 0 if the request may go to the device, else the error number to reply. */
  private check(req: NbdRequest): number {
    switch (req.type) {
      case NBD_CMD_FLUSH:
        return 0;
      case NBD_CMD_READ:
      case NBD_CMD_WRITE:
        if (req.oversize) return NBD_ERRNO.EINVAL;
        break;
      case NBD_CMD_TRIM:
      case NBD_CMD_WRITE_ZEROES:
        break;
      default:
        return NBD_ERRNO.EINVAL; // CACHE is not advertised; unknown commands
    }
    if (req.type !== NBD_CMD_READ && this.ctx.readOnly) return NBD_ERRNO.EPERM;
    if (req.offset + req.length > this.ctx.device.sizeBytes) return NBD_ERRNO.EINVAL;
    return 0;
  }

  private async execute(req: NbdRequest): Promise<Buffer | null> {
    const { device } = this.ctx;
    const fua = (req.flags & NBD_CMD_FLAG_FUA) !== 0;
    switch (req.type) {
      case NBD_CMD_READ: {
        const data = await device.read(req.offset, req.length);
        if (data.length !== req.length) {
          throw Object.assign(new Error(`device returned ${data.length} bytes for a ${req.length}-byte read`), { code: 'EIO' });
        }
        return data;
      }
      case NBD_CMD_WRITE:
        await device.write(req.offset, req.data!, fua);
        return null;
      case NBD_CMD_TRIM:
      case NBD_CMD_WRITE_ZEROES:
        await device.zero(req.offset, req.length, fua);
        return null;
      case NBD_CMD_FLUSH: {
        // The flush covers every write received before it on this connection, even those
        // not yet replied to (stronger than the protocol asks); the device's flush covers
        // every write completed on any connection.
        if (this.pendingWrites.size > 0) await Promise.allSettled([...this.pendingWrites]);
        await device.flush();
        return null;
      }
      default:
        throw Object.assign(new Error(`${commandName(req.type)} reached the device`), { code: 'EINVAL' });
    }
  }

  private reply(handle: bigint, error: number, data: Buffer | null): void {
    if (this.phaseNow === 'closed' || this.stream.destroyed || this.stream.writableEnded) return;
    const header = encodeSimpleReplyHeader(error, handle);
    // Replies settled in one burst (a log group commit settles many writes at once) go
    // out in one writev: cork at the first, uncork on the next tick, which Node runs
    // after the current microtask queue has drained. One syscall per reply was a third
    // of the daemon's CPU on random 4 KiB writes.
    if (!this.replyCorked) {
      this.replyCorked = true;
      this.stream.cork();
      process.nextTick(() => {
        this.replyCorked = false;
        this.stream.uncork();
      });
    }
    this.stream.write(header);
    if (data !== null && data.length > 0) this.stream.write(data);
  }

  private replyCorked = false;

  private isClosed(): boolean {
    return this.phaseNow === 'closed';
  }

  private whenIdle(fn: () => void): void {
    if (this.inFlight === 0) fn();
    else this.idleWaiters.push(fn);
  }

  private end(): void {
    if (this.phaseNow === 'closed' || this.stream.writableEnded) return;
    this.stream.end(() => this.stream.destroy());
  }

  private onClose(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.phaseNow = 'closed';
    this.ctx.closed(this, this.wasOpen);
  }
}
