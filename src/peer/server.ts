/**
 * `marsadm peer-serve`: the far end of a peer connection. It answers one client (a peer's
 * daemon) on stdin/stdout, as this host, from this host's tree, logs and disk, and never
 * writes anything (docs/peer-protocol.md "Shape of a connection").
 */
import { watch, type FSWatcher } from 'node:fs';
import { open, readdir, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { dataKey, ipKey, isValidName, NAME_SOURCE, sizeKey, TreeWatcher, UUID_KEY, type MarsTree, type TreeEntry } from '../tree/index.js';
import { PeerConnection, RemoteError, type OutgoingFrame } from './connection.js';
import { DIGEST_BYTES, digestRange, openDeviceView, type DeviceView } from './device_view.js';
import { MAX_JSON_BYTES, MAX_PAYLOAD_BYTES, MessageType, PROTOCOL_VERSION, type Frame, type Json } from './frames.js';
import type { PeerTransport } from './transport.js';

export interface PeerServerOptions {
  readonly tree: MarsTree;
  /** Where the daemon keeps its NBD sockets (for the sync view). */
  readonly runDir: string;
  readonly log: (line: string) => void;
  /** Periodic rescan of the tree watcher, ms; 0 for none (see subscribe). @default 0 */
  readonly rescanMs?: number;
}

/**
 * JSON bytes of tree rows one TREE_ENTRIES frame carries: under MAX_JSON_BYTES with room
 * for the envelope. A count limit is not enough: 2000 rows of a 1000-resource tree came
 * to 130 KB, the frame was refused, and the peer-serve died on every burst of changes.
 */
const ROW_BYTES_PER_FRAME = MAX_JSON_BYTES - 1024;
/** A kept logical device view is closed after this long without requests. */
const VIEW_IDLE_MS = 2000;
const MAX_WAIT_MS = 5000;
const MAX_DIGEST_BLOCKS = MAX_PAYLOAD_BYTES / DIGEST_BYTES;
const LOG_NAME = new RegExp(`^log-[0-9]{9}-${NAME_SOURCE}$`);

export type TreeRow = [string, string | null, number];

export class PeerServer {
  private client: string | null = null;
  /**
   * The tree watcher, started by the first subscription. A promise, so that a second
   * subscription arriving while the first one's watcher still lists the tree waits for
   * that watcher instead of starting another (which nothing would ever close).
   */
  private watcher: Promise<TreeWatcher> | null = null;
  private readonly logFiles = new LogFiles();
  private connection!: PeerConnection;
  private readonly views: DeviceViews;
  /**
   * What this connection was sent of each key (stamp and value): a periodic resync with
   * `unsent` then costs the client only the rows the watcher failed to deliver.
   */
  private readonly sent = new Map<string, string>();

  constructor(private readonly opts: PeerServerOptions) {
    this.views = new DeviceViews(opts.runDir);
  }

  /** Serve one connection until it closes. */
  async serve(transport: PeerTransport): Promise<void> {
    this.connection = new PeerConnection(transport, {
      peer: 'client',
      log: this.opts.log,
      idleTimeoutMs: 60_000,
      onRequest: (frame) => this.handle(frame),
    });
    await this.connection.closed;
    // A watcher still starting is closed once it has started; one that failed to start has nothing to close.
    (await this.watcher?.catch(() => null))?.close();
    await this.views.closeAll();
    await this.logFiles.closeAll();
  }

  private async handle(frame: Frame): Promise<OutgoingFrame[]> {
    if (frame.type === MessageType.HELLO) return [await this.hello(frame.json)];
    if (this.client === null) throw new RemoteError('HELLO first', 'EPHOBOS_PROTO');
    switch (frame.type) {
      case MessageType.TREE_SUBSCRIBE: return this.subscribe(frame.json);
      case MessageType.LOG_LIST: return [await this.logList(frame.json)];
      case MessageType.LOG_READ: return [await this.logRead(frame.json)];
      case MessageType.DIGESTS: return [await this.digests(frame.json)];
      case MessageType.BLOCKS_READ: return [await this.blocks(frame.json)];
      default: throw new RemoteError(`request type ${frame.type} is not served`, 'EPHOBOS_PROTO');
    }
  }

  private refuse(why: string, code = 'EPHOBOS_PEER'): never {
    this.opts.log(`peer ${this.client ?? '(unknown)'}: refused: ${why}`);
    setImmediate(() => this.connection.close());
    throw new RemoteError(why, code);
  }

  private async hello(json: Json): Promise<OutgoingFrame> {
    const tree = this.opts.tree;
    const host = String(json['host'] ?? '');
    const uuid = await tree.getValue(UUID_KEY);
    if (json['proto'] !== PROTOCOL_VERSION) this.refuse(`${host || 'client'} speaks protocol ${String(json['proto'])}, this host ${PROTOCOL_VERSION}`);
    if (json['cluster'] !== uuid) this.refuse(`${host || 'client'} belongs to cluster ${String(json['cluster'])}, this host to ${uuid}`);
    if (!isValidName(host) || (await tree.getValue(ipKey(host))) === undefined) {
      this.refuse(`'${host}' is not a member of cluster ${uuid} (no ips/ip-${host} here)`);
    }
    this.client = host;
    return { type: MessageType.HELLO, json: { proto: PROTOCOL_VERSION, cluster: uuid, host: tree.host, features: [] } };
  }

  private async subscribe(json: Json): Promise<OutgoingFrame[]> {
    const since = numberField(json, 'since', 0);
    // `unsent`: the client's periodic safety net. It holds what this connection sent, so
    // only rows that differ from that (a change the watcher missed) need to travel; at
    // 1000 resources a full answer is ~35k rows that both sides handle for nothing.
    const unsent = json['unsent'] === true;
    const starting = this.watcher === null;
    if (starting) {
      // Watch first, then list: a change in between is sent twice, never lost. The
      // watcher's initial scan is the listing.
      let batch: TreeRow[] = [];
      const start = this.watcher = TreeWatcher.start({
        root: this.opts.tree.root,
        // No periodic rescan by default: the client resubscribes every 5 minutes, and
        // that rescans here (below) and delivers whatever the watcher missed. Rescans
        // after a burst still run.
        rescanMs: this.opts.rescanMs ?? 0,
        onChange: (c) => {
          if (c.kind !== 'set') return;
          if (batch.length === 0) setImmediate(() => this.flushDeltas(batch.splice(0)));
          batch.push([c.key, c.value, c.stamp]);
        },
      });
      // A watcher that failed to start is tried again by the next subscription.
      start.catch(() => {
        if (this.watcher === start) this.watcher = null;
      });
    }
    const watcher = await this.watcher!;
    // A running watcher's state is the listing, once brought up to date with the disk: for
    // `unsent` only directories that moved are read again (a few thousand stats at 1000
    // resources instead of reading ~35k links); a full resubscription reads every link.
    if (!starting) await watcher.rescan({ full: !unsent });
    const rows: TreeRow[] = [];
    for (const e of watcher.entries().values()) {
      if (e.stamp > since && (!unsent || this.sent.get(e.key) !== sentTag(e.stamp, e.value))) rows.push(toRow(e));
    }
    this.noteSent(rows);
    const chunks = packRows(rows);
    if (chunks.length === 0) chunks.push([]);
    return chunks.map((entries) => ({ type: MessageType.TREE_ENTRIES, json: { snapshot: true, entries } }));
  }

  private flushDeltas(rows: TreeRow[]): void {
    this.noteSent(rows);
    for (const entries of packRows(rows)) this.connection.notify(MessageType.TREE_ENTRIES, { snapshot: false, entries });
  }

  private noteSent(rows: readonly TreeRow[]): void {
    for (const [key, value, stamp] of rows) this.sent.set(key, sentTag(stamp, value));
  }

  private resourceDir(json: Json): string {
    const res = json['res'];
    if (typeof res !== 'string' || !isValidName(res)) this.refuse(`bad resource name ${JSON.stringify(res)}`, 'EPHOBOS_PATH');
    return path.join(this.opts.tree.root, `resource-${res}`);
  }

  private async logList(json: Json): Promise<OutgoingFrame> {
    const dir = this.resourceDir(json);
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => LOG_NAME.test(n)).sort();
    const logs: [string, number][] = [];
    for (const name of names) {
      const st = await stat(path.join(dir, name)).catch(() => null);
      if (st?.isFile()) logs.push([name, st.size]);
    }
    return { type: MessageType.LOG_LIST_REPLY, json: { logs } };
  }

  private async logRead(json: Json): Promise<OutgoingFrame> {
    const dir = this.resourceDir(json);
    const name = json['name'];
    if (typeof name !== 'string' || !LOG_NAME.test(name)) this.refuse(`bad log name ${JSON.stringify(name)}`, 'EPHOBOS_PATH');
    const offset = numberField(json, 'offset', 0);
    const length = Math.min(numberField(json, 'length', MAX_PAYLOAD_BYTES), MAX_PAYLOAD_BYTES);
    const waitMs = Math.min(numberField(json, 'waitMs', 0), MAX_WAIT_MS);
    const file = path.join(dir, name);
    return this.logFiles.use(file, async (handle) => {
      let size = (await handle.stat()).size;
      if (size <= offset && waitMs > 0) size = await waitForGrowth(file, handle, offset, waitMs);
      const n = Math.max(0, Math.min(length, size - offset));
      // Durable here before it leaves: the origin can then never lose bytes a copy holds.
      if (n > 0) await handle.datasync();
      const data = Buffer.allocUnsafe(n);
      let done = 0;
      while (done < n) {
        const { bytesRead } = await handle.read(data, done, n - done, offset + done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      return { type: MessageType.LOG_DATA, json: { offset, size }, payload: data.subarray(0, done) };
    });
  }

  private async deviceRange(json: Json, maxLength: number): Promise<{ res: string; disk: string; offset: number; length: number }> {
    this.resourceDir(json);
    const res = json['res'] as string;
    const disk = await this.opts.tree.getValue(dataKey(res, this.opts.tree.host));
    const size = Number(await this.opts.tree.getValue(sizeKey(res)) ?? 0);
    if (!disk) throw new RemoteError(`resource ${res} has no disk on ${this.opts.tree.host}`, 'ENOENT');
    const offset = numberField(json, 'offset', 0);
    const length = Math.min(numberField(json, 'length', 0), maxLength, Math.max(0, size - offset));
    return { res, disk, offset, length };
  }

  private async digests(json: Json): Promise<OutgoingFrame> {
    const blockBytes = numberField(json, 'blockBytes', 65536);
    if (blockBytes < 4096 || blockBytes > MAX_PAYLOAD_BYTES || blockBytes % 4096) {
      throw new RemoteError(`blockBytes ${blockBytes} must be a multiple of 4096 up to 1 MiB`, 'EINVAL');
    }
    const { res, disk, offset, length } = await this.deviceRange(json, MAX_DIGEST_BLOCKS * blockBytes);
    return this.views.use(res, disk, async (view) => {
      const digests = await digestRange((o, n) => view.read(o, n), offset, length, blockBytes);
      const log = await newestOwnLog(this.opts.tree, res);
      return { type: MessageType.DIGESTS_REPLY, json: { view: view.kind, log }, payload: digests };
    });
  }

  private async blocks(json: Json): Promise<OutgoingFrame> {
    const { res, disk, offset, length } = await this.deviceRange(json, MAX_PAYLOAD_BYTES);
    return this.views.use(res, disk, async (view) => {
      const data = await view.read(offset, length);
      // Measured after the read: the data are no newer than this log position.
      const log = await newestOwnLog(this.opts.tree, res);
      return { type: MessageType.BLOCKS_DATA, json: { view: view.kind, log }, payload: data };
    });
  }
}

/** Log files kept open while idle, at most; more are open while requests use them. */
const IDLE_LOG_FILES = 16;

/**
 * Open log files shared by concurrent reads. A file in use is never closed under its
 * request: with 1000 resources long-polling, a plain 16-entry cache closed handles that
 * waits still held, the next fstat failed, the reply said "size 0", and every secondary
 * took that for a log cut short by a crash and truncated its copy.
 */
class LogFiles {
  private readonly files = new Map<string, { handle: Promise<FileHandle>; users: number }>();

  async use<T>(file: string, fn: (handle: FileHandle) => Promise<T>): Promise<T> {
    let entry = this.files.get(file);
    if (!entry) {
      const handle = open(file, 'r').catch((e: NodeJS.ErrnoException) => {
        throw new RemoteError(`${path.basename(file)}: ${e.code === 'ENOENT' ? 'no such log here' : e.message}`, e.code ?? 'EIO');
      });
      entry = { handle, users: 0 };
    }
    this.files.delete(file);                 // re-inserted last: the Map's order is recency
    this.files.set(file, entry);
    entry.users++;
    try {
      const handle = await entry.handle.catch((error: unknown) => {
        if (this.files.get(file) === entry) this.files.delete(file); // not there yet: open again next time
        throw error;
      });
      return await fn(handle);
    } finally {
      entry.users--;
      this.closeIdle();
    }
  }

  async closeAll(): Promise<void> {
    const entries = [...this.files.values()];
    this.files.clear();
    await Promise.all(entries.map((e) => close(e.handle)));
  }

  /** Close the least recently used idle files beyond IDLE_LOG_FILES. */
  private closeIdle(): void {
    let excess = this.files.size - IDLE_LOG_FILES;
    for (const [file, entry] of this.files) {
      if (excess <= 0) break;
      if (entry.users > 0) continue;
      this.files.delete(file);
      void close(entry.handle);
      excess--;
    }
  }
}

function close(handle: Promise<FileHandle>): Promise<void> {
  return handle.then((h) => h.close()).catch(() => undefined);
}

/**
 * Device views for DIGESTS and BLOCKS_READ. A logical view (the daemon's sync export) is
 * kept open while requests keep coming, so a sync costs one NBD handshake rather than one
 * per request; a read that fails on it (the export went away: no longer primary, daemon
 * restarted) drops it and runs once more on a freshly opened view. A disk view is opened
 * per request, so that a host that has just become primary is read through its export.
 */
class DeviceViews {
  private readonly logical = new Map<string, { view: DeviceView; users: number; idle: NodeJS.Timeout | null }>();

  constructor(private readonly runDir: string) {}

  async use<T>(res: string, disk: string, fn: (view: DeviceView) => Promise<T>): Promise<T> {
    const kept = this.logical.get(res);
    if (kept) {
      try {
        return await this.run(res, kept, fn);
      } catch {
        this.drop(res, kept.view);
      }
    }
    const view = await openDeviceView(this.runDir, res, disk);
    if (view.kind !== 'logical' || this.logical.has(res)) {
      try {
        return await fn(view);
      } finally {
        await view.close();
      }
    }
    const entry = { view, users: 0, idle: null };
    this.logical.set(res, entry);
    return this.run(res, entry, fn);
  }

  async closeAll(): Promise<void> {
    for (const [res, { view }] of [...this.logical]) this.drop(res, view);
  }

  private async run<T>(res: string, entry: { view: DeviceView; users: number; idle: NodeJS.Timeout | null }, fn: (view: DeviceView) => Promise<T>): Promise<T> {
    if (entry.idle) clearTimeout(entry.idle);
    entry.idle = null;
    entry.users++;
    try {
      return await fn(entry.view);
    } finally {
      entry.users--;
      if (entry.users === 0 && this.logical.get(res) === entry) {
        entry.idle = setTimeout(() => this.drop(res, entry.view), VIEW_IDLE_MS);
        entry.idle.unref();
      }
    }
  }

  private drop(res: string, view: DeviceView): void {
    const entry = this.logical.get(res);
    if (entry?.view !== view) return;
    if (entry.idle) clearTimeout(entry.idle);
    this.logical.delete(res);
    void view.close();
  }
}

/** Rows in chunks whose JSON stays within ROW_BYTES_PER_FRAME each. */
export function packRows(rows: readonly TreeRow[]): TreeRow[][] {
  const chunks: TreeRow[][] = [];
  let chunk: TreeRow[] = [], bytes = 0;
  for (const row of rows) {
    const size = Buffer.byteLength(JSON.stringify(row)) + 1;
    if (chunk.length > 0 && bytes + size > ROW_BYTES_PER_FRAME) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(row);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

function sentTag(stamp: number, value: string | null): string {
  return `${stamp} ${value ?? '\0'}`;
}

function toRow(e: TreeEntry): TreeRow {
  return [e.key, e.value, e.stamp];
}

function numberField(json: Json, name: string, fallback: number): number {
  const v = json[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new RemoteError(`field ${name} must be a non-negative integer`, 'EINVAL');
  return v;
}

/** This host's newest log of `res` and its size: `[name, size]`, or null. */
async function newestOwnLog(tree: MarsTree, res: string): Promise<[string, number] | null> {
  const dir = path.join(tree.root, `resource-${res}`);
  const own = (await readdir(dir).catch(() => [] as string[])).filter((n) => LOG_NAME.test(n) && n.slice(14) === tree.host).sort();
  const name = own[own.length - 1];
  if (!name) return null;
  return [name, (await stat(path.join(dir, name))).size];
}

/** Resolves with the file's size once it exceeds `offset`, or after `waitMs`. */
function waitForGrowth(file: string, handle: FileHandle, offset: number, waitMs: number): Promise<number> {
  return new Promise((resolve) => {
    let watcher: FSWatcher | null = null;
    let done = false;
    const check = async (final: boolean): Promise<void> => {
      if (done) return;
      const size = (await handle.stat().catch(() => ({ size: 0 }))).size;
      if (size > offset || final) {
        done = true;
        clearInterval(poll);
        clearTimeout(timeout);
        watcher?.close();
        resolve(size);
      }
    };
    try {
      watcher = watch(file, () => void check(false));
      watcher.on('error', () => undefined);
    } catch {
      watcher = null;
    }
    const poll = setInterval(() => void check(false), 100);
    const timeout = setTimeout(() => void check(true), waitMs);
  });
}
