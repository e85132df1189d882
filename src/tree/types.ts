/**
 * Types of the /mars tree: entries, stamps, changes and options. The spec with every key
 * and the reasons behind these choices is `docs/tree.md`.
 */

/**
 * A Lamport time: integer microseconds since the Unix epoch, stored as a symlink's mtime.
 * Microseconds (not nanoseconds) because the value must pass `fs.lutimes`, whose time
 * argument is a double in seconds; see `docs/tree.md` "Stamps".
 */
export type LamportStamp = number;

/** The value of a tombstone on disk. */
export const TOMBSTONE = '.deleted';

/**
 * A directory's version (inode, mtime, ctime) stands for its listing only once its ctime
 * is this much older than the listing: a change in the same timestamp granule (a jiffy on
 * ext4 and tmpfs, a second on ext4 with 128-byte inodes) as the version recorded would not
 * move it. Until then the directory is listed again each time (TreeWatcher's rescans, the
 * view cache).
 */
export const DIR_SETTLE_MS = 2000;

/** One key of the tree with its value and stamp. */
export interface TreeEntry {
  /** Path relative to the root, e.g. `resource-r1/todo-alpha/attach`. */
  readonly key: string;
  /** The symlink target; `null` for a tombstone (`.deleted`). */
  readonly value: string | null;
  /** The symlink's mtime. */
  readonly stamp: LamportStamp;
}

/** Who may write a key: the host named in its suffix, or any host (last writer wins). */
export type KeyOwner =
  | { readonly kind: 'host'; readonly host: string }
  | { readonly kind: 'shared' };

/** What a key is on disk: a symlink entry, or a regular file the store lists and skips. */
export type KeyKind = 'link' | 'file';

/** The value formats of the key table; each has a check and a description in `keys.ts`. */
export type ValueFormat =
  | 'text'
  | 'flag'
  | 'decimal'
  | 'integer-detail'
  | 'uuid'
  | 'address'
  | 'stamp'
  | 'host-or-none'
  | 'name-or-none'
  | 'abs-path'
  | 'replay-position'
  | 'log-file';

/** One row of the key table. */
export interface KeyShape {
  /** The key with placeholders: `<host>`, `<res>`, `<seq>`, `<name>`, `{a,b}`. */
  readonly pattern: string;
  readonly owner: 'host' | 'shared';
  readonly kind: KeyKind;
  readonly value: ValueFormat;
}

/** A key matched against the key table. */
export interface ParsedKey {
  readonly key: string;
  readonly shape: KeyShape;
  /** The resource, for keys under `resource-<res>/`. */
  readonly resource?: string;
  /** The host in the key's suffix, for owned keys. */
  readonly host?: string;
}

/** A change the watcher saw. */
export type TreeChange =
  | {
    /** A link appeared, or its value or stamp changed (a tombstone is a set with value null). */
    readonly kind: 'set';
    readonly key: string;
    readonly value: string | null;
    readonly stamp: LamportStamp;
    /** What the watcher knew before; null if the key is new to it. */
    readonly previous: TreeEntry | null;
  }
  | {
    /** A link disappeared (purge of a tombstone, `rm`, its directory removed). */
    readonly kind: 'removed';
    readonly key: string;
    readonly previous: TreeEntry;
  };

/** Where the tree is and which host we are. */
export interface TreeLocation {
  /** The tree's root directory. @default process.env.MARS_ROOT, else `/mars` */
  readonly root: string;
  /** This host's name. @default process.env.MARS_HOST, else the short host name */
  readonly host: string;
}

export interface LamportClockOptions {
  /** The regular file holding the last stamp, e.g. `<root>/.phobos/lamport`. */
  readonly statePath: string;
  /**
   * How far ahead of real time a received stamp may move the clock, milliseconds
   * (MARS's `max_lamport_future`). @default 600000 (10 minutes)
   */
  readonly maxFutureMs?: number;
  /** The wall clock, milliseconds since the epoch; tests replace it. @default Date.now */
  readonly wallClockMs?: () => number;
}

export interface MarsTreeOptions extends TreeLocation {
  /** How long a mutation waits for `<root>/.phobos/lock`, milliseconds. @default 10000 */
  readonly lockTimeoutMs?: number;
  /** Create the root directory (0755) when it is missing. @default false */
  readonly create?: boolean;
  /** Refuse a root without a `uuid` key (EPHOBOS_NOT_CLUSTER). @default true */
  readonly requireCluster?: boolean;
  /** Passed to the tree's Lamport clock. @default 600000 */
  readonly maxFutureMs?: number;
  /** The wall clock for the tree's Lamport clock, ms; tests replace it. @default Date.now */
  readonly wallClockMs?: () => number;
  /**
   * Remove stray `.tmp.*` links at open (a walk of the whole tree). The daemon does it
   * at start; short-lived commands skip it, readers ignore such links anyway.
   * @default true
   */
  readonly sweepStaleTmp?: boolean;
  /** Stray `.tmp.*` links older than this are removed by `open()`, ms. @default 60000 */
  readonly staleTmpMs?: number;
}

export interface SetOptions {
  /** Write with this stamp, and only if it is newer than the existing one. */
  readonly stamp?: LamportStamp;
  /**
   * Stamp = existing stamp + 1 (or now if the key is new), so that a normal write made
   * concurrently on another host wins (MARS's `secondary` trick). @default false
   */
  readonly weak?: boolean;
}

export interface MergeOptions {
  /** Called for each entry deferred because its stamp is too far in the future. */
  readonly onDeferred?: (entry: TreeEntry) => void;
}

export interface TreeWatcherOptions {
  /** The tree's root directory. */
  readonly root: string;
  /** Called once per change, in order per key. */
  readonly onChange: (change: TreeChange) => void;
  /** Called when a directory cannot be watched or read; the watcher keeps going. */
  readonly onError?: (error: Error) => void;
  /**
   * Called when a regular file (not a key: a log) appears in a watched directory, with
   * its path relative to the root. Not called for appends, nor by the rescan.
   */
  readonly onFile?: (relativePath: string) => void;
  /** Full rescan interval (safety net), milliseconds; 0 disables it. @default 5000 */
  readonly rescanMs?: number;
}

/** The command switches under `resource-<res>/todo-<host>/`. */
export type TodoSwitch = 'attach' | 'connect' | 'sync' | 'allow-replay';

/** The 0/1 indicators under `resource-<res>/actual-<host>/`. */
export type ResourceFlag =
  | 'is-primary' | 'is-attached' | 'is-replaying' | 'is-copying' | 'is-syncing' | 'is-emergency';

/** Every indicator under `resource-<res>/actual-<host>/` that the key table names. */
export type ResourceIndicator = ResourceFlag | 'open-count' | 'replay-code';
