/**
 * The key table (`KEY_SHAPES`, mirrored in `docs/tree.md`), parsing a key against it,
 * ownership, value formats, and builders that produce valid keys.
 *
 * @example
 * todoKey('r1', 'alpha', 'attach');       // 'resource-r1/todo-alpha/attach'
 * ownerOf('resource-r1/primary');         // { kind: 'shared' }
 * ownerOf('resource-r1/data-alpha');      // { kind: 'host', host: 'alpha' }
 */
import { TreeError } from './errors.js';
import { checkKeyPath, checkName, NAME_SOURCE, nameProblem, quoteForMessage } from './names.js';
import type { KeyOwner, KeyShape, ParsedKey, ResourceIndicator, TodoSwitch, ValueFormat } from './types.js';
import { TOMBSTONE } from './types.js';

/** The key table; the first matching row applies. Add a row here and in docs/tree.md. */
export const KEY_SHAPES: readonly KeyShape[] = [
  { pattern: 'uuid', owner: 'shared', kind: 'link', value: 'uuid' },
  { pattern: 'ips/ip-<host>', owner: 'host', kind: 'link', value: 'address' },
  { pattern: 'ips/hostkey-<host>', owner: 'host', kind: 'link', value: 'text' },
  { pattern: 'actual-<host>/alive', owner: 'host', kind: 'link', value: 'flag' },
  { pattern: 'actual-<host>/time', owner: 'host', kind: 'link', value: 'stamp' },
  { pattern: 'actual-<host>/ping-<peer>', owner: 'host', kind: 'link', value: 'text' },
  { pattern: 'actual-<host>/pong-<peer>', owner: 'host', kind: 'link', value: 'text' },
  { pattern: 'actual-<host>/<name>', owner: 'host', kind: 'link', value: 'text' },
  { pattern: 'defaults/<name>', owner: 'shared', kind: 'link', value: 'text' },
  { pattern: 'defaults-<host>/<name>', owner: 'host', kind: 'link', value: 'text' },
  { pattern: 'todo-global/<name>', owner: 'shared', kind: 'link', value: 'text' },
  { pattern: 'userspace/<name>', owner: 'shared', kind: 'link', value: 'text' },
  { pattern: 'resource-<res>/size', owner: 'shared', kind: 'link', value: 'decimal' },
  { pattern: 'resource-<res>/primary', owner: 'shared', kind: 'link', value: 'host-or-none' },
  { pattern: 'resource-<res>/systemd-<name>', owner: 'shared', kind: 'link', value: 'text' },
  { pattern: 'resource-<res>/data-<host>', owner: 'host', kind: 'link', value: 'abs-path' },
  { pattern: 'resource-<res>/device-<host>', owner: 'host', kind: 'link', value: 'name-or-none' },
  { pattern: 'resource-<res>/replay-<host>', owner: 'host', kind: 'link', value: 'replay-position' },
  { pattern: 'resource-<res>/syncstatus-<host>', owner: 'host', kind: 'link', value: 'decimal' },
  { pattern: 'resource-<res>/log-<seq>-<host>', owner: 'host', kind: 'file', value: 'log-file' },
  { pattern: 'resource-<res>/version-<seq>-<host>', owner: 'host', kind: 'link', value: 'text' },
  { pattern: 'resource-<res>/todo-<host>/{attach,connect,sync,allow-replay}', owner: 'host', kind: 'link', value: 'flag' },
  { pattern: 'resource-<res>/todo-<host>/<name>', owner: 'host', kind: 'link', value: 'text' },
  {
    pattern: 'resource-<res>/actual-<host>/{is-primary,is-attached,is-replaying,is-copying,is-syncing,is-emergency}',
    owner: 'host', kind: 'link', value: 'flag',
  },
  { pattern: 'resource-<res>/actual-<host>/open-count', owner: 'host', kind: 'link', value: 'decimal' },
  { pattern: 'resource-<res>/actual-<host>/replay-code', owner: 'host', kind: 'link', value: 'integer-detail' },
  { pattern: 'resource-<res>/actual-<host>/<name>', owner: 'host', kind: 'link', value: 'text' },
  { pattern: 'resource-<res>/userspace/<name>', owner: 'shared', kind: 'link', value: 'text' },
  { pattern: 'resource-<res>/defaults/<name>', owner: 'shared', kind: 'link', value: 'text' },
  { pattern: 'resource-<res>/defaults-<host>/<name>', owner: 'host', kind: 'link', value: 'text' },
];

/** Longest value accepted, bytes (a symlink target is at most PATH_MAX - 1). */
export const MAX_VALUE_BYTES = 4095;

const isName = (v: string): boolean => nameProblem(v) === null;

