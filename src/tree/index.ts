/**
 * The /mars tree: a key-value store of Lamport-stamped symlinks, its clock, its key table
 * and its watcher. Spec: docs/tree.md.
 */
export { TreeError, type TreeErrorCode } from './errors.js';
export {
  actualKey, checkValue, dataKey, deviceKey, formatSeq, hostActualKey, hostKeyKey, ipKey, isValidKey, KEY_SHAPES,
  logKey, MAX_VALUE_BYTES, mayWrite, ownerOf, parseKey, pingKey, pongKey, primaryKey, replayKey, resourceDir,
  resourceKey, sizeKey, todoKey, userspaceKey, UUID_KEY, VALUE_FORMATS, versionKey,
} from './keys.js';
export { DEFAULT_MAX_FUTURE_MS, formatStamp, LamportClock } from './lamport_clock.js';
export { DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STALE_TMP_MS, MarsTree } from './mars_tree.js';
export {
  checkKeyPath, checkName, isValidName, keyPathProblem, MAX_KEY_BYTES, NAME_SOURCE, nameProblem,
  RESERVED_NAMES, RESERVED_PREFIXES, type NameKind,
} from './names.js';
export { DEFAULT_ROOT, resolveTreeLocation, shortHostName } from './tree_location.js';
export { readTreeValues } from './tree_values.js';
export { DEFAULT_RESCAN_MS, TreeWatcher } from './tree_watcher.js';
export { LockTimeoutError } from '../dataplane/file_lock.js';
export * from './types.js';
