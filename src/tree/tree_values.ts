/**
 * The values of every link under a prefix, in one native walk and without stamps: what a
 * view reads. MarsTree.values() is this for an open tree; marsadm calls it directly to
 * start a view's walk before the view's modules (and MarsTree's) have loaded, so this
 * file imports only the addon.
 *
 * @example
 * const values = await readTreeValues('/mars', 'resource-r1/');
 * values.get('resource-r1/size');   // '1073741824'; a tombstone reads as null
 */
import { native } from '../dataplane/native.js';
import { DIR_SETTLE_MS, TOMBSTONE } from './types.js';

/** The view cache, in the tree's state directory (docs/tree.md "View cache"). */
export const VIEW_CACHE = '.phobos/view-cache';

/**
 * Values of the links under `root` whose keys start with `prefix`: one readlink per link
 * (addon/tree_walk.cc walks the smallest directory holding the prefix). Keys are not
 * validated; a tombstone's value is null. A missing root has no links.
 */
export async function readTreeValues(root: string, prefix = ''): Promise<Map<string, string | null>> {
  const slash = prefix.lastIndexOf('/');
  const { keys, values } = await native.readTreeLinks(root, slash < 0 ? '' : prefix.slice(0, slash), false);
  return valuesMap(keys, values, prefix);
}

/** The links whose keys start with prefix, a tombstone's value as null. */
function valuesMap(keys: readonly string[], values: readonly string[], prefix: string): Map<string, string | null> {
  const out = new Map<string, string | null>();
  for (let i = 0; i < keys.length; i++) {
    if (keys[i]!.startsWith(prefix)) out.set(keys[i]!, values[i] === TOMBSTONE ? null : values[i]!);
  }
  return out;
}

/**
 * Every value of the tree under `root`, as readTreeValues(root), from the view cache
 * where a directory's version shows it unchanged since its last listing; the rest are
 * listed again and the cache rewritten (addon/tree_cache.cc). At 1000 resources with
 * nothing changed that is one stat per directory instead of a readlink per link. A reader
 * that cannot write the tree still gets every value, without a cache.
 */
export async function readTreeValuesCached(root: string): Promise<Map<string, string | null>> {
  const { keys, values } = await native.readTreeValuesCached(root, `${root}/${VIEW_CACHE}`, DIR_SETTLE_MS);
  return valuesMap(keys, values, '');
}
