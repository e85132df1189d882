/**
 * NbdServer: serves one BlockDevice as an NBD export over a UNIX socket (fixed newstyle
 * handshake, simple replies), to any NBD client: `nbd-client -unix`, `qemu-io`,
 * `qemu-img`, `nbdcopy`, or NbdClient.
 *
 *   const server = new NbdServer({ socketPath: '/run/phobos/r1.nbd', exportName: 'r1', device });
 *   server.on('open', (count) => publish('open-count', count));
 *   server.on('close', (count) => publish('open-count', count));
 *   await server.listen();
 *   // qemu-io -f raw 'nbd+unix:///r1?socket=/run/phobos/r1.nbd' -c 'read 0 4k'
 *   await server.close();
 *
 * docs/nbd.md explains the flags advertised, the limits, error mapping and ordering.
 */
import { EventEmitter } from 'node:events';
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Duplex } from 'node:stream';

import { ServerConnection, type ConnectionContext } from './_server_connection.js';
import {
  NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_HAS_FLAGS, NBD_FLAG_READ_ONLY, NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES,
} from './protocol.js';
import type { NbdBlockSize, NbdServerOptions } from './types.js';

/** Default largest READ/WRITE payload, bytes (32 MiB). */
export const DEFAULT_MAX_REQUEST_BYTES = 32 << 20;
const DEFAULT_MAX_IN_FLIGHT = 128;
const DEFAULT_CLOSE_TIMEOUT_MS = 10_000;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 30_000;

/** Events of NbdServer; listeners get the open count after the change. */
export interface NbdServerEvents {
  /** A connection finished its handshake. */
  open: [openCount: number];
  /** A connection that had finished its handshake closed. */
  close: [openCount: number];
  /** A connection broke the protocol or failed; it is being closed. Never thrown. */
  'connection-error': [error: Error];
}

export class NbdServer extends EventEmitter<NbdServerEvents> {
  private readonly connections = new Set<ServerConnection>();
  private server: net.Server | null = null;
  private closing = false;
  private open = 0;
  private readonly ctx: ConnectionContext;
  private readonly closeTimeoutMs: number;

  constructor(private readonly opts: NbdServerOptions) {
    super();
    const maxRequestBytes = opts.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    const blockSize: NbdBlockSize = {
      minBytes: opts.minBlockBytes ?? 1,
      preferredBytes: opts.preferredBlockBytes ?? 4096,
      maxBytes: maxRequestBytes,
    };
    checkBlockSizes(blockSize);
    if (!Number.isSafeInteger(opts.device.sizeBytes) || opts.device.sizeBytes < 0) {
      throw new RangeError(`NbdServer: device size ${opts.device.sizeBytes} is not a byte count`);
    }
    this.closeTimeoutMs = opts.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    const readOnly = opts.readOnly ?? false;
    this.ctx = {
      exportName: opts.exportName,
      device: opts.device,
      readOnly,
      transmissionFlags: transmissionFlags(readOnly),
      blockSize,
      maxRequestBytes,
      maxInFlight: opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
      maxInFlightBytes: Math.max(64 << 20, 2 * maxRequestBytes),
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
      opened: () => {
        this.open++;
        this.emit('open', this.open);
      },
      closed: (conn, wasOpen) => {
        this.connections.delete(conn);
        if (!wasOpen) return;
        this.open--;
        this.emit('close', this.open);
      },
      failed: (_conn, error) => {
        this.emit('connection-error', error);
      },
    };
  }

  /** Connections that finished the handshake and have not closed. */
  get openCount(): number {
    return this.open;
  }

  /** The NBD_FLAG_* transmission flags this server advertises. */
  get transmissionFlags(): number {
    return this.ctx.transmissionFlags;
  }

  get socketPath(): string {
    return this.opts.socketPath;
  }

  /**
   * Creates the socket's directory (mode 0755) if missing, removes a stale socket file
   * (one nothing listens on), listens, and sets the socket's mode to 0660. Refuses a path
   * that is not a socket or that another process serves.
   */
  async listen(): Promise<void> {
    if (this.server || this.closing) throw new Error(`NbdServer ${this.opts.socketPath}: listen() called twice`);
    const socketPath = this.opts.socketPath;
    await mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 });
    await removeStaleSocket(socketPath);
    const server = net.createServer((socket) => this.serveStream(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.emit('connection-error', e));
    this.server = server;
    await chmod(socketPath, 0o660);
  }

  /**
   * Serves one connection over any duplex byte stream. listen() calls it for each
   * socket; tests call it with an in-memory pair.
   */
  serveStream(stream: Duplex): void {
    if (this.closing) {
      stream.destroy();
      return;
    }
    this.connections.add(new ServerConnection(stream, this.ctx));
  }

  /**
   * Stops accepting, lets requests already at the device finish (up to closeTimeoutMs;
   * requests read meanwhile get ESHUTDOWN), closes every connection and removes the
   * socket file.
   */
  async close(): Promise<void> {
    this.closing = true;
    const server = this.server;
    this.server = null;
    const stopped = server
      ? new Promise<void>((resolve) => server.close(() => resolve()))
      : Promise.resolve();
    await Promise.all([...this.connections].map((c) => c.shutdown(this.closeTimeoutMs)));
    await stopped;
  }
}

/**
 * HAS_FLAGS, FLUSH, FUA, TRIM, WRITE_ZEROES, CAN_MULTI_CONN (the device's flush covers
 * completed writes of every connection), and READ_ONLY if asked.
 */
function transmissionFlags(readOnly: boolean): number {
  let flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
    NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN;
  if (readOnly) flags |= NBD_FLAG_READ_ONLY;
  return flags;
}

function checkBlockSizes(b: NbdBlockSize): void {
  const pow2 = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
  if (!pow2(b.minBytes) || b.minBytes > 65536) {
    throw new RangeError(`NbdServer: minBlockBytes ${b.minBytes} must be a power of two up to 65536`);
  }
  if (!pow2(b.preferredBytes) || b.preferredBytes < b.minBytes) {
    throw new RangeError(`NbdServer: preferredBlockBytes ${b.preferredBytes} must be a power of two >= minBlockBytes ${b.minBytes}`);
  }
  if (!Number.isInteger(b.maxBytes) || b.maxBytes < b.preferredBytes || b.maxBytes > 0xffffffff || b.maxBytes % b.minBytes !== 0) {
    throw new RangeError(`NbdServer: maxRequestBytes ${b.maxBytes} must be a multiple of ${b.minBytes}, >= ${b.preferredBytes} and < 4 GiB`);
  }
}

/** Removes `socketPath` if it is a socket nobody listens on; refuses anything else. */
async function removeStaleSocket(socketPath: string): Promise<void> {
  let st;
  try {
    st = await lstat(socketPath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  if (!st.isSocket()) {
    throw Object.assign(new Error(`${socketPath} exists and is not a socket; remove it or choose another path`), { code: 'EEXIST' });
  }
  const listening = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (listening) {
    throw Object.assign(new Error(`${socketPath}: another process serves this socket; stop it first`), { code: 'EADDRINUSE' });
  }
  await unlink(socketPath).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}
