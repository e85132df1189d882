/**
 * A resource on a secondary: fetch the logs from peers, verify and replay them into the
 * local disk in order, switch logs along the version chain, and run a fast full sync when
 * the disk is not yet a copy. docs/replication.md is the design; this file is its loops:
 *
 *  - fetch loop: pulls the bytes the local copy of the current log lacks (and of the next
 *    one once the current is complete), preferring the log's origin;
 *  - replay loop: applies verified records from the copy; a record that fails
 *    verification is never applied: the copy is fetched again from offset 0, and if the
 *    same log fails again the replica stops with DefectiveLog;
 *  - sync loop: compares block digests with the primary and copies the blocks that
 *    differ, one chunk at a time, under the same mutex as replay steps.
 */
import { constants } from 'node:fs';
import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { replayLog, scanFileBatch } from '../dataplane/index.js';
import { digestBlocks, MAX_PAYLOAD_BYTES, MessageType, type PeerConnection, type PeerManager } from '../peer/index.js';
import {
  actualKey, primaryKey, replayKey, resourceKey, todoKey, versionKey, type MarsTree,
} from '../tree/index.js';
import {
  comparePositions, parseLogName, parsePositionValue, parseReplayValue, positionValue, replayValue, type LogPosition,
} from './log_names.js';
import { Mutex, Signal } from './signal.js';
import { parseVersion, versionValue } from './versions.js';

export interface ReplicaOptions {
  readonly tree: MarsTree;
  readonly resource: string;
  readonly disk: string;
  readonly sizeBytes: number;
  readonly peers: PeerManager;
  readonly log: (line: string) => void;
  /** Called (throttled by the caller) when status() changed. */
  readonly onStatus: () => void;
}

/** What the replica publishes in actual-<host>/*. */
export interface ReplicaStatus {
  readonly fetching: boolean;
  readonly replaying: boolean;
  readonly syncing: boolean;
  /** `log,<bytes>` of the local copy being fetched. */
  readonly fetchPos: string;
  /** 0, or `-<n>,<Reason>: <detail>` when replication stopped on an error. */
  readonly replayCode: string;
  /** Origin log position replay must pass before the disk is consistent, or '(none)'. */
  readonly syncTarget: string;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const READ_BYTES = MAX_PAYLOAD_BYTES;
const READ_WINDOW = 8;
const LONG_POLL_MS = 1000;
const SAVE_INTERVAL_MS = 500;
const SYNC_CHUNK_BYTES = 16 << 20;
export const SYNC_BLOCK_BYTES = 64 << 10;

export class Replica {
  private stopped = false;
  private readonly wake = new Signal();
  private readonly mutex = new Mutex();
  private tasks: Promise<void>[] = [];
  /** Verified, contiguous bytes of each local log copy. */
  private readonly fetched = new Map<string, number>();
  /** Logs fetched again after a verification failure (log -> fault offset). */
  private readonly refetched = new Map<string, number>();
  private pos: LogPosition | null = null;
  private nextSeq = 0;
  private savedAt = 0;
  private savedValue = '';
  private nextLogName: string | null = null;
  private state: Mutable<ReplicaStatus> = { fetching: false, replaying: false, syncing: false, fetchPos: '(none)', replayCode: '0', syncTarget: '(none)' };
  private syncTarget: LogPosition | null = null;

  constructor(private readonly opts: ReplicaOptions) {}

  get resource(): string {
    return this.opts.resource;
  }

  status(): ReplicaStatus {
    return { ...this.state };
  }

  start(): void {
    this.tasks = [this.guard('fetch', () => this.fetchLoop()), this.guard('replay', () => this.replayLoop()),
      this.guard('sync', () => this.syncLoop())];
  }

  /** The tree changed: re-read switches, versions, the primary. */
  kick(): void {
    this.wake.notify();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake.notify();
    await Promise.all(this.tasks);
    await this.savePosition(true).catch(() => undefined);
  }

  // ---------------------------------------------------------------- tree reads

  private get host(): string {
    return this.opts.tree.host;
  }

  private value(key: string): Promise<string | undefined> {
    return this.opts.tree.getValue(key);
  }

  private async switchOn(name: 'connect' | 'allow-replay' | 'sync'): Promise<boolean> {
    return (await this.value(todoKey(this.resource, this.host, name))) === '1';
  }

  private copyPath(log: string): string {
    return path.join(this.opts.tree.root, `resource-${this.resource}`, log);
  }

