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
import { open, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { replayLog, scanFileBatch } from '../dataplane/index.js';
import { DIGEST_READ_BYTES, digestRange, readFullyAt } from '../peer/device_view.js';
import type { Json } from '../peer/frames.js';
import { MAX_PAYLOAD_BYTES, MessageType, RemoteError, type Frame, type PeerConnection, type PeerManager } from '../peer/index.js';
import {
  actualKey, primaryKey, replayKey, resourceKey, todoKey, versionKey, type MarsTree,
} from '../tree/index.js';
import {
  comparePositions, parseLogName, parsePositionValue, parseReplayValue, positionValue, replayValue, type LogPosition,
} from './log_names.js';
import { historyEnd } from './history_end.js';
import { Mutex, Signal, untilAborted, waitForAny } from './signal.js';
import { versionValue } from './version_value.js';
import { parseVersion } from './versions.js';

export interface ReplicaOptions {
  readonly tree: MarsTree;
  readonly resource: string;
  readonly disk: string;
  readonly sizeBytes: number;
  readonly peers: PeerManager;
  readonly log: (line: string) => void;
  /** Called (throttled by the caller) when status() changed. */
  readonly onStatus: () => void;
  /**
   * The daemon's in-memory copy of the tree (daemon/tree_state.ts), for keys other hosts
   * and marsadm write: read without a syscall. Idle, every loop of every replica checks a
   * few keys per wake-up, and with 1000 resources those lstat+readlink pairs were most of
   * a secondary's idle CPU. Keys this host owns (which the replica itself writes and reads
   * back) always come from disk. Without it, every key does.
   */
  readonly treeValue?: (key: string) => string | undefined;
}

/** What the daemon tells a running replica on every reconcile pass. */
export interface ReplicaSwitches {
  /** `todo-<host>/connect`: fetch from peers. Off (disconnect) stops fetching at once. */
  readonly connect: boolean;
  /** The /mars fill level is at or past the point where secondaries stop fetching. */
  readonly emergency: boolean;
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
/**
 * Longest sleep of a loop with nothing to do. Tree changes for the resource (switches,
 * version links, the origin's published log end), a peer coming up and fetched bytes wake
 * the loops at once, so this only bounds how long a missed wake-up could delay them. At
 * 30 s, 1000 idle replicas' three loops made 100 loop turns a second, most of a secondary
 * daemon's steady idle cost (bench propagate-ssh: 9-10 ticks of 10 ms per 10 s then, 6 at
 * 120 s in a run where a daemon without resources took 5-6; docs/benchmarks.md). A stalled
 * sync once blamed on this timeout also happened at 30 s, so it was no missed wake-up
 * (docs/benchmarks.md, 2026-12-07). The same for every replica, so replicas started
 * together wake together. Drawn anew within +-25 % for each wait, the secondaries' daemons
 * used ~370 ticks per 300 s instead of ~240 in one run (whole-daemon totals, not profiled;
 * docs/benchmarks.md, 2026-12-08), so the wait stays fixed.
 */
const IDLE_WAIT_MS = 120_000;
/** How long stop() waits at most for the fetch and sync loops to end. */
const STOP_WAIT_MS = 1000;
/** How long the replay loop waits for a peer's list of logs. */
const LIST_TIMEOUT_MS = 3000;
const SAVE_INTERVAL_MS = 500;
/**
 * How long replay's log must look dropped (strandedIn) before replay stops with Orphan,
 * and how often it looks meanwhile: the tree of a host that just came back, and the
 * peers' lists, settle within seconds.
 */
const STRANDED_GRACE_MS = 10_000;
const STRANDED_RECHECK_MS = 2000;
const SYNC_CHUNK_BYTES = 64 << 20;
/** How often the sync writes its progress to the tree (and syncs the disk first). */
const SYNC_PUBLISH_MS = 500;
export const SYNC_BLOCK_BYTES = 64 << 10;

export class Replica {
  private stopped = false;
  /** Aborted by stop(): ends the pending peer requests (peerCall). */
  private readonly stopping = new AbortController();
  /**
   * The tree changed or a loop changed state: every loop re-reads what it needs. One
   * signal per loop, so a wake-up that comes while a loop is busy waits for it (Signal
   * keeps it) instead of being taken by another loop.
   */
  private readonly wake = { fetch: new Signal(), replay: new Signal(), sync: new Signal() };
  /**
   * A local copy grew. Only replay waits for it, and only while it has nothing to apply:
   * fetching 1 GB/s must not make the other loops re-read the tree once per MiB.
   */
  private readonly fetchedMore = new Signal();
  /** Bumped when a copy is deleted for refetching: fetches begun before it stop counting. */
  private copyResets = 0;
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
  private switches: ReplicaSwitches = { connect: true, emergency: false };

  constructor(private readonly opts: ReplicaOptions) {
  }

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
  kick(switches?: ReplicaSwitches): void {
    if (switches) this.switches = switches;
    this.wakeAll();
  }

  /**
   * Fetching is allowed right now. Checked before every reply is stored, so that once
   * `disconnect` has flipped the switch, the copy stops growing within one reply: a
   * forced failover then takes over exactly what was there.
   */
  private mayFetch(): boolean {
    return !this.stopped && this.switches.connect && !this.switches.emergency;
  }

  /**
   * Stop the loops. Replay (local work) is always waited for. Fetch and sync are not
   * waited for on a peer: their pending requests end at once (peerCall), and whatever a
   * request returns later is dropped (mayFetch, and the sync's check before each write).
   * So neither a long poll nor a peer whose link just died (SSH notices only after its
   * keepalives, ~15 s) holds up a handover or a forced failover. STOP_WAIT_MS bounds the
   * rest (a local write in progress).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort(new Error('replica stopped'));
    this.wakeAll();
    const [fetch, replay, sync] = this.tasks;
    await replay; // local work: always finished, so nothing writes the disk or replay-<host> after us
    await Promise.race([Promise.all([fetch, sync]), new Promise((r) => setTimeout(r, STOP_WAIT_MS).unref())]);
    await this.savePosition(true).catch(() => undefined);
  }

  // ---------------------------------------------------------------- tree reads

  private get host(): string {
    return this.opts.tree.host;
  }

  private value(key: string): Promise<string | undefined> {
    if (this.opts.treeValue && !this.ownKey(key)) return Promise.resolve(this.opts.treeValue(key));
    return this.opts.tree.getValue(key);
  }

  /** `.../<name>-<host>` or `actual-<host>/...`: written by this host (maybe by us). */
  private ownKey(key: string): boolean {
    return key.endsWith(`-${this.host}`) || key.includes(`/actual-${this.host}/`);
  }

  private async switchOn(name: 'connect' | 'allow-replay' | 'sync'): Promise<boolean> {
    return (await this.value(todoKey(this.resource, this.host, name))) === '1';
  }

  private copyPath(log: string): string {
    return path.join(this.opts.tree.root, `resource-${this.resource}`, log);
  }

  /**
   * End offset of log `log` in the history we follow: where its origin sealed it
   * (version-<seq>-<origin>), or, when the origin never did (it died and another host
   * was made primary by force), where the designated primary finished it.
   */
  private async sealedLength(log: string): Promise<number | null> {
    const name = parseLogName(log);
    if (!name) return null;
    const own = parseVersion(await this.value(versionKey(this.resource, name.seq, name.origin)));
    if (own && own.log === log) return own.offset;
    const primary = await this.designatedPrimary();
    if (!primary || primary === name.origin) return null;
    const finished = parseVersion(await this.value(versionKey(this.resource, name.seq, primary)));
    return finished && finished.log === log ? finished.offset : null;
  }

  /**
   * The host the tree designates primary, or null: none is (the key is unset, or '(none)'
   * between a handover's leave and become phases).
   */
  private async designatedPrimary(): Promise<string | null> {
    const primary = await this.value(primaryKey(this.resource));
    return primary && primary !== '(none)' ? primary : null;
  }

  private async position(): Promise<LogPosition | null> {
    if (!this.pos) this.pos = parseReplayValue(await this.value(replayKey(this.resource, this.host)));
    return this.pos;
  }

  /**
   * The connection to fetch `log` from: the origin if up, else the designated primary,
   * else anyone; passing over the one that last answered it has no such log (an origin
   * that lost a split brain and was invalidated; the new primary keeps the part of the log
   * its history holds).
   */
  private async source(log: string, origin: string): Promise<PeerConnection | null> {
    const primary = await this.designatedPrimary();
    const lacking = this.lacking?.log === log ? this.lacking.conn : null;
    const usable = (conn: PeerConnection | null | undefined): conn is PeerConnection => !!conn && conn !== lacking;
    for (const host of [origin, primary]) {
      const conn = host && host !== this.host ? this.opts.peers.link(host)?.connection : null;
      if (usable(conn)) return conn;
    }
    for (const link of this.opts.peers.all()) if (usable(link.connection)) return link.connection;
    return lacking;
  }

  /** The last connection that answered a read of `log` with "no such log". */
  private lacking: { log: string; conn: PeerConnection } | null = null;

  /** Every field is a primitive: compare them, no serialising (this runs on every loop turn). */
  private setState(patch: Partial<ReplicaStatus>): void {
    const fields = Object.keys(patch) as (keyof ReplicaStatus)[];
    if (fields.every((k) => this.state[k] === patch[k])) return;
    Object.assign(this.state, patch);
    this.opts.onStatus();
  }

  private wakeAll(): void {
    for (const signal of Object.values(this.wake)) signal.notify();
  }

  private async guard(what: keyof Replica['wake'], loop: () => Promise<void>): Promise<void> {
    while (!this.stopped) {
      try {
        await loop();
      } catch (e) {
        if (this.stopped) break;
        this.logLoopError(what, (e as Error).message);
        await this.wake[what].wait(1000);
      }
    }
  }

  /** The last error each loop logged, and when: a repeat within a minute is not logged again. */
  private readonly loopErrors = new Map<string, { message: string; at: number }>();

  private logLoopError(what: string, message: string): void {
    const last = this.loopErrors.get(what);
    if (last && last.message === message && Date.now() - last.at < 60_000) return;
    this.loopErrors.set(what, { message, at: Date.now() });
    this.opts.log(`resource ${this.resource}: ${what}: ${message}${last?.message === message ? ' (again; repeats within a minute are not logged)' : ''}`);
  }

  // ---------------------------------------------------------------- fetch

  private async fetchLoop(): Promise<void> {
    while (!this.stopped) {
      const pos = await this.position();
      if (!pos || this.state.replayCode !== '0' || !this.mayFetch() || !(await this.switchOn('connect'))) {
        this.setState({ fetching: false });
        await this.wake.fetch.wait(IDLE_WAIT_MS);
        continue;
      }
      const target = await this.fetchTarget(pos);
      if (target && (await this.caughtUpWithOrigin(target))) {
        this.setState({ fetching: false });
        await this.wake.fetch.wait(IDLE_WAIT_MS);
        continue;
      }
      const origin = target ? parseLogName(target)!.origin : '';
      const conn = target && origin !== this.host ? await this.source(target, origin) : null;
      if (!target || !conn) {
        this.setState({ fetching: false });
        await this.wake.fetch.wait(target && origin !== this.host ? 500 : 1000);
        continue;
      }
      this.setState({ fetching: true });
      await this.fetchSome(conn, target).catch((e: unknown) => {
        if (e instanceof RemoteError && e.code === 'ENOENT') this.lacking = { log: target, conn };
        throw e;
      });
    }
    this.setState({ fetching: false });
  }

  /**
   * A long poll on `log` came back empty, and the origin's published log end (the tree's
   * `log-end`, updated within a second of a write) is not past our copy: the origin is
   * idle. Wait for the tree instead of polling again, which would cost both hosts a
   * request per second per resource. A seal past our copy always means more to fetch,
   * whatever `log-end` says: `log-end` is only a hint, and one that arrived late or stale
   * must not leave a handover's catch-up waiting for bytes nobody asks for.
   */
  private async caughtUpWithOrigin(log: string): Promise<boolean> {
    if (this.idleLog !== log) return false;
    const origin = parseLogName(log)!.origin;
    const end = parsePositionValue(await this.value(actualKey(this.resource, origin, 'log-end')));
    const sealed = await this.sealedLength(log);
    const have = this.fetched.get(log) ?? 0;
    if (end && end.log === log && end.offset <= have && (sealed === null || sealed <= have)) return true;
    this.idleLog = null;
    return false;
  }

  /** The log whose last long poll returned nothing (see caughtUpWithOrigin). */
  private idleLog: string | null = null;

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
    // Taken before any await: a refetch reset (copy deleted, length 0) after this point
    // makes everything this call fetched count for nothing.
    const resets = this.copyResets;
    const have = this.fetched.get(log) ?? 0;
    const handle = await open(this.copyPath(log), constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      const sealed = await this.sealedLength(log);
      const first = await this.readLog(conn, log, have, READ_BYTES, sealed === null ? LONG_POLL_MS : 0);
      const remote = Number(first.json['size']);
      if (this.copyResets !== resets || !this.mayFetch()) return;
      if (remote < have) {
        await this.originShrank(log, remote, handle);
        return;
      }
      if (first.payloadLength === 0) {
        if (sealed === null) this.idleLog = log;
        return;
      }
      this.idleLog = null;
      await writeAllAt(handle, first.payloadParts, have);
      if (this.copyResets !== resets) return;
      this.noteFetched(log, have + first.payloadLength);
      await this.fetchWindow(conn, handle, log, { from: have + first.payloadLength, remote, sealed, resets });
    } finally {
      await handle.close();
    }
  }

  private readLog(conn: PeerConnection, log: string, offset: number, length: number, waitMs: number): Promise<Frame> {
    return this.peerCall(conn, MessageType.LOG_READ, { res: this.resource, name: log, offset, length, waitMs });
  }

  /**
   * A request to a peer that stop() does not wait for: a long poll (up to LONG_POLL_MS),
   * or a request on a link that died unnoticed (SSH keepalive, ~15 s), would otherwise
   * hold up a handover's become phase. Its reply, when it comes, goes nowhere.
   */
  private peerCall(conn: PeerConnection, type: MessageType, body: Json): Promise<Frame> {
    return untilAborted(conn.call(type, body), this.stopping.signal);
  }

  /**
   * The origin has more: up to READ_WINDOW reads in flight. Each reply is written as soon
   * as it and every reply before it are in, while later reads keep arriving; writes go in
   * offset order because the replayer scans a copy up to its file size, so a copy must
   * never hold a hole (a later range written before an earlier one): a record read across
   * it would look corrupt. (Concurrent writes would not be faster anyway: a buffered write
   * holds the file's inode lock.) A reply that comes back short ends the window there.
   */
  private async fetchWindow(conn: PeerConnection, handle: FileHandle, log: string, at: FetchStart): Promise<void> {
    let remote = at.remote;
    let next = at.from;
    let have = at.from;
    let ended = false;
    let failure: Error | null = null;
    let previousWrite: Promise<void> = Promise.resolve();
    const slots = new Set<Promise<void>>();
    const limit = (): number => (at.sealed === null ? remote : Math.min(remote, at.sealed));
    const going = (): boolean => failure === null && !ended && this.mayFetch() && this.copyResets === at.resets;
    const fetchOne = async (offset: number, length: number, afterWrite: Promise<void>): Promise<void> => {
      const reply = await this.readLog(conn, log, offset, length, 0);
      remote = Math.max(remote, Number(reply.json['size']));
      await afterWrite;
      if (!going() || offset !== have) return;
      await writeAllAt(handle, reply.payloadParts, offset);
      have = offset + reply.payloadLength;
      if (this.copyResets === at.resets) this.noteFetched(log, have);
      if (reply.payloadLength < length) ended = true; // the origin had less than it said: ask again later
    };
    for (;;) {
      while (going() && slots.size < READ_WINDOW && next < limit()) {
        const length = Math.min(READ_BYTES, limit() - next);
        const slot: Promise<void> = fetchOne(next, length, previousWrite)
          .catch((e: Error) => void (failure ??= e))
          .finally(() => slots.delete(slot));
        slots.add(slot);
        previousWrite = slot;
        next += length;
      }
      if (slots.size === 0) break;
      await Promise.race(slots);
    }
    // A write that failed half way may have left part of its range behind.
    if (failure !== null && this.copyResets === at.resets) await handle.truncate(have);
    if (failure !== null) throw failure;
  }

  /** `have` bytes of the copy of `log` are written and contiguous: replay may use them. */
  private noteFetched(log: string, have: number): void {
    this.fetched.set(log, have);
    this.setState({ fetchPos: positionValue({ log, offset: have }) });
    this.fetchedMore.notify();
  }

  /** Replay has applied all it has: wait for more fetched bytes, a tree change, or ms. */
  private waitForFetch(ms: number): Promise<void> {
    return waitForAny([this.wake.replay, this.fetchedMore], ms);
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
    for (const logs of (await this.peerLogLists()).values()) {
      for (const name of logs) if (parseLogName(name)?.seq === seq) found.add(name);
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
        await this.wake.replay.wait(IDLE_WAIT_MS);
        continue;
      }
      this.setState({ replaying: true });
      const sealed = await this.sealedLength(pos.log);
      const avail = await this.available(pos);
      if (sealed !== null && (await this.beyondHistory(pos, sealed))) continue;
      if (pos.offset >= avail || (sealed !== null && pos.offset >= sealed)) {
        if (sealed !== null && pos.offset >= sealed) {
          await this.switchLog(pos, sealed);
        } else {
          await this.savePosition(false);
          if (await this.stranded(pos)) continue;
          // Until more is fetched; the last position is saved once its interval is over.
          const idle = this.strandedSince > 0 ? STRANDED_RECHECK_MS : IDLE_WAIT_MS;
          await this.waitForFetch(this.savedValue === replayValue(pos) ? idle : SAVE_INTERVAL_MS);
        }
        continue;
      }
      const bad = await this.replayStep(pos, avail, sealed);
      if (bad) await this.verificationFailed(pos.log, bad.offset, bad.reason);
    }
    this.setState({ replaying: false });
  }

  /** Bytes of the local copy replay may use: a copy we fetched is verified first; our own log is ours. */
  private async available(pos: LogPosition): Promise<number> {
    if (parseLogName(pos.log)!.origin === this.host) return (await stat(this.copyPath(pos.log)).catch(() => null))?.size ?? 0;
    return await this.verifiedLength(pos.log, pos.offset);
  }

  /**
   * The history we follow ends `log` at `sealed`, but this host already has more of it on
   * its disk: replay went past that point, or it is our own log and we wrote more (any of
   * it may be on the disk). That is a split brain; replay stops here and never crosses it.
   */
  private async beyondHistory(pos: LogPosition, sealed: number): Promise<boolean> {
    const own = parseLogName(pos.log)!.origin === this.host;
    const mine = own ? await historyEnd(this.copyPath(pos.log), await this.validLength(pos.log)) : await historyEnd(this.copyPath(pos.log), pos.offset);
    if (mine <= sealed) return false;
    const primary = (await this.value(primaryKey(this.resource))) ?? '(none)';
    this.fail(-3, 'SplitBrain', `${this.host} has ${mine - sealed} bytes of ${pos.log} after offset ${sealed}, where ${primary}'s history ends it; ` +
      `marsadm invalidate ${this.resource} here discards them`);
    return true;
  }

  /**
   * Length of the complete records of a log file (a crash may have left a torn tail). A
   * missing file has none: an empty log of ours that invalidate dropped, and that another
   * host's history later took in at offset 0, must not stall replay.
   */
  private async validLength(log: string): Promise<number> {
    if ((await stat(this.copyPath(log)).catch(() => null)) === null) return 0;
    let at = 0;
    for (;;) {
      const r = await scanFileBatch(this.copyPath(log), { from: at, final: false, maxRecords: 4096 });
      at = r.position;
      if (r.status !== 'limit') return at;
    }
  }

  /** Apply what is there; returns the first record that failed verification, if any. */
  private async replayStep(pos: LogPosition, avail: number, sealed: number | null): Promise<{ offset: number; reason: string } | null> {
    const final = sealed !== null && avail >= sealed;
    const result = await this.mutex.run(() => replayLog(this.copyPath(pos.log), this.opts.disk, {
      from: pos.offset, to: final ? sealed : avail, expectSeq: this.nextSeq, final,
    }));
    const bad = result.status === 'corrupt' || result.status === 'damaged' || (final && result.status === 'torn');
    if (result.position > pos.offset) {
      this.pos = { log: pos.log, offset: result.position };
      this.nextSeq = result.nextSeq;
      await this.savePosition(false);
    }
    if (bad) return { offset: result.fault?.offset ?? result.position, reason: result.fault?.reason ?? result.status };
    if (result.position === pos.offset) await this.waitForFetch(200); // a record still being fetched
    return null;
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
      this.copyResets++;
      await rm(this.copyPath(log), { force: true });
      this.fetched.set(log, 0);
    });
    this.wakeAll();
  }

  private fail(code: number, reason: string, detail: string): void {
    this.opts.log(`resource ${this.resource}: replication stopped: ${reason}: ${detail}`);
    this.setState({ replayCode: `${code},${reason}: ${detail}`, replaying: false, fetching: false });
  }

  /** Log done: publish our version link (it must match the origin's), move to the next log. */
  private async switchLog(pos: LogPosition, sealed: number): Promise<void> {
    const name = parseLogName(pos.log)!;
    const mine = await this.writeOwnVersion(pos.log, sealed);
    if (mine === null) return;
    const next = this.nextLogName && parseLogName(this.nextLogName)!.seq === name.seq + 1
      ? this.nextLogName : await this.findNextLog(pos.log);
    if (!next) {
      await this.detectOrphan(name.seq);
      await this.wake.replay.wait(1000);
      return;
    }
    if (!(await this.continuesOurHistory(next, name.seq, mine))) return;
    this.pos = { log: next, offset: 0 };
    this.nextSeq = 1;
    await this.savePosition(true);
    this.opts.log(`resource ${this.resource}: ${pos.log} replayed (${sealed} bytes); now ${next}`);
  }

  /**
   * version-<seq>-<us> for a log replayed to `end`; it must equal the link of whoever
   * ended the log in the history we follow. Returns our link's value, or null after a
   * mismatch (replication stops).
   */
  private async writeOwnVersion(log: string, end: number): Promise<string | null> {
    const name = parseLogName(log)!;
    const mine = versionValue(await this.value(versionKey(this.resource, name.seq - 1, this.host)), log, end);
    const theirs = parseVersion(await this.value(versionKey(this.resource, name.seq, name.origin)));
    if (name.origin !== this.host && theirs && theirs.log === log && theirs.digest !== parseVersion(mine)!.digest) {
      this.fail(-3, 'VersionMismatch', `version-${String(name.seq).padStart(9, '0')} of ${this.host} differs from ${name.origin}'s: the histories diverged (split brain?)`);
      return null;
    }
    if ((await this.value(versionKey(this.resource, name.seq, this.host))) !== mine) {
      await this.opts.tree.set(versionKey(this.resource, name.seq, this.host), mine);
    }
    return mine;
  }

  /**
   * The next log's origin wrote it after ending log `seq` somewhere: its own link for
   * `seq` says where. If that is not where we ended it, the next log continues another
   * history (a split brain): replay stops before it.
   */
  private async continuesOurHistory(next: string, seq: number, mine: string): Promise<boolean> {
    const origin = parseLogName(next)!.origin;
    if (origin === this.host) return true;
    const theirs = parseVersion(await this.value(versionKey(this.resource, seq, origin)));
    if (!theirs) {
      // The link travels in the tree, the log over the data path: give it time to arrive.
      await this.wake.replay.wait(500);
      return false;
    }
    if (theirs.digest === parseVersion(mine)!.digest) return true;
    this.fail(-3, 'SplitBrain', `${next} continues ${origin}'s history, which ended ${theirs.log} at ${theirs.offset}; ` +
      `ours is ${parseVersion(mine)!.log} at ${parseVersion(mine)!.offset}: marsadm invalidate ${this.resource} here discards ours`);
    return false;
  }

  /** Since when replay's log has looked dropped (strandedIn), or 0. */
  private strandedSince = 0;

  /**
   * Replay has applied all it has of `pos.log` and waits for more: has the cluster dropped
   * that log? Then no byte of it will ever come, no version link will end it, and nothing
   * else would say so. Stops replay with Orphan once that holds for STRANDED_GRACE_MS.
   */
  private async stranded(pos: LogPosition): Promise<boolean> {
    const why = await this.strandedIn(pos);
    if (!why) {
      this.strandedSince = 0;
      return false;
    }
    if (this.strandedSince === 0) this.strandedSince = Date.now();
    if (Date.now() - this.strandedSince < STRANDED_GRACE_MS) return false;
    this.strandedSince = 0;
    this.fail(-4, 'Orphan', `${why}: this host follows a log the cluster dropped (as when its origin lost a split brain ` +
      `and was invalidated); marsadm invalidate ${this.resource} copies the disk afresh`);
    return true;
  }

  /**
   * Why `pos.log` looks dropped, or null: the designated primary is another host than the
   * log's origin and writes another log of the same or a later sequence number, and the
   * origin, connected, lists the log no more, nor does any other peer. A handover or a
   * forced failover leave the log on its origin (and on the new primary, which ends it
   * with a version link); only invalidate on the origin deletes it.
   */
  private async strandedIn(pos: LogPosition): Promise<string | null> {
    const name = parseLogName(pos.log)!;
    const primary = await this.designatedPrimary();
    if (name.origin === this.host || !primary || primary === this.host || primary === name.origin) return null;
    const end = parsePositionValue(await this.value(actualKey(this.resource, primary, 'log-end')));
    if (!end || end.log === pos.log || parseLogName(end.log)!.seq < name.seq) return null;
    if (!this.opts.peers.link(name.origin)?.connection) return null; // the origin may still have it
    const lists = await this.peerLogLists();
    if (!lists.has(name.origin) || [...lists.values()].some((logs) => logs.includes(pos.log))) return null;
    return `${pos.log} (replayed to ${pos.offset}) is gone on ${name.origin} and every peer, and ${primary} writes ${end.log}`;
  }

  /**
   * Each connected peer's log names. Bounded: a peer whose link died unnoticed must not
   * hold up replay (and stop()); one that does not answer in time is left out.
   */
  private async peerLogLists(): Promise<Map<string, string[]>> {
    const lists = new Map<string, string[]>();
    await Promise.all(this.opts.peers.all().map(async (link) => {
      const conn = link.connection;
      if (!conn) return;
      const reply = await Promise.race([
        this.peerCall(conn, MessageType.LOG_LIST, { res: this.resource }).catch(() => null),
        new Promise<null>((r) => setTimeout(() => r(null), LIST_TIMEOUT_MS).unref()),
      ]);
      if (reply) lists.set(link.host, ((reply.json['logs'] ?? []) as [string, number][]).map(([n]) => n));
    }));
    return lists;
  }

  /**
   * No peer has log seq+1, yet the designated primary writes a later one: the logs we
   * need were deleted before we got them. Only a full sync helps.
   */
  private async detectOrphan(seq: number): Promise<void> {
    const primary = await this.designatedPrimary();
    if (!primary || primary === this.host || !this.opts.peers.link(primary)?.connection) return;
    const end = parsePositionValue(await this.value(actualKey(this.resource, primary, 'log-end')));
    const endSeq = end ? parseLogName(end.log)!.seq : 0;
    if (endSeq <= seq + 1) return;
    this.fail(-4, 'Orphan', `log ${seq + 1} is gone everywhere, and ${primary} writes log ${endSeq}: marsadm invalidate ${this.resource} copies the disk afresh`);
  }

  /**
   * Forced failover (`primary --force`, after `disconnect`): replay what was fetched and
   * verified here, following complete local logs, and stop there. Run after stop().
   * Returns where this host's history now ends, or null if replay never started.
   */
  async finishLocal(): Promise<LogPosition | null> {
    for (;;) {
      const pos = await this.position();
      if (!pos || this.state.replayCode !== '0') return pos;
      const sealed = await this.sealedLength(pos.log);
      const avail = await this.available(pos);
      const end = sealed === null ? avail : Math.min(avail, sealed);
      if (pos.offset < end) {
        if ((await this.replayStep(pos, end, sealed)) !== null || this.pos!.offset === pos.offset) return this.pos;
        continue;
      }
      const next = sealed !== null && pos.offset >= sealed ? await this.localNextLog(pos.log) : null;
      if (!next || (await this.writeOwnVersion(pos.log, sealed!)) === null) return pos;
      this.pos = { log: next, offset: 0 };
      this.nextSeq = 1;
      await this.savePosition(true);
    }
  }

  /** Log seq+1 if a copy of it is here already. */
  private async localNextLog(log: string): Promise<string | null> {
    const seq = parseLogName(log)!.seq + 1;
    const prefix = `log-${String(seq).padStart(9, '0')}-`;
    const files = await readdir(path.dirname(this.copyPath(log))).catch(() => [] as string[]);
    const found = files.filter((f) => f.startsWith(prefix) && parseLogName(f));
    return found.length === 1 ? found[0]! : null;
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
    let ahead: DigestsAhead | null = null;
    let progress = null as SyncProgress | null;
    while (!this.stopped) {
      // Idle and synced (the daemon's copy says so, and we are not mid-sync): nothing to read.
      if (!progress && this.opts.treeValue?.(syncKey) === String(this.opts.sizeBytes)) {
        this.setState({ syncing: false });
        await this.wake.sync.wait(IDLE_WAIT_MS);
        continue;
      }
      const stored = await this.opts.tree.get(syncKey);
      // Between publications our progress runs ahead of the tree; an entry we did not
      // write (join-resource, invalidate) starts over from its value.
      if (progress && stored?.stamp !== progress.publishedStamp) progress = null;
      const done = progress?.done ?? Number(stored?.value ?? this.opts.sizeBytes);
      const primary = await this.designatedPrimary();
      const conn = primary && primary !== this.host ? this.opts.peers.link(primary)?.connection : null;
      if (done >= this.opts.sizeBytes || this.state.replayCode !== '0' || !conn || !this.mayFetch() || !(await this.switchOn('sync'))) {
        if (progress) await this.publishSync(syncKey, progress);
        ahead = null;
        this.setState({ syncing: false });
        await this.wake.sync.wait(IDLE_WAIT_MS);
        continue;
      }
      if (done === 0 && !this.state.syncing) this.opts.log(`resource ${this.resource}: fast full sync from ${primary} starts`);
      this.setState({ syncing: true });
      const length = Math.min(SYNC_CHUNK_BYTES, this.opts.sizeBytes - done);
      const remote = ahead && ahead.conn === conn && ahead.offset === done ? ahead.reply : this.askDigests(conn, done, length);
      // The primary digests the next chunk while this one is compared and copied.
      ahead = this.digestsAhead(conn, done + length);
      const stats = await this.mutex.run(() => this.syncChunk(conn, done, length, remote));
      this.syncStats.bytesCompared += length;
      this.syncStats.bytesSent += stats.sent;
      if (stats.target && (!this.syncTarget || comparePositions(stats.target, this.syncTarget) > 0)) this.syncTarget = stats.target;
      progress ??= { done, published: done, publishedStamp: stored?.stamp, publishedAt: Date.now(), blocksToSync: false };
      progress.done = done + length;
      progress.blocksToSync ||= stats.sent > 0;
      const finished = progress.done >= this.opts.sizeBytes;
      if (finished || Date.now() - progress.publishedAt >= SYNC_PUBLISH_MS) await this.publishSync(syncKey, progress);
      if (finished) {
        this.opts.log(`resource ${this.resource}: fast full sync done: ${this.syncStats.bytesSent} of ${this.syncStats.bytesCompared} bytes differed` +
          (this.syncTarget ? `; consistent once replay passes ${positionValue(this.syncTarget)}` : ''));
        this.syncBuffers = null;
        this.setState({ syncing: false });
        // Published: from now on the tree says synced, and the idle check above reads the
        // daemon's copy instead of this host's tree at every wake-up for as long as we run.
        progress = null;
        ahead = null;
      }
      this.updateConsistency();
    }
    if (progress) await this.publishSync(syncKey, progress);
  }

  /**
   * Make the sync's progress durable and visible: the copied blocks (fdatasync) before
   * `syncstatus` claims them, and `sync-target` before `syncstatus` moves past the chunk
   * that raised it, so a restart never resumes past a block or a target it lost. Done
   * every SYNC_PUBLISH_MS rather than per chunk: every tree write wakes the daemons and
   * peer-serves of all hosts.
   */
  private async publishSync(syncKey: string, progress: SyncProgress): Promise<void> {
    if (progress.done === progress.published && !progress.blocksToSync) return;
    const tree = this.opts.tree;
    if (progress.blocksToSync) {
      const disk = await open(this.opts.disk, 'r+');
      try {
        await disk.datasync();
      } finally {
        await disk.close();
      }
      progress.blocksToSync = false;
    }
    const targetKey = actualKey(this.resource, this.host, 'sync-target');
    if (this.syncTarget && (await this.value(targetKey)) !== positionValue(this.syncTarget)) {
      await tree.set(targetKey, positionValue(this.syncTarget));
    }
    await tree.set(actualKey(this.resource, this.host, 'sync-sent'), String(this.syncStats.bytesSent));
    const entry = await tree.set(syncKey, String(progress.done));
    progress.published = progress.done;
    progress.publishedStamp = entry?.stamp;
    progress.publishedAt = Date.now();
  }

  /** Bytes compared and sent by this run of the sync (for logs and the sync benchmark). */
  readonly syncStats = { bytesCompared: 0, bytesSent: 0 };

  /**
   * The primary's digests of a chunk. Asking before the chunk's turn (outside the mutex)
   * is safe: they only choose which blocks to fetch, and the blocks themselves are read
   * fresh under the mutex (docs/replication.md "Fast full sync").
   */
  private askDigests(conn: PeerConnection, offset: number, length: number): Promise<Frame> {
    const reply = this.peerCall(conn, MessageType.DIGESTS, { res: this.resource, offset, length, blockBytes: SYNC_BLOCK_BYTES });
    reply.catch(() => undefined); // a reply nobody takes (sync paused) must not go unhandled
    return reply;
  }

  private digestsAhead(conn: PeerConnection, offset: number): DigestsAhead | null {
    if (offset >= this.opts.sizeBytes) return null;
    return { conn, offset, reply: this.askDigests(conn, offset, Math.min(SYNC_CHUNK_BYTES, this.opts.sizeBytes - offset)) };
  }

  /** Two read buffers for the local digests, kept across chunks (fresh memory is slow to fault in). */
  private syncBuffers: [Buffer, Buffer] | null = null;

  private digestLocal(disk: FileHandle, offset: number, length: number): Promise<Buffer> {
    const buffers = this.syncBuffers ??= [Buffer.allocUnsafe(DIGEST_READ_BYTES), Buffer.allocUnsafe(DIGEST_READ_BYTES)];
    let turn = 0;
    return digestRange((o, n) => readFullyAt(disk, o, n, buffers[turn++ % 2]), offset, length, SYNC_BLOCK_BYTES);
  }

  /** One chunk, under the mutex: digests both sides, fetch the differing blocks and write them (publishSync makes them durable). */
  private async syncChunk(conn: PeerConnection, offset: number, length: number, remoteDigests: Promise<Frame>): Promise<{ sent: number; target: LogPosition | null }> {
    const res = this.resource;
    let target: LogPosition | null = null;
    const note = (log: unknown): void => {
      if (!Array.isArray(log)) return;
      const p = { log: String(log[0]), offset: Number(log[1]) };
      if (parseLogName(p.log) && (!target || comparePositions(p, target) > 0)) target = p;
    };
    const disk = await open(this.opts.disk, 'r+');
    try {
      const [remote, mine] = await Promise.all([remoteDigests, this.digestLocal(disk, offset, length)]);
      note(remote.json['log']);
      const runs = differingRuns(remote.payload, mine, offset, length);
      let sent = 0;
      await inWindow(runs, READ_WINDOW, async (run) => {
        const reply = await this.peerCall(conn, MessageType.BLOCKS_READ, { res, offset: run.offset, length: run.length });
        note(reply.json['log']);
        if (this.stopped) throw new Error('replica stopped during the sync');
        await writeAllAt(disk, reply.payloadParts, run.offset);
        sent += reply.payloadLength;
      });
      return { sent, target }; // made durable by publishSync, before syncstatus claims it
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

/** The sync's position in memory, ahead of `syncstatus-<host>` between publications. */
interface SyncProgress {
  done: number;
  /** The value last written to syncstatus. */
  published: number;
  /** Stamp of the syncstatus entry we wrote last (or found when we began). */
  publishedStamp: number | undefined;
  publishedAt: number;
  /** Blocks were written since the last fdatasync of the disk. */
  blocksToSync: boolean;
}

/** DIGESTS of the next sync chunk, asked for while the current one runs. */
interface DigestsAhead {
  readonly conn: PeerConnection;
  readonly offset: number;
  readonly reply: Promise<Frame>;
}

/** Run fn over items with at most `window` running at once; rejects with the first failure, after all settled. */
async function inWindow<T>(items: readonly T[], window: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) await fn(items[next++]!).catch((e: unknown) => {
      failed = true;
      throw e;
    });
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(window, items.length) }, worker));
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failure) throw failure.reason;
}

interface FetchStart {
  /** First byte the window asks for: the copy's fetched length. */
  readonly from: number;
  /** The origin's file size as last reported. */
  readonly remote: number;
  readonly sealed: number | null;
  /** Replica.copyResets when the fetch began. */
  readonly resets: number;
}

/** pwritev all of `parts` at `position`, however many calls that takes. */
async function writeAllAt(handle: FileHandle, parts: readonly Buffer[], position: number): Promise<void> {
  let rest = [...parts];
  let at = position;
  while (rest.length > 0) {
    const { bytesWritten } = await handle.writev(rest, at);
    if (bytesWritten === 0) throw new Error(`no progress writing at offset ${at} of a log copy`);
    at += bytesWritten;
    rest = dropFront(rest, bytesWritten);
  }
}

/** `parts` without their first n bytes (views, no copy). */
function dropFront(parts: Buffer[], n: number): Buffer[] {
  let skip = n;
  let i = 0;
  while (i < parts.length && skip >= parts[i]!.length) skip -= parts[i++]!.length;
  const rest = parts.slice(i);
  if (skip > 0) rest[0] = rest[0]!.subarray(skip);
  return rest;
}
