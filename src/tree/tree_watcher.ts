/**
 * TreeWatcher: every change of a /mars tree, once. One non-recursive `fs.watch` per
 * directory (Node 20's recursive mode on Linux emits one event per directory entry); an
 * event only names a path, which is re-read (lstat + readlink) and diffed against the
 * last known state, so the three inotify events of a tmp + rename become one change and
 * a change seen twice is reported once. A periodic full rescan covers inotify overflow.
 * See docs/tree.md "Watching".
 *
 * @example
 * const watcher = await TreeWatcher.start({ root: '/mars', onChange: (c) => console.log(c) });
 * ...
 * watcher.close();
 */
import { promises as fsp, readFileSync, watch } from 'node:fs';
import type { BigIntStats, FSWatcher } from 'node:fs';
import path from 'node:path';

import { native } from '../dataplane/native.js';
import { isGone, isHiddenName, readOnDisk, toEntry } from './_entry_io.js';
import { isValidKey } from './keys.js';
import type { TreeChange, TreeEntry, TreeWatcherOptions } from './types.js';

/** Default interval of the safety-net rescan, ms. */
export const DEFAULT_RESCAN_MS = 5000;

/**
 * The kernel drops inotify events once a watcher's queue holds max_queued_events (16384
 * by default) unread ones, and libuv discards the overflow notice (its watch descriptor is
 * -1), so a lost event is never reported. A queue can only overflow in a burst, so one
 * of half that many events within BURST_WINDOW_MS is treated as a possible loss: a rescan
 * follows BURST_RESCAN_DELAY_MS later. Without it, a burst (1000 resources created at
 * once) left keys unseen until the periodic rescan, 5 minutes in the daemon.
 */
const BURST_EVENTS = Math.max(1024, Math.floor(inotifyQueueLimit() / 2));
const BURST_WINDOW_MS = 1000;
const BURST_RESCAN_DELAY_MS = 500;

