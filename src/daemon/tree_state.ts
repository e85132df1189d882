/**
 * The daemon's picture of the tree's values, kept current from the TreeWatcher's events,
 * grouped by resource. A reconcile pass reads it instead of walking the tree: with 1000
 * resources (~30k links) one walk costs ~200 ms of CPU, which an idle daemon cannot pay
 * every second. The watcher's own periodic rescan catches anything inotify missed.
 */
import type { LamportStamp, TreeChange, TreeEntry } from '../tree/index.js';

export type Values = ReadonlyMap<string, string | null>;

const EMPTY: Values = new Map();

export class TreeState {
  /** Keys outside any resource directory. */
  private readonly global = new Map<string, string | null>();
  /** `resource-<res>/...` keys (full keys) by resource name. */
  private readonly resources = new Map<string, Map<string, string | null>>();
  /**
   * Every key's stamp. A value alone cannot tell that an operator asked again: `marsadm
   * primary` re-run after a refusal writes the same value with a newer stamp.
   */
  private readonly stamps = new Map<string, LamportStamp>();

  /** Fill from what the watcher knows (after its initial scan). */
  load(entries: ReadonlyMap<string, TreeEntry>): void {
    for (const [key, entry] of entries) this.put(key, entry.value, entry.stamp);
  }

  /** Apply one change; returns the resource it belongs to, or null for a global key. */
  apply(change: TreeChange): string | null {
    if (change.kind === 'set') this.put(change.key, change.value, change.stamp);
    else this.drop(change.key);
    return resourceOf(change.key);
  }

  /** The values of one resource's keys (full keys), or an empty map. */
  resource(res: string): Values {
    return this.resources.get(res) ?? EMPTY;
  }

  /** A key outside the resource directories. */
  globalValue(key: string): string | null | undefined {
    return this.global.get(key);
  }

  /** A key's value and stamp, or undefined when it does not exist. */
  entry(key: string): { value: string | null; stamp: LamportStamp } | undefined {
    const stamp = this.stamps.get(key);
    if (stamp === undefined) return undefined;
    const res = resourceOf(key);
    const value = res === null ? this.global.get(key) : this.resources.get(res)?.get(key);
    return value === undefined ? undefined : { value, stamp };
  }

  /** The stamp of a key, 0 when it does not exist. */
  stamp(key: string): LamportStamp {
    return this.stamps.get(key) ?? 0;
  }

  private put(key: string, value: string | null, stamp: LamportStamp): void {
    this.stamps.set(key, stamp);
    const res = resourceOf(key);
    if (res === null) {
      this.global.set(key, value);
      return;
    }
    let map = this.resources.get(res);
    if (!map) this.resources.set(res, (map = new Map()));
    map.set(key, value);
  }

  private drop(key: string): void {
    this.stamps.delete(key);
    const res = resourceOf(key);
    if (res === null) {
      this.global.delete(key);
      return;
    }
    const map = this.resources.get(res);
    map?.delete(key);
    if (map?.size === 0) this.resources.delete(res);
  }
}

/** `resource-r1/primary` -> 'r1'; keys outside resource directories -> null. */
export function resourceOf(key: string): string | null {
  if (!key.startsWith('resource-')) return null;
  const slash = key.indexOf('/');
  return slash < 0 ? key.slice('resource-'.length) : key.slice('resource-'.length, slash);
}
