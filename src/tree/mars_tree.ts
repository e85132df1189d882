/**
 * MarsTree: the /mars key-value store of Lamport-stamped symlinks. Spec: docs/tree.md.
 *
 * Locks, in order: `#inProcess` (a promise chain, so this process's own writers queue
 * without polling) then `<root>/.phobos/lock` (flock, excludes other processes; the kernel drops
 * it when the holder dies). Every mutation and every use of the clock runs under both.
 * Reads take no lock: writes are atomic renames and `readOnDisk` pairs value and stamp.
 *
 * @example
 * const tree = await MarsTree.open({ root: '/mars', host: 'alpha' });
 * await tree.set(todoKey('r1', 'alpha', 'attach'), '1');
 * await tree.getValue('resource-r1/todo-alpha/attach');   // '1'
 */
import { constants as fsConstants, lstatSync, mkdirSync, promises as fsp } from 'node:fs';
import path from 'node:path';

import { acquireFileLock } from '../dataplane/file_lock.js';
import { native } from '../dataplane/native.js';
import { isGone, isHiddenName, readOnDisk, readOnDiskSync, toEntry, writeLinkSync } from './_entry_io.js';
import type { OnDisk } from './_entry_io.js';
import { TreeError } from './errors.js';
import { checkValue, isValidKey, parseKey, UUID_KEY } from './keys.js';
import { LamportClock } from './lamport_clock.js';
import { checkName, nameProblem } from './names.js';
import { readTreeValues } from './tree_values.js';
import type { LamportStamp, MarsTreeOptions, MergeOptions, SetOptions, TreeEntry } from './types.js';
import { TOMBSTONE } from './types.js';

/** Default wait for the tree lock, ms. */
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;
/** Default age after which `open()` removes a stray `.tmp.*`, ms. */
export const DEFAULT_STALE_TMP_MS = 60_000;

type Link = Extract<OnDisk, { kind: 'link' }>;

/**
 * The tree lock and the clock live in `<root>/.phobos/`, not in the root itself: every
 * mutation opens and writes both, and in the root each write fired whatever watches the
 * root directory (the global systemd path unit `PathChanged=/mars`, which started a
 * oneshot at each heartbeat).
 */
const STATE_DIR = '.phobos';

/**
 * Make `<root>/.phobos` if it is missing, and carry over the clock of a tree written
 * before it existed (`<root>/.lamport`), so stamps never go back. A reader without write
 * access to the root goes on: only mutations need the directory, and they say why.
 */
async function prepareStateDir(root: string): Promise<void> {
  const dir = path.join(root, STATE_DIR);
  // EEXIST: prepared before. EACCES: a reader; a mutation fails on the lock, naming it.
  const made = await fsp.mkdir(dir, { mode: 0o755 }).then(() => true, () => false);
  if (made) await fsp.copyFile(path.join(root, '.lamport'), path.join(dir, 'lamport'), fsConstants.COPYFILE_EXCL).catch(() => undefined);
}

export class MarsTree {
  /** Absolute path of the root directory. */
  readonly root: string;
  /** This host's name. */
  readonly host: string;
  readonly clock: LamportClock;
  readonly lockPath: string;
  readonly lockTimeoutMs: number;
  #inProcess: Promise<void> = Promise.resolve();

  private constructor(root: string, host: string, clock: LamportClock, lockTimeoutMs: number) {
    this.root = root;
    this.host = host;
    this.clock = clock;
    this.lockPath = path.join(root, STATE_DIR, 'lock');
    this.lockTimeoutMs = lockTimeoutMs;
  }