  /** End offset of log `log` if its origin has sealed it (version-<seq>-<origin>). */
  private async sealedLength(log: string): Promise<number | null> {
    const name = parseLogName(log);
    if (!name) return null;
    const v = parseVersion(await this.value(versionKey(this.resource, name.seq, name.origin)));
    return v && v.log === log ? v.offset : null;
  }

  private async position(): Promise<LogPosition | null> {
    if (!this.pos) this.pos = parseReplayValue(await this.value(replayKey(this.resource, this.host)));
    return this.pos;
  }

  /** The connection to fetch from: the origin if up, else the designated primary, else anyone. */
  private async source(origin: string): Promise<PeerConnection | null> {
    const primary = await this.value(primaryKey(this.resource));
    for (const host of [origin, primary]) {
      const conn = host && host !== this.host ? this.opts.peers.link(host)?.connection : null;
      if (conn) return conn;
    }
    for (const link of this.opts.peers.all()) if (link.connection) return link.connection;
    return null;
  }

  private setState(patch: Partial<ReplicaStatus>): void {
    const before = JSON.stringify(this.state);
    Object.assign(this.state, patch);
    if (JSON.stringify(this.state) !== before) this.opts.onStatus();
  }

  private async guard(what: string, loop: () => Promise<void>): Promise<void> {
    while (!this.stopped) {
      try {
        await loop();
      } catch (e) {
        this.opts.log(`resource ${this.resource}: ${what}: ${(e as Error).message}`);
        await this.wake.wait(1000);
      }
    }
  }

  // ---------------------------------------------------------------- fetch

  private async fetchLoop(): Promise<void> {
    while (!this.stopped) {
      const pos = await this.position();
      if (!pos || this.state.replayCode !== '0' || !(await this.switchOn('connect'))) {
        this.setState({ fetching: false });
        await this.wake.wait(1000);
        continue;
      }
      const target = await this.fetchTarget(pos);
      const origin = target ? parseLogName(target)!.origin : '';
      const conn = target && origin !== this.host ? await this.source(origin) : null;
      if (!target || !conn) {
        this.setState({ fetching: false });
        await this.wake.wait(target && origin !== this.host ? 500 : 1000);
        continue;
      }
      this.setState({ fetching: true });
      await this.fetchSome(conn, target);
    }
    this.setState({ fetching: false });
  }

  /** The log to fetch: the replay log until it is complete here, then the next one. */
  private async fetchTarget(pos: LogPosition): Promise<string | null> {
    const sealed = await this.sealedLength(pos.log);
    const have = await this.verifiedLength(pos.log, pos.offset);
    if (sealed === null || have < sealed) return pos.log;
    if (!this.nextLogName || parseLogName(this.nextLogName)!.seq !== parseLogName(pos.log)!.seq + 1) {
      this.nextLogName = await this.findNextLog(pos.log);
    }
    if (!this.nextLogName) return null;
    const nextSealed = await this.sealedLength(this.nextLogName);
    const nextHave = await this.verifiedLength(this.nextLogName, 0);
    return nextSealed !== null && nextHave >= nextSealed ? null : this.nextLogName;
  }

  /**
   * Verified bytes of the local copy: on first use, scan it from `from` (a known record
   * boundary) and cut whatever follows the last complete record (a crash's leftovers).
   */
  private async verifiedLength(log: string, from: number): Promise<number> {
    const known = this.fetched.get(log);
    if (known !== undefined) return known;
    const file = this.copyPath(log);
    const size = (await stat(file).catch(() => null))?.size ?? 0;
    let good = 0;
    if (size > from) {
      let at = from;
      for (;;) {
        const r = await scanFileBatch(file, { from: at, final: false, maxRecords: 4096 });
        at = r.position;
        if (r.status !== 'limit') break;
      }
      good = at;
    } else if (size === from) {
      good = from;
    }
    if (size > good) {
      const h = await open(file, 'r+');
      await h.truncate(good);
      await h.close();
    }
    this.fetched.set(log, good);
    return good;
  }

