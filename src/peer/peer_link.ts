/**
 * The daemon's side of one peer: keeps a connection to the peer's `peer-serve` open
 * (reconnecting with backoff), says HELLO, subscribes to the peer's tree and merges what
 * arrives into the local tree. Replication borrows the open connection for its requests.
 */
import { UUID_KEY, type MarsTree, type TreeEntry } from '../tree/index.js';
import { PeerConnection } from './connection.js';
import { MessageType, PROTOCOL_VERSION, type Frame } from './frames.js';
import type { PeerAddress, TransportFactory } from './transport.js';

export interface PeerLinkOptions {
  readonly tree: MarsTree;
  readonly peer: PeerAddress;
  readonly factory: TransportFactory;
  readonly log: (line: string) => void;
  /** Called after entries from this peer were merged (some may have changed nothing). */
  readonly onMerged?: (applied: readonly TreeEntry[]) => void;
  /** Called when the link comes up or goes down. */
  readonly onState?: (up: boolean) => void;
  /** @default 10000 */
  readonly pingIntervalMs?: number;
  /** Resubscribe from 0 this often (safety net), ms. @default 300000 */
  readonly resyncIntervalMs?: number;
  /** What the local tree holds, from memory (the daemon's TreeState); see mergeable(). */
  readonly known?: KnownEntry;
}

/** A key's value and stamp in the local tree, or undefined if unknown. */
export type KnownEntry = (key: string) => { value: string | null; stamp: number } | undefined;

const BACKOFF_MIN_MS = 200;
const BACKOFF_MAX_MS = 10_000;
/**
 * Of the periodic resyncs (every 5 minutes), every 12th (hourly) asks for the whole tree;
 * the others only for rows the connection was not sent (TREE_SUBSCRIBE `unsent`).
 */
const FULL_RESYNC_EVERY = 12;

export class PeerLink {
  private conn: PeerConnection | null = null;
  private stopped = false;
  private backoffMs = BACKOFF_MIN_MS;
  private retryTimer: NodeJS.Timeout | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;
  /** Highest stamp received from this peer: where a reconnect resumes. */
  private since = 0;
  /** Periodic resyncs so far (FULL_RESYNC_EVERY). */
  private resyncs = 0;
  private mergeChain: Promise<void> = Promise.resolve();
  private waiters: (() => void)[] = [];
  private lastError = '';
  /** Stamp (ms) of the last successful connect, for view. */
  connectedAt = 0;

  constructor(private readonly opts: PeerLinkOptions) {}

  get host(): string {
    return this.opts.peer.host;
  }

  get address(): string {
    return this.opts.peer.address;
  }

  /** The open, greeted connection, or null. */
  get connection(): PeerConnection | null {
    return this.conn && !this.conn.isClosed ? this.conn : null;
  }

  get error(): string {
    return this.lastError;
  }