  /**
   * Open the tree at `root` as `host`. Throws EPHOBOS_NOT_CLUSTER if the root is missing
   * (unless `create`) or has no `uuid` (unless `requireCluster: false`), EPHOBOS_NAME for
   * a bad host name. Removes stray `.tmp.*` links older than `staleTmpMs`.
   */
  static async open(options: MarsTreeOptions): Promise<MarsTree> {
    const root = path.resolve(options.root);
    checkName('host', options.host);
    const st = await fsp.stat(root).catch((e: unknown) => {
      if (isGone(e)) return null;
      throw e;
    });
    if (st === null) {
      if (!options.create) {
        throw new TreeError('EPHOBOS_NOT_CLUSTER',
          `no tree at ${root}: run marsadm create-cluster or join-cluster, or pass --root (MARS_ROOT)`);
      }
      await fsp.mkdir(root, { recursive: true, mode: 0o755 });
    } else if (!st.isDirectory()) {
      throw new TreeError('EPHOBOS_NOT_CLUSTER', `${root} is not a directory: pass the tree's directory with --root (MARS_ROOT)`);
    }
    await prepareStateDir(root);
    const clock = new LamportClock({
      statePath: path.join(root, STATE_DIR, 'lamport'),
      ...(options.maxFutureMs === undefined ? {} : { maxFutureMs: options.maxFutureMs }),
      ...(options.wallClockMs === undefined ? {} : { wallClockMs: options.wallClockMs }),
    });
    const tree = new MarsTree(root, options.host, clock, options.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
    if ((options.requireCluster ?? true) && !(await tree.isCluster())) {
      throw new TreeError('EPHOBOS_NOT_CLUSTER',
        `${root} is not a cluster member (no uuid): run marsadm create-cluster or join-cluster first`);
    }
    if (options.sweepStaleTmp ?? true) await tree.#sweepStaleTmp(options.staleTmpMs ?? DEFAULT_STALE_TMP_MS);
    return tree;
  }

  /** The file of a key (after checking the key). */
  keyPath(key: string): string {
    parseKey(key);
    return path.join(this.root, key);
  }

  /** True if the tree has a cluster uuid. */
  async isCluster(): Promise<boolean> {
    return (await this.getValue(UUID_KEY)) !== undefined;
  }

  /** The entry at `key` (a tombstone has value null), or undefined if there is none. */
  async get(key: string): Promise<TreeEntry | undefined> {
    const found = await readOnDisk(this.keyPath(key));
    return found.kind === 'link' ? toEntry(key, found) : undefined;
  }

  /** The value at `key`; undefined if missing or deleted. */
  async getValue(key: string): Promise<string | undefined> {
    return (await this.get(key))?.value ?? undefined;
  }

  /**
   * Write `value` at `key` (null writes a tombstone). Returns the entry written, or null
   * when an explicit `stamp` was not newer than the existing one (ordered update rule).
   */
  async set(key: string, value: string | null, options: SetOptions = {}): Promise<TreeEntry | null> {
    const parsed = parseKey(key);
    checkValue(parsed, value);
    if (options.stamp !== undefined) checkStamp(key, options.stamp);
    return this.withLock(async () => {
      const file = this.#prepare(key);
      const existing = this.#existingLink(key, file);
      let stamp: LamportStamp;
      if (options.stamp !== undefined) {
        if (existing && options.stamp <= existing.stamp) return null;
        stamp = options.stamp;
        this.clock.observe(stamp);
      } else if (options.weak && existing) {
        stamp = existing.stamp + 1;
        this.clock.observe(stamp);
      } else {
        if (existing) this.clock.observe(existing.stamp);
        stamp = Math.max(this.clock.now(), existing ? existing.stamp + 1 : 0);
      }
      writeLinkSync(file, value ?? TOMBSTONE, stamp);
      return { key, value, stamp };
    });
  }

  /** Delete `key` by a tombstone with a fresh stamp (a plain unlink would be resurrected by peers). */
  async delete(key: string): Promise<TreeEntry> {
    const entry = await this.set(key, null);
    // Only an explicit stamp can be refused; delete uses the clock.
    if (entry === null) throw new Error(`internal: tombstone for ${key} refused`);
    return entry;
  }

  /**
   * Read-modify-write of one key under the lock: `fn` gets the current entry and returns
   * the new value, null to delete, or undefined to leave it. Returns the entry written.
   */
  async update(key: string, fn: (current: TreeEntry | undefined) => string | null | undefined): Promise<TreeEntry | undefined> {
    const parsed = parseKey(key);
    return this.withLock(async () => {
      const file = this.#prepare(key);
      const existing = this.#existingLink(key, file);
      const next = fn(existing ? toEntry(key, existing) : undefined);
      if (next === undefined) return undefined;
      checkValue(parsed, next);
      if (existing) this.clock.observe(existing.stamp);
      const stamp = Math.max(this.clock.now(), existing ? existing.stamp + 1 : 0);
      writeLinkSync(file, next ?? TOMBSTONE, stamp);
      return { key, value: next, stamp };
    });
  }

  /** A fresh stamp from the tree's clock (takes the lock). */
  async stamp(): Promise<LamportStamp> {
    return this.withLock(async () => this.clock.now());
  }

  /**
   * Every entry whose key starts with `prefix` (tombstones included, value null), sorted
   * by key. Regular files, hidden names and paths that are not keys are skipped.
   */
  async list(prefix = ''): Promise<TreeEntry[]> {
    // One native walk of the smallest directory that holds the prefix (addon/tree_walk.cc,
    // same torn-read rule as readOnDisk): a 9000-link tree in tens of milliseconds.
    const slash = prefix.lastIndexOf('/');
    const subdir = slash < 0 ? '' : prefix.slice(0, slash);
    const { keys, values, stamps } = await native.readTreeLinks(this.root, subdir);
    const out: TreeEntry[] = [];
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      if (key.startsWith(prefix) && isValidKey(key)) out.push(toEntry(key, { value: values[i]!, stamp: stamps[i]! }));
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /**
   * Values of every link under `prefix`, without stamps: one readlink per link, for views
   * that read thousands of keys (readTreeValues). Keys are not validated (callers look up
   * exact keys); a tombstone's value is null.
   */
  async values(prefix = ''): Promise<Map<string, string | null>> {
    return readTreeValues(this.root, prefix);
  }

  /** All entries, for the peer protocol. */
  async snapshot(): Promise<TreeEntry[]> {
    return this.list('');
  }

  /** Names of the resources that have a directory in the tree, sorted. */
  async listResources(): Promise<string[]> {
    const names = await fsp.readdir(this.root, { withFileTypes: true });
    return names
      .filter((d) => d.isDirectory() && d.name.startsWith('resource-'))
      .map((d) => d.name.slice('resource-'.length))
      .filter((res) => nameProblem(res) === null)
      .sort();
  }

  /**
   * Apply entries from a peer (see docs/tree.md "Merge"): (stamp, value) greater wins,
   * tombstones only over an existing older link, far-future entries deferred. Returns the
   * entries applied, in input order.
   */
  async merge(entries: readonly TreeEntry[], options: MergeOptions = {}): Promise<TreeEntry[]> {
    for (const e of entries) {
      checkValue(parseKey(e.key), e.value);
      checkStamp(e.key, e.stamp);
    }
    return this.withLock(async () => {
      const limit = this.clock.futureLimit();
      const applied: TreeEntry[] = [];
      let newest = 0;
      for (const e of entries) {
        if (e.stamp > limit) {
          options.onDeferred?.(e);
          continue;
        }
        newest = Math.max(newest, e.stamp);
        const file = path.join(this.root, e.key);
        const local = readOnDiskSync(file);
        if (local.kind === 'missing') {
          if (e.value === null) continue;
          this.#prepare(e.key);
        } else if (local.kind !== 'link' || !incomingWins(e, local)) {
          continue;
        }
        writeLinkSync(file, e.value ?? TOMBSTONE, e.stamp);
        applied.push({ key: e.key, value: e.value, stamp: e.stamp });
      }
      if (newest > 0) this.clock.observe(newest);
      return applied;
    });
  }

  /**
   * Unlink tombstones whose stamp is more than `olderThanMs` before the clock's real
   * time. Returns the keys removed.
   */
  async purgeTombstones(olderThanMs: number): Promise<string[]> {
    const candidates = (await this.list('')).filter((e) => e.value === null);
    return this.withLock(async () => {
      const cutoff = this.clock.realTime() - olderThanMs * 1000;
      const removed: string[] = [];
      for (const c of candidates) {
        const file = path.join(this.root, c.key);
        const now = readOnDiskSync(file);
        if (now.kind !== 'link' || now.value !== TOMBSTONE || now.stamp >= cutoff) continue;
        await fsp.unlink(file);
        removed.push(c.key);
      }
      return removed;
    });
  }

  /** Run `fn` holding the tree lock (in-process queue, then `<root>/.phobos/lock`). */
  async withLock<T>(fn: () => Promise<T>): Promise<T> {
    const previous = this.#inProcess;
    let done!: () => void;
    this.#inProcess = new Promise<void>((resolve) => (done = resolve));
    try {
      await previous;
      const release = await acquireFileLock(this.lockPath, this.lockTimeoutMs);
      try {
        return await fn();
      } finally {
        release();
      }
    } finally {
      done();
    }
  }

  /** The existing link at a key, refusing a regular file or directory there. */
  #existingLink(key: string, file: string): Link | undefined {
    const found = readOnDiskSync(file);
    switch (found.kind) {
      case 'link':
        return found;
      case 'missing':
        return undefined;
      default:
        throw new TreeError('EPHOBOS_KEY',
          `${key}: ${file} is a ${found.kind === 'file' ? 'regular file' : found.kind === 'dir' ? 'directory' : 'special file'}, ` +
          'not a tree link; the store leaves it alone (move it away to use this key)');
    }
  }

  /** Create the key's parent directories (0755); refuse a component that is not a directory. */
  #prepare(key: string): string {
    const segments = key.split('/');
    let dir = this.root;
    for (const segment of segments.slice(0, -1)) {
      dir = path.join(dir, segment);
      const st = lstatSync(dir, { throwIfNoEntry: false });
      if (st === undefined) {
        try {
          mkdirSync(dir, { mode: 0o755 });
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
      } else if (!st.isDirectory()) {
        throw new TreeError('EPHOBOS_KEY',
          `${key}: ${dir} is not a directory (a ${st.isSymbolicLink() ? 'symlink' : 'file'}); the tree never follows it out of the root`);
      }
    }
    return path.join(this.root, key);
  }

  async #walk(dirKey: string, prefix: string, out: TreeEntry[]): Promise<void> {
    let names;
    try {
      names = await fsp.readdir(dirKey ? path.join(this.root, dirKey) : this.root, { withFileTypes: true });
    } catch (e) {
      if (isGone(e)) return;
      throw e;
    }
    await Promise.all(names.map(async (d) => {
      if (isHiddenName(d.name)) return;
      const key = dirKey ? `${dirKey}/${d.name}` : d.name;
      if (d.isDirectory()) {
        const asDir = `${key}/`;
        if (asDir.startsWith(prefix) || prefix.startsWith(asDir)) await this.#walk(key, prefix, out);
      } else if (d.isSymbolicLink() && key.startsWith(prefix) && isValidKey(key)) {
        const found = await readOnDisk(path.join(this.root, key));
        if (found.kind === 'link') out.push(toEntry(key, found));
      }
    }));
  }

