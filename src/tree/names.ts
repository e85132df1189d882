/**
 * Validation of resource names, host names and key paths. Every refusal is a TreeError
 * with a one-line message naming the bad input and what is allowed.
 *
 * @example
 * checkName('resource', 'r1');      // ok
 * checkName('host', 'My Host');     // throws EPHOBOS_NAME
 */
import { TreeError } from './errors.js';

/** The characters of a resource or host name, as a regex source (no anchors). */
export const NAME_SOURCE = '[a-z][a-z0-9-]{0,31}';
const NAME_RE = new RegExp(`^${NAME_SOURCE}$`);

/** Names that mean something else in the tree or on the command line. */
export const RESERVED_NAMES: readonly string[] = [
  'all', 'any', 'none', 'global', 'defaults', 'uuid', 'ips', 'userspace',
];

/** Prefixes of tree entries; a name starting with one would read as another key. */
export const RESERVED_PREFIXES: readonly string[] = [
  'resource-', 'todo-', 'actual-', 'defaults-', 'data-', 'device-', 'log-', 'version-',
  'replay-', 'ip-', 'systemd-',
];

/** Longest key accepted, bytes. */
export const MAX_KEY_BYTES = 1024;

/** What a name names, for messages. */
export type NameKind = 'resource' | 'host';

const show = (s: string): string => `'${s.replace(/[\x00-\x1f\x7f]/g, '?')}'`;

/** The reason a name is refused, or null if it is fine. */
export function nameProblem(name: string): string | null {
  if (!NAME_RE.test(name)) {
    return "use 1-32 characters a-z, 0-9 and '-', starting with a letter";
  }
  if (RESERVED_NAMES.includes(name)) return `'${name}' is reserved; choose another name`;
  const prefix = RESERVED_PREFIXES.find((p) => name.startsWith(p));
  if (prefix) return `names starting with '${prefix}' collide with tree keys; choose another name`;
  return null;
}

export function isValidName(name: string): boolean {
  return nameProblem(name) === null;
}

/** Throws EPHOBOS_NAME unless `name` is a valid resource or host name. */
/** Names already found valid (the rules do not depend on the kind); bounded. */
const validNames = new Set<string>();

export function checkName(kind: NameKind, name: string): string {
  if (validNames.has(name)) return name;
  const problem = nameProblem(name);
  if (problem) throw new TreeError('EPHOBOS_NAME', `invalid ${kind} name ${show(name)}: ${problem}`);
  if (validNames.size >= 65536) validNames.clear();
  validNames.add(name);
  return name;
}

/** The reason a key path is unsafe, or null. Shapes are checked by `parseKey`. */
export function keyPathProblem(key: string): string | null {
  if (key === '') return 'the key is empty';
  if (key.includes('\0')) return 'a key cannot contain NUL';
  if (Buffer.byteLength(key) > MAX_KEY_BYTES) return `a key is at most ${MAX_KEY_BYTES} bytes`;
  if (key.startsWith('/')) return 'a key is relative to the root, not an absolute path';
  for (const segment of key.split('/')) {
    if (segment === '') return 'a key has no empty path segments';
    if (segment === '.' || segment === '..') return `a key cannot contain '${segment}'`;
    if (segment.startsWith('.')) return "a key segment cannot start with '.' (reserved for .tmp and .phobos)";
  }
  return null;
}

/** Throws EPHOBOS_KEY unless `key` is a safe relative path. */
export function checkKeyPath(key: string): string {
  const problem = keyPathProblem(key);
  if (problem) throw new TreeError('EPHOBOS_KEY', `invalid key ${show(key)}: ${problem}`);
  return key;
}

export { show as quoteForMessage };
