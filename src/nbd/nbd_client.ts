/**
 * NbdClient: a pipelined NBD client for tests, the demo and benchmarks. Any number of
 * requests may be in flight; replies are matched by handle and may arrive in any order.
 *
 *   const c = await NbdClient.connect('/run/phobos/r1.nbd', 'r1');
 *   await Promise.all([c.write(0, a), c.write(4096, b, true)]);  // the second with FUA
 *   await c.flush();
 *   const back = await c.read(0, 8192);
 *   await c.disconnect();
 *
 * A buffer passed to write() must not change until its promise settles. Requests fail
 * with NbdRequestError (code 'ENOSPC', ...) when the server replies an error, and with
 * NbdConnectionError when the connection ends first.
 */
import net from 'node:net';
import type { Duplex } from 'node:stream';

import { NbdConnectionError, NbdOptionError, NbdProtocolError, NbdRequestError } from './errors.js';
import { NbdOptionSession } from './nbd_option_session.js';
import {
  NBD_CMD_DISC, NBD_CMD_FLAG_FUA, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_TRIM, NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES, NBD_REP_ERR_UNSUP, ReplyReader, commandName, encodeRequestHeader, errnoName,
} from './protocol.js';
import type { NbdBlockSize, NbdExportInfo } from './types.js';

/** How NbdClient ends the handshake. */
export interface NbdClientOptions {
  /** 'go' tries NBD_OPT_GO and falls back to NBD_OPT_EXPORT_NAME if unsupported. @default 'go' */
  readonly handshake?: 'go' | 'export-name';
}

interface Pending {
  readonly type: number;
  readonly offset: number;
  readonly length: number;
  readonly resolve: (data: Buffer | null) => void;
  readonly reject: (e: Error) => void;
}

export class NbdClient {
  /** Export size, bytes. */
  readonly sizeBytes: number;
  /** NBD_FLAG_* transmission flags the server advertised. */
  readonly transmissionFlags: number;
  /** Block sizes, if the server sent NBD_INFO_BLOCK_SIZE. */
  readonly blockSize: NbdBlockSize | undefined;

  private readonly pending = new Map<bigint, Pending>();
  private readonly replies: ReplyReader;
  private nextHandle = 1n;
  private failure: Error | null = null;
  private disconnecting = false;
  /** Resolved when no request is in flight (disconnect waits on it). */
  private idleWaiters: (() => void)[] = [];
  private readonly closed: Promise<void>;

  private constructor(private readonly stream: Duplex, info: NbdExportInfo, readAhead: Buffer) {
    this.sizeBytes = info.sizeBytes;
    this.transmissionFlags = info.transmissionFlags;
    this.blockSize = info.blockSize;
    this.replies = new ReplyReader((handle) => {
      const p = this.pending.get(handle);
      if (p === undefined) return undefined;
      return p.type === NBD_CMD_READ ? p.length : 0;
    });
    this.closed = new Promise((resolve) => stream.once('close', resolve));
    stream.on('data', (chunk: Buffer) => this.onData(chunk));
    stream.on('error', (e: Error) => this.fail(new NbdConnectionError(`nbd connection failed: ${e.message}`, { cause: e })));
    stream.once('close', () => this.fail(new NbdConnectionError('nbd connection closed')));
    if (readAhead.length > 0) this.onData(readAhead);
    stream.resume();
  }