  start(): void {
    void this.connect();
    this.resyncTimer = setInterval(() => void this.resync(), this.opts.resyncIntervalMs ?? 300_000);
    this.resyncTimer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.conn?.close();
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when connected (or at once if connected); false after `timeoutMs`. */
  async waitConnected(timeoutMs: number): Promise<boolean> {
    if (this.connection) return true;
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        resolve(this.connection !== null);
      };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(done);
    });
  }

  /**
   * The periodic safety net: ask for every row the peer's tree holds that this connection
   * was not sent as it is (a change its watcher missed). Every FULL_RESYNC_EVERY-th time
   * the whole tree comes again, which also restores what our own tree lost meanwhile.
   */
  async resync(): Promise<void> {
    const conn = this.connection;
    if (!conn) return;
    const full = ++this.resyncs % FULL_RESYNC_EVERY === 0;
    await this.subscribe(conn, 0, !full).catch((e: Error) => this.opts.log(`peer ${this.host}: resync failed: ${e.message}`));
  }

  /** Entries merged so far are in the tree once this resolves. */
  merged(): Promise<void> {
    return this.mergeChain;
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    let conn: PeerConnection | null = null;
    try {
      const transport = await this.opts.factory(this.opts.peer);
      conn = new PeerConnection(transport, {
        peer: this.host,
        log: this.opts.log,
        pingIntervalMs: this.opts.pingIntervalMs ?? 10_000,
        onMessage: (frame) => this.onMessage(frame),
      });
      if (this.stopped) {
        conn.close();
        return;
      }
      await this.hello(conn);
      this.conn = conn;
      await this.subscribe(conn, this.since);
      this.backoffMs = BACKOFF_MIN_MS;
      this.connectedAt = Date.now();
      if (this.lastError) this.opts.log(`peer ${this.host}: connected (${transport.description})`);
      this.lastError = '';
      this.opts.onState?.(true);
      for (const w of this.waiters.splice(0)) w();
      const reason = await conn.closed;
      this.conn = null;
      this.opts.onState?.(false);
      if (!this.stopped) this.noteError(reason.message);
    } catch (e) {
      conn?.close();
      this.conn = null;
      this.noteError((e as Error).message);
    }
    this.scheduleRetry();
  }

  private noteError(message: string): void {
    if (message !== this.lastError) this.opts.log(`peer ${this.host}: ${message}; retrying`);
    this.lastError = message;
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    const jitter = 0.8 + Math.random() * 0.4;
    const delay = Math.round(this.backoffMs * jitter);
    this.backoffMs = Math.min(BACKOFF_MAX_MS, this.backoffMs * 2);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  private async hello(conn: PeerConnection): Promise<void> {
    const tree = this.opts.tree;
    const uuid = await tree.getValue(UUID_KEY);
    const reply = await conn.call(MessageType.HELLO, { proto: PROTOCOL_VERSION, cluster: uuid, host: tree.host, features: [] });
    const { host, cluster } = reply.json;
    if (host !== this.host) throw new Error(`dialled ${this.host} but ${String(host)} answered; check ips/ip-${this.host}`);
    if (cluster !== uuid) throw new Error(`${this.host} belongs to cluster ${String(cluster)}, not ${uuid}`);
  }

  private async subscribe(conn: PeerConnection, since: number, unsent = false): Promise<void> {
    const frames = await conn.request(MessageType.TREE_SUBSCRIBE, unsent ? { since, unsent } : { since });
    for (const f of frames) this.onMessage(f);
    await this.mergeChain;
  }

  private onMessage(frame: Frame): void {
    if (frame.type !== MessageType.TREE_ENTRIES) return;
    const rows = frame.json['entries'];
    if (!Array.isArray(rows)) return;
    const entries: TreeEntry[] = [];
    for (const r of rows) {
      if (!Array.isArray(r) || typeof r[0] !== 'string' || (r[1] !== null && typeof r[1] !== 'string') || typeof r[2] !== 'number') continue;
      entries.push({ key: r[0], value: r[1], stamp: r[2] });
      if (r[2] > this.since) this.since = r[2];
    }
    if (entries.length) this.mergeChain = this.mergeChain.then(() => this.merge(entries));
  }

  /**
   * The rows that might change the local tree: a row older than what we hold, or the same
   * stamp and value, cannot win the merge. The periodic resync sends the whole tree
   * (35k rows at 1000 resources); merging each costs an lstat and a readlink under the
   * tree lock: 0.55 s of CPU per link on a slow machine every 5 minutes, for nothing when
   * the trees agree.
   */
  private mergeable(entries: TreeEntry[]): TreeEntry[] {
    const known = this.opts.known;
    if (!known) return entries;
    return entries.filter((e) => {
      const local = known(e.key);
      return !local || e.stamp > local.stamp || (e.stamp === local.stamp && e.value !== local.value);
    });
  }

  private async merge(received: TreeEntry[]): Promise<void> {
    const entries = this.mergeable(received);
    if (entries.length === 0) return;
    try {
      const applied = await this.opts.tree.merge(entries);
      this.opts.onMerged?.(applied);
    } catch (e) {
      // One bad entry (a peer with a newer key table, or a bug) must not block the rest.
      this.opts.log(`peer ${this.host}: merge refused (${(e as Error).message}); merging entry by entry`);
      for (const entry of entries) {
        const applied = await this.opts.tree.merge([entry]).catch(() => []);
        if (applied.length) this.opts.onMerged?.(applied);
      }
    }
  }
}