  async #sweepStaleTmp(staleMs: number): Promise<void> {
    // No lock needed: a tmp this old belongs to no live write (a writer stopped that long
    // gets ENOENT from its rename, an error, never a wrong value), and readers skip it.
    const cutoff = Date.now() - staleMs;
    const sweep = async (dir: string): Promise<void> => {
      let names;
      try {
        names = await fsp.readdir(dir, { withFileTypes: true });
      } catch {
        return;
      }
      await Promise.all(names.map(async (d) => {
        const file = path.join(dir, d.name);
        if (d.isDirectory()) {
          if (!isHiddenName(d.name)) await sweep(file);
        } else if (d.name.startsWith('.tmp.')) {
          const st = await fsp.lstat(file).catch(() => null);
          if (st && st.ctimeMs < cutoff) await fsp.unlink(file).catch(() => undefined);
        }
      }));
    };
    await sweep(this.root);
  }
}

/** The total order of merge: newer stamp, then the bytewise larger value. */
function incomingWins(incoming: TreeEntry, local: Link): boolean {
  if (incoming.stamp !== local.stamp) return incoming.stamp > local.stamp;
  return Buffer.compare(Buffer.from(incoming.value ?? TOMBSTONE), Buffer.from(local.value)) > 0;
}

function checkStamp(key: string, stamp: LamportStamp): void {
  if (!Number.isSafeInteger(stamp) || stamp <= 0) {
    throw new TreeError('EPHOBOS_VALUE', `invalid stamp ${stamp} for ${key}: a stamp is a positive integer of microseconds`);
  }
}