  /** Fetch what is there now (a window of reads), or long-poll once at the end. */
  private async fetchSome(conn: PeerConnection, log: string): Promise<void> {
    const res = this.resource;
    const file = this.copyPath(log);
    const handle = await open(file, constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      let have = this.fetched.get(log) ?? 0;
      const sealed = await this.sealedLength(log);
      const first = await conn.call(MessageType.LOG_READ, { res, name: log, offset: have, length: READ_BYTES, waitMs: sealed === null ? LONG_POLL_MS : 0 });
      let remote = Number(first.json['size']);
      if (remote < have) {
        await this.originShrank(log, remote, handle);
        return;
      }
      have = await this.store(handle, log, have, first.payload);
      if (first.payload.length === 0) return;
      // The origin has more: a window of reads in flight, written in order.
      let next = have;
      const inflight: { offset: number; reply: ReturnType<PeerConnection['call']> }[] = [];
      while (!this.stopped) {
        const limit = sealed === null ? remote : Math.min(remote, sealed);
        while (inflight.length < READ_WINDOW && next < limit) {
          const length = Math.min(READ_BYTES, limit - next);
          inflight.push({ offset: next, reply: conn.call(MessageType.LOG_READ, { res, name: log, offset: next, length, waitMs: 0 }) });
          next += length;
        }
        const head = inflight.shift();
        if (!head) break;
        const reply = await head.reply;
        remote = Math.max(remote, Number(reply.json['size']));
        if (head.offset !== have || reply.payload.length === 0) break;
        have = await this.store(handle, log, have, reply.payload);
      }
      await Promise.allSettled(inflight.map((r) => r.reply));
    } finally {
      await handle.close();
    }
  }

  private async store(handle: FileHandle, log: string, at: number, data: Buffer): Promise<number> {
    if (data.length === 0) return at;
    let done = 0;
    while (done < data.length) done += (await handle.write(data, done, data.length - done, at + done)).bytesWritten;
    const have = at + data.length;
    this.fetched.set(log, have);
    this.setState({ fetchPos: positionValue({ log, offset: have }) });
    this.wake.notify();
    return have;
  }

  /** The origin's file is shorter than our copy: it cut a torn tail after a crash. */
  private async originShrank(log: string, remote: number, handle: FileHandle): Promise<void> {
    const pos = await this.position();
    const from = pos && pos.log === log ? pos.offset : 0;
    this.fetched.delete(log);
    await handle.truncate(Math.max(from, Math.min(remote, (await handle.stat()).size)));
    const good = await this.verifiedLength(log, from);
    this.opts.log(`resource ${this.resource}: ${log} is shorter on its origin (${remote} bytes); local copy cut to ${good}`);
  }

  /** Log <seq+1> from any peer; two origins for it is a split brain. */
  private async findNextLog(log: string): Promise<string | null> {
    const seq = parseLogName(log)!.seq + 1;
    const found = new Set<string>();
    for (const link of this.opts.peers.all()) {
      const conn = link.connection;
      if (!conn) continue;
      const reply = await conn.call(MessageType.LOG_LIST, { res: this.resource }).catch(() => null);
      const logs = (reply?.json['logs'] ?? []) as [string, number][];
      for (const [name] of logs) if (parseLogName(name)?.seq === seq) found.add(name);
    }
    const local = await stat(this.copyPath(`log-${String(seq).padStart(9, '0')}-${this.host}`)).catch(() => null);
    if (local) found.add(`log-${String(seq).padStart(9, '0')}-${this.host}`);
    if (found.size > 1) {
      this.fail(-3, 'SplitBrain', `log ${seq} exists with origins ${[...found].map((n) => parseLogName(n)!.origin).join(' and ')}`);
      return null;
    }
    return found.size ? [...found][0]! : null;
  }

  // ---------------------------------------------------------------- replay

  private async replayLoop(): Promise<void> {
    while (!this.stopped) {
      const pos = await this.position();
      if (!pos || this.state.replayCode !== '0' || !(await this.switchOn('allow-replay'))) {
        this.setState({ replaying: false });
        await this.wake.wait(1000);
        continue;
      }
      this.setState({ replaying: true });
      const sealed = await this.sealedLength(pos.log);
      const origin = parseLogName(pos.log)!.origin;
      const avail = origin === this.host
        ? (await stat(this.copyPath(pos.log)).catch(() => null))?.size ?? 0
        : await this.verifiedLength(pos.log, pos.offset);
      if (pos.offset >= avail) {
        if (sealed !== null && pos.offset >= sealed) {
          await this.switchLog(pos, sealed);
        } else {
          await this.savePosition(false);
          await this.wake.wait(1000);
        }
        continue;
      }
      await this.replayStep(pos, avail, sealed);
    }
    this.setState({ replaying: false });
  }