  /** Connects to a UNIX socket and selects `exportName` ('' is the server's default export). */
  static async connect(socketPath: string, exportName = '', options: NbdClientOptions = {}): Promise<NbdClient> {
    const socket = net.createConnection(socketPath);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve();
      });
      socket.once('error', reject);
    });
    try {
      return await NbdClient.open(socket, exportName, options);
    } catch (e) {
      socket.destroy();
      throw e;
    }
  }

  /** Runs the handshake over any duplex stream and returns a client in transmission. */
  static async open(stream: Duplex, exportName = '', options: NbdClientOptions = {}): Promise<NbdClient> {
    const session = await NbdOptionSession.open(stream);
    let info: NbdExportInfo;
    if (options.handshake === 'export-name') {
      info = await session.exportName(exportName);
    } else {
      try {
        info = await session.go(exportName);
      } catch (e) {
        if (!(e instanceof NbdOptionError && e.replyType === NBD_REP_ERR_UNSUP)) throw e;
        info = await session.exportName(exportName);
      }
    }
    return new NbdClient(stream, info, session.detach());
  }

  /** Requests sent and not yet replied to. */
  get inFlight(): number {
    return this.pending.size;
  }

  read(offset: number, length: number): Promise<Buffer> {
    return this.command(NBD_CMD_READ, 0, offset, length) as Promise<Buffer>;
  }

  /** Writes `data` at `offset`; with `fua` the server replies only once it is durable. */
  async write(offset: number, data: Buffer, fua = false): Promise<void> {
    await this.command(NBD_CMD_WRITE, fua ? NBD_CMD_FLAG_FUA : 0, offset, data.length, data);
  }

  /** Makes every write completed before it durable. */
  async flush(): Promise<void> {
    await this.command(NBD_CMD_FLUSH, 0, 0, 0);
  }

  async trim(offset: number, length: number, fua = false): Promise<void> {
    await this.command(NBD_CMD_TRIM, fua ? NBD_CMD_FLAG_FUA : 0, offset, length);
  }

  async writeZeroes(offset: number, length: number, fua = false): Promise<void> {
    await this.command(NBD_CMD_WRITE_ZEROES, fua ? NBD_CMD_FLAG_FUA : 0, offset, length);
  }

  /**
   * Sends any request as given, without checks: the building block of the methods above,
   * and the way tests send what a careful client would not. Resolves with the READ data
   * (null for other commands).
   */
  command(type: number, flags: number, offset: number, length: number, data?: Buffer): Promise<Buffer | null> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.disconnecting) return Promise.reject(new NbdConnectionError('nbd client is disconnecting'));
    const handle = this.nextHandle++;
    const header = encodeRequestHeader(flags, type, handle, offset, length);
    return new Promise<Buffer | null>((resolve, reject) => {
      this.pending.set(handle, { type, offset, length, resolve, reject });
      if (data !== undefined && data.length > 0) {
        this.stream.cork();
        this.stream.write(header);
        this.stream.write(data);
        this.stream.uncork();
      } else {
        this.stream.write(header);
      }
    });
  }

  /**
   * Waits for the requests in flight, sends DISC and closes the connection. New requests
   * are refused from the call on.
   */
  async disconnect(): Promise<void> {
    if (this.disconnecting || this.failure) {
      this.stream.destroy();
      return this.closed;
    }
    this.disconnecting = true;
    if (this.pending.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    if (!this.failure) {
      this.stream.end(encodeRequestHeader(0, NBD_CMD_DISC, this.nextHandle++, 0, 0));
    }
    const timer = setTimeout(() => this.stream.destroy(), 5000);
    await this.closed;
    clearTimeout(timer);
  }

  /** Drops the connection at once; requests in flight fail with NbdConnectionError. */
  destroy(): void {
    this.stream.destroy();
  }

  private onData(chunk: Buffer): void {
    this.replies.push(chunk);
    try {
      for (let reply = this.replies.next(); reply !== null; reply = this.replies.next()) {
        const p = this.pending.get(reply.handle)!;
        this.pending.delete(reply.handle);
        if (reply.error === 0) {
          p.resolve(p.type === NBD_CMD_READ ? reply.data ?? Buffer.alloc(0) : null);
        } else {
          const code = errnoName(reply.error);
          const what = commandName(p.type);
          p.reject(new NbdRequestError(`nbd ${what} at ${p.offset}+${p.length} failed: ${code}`, code, reply.error, what, p.offset, p.length));
        }
      }
      if (this.pending.size === 0) this.wakeIdle();
    } catch (e) {
      if (!(e instanceof NbdProtocolError)) throw e;
      this.fail(e);
      this.stream.destroy();
    }
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.reject(e);
    this.wakeIdle();
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}