/** Each value format: a check and the words used in messages. */
export const VALUE_FORMATS: Readonly<Record<ValueFormat, { readonly test: (v: string) => boolean; readonly description: string }>> = {
  'text': { test: () => true, description: 'text' },
  'flag': { test: (v) => v === '0' || v === '1', description: "'0' or '1'" },
  'decimal': { test: (v) => /^(0|[1-9][0-9]{0,19})$/.test(v), description: 'a decimal number' },
  'integer-detail': {
    test: (v) => /^-?(0|[1-9][0-9]{0,19})(,.*)?$/.test(v),
    description: "an integer, optionally followed by ',<detail>'",
  },
  'uuid': {
    test: (v) => v === '(any)' || /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(v),
    description: "a lower-case UUID or '(any)'",
  },
  'address': {
    test: (v) => v === '-' || /^[0-9A-Za-z][0-9A-Za-z.:%-]{0,253}$/.test(v),
    description: "an IPv4 or IPv6 address or DNS name, or '-'",
  },
  'stamp': { test: (v) => /^[0-9]{1,12}\.[0-9]{6}$/.test(v), description: "a stamp 'sec.usec'" },
  'host-or-none': { test: (v) => v === '(none)' || isName(v), description: "a host name or '(none)'" },
  'name-or-none': { test: (v) => v === '(none)' || isName(v), description: "a device name or '(none)'" },
  'abs-path': { test: (v) => v.startsWith('/') && v.length > 1, description: 'an absolute path' },
  'replay-position': {
    test: (v) => new RegExp(`^log-[0-9]{9}-${NAME_SOURCE},(0|[1-9][0-9]*),(0|[1-9][0-9]*)$`).test(v),
    description: "'log-<seq>-<origin>,<pos>,<len>'",
  },
  'log-file': { test: () => false, description: 'a regular file (a log), never a link' },
};

/** Regex sources of the placeholders. */
const PLACEHOLDERS: Readonly<Record<string, string>> = {
  '<host>': `(?<host>${NAME_SOURCE})`,
  '<res>': `(?<res>${NAME_SOURCE})`,
  /** Another host's name, in a key owned by <host>. */
  '<peer>': `(?:${NAME_SOURCE})`,
  '<seq>': '[0-9]{9}',
  '<name>': '[A-Za-z0-9][A-Za-z0-9._+-]{0,127}',
};

function compile(pattern: string): RegExp {
  let source = '';
  let last = 0;
  for (const m of pattern.matchAll(/<[a-z]+>|\{[^}]*\}/g)) {
    source += escapeRegex(pattern.slice(last, m.index));
    const token = m[0];
    if (token.startsWith('{')) {
      source += `(?:${token.slice(1, -1).split(',').map(escapeRegex).join('|')})`;
    } else {
      const sub = PLACEHOLDERS[token];
      if (sub === undefined) throw new Error(`key table: unknown placeholder ${token} in ${pattern}`);
      source += sub;
    }
    last = m.index + token.length;
  }
  source += escapeRegex(pattern.slice(last));
  return new RegExp(`^${source}$`);
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

const COMPILED = KEY_SHAPES.map((shape) => ({ shape, re: compile(shape.pattern) }));

/**
 * Keys already parsed. A view or a daemon pass touches the same few thousand keys over
 * and over; matching each against the whole table every time cost most of a view's CPU.
 * Bounded: cleared when it grows past PARSED_CACHE_MAX.
 */
const parsedCache = new Map<string, ParsedKey>();
const PARSED_CACHE_MAX = 65536;

/** Match a key against the key table; throws EPHOBOS_KEY if it is malformed or unknown. */
export function parseKey(key: string): ParsedKey {
  const cached = parsedCache.get(key);
  if (cached) return cached;
  const parsed = parseKeyUncached(key);
  if (parsedCache.size >= PARSED_CACHE_MAX) parsedCache.clear();
  parsedCache.set(key, parsed);
  return parsed;
}

function parseKeyUncached(key: string): ParsedKey {
  checkKeyPath(key);
  for (const { shape, re } of COMPILED) {
    const m = re.exec(key);
    if (!m) continue;
    const resource = m.groups?.['res'];
    const host = m.groups?.['host'];
    for (const [kind, name] of [['resource', resource], ['host', host]] as const) {
      const problem = name === undefined ? null : nameProblem(name);
      if (problem) {
        throw new TreeError('EPHOBOS_KEY',
          `invalid key ${quoteForMessage(key)}: ${kind} name '${name}' is not allowed (${problem})`);
      }
    }
    return {
      key, shape,
      ...(resource === undefined ? {} : { resource }),
      ...(host === undefined ? {} : { host }),
    };
  }
  throw new TreeError('EPHOBOS_KEY',
    `invalid key ${quoteForMessage(key)}: not a key of the tree (see the key table in docs/tree.md)`);
}

/** True if `key` is a valid key of the tree. */
export function isValidKey(key: string): boolean {
  try {
    parseKey(key);
    return true;
  } catch {
    return false;
  }
}

/** Who writes `key`: the host in its suffix, or everybody (shared). */
export function ownerOf(key: string): KeyOwner {
  const parsed = parseKey(key);
  if (parsed.shape.owner === 'shared') return { kind: 'shared' };
  // Every owned shape has a <host>; the table test checks it.
  return { kind: 'host', host: parsed.host ?? '' };
}

