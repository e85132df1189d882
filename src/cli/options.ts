/**
 * Command-line parsing: global options (MARS's, valid with every command) and each
 * command's own. Options may come before or after the command; `--` ends options.
 */
import { UsageError } from './errors.js';

export type OptionKind = 'boolean' | 'string' | 'integer';

export interface OptionSpec {
  /** Long name without dashes, e.g. `from`. */
  readonly name: string;
  readonly kind: OptionKind;
  /** One-letter alias, e.g. `v`. */
  readonly short?: string;
  /** Placeholder in help, e.g. OFFSET. */
  readonly value?: string;
  readonly help: string;
}

/** The options every command accepts, as MARS operators know them. */
export const GLOBAL_OPTIONS: readonly OptionSpec[] = [
  { name: 'root', kind: 'string', value: 'DIR', help: 'the /mars tree (env MARS_ROOT; default /mars)' },
  { name: 'host', kind: 'string', value: 'NAME', help: 'act as this host (env MARS_HOST; default the host name)' },
  { name: 'timeout', kind: 'integer', value: 'SECONDS', help: 'give up waiting after this long (default 60)' },
  { name: 'force', kind: 'boolean', help: 'override safety checks where a command allows it' },
  { name: 'dry-run', kind: 'boolean', help: 'print what would be done, change nothing' },
  { name: 'json', kind: 'boolean', help: 'machine-readable output' },
  { name: 'verbose', kind: 'boolean', short: 'v', help: 'say more' },
  { name: 'help', kind: 'boolean', short: 'h', help: 'show help for the command' },
];

export type OptionValues = Record<string, string | number | boolean | undefined>;

/** --timeout default, seconds. */
export const DEFAULT_TIMEOUT_S = 60;

/** --timeout in ms. Here, not in tree_access.ts, so hooks can use it without loading the tree. */
export function timeoutMs(ctx: { readonly options: OptionValues }): number {
  return Number(ctx.options['timeout'] ?? DEFAULT_TIMEOUT_S) * 1000;
}

export interface ParsedLine {
  readonly command: string | undefined;
  readonly args: string[];
  readonly options: OptionValues;
}

/**
 * Split argv into command, positional arguments and options. specsFor(command) gives the
 * command's own options once the command word is known.
 */
export function parseCommandLine(argv: readonly string[],
  specsFor: (command: string | undefined) => readonly OptionSpec[]): ParsedLine {
  const options: OptionValues = {};
  const positionals: string[] = [];
  let command: string | undefined;
  let onlyPositionals = false;

  // The command is the first word that is not an option (options take values with `=`
  // or as the next word, so find the command first with a light pass).
  const all = () => [...GLOBAL_OPTIONS, ...specsFor(command)];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (onlyPositionals || word === '-' || !word.startsWith('-')) {
      if (command === undefined) command = word;
      else positionals.push(word);
      continue;
    }
    if (word === '--') {
      onlyPositionals = true;
      continue;
    }
    const long = word.startsWith('--');
    const [rawName, inline] = long ? splitOnce(word.slice(2), '=') : [word.slice(1), undefined];
    const matches = (s: OptionSpec): boolean => (long ? s.name === rawName : s.short === rawName);
    const spec = all().find(matches) ?? (command === undefined ? laterCommandOption(argv.slice(i + 1), specsFor, matches) : undefined);
    if (!spec) {
      const where = command ? `marsadm ${command}` : 'marsadm';
      throw new UsageError(`${where}: unknown option ${word}; see \`${where} --help\``);
    }
    if (spec.kind === 'boolean') {
      if (inline !== undefined) throw new UsageError(`option --${spec.name} takes no value`);
      options[spec.name] = true;
      continue;
    }
    const value = inline ?? argv[++i];
    if (value === undefined) throw new UsageError(`option --${spec.name} needs a value (${spec.value ?? 'VALUE'})`);
    options[spec.name] = spec.kind === 'integer' ? parseInteger(spec.name, value) : value;
  }
  return { command, args: positionals, options };
}

/**
 * A command's own option given before the command word (`marsadm --ssh-dir D daemon`):
 * found by asking each later word, as a command, whether it has the option.
 */
function laterCommandOption(rest: readonly string[], specsFor: (command: string | undefined) => readonly OptionSpec[],
  matches: (s: OptionSpec) => boolean): OptionSpec | undefined {
  for (const word of rest) {
    if (word.startsWith('-')) continue;
    const spec = specsFor(word).find(matches);
    if (spec) return spec;
  }
  return undefined;
}

function splitOnce(s: string, sep: string): [string, string | undefined] {
  const at = s.indexOf(sep);
  return at < 0 ? [s, undefined] : [s.slice(0, at), s.slice(at + 1)];
}

/** A non-negative integer, with k/M/G (binary) suffixes for sizes. */
export function parseInteger(name: string, text: string): number {
  const m = /^(\d+)([kKmMgGtT]?)$/.exec(text.trim());
  if (!m) throw new UsageError(`option --${name}: '${text}' is not a non-negative integer`);
  const scale = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase()] ?? 1;
  const value = Number(m[1]) * scale;
  if (!Number.isSafeInteger(value)) throw new UsageError(`option --${name}: '${text}' is too large`);
  return value;
}