  private async replayStep(pos: LogPosition, avail: number, sealed: number | null): Promise<void> {
    const final = sealed !== null && avail >= sealed;
    const result = await this.mutex.run(() => replayLog(this.copyPath(pos.log), this.opts.disk, {
      from: pos.offset, to: final ? 0 : avail, expectSeq: this.nextSeq, final,
    }));
    const bad = result.status === 'corrupt' || result.status === 'damaged' || (final && result.status === 'torn');
    if (result.position > pos.offset) {
      this.pos = { log: pos.log, offset: result.position };
      this.nextSeq = result.nextSeq;
      await this.savePosition(false);
    }
    if (bad) {
      await this.verificationFailed(pos.log, result.fault?.offset ?? result.position, result.fault?.reason ?? result.status);
    } else if (result.position === pos.offset) {
      await this.wake.wait(200); // a record still being fetched
    }
  }

  /** A record failed verification: fetch the copy again, or stop if that was done already. */
  private async verificationFailed(log: string, offset: number, reason: string): Promise<void> {
    const origin = parseLogName(log)!.origin;
    if (this.refetched.has(log) || origin === this.host) {
      this.fail(-2, 'DefectiveLog', `${log} at offset ${offset}: ${reason}`);
      return;
    }
    this.opts.log(`resource ${this.resource}: ${log} fails verification at offset ${offset} (${reason}); fetching it again from offset 0`);
    this.refetched.set(log, offset);
    await this.mutex.run(async () => {
      await rm(this.copyPath(log), { force: true });
      this.fetched.set(log, 0);
    });
    this.wake.notify();
  }

  private fail(code: number, reason: string, detail: string): void {
    this.opts.log(`resource ${this.resource}: replication stopped: ${reason}: ${detail}`);
    this.setState({ replayCode: `${code},${reason}: ${detail}`, replaying: false, fetching: false });
  }

  /** Log done: publish our version link (it must match the origin's), move to the next log. */
  private async switchLog(pos: LogPosition, sealed: number): Promise<void> {
    const name = parseLogName(pos.log)!;
    const tree = this.opts.tree;
    const mine = versionValue(await this.value(versionKey(this.resource, name.seq - 1, this.host)), pos.log, sealed);
    const theirs = parseVersion(await this.value(versionKey(this.resource, name.seq, name.origin)));
    if (name.origin !== this.host && theirs && theirs.digest !== parseVersion(mine)!.digest) {
      this.fail(-3, 'VersionMismatch', `version-${String(name.seq).padStart(9, '0')} of ${this.host} differs from ${name.origin}'s: the histories diverged (split brain?)`);
      return;
    }
    if ((await this.value(versionKey(this.resource, name.seq, this.host))) !== mine) {
      await tree.set(versionKey(this.resource, name.seq, this.host), mine);
    }
    const next = this.nextLogName && parseLogName(this.nextLogName)!.seq === name.seq + 1
      ? this.nextLogName : await this.findNextLog(pos.log);
    if (!next) {
      await this.wake.wait(1000);
      return;
    }
    this.pos = { log: next, offset: 0 };
    this.nextSeq = 1;
    await this.savePosition(true);
    this.opts.log(`resource ${this.resource}: ${pos.log} replayed (${sealed} bytes); now ${next}`);
  }

  private async savePosition(force: boolean): Promise<void> {
    if (!this.pos) return;
    const value = replayValue(this.pos);
    if (value === this.savedValue) return;
    if (!force && Date.now() - this.savedAt < SAVE_INTERVAL_MS) return;
    await this.opts.tree.set(replayKey(this.resource, this.host), value);
    this.savedValue = value;
    this.savedAt = Date.now();
    this.updateConsistency();
  }

  // ---------------------------------------------------------------- fast full sync