/** True if `host` may write `key`: it owns it, or the key is shared. */
export function mayWrite(key: string, host: string): boolean {
  const owner = ownerOf(key);
  return owner.kind === 'shared' || owner.host === host;
}

/**
 * Throws EPHOBOS_VALUE unless `value` may be stored at the parsed key. A tombstone
 * (`null`) is valid for every link key.
 */
export function checkValue(parsed: ParsedKey, value: string | null): void {
  const { key, shape } = parsed;
  if (shape.kind === 'file') {
    throw new TreeError('EPHOBOS_KEY', `${key} is a log (a regular file): the store never writes it; the log writer does`);
  }
  if (value === null) return;
  const fail = (why: string): never => {
    throw new TreeError('EPHOBOS_VALUE', `invalid value ${quoteForMessage(value.slice(0, 80))} for ${key}: ${why}`);
  };
  if (value === '') fail('a value cannot be empty');
  if (value === TOMBSTONE) fail(`'${TOMBSTONE}' is the tombstone; use delete`);
  if (value.includes('\0')) fail('a value cannot contain NUL');
  if (Buffer.byteLength(value) > MAX_VALUE_BYTES) fail(`a value is at most ${MAX_VALUE_BYTES} bytes`);
  const format = VALUE_FORMATS[shape.value];
  if (!format.test(value)) fail(`expected ${format.description}`);
}

/** Nine-digit, zero-padded log sequence number, as in `log-000000001-alpha`. */
export function formatSeq(seq: number): string {
  if (!Number.isInteger(seq) || seq < 0 || seq > 999_999_999) {
    throw new TreeError('EPHOBOS_KEY', `invalid log sequence number ${seq}: use 0..999999999`);
  }
  return String(seq).padStart(9, '0');
}

/**
 * Builders assemble keys from checked names and fixed leaves, so the result has a known
 * shape; re-parsing each one cost a view over 1000 resources tens of milliseconds. Every
 * write still validates its key (MarsTree.set -> keyPath -> parseKey).
 */
function built(key: string): string {
  return key;
}

/** `resource-<res>`: the resource's directory. */
export function resourceDir(res: string): string {
  return `resource-${checkName('resource', res)}`;
}

/** `resource-<res>/<leaf>`, checked against the key table. */
export function resourceKey(res: string, leaf: string): string {
  return built(`${resourceDir(res)}/${leaf}`);
}

export function todoKey(res: string, host: string, sw: TodoSwitch | string): string {
  return resourceKey(res, `todo-${checkName('host', host)}/${sw}`);
}

export function actualKey(res: string, host: string, name: ResourceIndicator | string): string {
  return resourceKey(res, `actual-${checkName('host', host)}/${name}`);
}

export function dataKey(res: string, host: string): string {
  return resourceKey(res, `data-${checkName('host', host)}`);
}

export function deviceKey(res: string, host: string): string {
  return resourceKey(res, `device-${checkName('host', host)}`);
}

export function replayKey(res: string, host: string): string {
  return resourceKey(res, `replay-${checkName('host', host)}`);
}

export function logKey(res: string, seq: number, host: string): string {
  return resourceKey(res, `log-${formatSeq(seq)}-${checkName('host', host)}`);
}

export function versionKey(res: string, seq: number, host: string): string {
  return resourceKey(res, `version-${formatSeq(seq)}-${checkName('host', host)}`);
}

export function sizeKey(res: string): string {
  return resourceKey(res, 'size');
}

export function primaryKey(res: string): string {
  return resourceKey(res, 'primary');
}

/** `actual-<host>/<name>`: a host-wide indicator such as `alive` or `time`. */
export function hostActualKey(host: string, name: string): string {
  return built(`actual-${checkName('host', host)}/${name}`);
}

/**
 * `actual-<asker>/ping-<peer>`: a nonce <asker> asks <peer>'s daemon to echo, to prove the
 * link works both ways now (the planned handover's check, wait-cluster).
 */
export function pingKey(asker: string, peer: string): string {
  return hostActualKey(asker, `ping-${checkName('host', peer)}`);
}

/** `actual-<peer>/pong-<asker>`: <peer>'s daemon's echo of <asker>'s last ping. */
export function pongKey(peer: string, asker: string): string {
  return hostActualKey(peer, `pong-${checkName('host', asker)}`);
}

export function ipKey(host: string): string {
  return built(`ips/ip-${checkName('host', host)}`);
}

/** `ips/hostkey-<host>`: the host's sshd public key line, pinned by every peer. */
export function hostKeyKey(host: string): string {
  return built(`ips/hostkey-${checkName('host', host)}`);
}

/** `userspace/<name>`, or `resource-<res>/userspace/<name>` when `res` is given. */
export function userspaceKey(name: string, res?: string): string {
  return res === undefined ? built(`userspace/${name}`) : resourceKey(res, `userspace/${name}`);
}

export const UUID_KEY = 'uuid';
