/**
 * TreeWatcher: every change of a /mars tree, once. One non-recursive `fs.watch` per
 * directory (Node 20's recursive mode on Linux emits one event per directory entry); an
 * event only names a path, which is re-read (lstat + readlink) and diffed against the
 * last known state, so the three inotify events of a tmp + rename become one change and
 * a change seen twice is reported once. A periodic rescan covers inotify overflow: it
 * stats every directory and re-reads only those whose version moved (every tree write
 * renames into its directory); every FULL_RESCAN_EVERY-th one re-reads every link.
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
import { DIR_SETTLE_MS, type TreeChange, type TreeEntry, type TreeWatcherOptions } from './types.js';

/** Default interval of the safety-net rescan, ms. */
export const DEFAULT_RESCAN_MS = 5000;

/**
 * Every this many periodic rescans, one reads every link instead of only the directories
 * whose version moved: that also finds a link changed in place (`touch -h`), which moves
 * no directory. Hourly in the daemon (5-minute rescans).
 */
export const FULL_RESCAN_EVERY = 12;

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

/** `ino:mtimeNs:ctimeNs`, as addon/tree_walk.cc's statTreeDirs spells it. */
function dirVersion(st: BigIntStats): string {
  return `${st.ino}:${st.mtimeNs}:${st.ctimeNs}`;
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
  /**
   * Every directory listed so far, with its version at that listing; null when it must be
   * listed again at the next rescan (changed too recently to trust, or not watched).
   */
  readonly #listed = new Map<string, string | null>();
  /** Known links and listed directories by the directory that holds them. */
  readonly #children = new Map<string, Set<string>>();
  /** Paths (keys) named by events since the last drain. */
  #pending = new Set<string>();
  /** Per-key chain, so two reads of one path never race each other. */
  readonly #inflight = new Map<string, Promise<void>>();
  #draining: Promise<void> | null = null;
  #timer: NodeJS.Timeout | null = null;
  #timerRescans = 0;
  /** The rescan running now, if any. */
  #rescanning: Promise<void> | null = null;
  #closed = false;
  /** Events in the current burst window, and when it began (see BURST_EVENTS). */
  #burstEvents = 0;
  #burstSince = 0;
  #burstRescan: NodeJS.Timeout | null = null;
  /**
   * Emitted changes, completed rescans (of them full ones), rescans after a burst, and the
   * directories rescans re-read, for diagnostics.
   */
  readonly stats = { changes: 0, rescans: 0, fullRescans: 0, burstRescans: 0, rescannedDirs: 0 };

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
    await watcher.#check('', false, false);
    if (watcher.rescanMs > 0) {
      watcher.#timer = setInterval(() => watcher.#periodicRescan(), watcher.rescanMs);
      watcher.#timer.unref();
    }
    return watcher;
  }

  /** The entries the watcher currently knows, by key. */
  entries(): Map<string, TreeEntry> {
    return new Map([...this.#links].map(([k, v]) => [k, v.entry]));
  }

  /**
   * Bring what the watcher knows up to date with the disk now; emits only real differences.
   * Starts after any rescan still running, so what it finds is at least as new as the call.
   *
   * By default one native call stats every listed directory (addon/tree_walk.cc) and only
   * directories whose version moved are listed again, their links checked; an idle daemon
   * with 1000 resources pays one stat per directory (~3 per resource), not three syscalls
   * per link (~35 per resource).
   * `full` reads every link in one native walk instead, and re-checks the paths whose value
   * or stamp differ: it also finds a link changed without a rename.
   */
  async rescan(options: { full?: boolean } = {}): Promise<void> {
    while (this.#rescanning) await this.#rescanning.catch(() => undefined);
    if (this.#closed) return;
    const run = options.full ? this.#rescanLinks() : this.#rescanDirs();
    this.#rescanning = run;
    try {
      await run;
      this.stats.rescans++;
      if (options.full) this.stats.fullRescans++;
    } finally {
      if (this.#rescanning === run) this.#rescanning = null;
    }
  }

  #periodicRescan(): void {
    if (this.#rescanning || this.#closed) return;
    const full = ++this.#timerRescans % FULL_RESCAN_EVERY === 0;
    this.rescan({ full }).catch((e: Error) => this.#onError(e));
  }

  async #rescanDirs(): Promise<void> {
    const dirs = [...this.#listed.keys()];
    const versions = await native.statTreeDirs(this.root, dirs);
    const moved = dirs.filter((dir, i) => versions[i] === null || versions[i] !== this.#listed.get(dir));
    this.stats.rescannedDirs += moved.length;
    if (moved.length > 0) await this.#rereadDirs(moved);
  }

  /**
   * List `dirs` again in one native call and re-check only what differs from what we know:
   * links whose value or stamp moved, known children no longer there, new subdirectories
   * (listed whole), directories gone. Then remember each directory's version from before
   * its listing, if it had been quiet long enough to trust (DIR_SETTLE_MS).
   */
  async #rereadDirs(dirs: string[]): Promise<void> {
    const read = await native.readTreeDirs(this.root, dirs, DIR_SETTLE_MS);
    const recheck = new Set<string>();
    const found = this.#compareRead(read, recheck);
    for (const sub of read.subdirs) {
      found.add(sub);
      if (!this.#listed.has(sub)) recheck.add(sub); // new: listed whole
    }
    dirs.forEach((dir, i) => {
      if (read.versions[i] === null || !this.#dirs.has(dir)) recheck.add(dir); // gone, or not watched yet
      if (read.versions[i] === null) return;
      for (const child of this.#children.get(dir) ?? []) if (!found.has(child)) recheck.add(child);
    });
    await Promise.all([...recheck].map((key) => this.#serial(key, true, true)));
    dirs.forEach((dir, i) => {
      const version = read.versions[i];
      if (version !== null && version !== undefined && this.#listed.has(dir)) this.#listed.set(dir, version !== '' && this.#dirs.has(dir) ? version : null);
    });
  }

  async #rescanLinks(): Promise<void> {
    const read = await native.readTreeLinks(this.root, '', true);
    const recheck = new Set<string>();
    const listed = this.#compareRead(read, recheck);
    const dirsWithLinks = new Set<string>(['']);
    for (const key of listed) {
      for (let dir = parentKey(key); dir !== '' && !dirsWithLinks.has(dir); dir = parentKey(dir)) {
        dirsWithLinks.add(dir);
        if (!this.#dirs.has(dir)) recheck.add(dir); // a directory inotify never told us of
      }
    }
    for (const key of this.#links.keys()) if (!listed.has(key)) recheck.add(key);
    for (const dir of this.#dirs.keys()) if (!dirsWithLinks.has(dir)) recheck.add(dir);
    await Promise.all([...recheck].map((key) => this.#serial(key, true, false)));
  }

  /**
   * Links read natively against what we know: keys whose value or stamp differ (or that
   * are new) go into `recheck`; returns every key read that is or could be an entry.
   */
  #compareRead(read: { keys: string[]; values: string[]; stamps: Float64Array }, recheck: Set<string>): Set<string> {
    const seen = new Set<string>();
    for (let i = 0; i < read.keys.length; i++) {
      const key = read.keys[i]!;
      const known = this.#links.get(key);
      if (!known && !isValidKey(key)) continue;
      seen.add(key);
      const now = toEntry(key, { value: read.values[i]!, stamp: read.stamps[i]! });
      if (!known || known.entry.value !== now.value || known.entry.stamp !== now.stamp) recheck.add(key);
    }
    return seen;
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
    this.#listed.clear();
    this.#children.clear();
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
      await Promise.all([...batch].map((key) => this.#serial(key, true, false)));
    }
  }

  /** Check one path, after any check of the same path still running. */
  #serial(key: string, emit: boolean, shallow: boolean): Promise<void> {
    const previous = this.#inflight.get(key) ?? Promise.resolve();
    const next = previous.then(() => this.#check(key, emit, shallow)).catch((e: unknown) => {
      this.#onError(e instanceof Error ? e : new Error(String(e)));
    });
    this.#inflight.set(key, next);
    void next.finally(() => {
      if (this.#inflight.get(key) === next) this.#inflight.delete(key);
    });
    return next;
  }

  /**
   * Compare what is at `key` now with what we knew; emit the difference. A directory is
   * listed and its entries checked; `shallow` skips subdirectories listed before (a
   * rescan checks those by their own version).
   */
  async #check(key: string, emit: boolean, shallow: boolean): Promise<void> {
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
      await this.#scanDir(key, emit, st, shallow);
      return;
    }
    if ((this.#listed.has(key) || this.#dirs.has(key)) && key !== '') this.#removeDir(key, emit);
    const known = this.#links.get(key);
    if (st?.isSymbolicLink()) {
      if (known && known.ino === st.ino && known.mtimeNs === st.mtimeNs && known.ctimeNs === st.ctimeNs) return;
      if (!known && !isValidKey(key)) return;
      const found = await readOnDisk(file);
      if (found.kind !== 'link') return this.#check(key, emit, shallow);
      const entry = toEntry(key, found);
      const current = this.#links.get(key);
      // The version the value was read from, not a later lstat: a link replaced after the
      // read would be remembered with the new inode and the old value, and every later
      // check (events, rescans, full ones) would take it as known and skip it for good.
      const { ino, mtimeNs, ctimeNs } = found.stats;
      this.#links.set(key, { entry, ino, mtimeNs, ctimeNs });
      if (!current) this.#childrenOf(parentKey(key)).add(key);
      if (current && current.entry.value === entry.value && current.entry.stamp === entry.stamp) return;
      if (emit) this.#emit({ kind: 'set', key, value: entry.value, stamp: entry.stamp, previous: current?.entry ?? null });
      return;
    }
    // Missing, a regular file (a log) or something else: not an entry.
    if (st?.isFile() && !known && emit) this.#onFile(key);
    if (known) {
      this.#links.delete(key);
      this.#children.get(parentKey(key))?.delete(key);
      if (emit) this.#emit({ kind: 'removed', key, previous: known.entry });
    }
  }

  #childrenOf(dirKey: string): Set<string> {
    let set = this.#children.get(dirKey);
    if (!set) this.#children.set(dirKey, (set = new Set()));
    return set;
  }

  async #scanDir(dirKey: string, emit: boolean, st: BigIntStats, shallow: boolean): Promise<void> {
    const isNew = !this.#listed.has(dirKey);
    const statAt = Date.now(); // just after the lstat that gave `st`
    this.#watchDir(dirKey); // watch first, then list: nothing slips between
    const version = dirVersion(st); // taken before the listing: a later change moves it
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
    if (isNew) {
      this.#listed.set(dirKey, null);
      if (dirKey !== '') this.#childrenOf(parentKey(dirKey)).add(dirKey);
    }
    const check = new Set<string>();
    for (const name of names) {
      if (isHiddenName(name)) continue;
      const key = dirKey ? `${dirKey}/${name}` : name;
      if (!(shallow && this.#listed.has(key))) check.add(key);
    }
    // Known children this listing no longer names: re-check them too.
    const seen = new Set(names);
    for (const key of this.#children.get(dirKey) ?? []) {
      if (!seen.has(key.slice(key.lastIndexOf('/') + 1))) check.add(key);
    }
    await Promise.all([...check].map((key) => this.#serial(key, emit, shallow)));
    // Trust the version only if the directory is watched and its last change was old
    // enough at the lstat that no later change can carry the same timestamps.
    const settled = st.ctimeNs < BigInt(statAt - DIR_SETTLE_MS) * 1_000_000n;
    if (this.#listed.has(dirKey)) this.#listed.set(dirKey, settled && this.#dirs.has(dirKey) ? version : null);
  }

  #removeDir(dirKey: string, emit: boolean): void {
    const prefix = `${dirKey}/`;
    const inside = (key: string): boolean => key === dirKey || key.startsWith(prefix);
    for (const [key, w] of [...this.#dirs]) {
      if (!inside(key)) continue;
      w.close();
      this.#dirs.delete(key);
    }
    for (const key of [...this.#listed.keys()]) {
      if (!inside(key)) continue;
      this.#listed.delete(key);
      this.#children.delete(key);
    }
    this.#children.get(parentKey(dirKey))?.delete(dirKey);
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