  private async syncLoop(): Promise<void> {
    const syncKey = resourceKey(this.resource, `syncstatus-${this.host}`);
    this.syncTarget = parsePositionValue(await this.value(actualKey(this.resource, this.host, 'sync-target')));
    if (this.syncTarget) this.setState({ syncTarget: positionValue(this.syncTarget) });
    while (!this.stopped) {
      const done = Number((await this.value(syncKey)) ?? this.opts.sizeBytes);
      const primary = await this.value(primaryKey(this.resource));
      const conn = primary && primary !== this.host ? this.opts.peers.link(primary)?.connection : null;
      if (done >= this.opts.sizeBytes || this.state.replayCode !== '0' || !conn || !(await this.switchOn('sync'))) {
        this.setState({ syncing: false });
        await this.wake.wait(1000);
        continue;
      }
      if (done === 0 && !this.state.syncing) this.opts.log(`resource ${this.resource}: fast full sync from ${primary} starts`);
      this.setState({ syncing: true });
      const length = Math.min(SYNC_CHUNK_BYTES, this.opts.sizeBytes - done);
      const stats = await this.mutex.run(() => this.syncChunk(conn, done, length));
      this.syncStats.bytesCompared += length;
      this.syncStats.bytesSent += stats.sent;
      if (stats.target && (!this.syncTarget || comparePositions(stats.target, this.syncTarget) > 0)) {
        this.syncTarget = stats.target;
        await this.opts.tree.set(actualKey(this.resource, this.host, 'sync-target'), positionValue(stats.target));
      }
      await this.opts.tree.set(actualKey(this.resource, this.host, 'sync-sent'), String(this.syncStats.bytesSent));
      await this.opts.tree.set(syncKey, String(done + length));
      if (done + length >= this.opts.sizeBytes) {
        this.opts.log(`resource ${this.resource}: fast full sync done: ${this.syncStats.bytesSent} of ${this.syncStats.bytesCompared} bytes differed` +
          (this.syncTarget ? `; consistent once replay passes ${positionValue(this.syncTarget)}` : ''));
        this.setState({ syncing: false });
      }
      this.updateConsistency();
    }
  }

  /** Bytes compared and sent by this run of the sync (for logs and the sync benchmark). */
  readonly syncStats = { bytesCompared: 0, bytesSent: 0 };

  /** One chunk: digests both sides, fetch the differing blocks, write them, sync the disk. */
  private async syncChunk(conn: PeerConnection, offset: number, length: number): Promise<{ sent: number; target: LogPosition | null }> {
    const res = this.resource;
    let target: LogPosition | null = null;
    const note = (log: unknown): void => {
      if (!Array.isArray(log)) return;
      const p = { log: String(log[0]), offset: Number(log[1]) };
      if (parseLogName(p.log) && (!target || comparePositions(p, target) > 0)) target = p;
    };
    const remote = await conn.call(MessageType.DIGESTS, { res, offset, length, blockBytes: SYNC_BLOCK_BYTES });
    note(remote.json['log']);
    const disk = await open(this.opts.disk, 'r+');
    try {
      const local = Buffer.alloc(length);
      await disk.read(local, 0, length, offset);
      const mine = digestBlocks(local, SYNC_BLOCK_BYTES);
      const runs = differingRuns(remote.payload, mine, offset, length);
      let sent = 0;
      for (let i = 0; i < runs.length; i += READ_WINDOW) {
        const batch = runs.slice(i, i + READ_WINDOW);
        const replies = await Promise.all(batch.map((r) => conn.call(MessageType.BLOCKS_READ, { res, offset: r.offset, length: r.length })));
        for (let j = 0; j < batch.length; j++) {
          const data = replies[j]!.payload;
          note(replies[j]!.json['log']);
          await disk.write(data, 0, data.length, batch[j]!.offset);
          sent += data.length;
        }
      }
      if (sent) await disk.datasync();
      return { sent, target };
    } finally {
      await disk.close();
    }
  }

  /** Consistent: synced, and replay has passed the primary's position at sync end. */
  private updateConsistency(): void {
    if (!this.syncTarget || !this.pos || this.state.syncing) return;
    if (comparePositions(this.pos, this.syncTarget) >= 0) {
      this.syncTarget = null;
      this.setState({ syncTarget: '(none)' });
      void this.opts.tree.set(actualKey(this.resource, this.host, 'sync-target'), '(none)').catch(() => undefined);
    }
  }
}

/** Ranges (at most 1 MiB each) of blocks whose digests differ. */
function differingRuns(theirs: Buffer, mine: Buffer, offset: number, length: number): { offset: number; length: number }[] {
  const runs: { offset: number; length: number }[] = [];
  const blocks = Math.ceil(length / SYNC_BLOCK_BYTES);
  for (let i = 0; i < blocks; i++) {
    if (theirs.subarray(i * 16, i * 16 + 16).equals(mine.subarray(i * 16, i * 16 + 16))) continue;
    const start = offset + i * SYNC_BLOCK_BYTES;
    const len = Math.min(SYNC_BLOCK_BYTES, offset + length - start);
    const last = runs[runs.length - 1];
    if (last && last.offset + last.length === start && last.length + len <= MAX_PAYLOAD_BYTES) last.length += len;
    else runs.push({ offset: start, length: len });
  }
  return runs;
}