function inotifyQueueLimit(): number {
  try {
    return Number(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8')) || 16384;
  } catch {
    return 16384;
  }
}

/** `a/b/c` -> `a/b`; `a` -> '' (the root). */
function parentKey(key: string): string {
  const slash = key.lastIndexOf('/');
  return slash < 0 ? '' : key.slice(0, slash);
}

/** What the watcher remembers of a link: the entry and the inode version it came from. */
interface Known {
  readonly entry: TreeEntry;
  readonly ino: bigint;
  readonly mtimeNs: bigint;
  readonly ctimeNs: bigint;
}

export class TreeWatcher {
  readonly root: string;
  readonly rescanMs: number;
  readonly #onChange: (change: TreeChange) => void;
  readonly #onError: (error: Error) => void;
  readonly #onFile: (relativePath: string) => void;
  /** Links by key. */
  readonly #links = new Map<string, Known>();
  /** Watched directories by key ('' is the root). */
  readonly #dirs = new Map<string, FSWatcher>();
  /** Paths (keys) named by events since the last drain. */
  #pending = new Set<string>();
  /** Per-key chain, so two reads of one path never race each other. */
  readonly #inflight = new Map<string, Promise<void>>();
  #draining: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #rescanning = false;
  #closed = false;
  /** Events in the current burst window, and when it began (see BURST_EVENTS). */
  #burstEvents = 0;
  #burstSince = 0;
  #burstRescan: NodeJS.Timeout | null = null;
  /** Emitted changes, completed rescans, and rescans after a burst, for diagnostics. */
  readonly stats = { changes: 0, rescans: 0, burstRescans: 0 };

  private constructor(options: TreeWatcherOptions) {
    this.root = path.resolve(options.root);
    this.rescanMs = options.rescanMs ?? DEFAULT_RESCAN_MS;
    this.#onChange = options.onChange;
    this.#onError = options.onError ?? (() => undefined);
    this.#onFile = options.onFile ?? (() => undefined);
  }

  /** Watch the tree; resolves after the initial scan (which emits nothing). */
  static async start(options: TreeWatcherOptions): Promise<TreeWatcher> {
    const watcher = new TreeWatcher(options);
    await watcher.#check('', false);
    if (watcher.rescanMs > 0) {
      watcher.#timer = setInterval(() => void watcher.rescan(), watcher.rescanMs);
      watcher.#timer.unref();
    }
    return watcher;
  }

  /** The entries the watcher currently knows, by key. */
  entries(): Map<string, TreeEntry> {
    return new Map([...this.#links].map(([k, v]) => [k, v.entry]));
  }

  /**
   * Re-read the whole tree now; emits only real differences. One native walk reads every
   * link (addon/tree_walk.cc); only the paths that differ from what we know go through the
   * per-path check: an idle daemon with 1000 resources (~30k links) must not pay three
   * syscalls and a promise per link every few seconds.
   */
  async rescan(): Promise<void> {
    if (this.#rescanning || this.#closed) return;
    this.#rescanning = true;
    try {
      const { keys, values, stamps } = await native.readTreeLinks(this.root, '', true);
      const recheck = new Set<string>();
      const listed = new Set<string>();
      const dirsWithLinks = new Set<string>(['']);
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i]!;
        const known = this.#links.get(key);
        if (!known && !isValidKey(key)) continue;
        listed.add(key);
        for (let dir = parentKey(key); dir !== '' && !dirsWithLinks.has(dir); dir = parentKey(dir)) {
          dirsWithLinks.add(dir);
          if (!this.#dirs.has(dir)) recheck.add(dir); // a directory inotify never told us of
        }
        const now = toEntry(key, { value: values[i]!, stamp: stamps[i]! });
        if (!known || known.entry.value !== now.value || known.entry.stamp !== now.stamp) recheck.add(key);
      }
      for (const key of this.#links.keys()) if (!listed.has(key)) recheck.add(key);
      for (const dir of this.#dirs.keys()) if (!dirsWithLinks.has(dir)) recheck.add(dir);
      await Promise.all([...recheck].map((key) => this.#serial(key, true)));
      this.stats.rescans++;
    } finally {
      this.#rescanning = false;
    }
  }

  /** Resolves once every event received so far has been processed. */
  async idle(): Promise<void> {
    while (this.#draining || this.#pending.size > 0) {
      if (!this.#draining) this.#drainSoon();
      await this.#draining;
    }
    await Promise.all(this.#inflight.values());
  }

  /** Stop watching: closes every fs.watch and the rescan timer. No events after this. */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#burstRescan) clearTimeout(this.#burstRescan);
    for (const w of this.#dirs.values()) w.close();
    this.#dirs.clear();
    this.#pending.clear();
  }

  #watchDir(dirKey: string): void {
    if (this.#dirs.has(dirKey) || this.#closed) return;
    const dir = dirKey ? path.join(this.root, dirKey) : this.root;
    let w: FSWatcher;
    try {
      w = watch(dir, (event, name) => {
        if (this.#closed) return;
        this.#countForBurst();
        // Links change only by rename into place (docs/tree.md "Writes"), so 'change'
        // (content written) never concerns a key: it is a log append, one per write on
        // a busy primary. The periodic rescan still covers anything unexpected.
        if (event === 'change' && name !== null) return;
        // No name: the kernel could not say (e.g. queue overflow): re-read the directory.
        if (name === null) this.#pending.add(dirKey);
        else if (!isHiddenName(String(name))) this.#pending.add(dirKey ? `${dirKey}/${String(name)}` : String(name));
        this.#drainSoon();
      });
    } catch (e) {
      this.#onError(new Error(`cannot watch ${dir}: ${(e as Error).message}`, { cause: e }));
      return;
    }
    w.on('error', (e) => {
      w.close();
      if (this.#dirs.get(dirKey) === w) this.#dirs.delete(dirKey);
      if (this.#closed) return;
      this.#onError(new Error(`watch of ${dir} failed: ${e.message}`, { cause: e }));
      this.#pending.add(dirKey);
      this.#drainSoon();
    });
    this.#dirs.set(dirKey, w);
  }

  /** A burst that may have overflowed the kernel's queue gets a rescan (BURST_EVENTS). */
  #countForBurst(): void {
    const now = Date.now();
    if (now - this.#burstSince > BURST_WINDOW_MS) {
      this.#burstSince = now;
      this.#burstEvents = 0;
    }
    if (++this.#burstEvents < BURST_EVENTS || this.#burstRescan) return;
    const fire = (): void => {
      // A rescan already running may have listed the directories before the lost events.
      if (this.#rescanning) {
        this.#burstRescan = setTimeout(fire, BURST_RESCAN_DELAY_MS).unref();
        return;
      }
      this.#burstRescan = null;
      this.stats.burstRescans++;
      void this.rescan().catch((e: Error) => this.#onError(e));
    };
    this.#burstRescan = setTimeout(fire, BURST_RESCAN_DELAY_MS).unref();
  }

  /** Coalesce: all paths named in this tick are read in one batch. */
  #drainSoon(): void {
    if (this.#draining || this.#closed) return;
    this.#draining = new Promise<void>((resolve) => {
      setImmediate(() => {
        void this.#drain().finally(() => {
          this.#draining = null;
          resolve();
          if (this.#pending.size > 0) this.#drainSoon();
        });
      });
    });
  }

  async #drain(): Promise<void> {
    while (this.#pending.size > 0 && !this.#closed) {
      const batch = this.#pending;
      this.#pending = new Set();
      await Promise.all([...batch].map((key) => this.#serial(key, true)));
    }
  }

  /** Check one path, after any check of the same path still running. */
  #serial(key: string, emit: boolean): Promise<void> {
    const previous = this.#inflight.get(key) ?? Promise.resolve();
    const next = previous.then(() => this.#check(key, emit)).catch((e: unknown) => {
      this.#onError(e instanceof Error ? e : new Error(String(e)));
    });
    this.#inflight.set(key, next);
    void next.finally(() => {
      if (this.#inflight.get(key) === next) this.#inflight.delete(key);
    });
    return next;
  }

  /** Compare what is at `key` now with what we knew; emit the difference. */
  async #check(key: string, emit: boolean): Promise<void> {
    if (this.#closed) return;
    const file = key ? path.join(this.root, key) : this.root;
    let st: BigIntStats | null;
    try {
      st = await fsp.lstat(file, { bigint: true });
    } catch (e) {
      if (!isGone(e)) throw e;
      st = null;
    }
    if (st?.isDirectory()) {
      await this.#scanDir(key, emit);
      return;
    }
    if (this.#dirs.has(key) && key !== '') this.#removeDir(key, emit);
    const known = this.#links.get(key);
    if (st?.isSymbolicLink()) {
      if (known && known.ino === st.ino && known.mtimeNs === st.mtimeNs && known.ctimeNs === st.ctimeNs) return;
      if (!known && !isValidKey(key)) return;
      const found = await readOnDisk(file);
      if (found.kind !== 'link') return this.#check(key, emit);
      const after = await fsp.lstat(file, { bigint: true }).catch(() => null);
      const entry = toEntry(key, found);
      const current = this.#links.get(key);
      this.#links.set(key, {
        entry, ino: after?.ino ?? 0n, mtimeNs: after?.mtimeNs ?? 0n, ctimeNs: after?.ctimeNs ?? 0n,
      });
      if (current && current.entry.value === entry.value && current.entry.stamp === entry.stamp) return;
      if (emit) this.#emit({ kind: 'set', key, value: entry.value, stamp: entry.stamp, previous: current?.entry ?? null });
      return;
    }
    // Missing, a regular file (a log) or something else: not an entry.
    if (st?.isFile() && !known && emit) this.#onFile(key);
    if (known) {
      this.#links.delete(key);
      if (emit) this.#emit({ kind: 'removed', key, previous: known.entry });
    }
  }

  async #scanDir(dirKey: string, emit: boolean): Promise<void> {
    const isNew = !this.#dirs.has(dirKey);
    this.#watchDir(dirKey); // watch first, then list: nothing slips between
    const dir = dirKey ? path.join(this.root, dirKey) : this.root;
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch (e) {
      if (isGone(e) || (e as NodeJS.ErrnoException).code === 'ENOTDIR') {
        this.#removeDir(dirKey, emit);
        return;
      }
      throw e;
    }
    const listed = new Set<string>();
    for (const name of names) {
      if (!isHiddenName(name)) listed.add(dirKey ? `${dirKey}/${name}` : name);
    }
    if (!isNew) {
      // Known children this listing no longer names: re-check them too.
      for (const key of this.#links.keys()) {
        if (path.posix.dirname(key) === (dirKey || '.') && !listed.has(key)) listed.add(key);
      }
      for (const key of this.#dirs.keys()) {
        if (key !== '' && path.posix.dirname(key) === (dirKey || '.') && !listed.has(key)) listed.add(key);
      }
    }
    await Promise.all([...listed].map((key) => this.#serial(key, emit)));
  }

  #removeDir(dirKey: string, emit: boolean): void {
    const prefix = `${dirKey}/`;
    for (const [key, w] of [...this.#dirs]) {
      if (key === dirKey || key.startsWith(prefix)) {
        w.close();
        this.#dirs.delete(key);
      }
    }
    for (const [key, known] of [...this.#links]) {
      if (!key.startsWith(prefix)) continue;
      this.#links.delete(key);
      if (emit) this.#emit({ kind: 'removed', key, previous: known.entry });
    }
  }

  #emit(change: TreeChange): void {
    if (this.#closed) return;
    this.stats.changes++;
    try {
      this.#onChange(change);
    } catch (e) {
      this.#onError(e instanceof Error ? e : new Error(String(e)));
    }
  }
}
