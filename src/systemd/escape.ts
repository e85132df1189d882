/**
 * systemd's path escaping, byte for byte as `systemd-escape --path` and
 * `systemd-escape --unescape --path` (systemd 252) do it, so a generated mount unit's file
 * name agrees with its `Where=` (systemd refuses the unit otherwise).
 *
 * @example
 * escapePath('/mnt/my-data');     // 'mnt-my\\x2ddata'
 * unescapePath('mnt-my\\x2ddata'); // '/mnt/my-data'
 */

/** Bytes systemd keeps as they are (a `.` only when it is not the first byte). */
const KEPT = /^[A-Za-z0-9:_.]$/;

export class EscapeError extends Error {
  override readonly name = 'EscapeError';
}

/**
 * `systemd-escape --path PATH`: drop empty and `.` segments, join with `-`, escape every
 * other byte as `\xNN` (UTF-8 bytes one by one), and a leading `.` too. `/` alone is `-`.
 * A `..` segment is refused, as systemd refuses it (the path is not normalized).
 */
export function escapePath(path: string): string {
  if (path.includes('\0')) throw new EscapeError(`cannot escape a path containing NUL: ${JSON.stringify(path)}`);
  const segments = path.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) {
    throw new EscapeError(`cannot escape ${JSON.stringify(path)}: it is not a normalized path (remove the '..')`);
  }
  if (segments.length === 0) return '-';
  const bytes = Buffer.from(segments.join('/'), 'utf8');
  let out = '';
  for (let i = 0; i < bytes.length; i++) out += escapeByte(bytes[i]!, i === 0);
  return out;
}

function escapeByte(byte: number, first: boolean): string {
  const c = String.fromCharCode(byte);
  if (c === '/') return '-';
  if (byte < 0x80 && KEPT.test(c) && !(first && c === '.')) return c;
  return `\\x${byte.toString(16).padStart(2, '0')}`;
}

/**
 * `systemd-escape --unescape --path NAME`: `-` becomes `/`, `\xNN` the byte NN, and the
 * result gets a leading `/`. Refused as systemd refuses it: empty, a leading or trailing
 * `-`, `--`, a `\` not followed by `x` and two hex digits, and a result that is not a
 * normalized path (`.` or `..` segments, NUL).
 */
export function unescapePath(name: string): string {
  if (name === '-') return '/';
  const bad = (why: string): never => {
    throw new EscapeError(`cannot unescape ${JSON.stringify(name)} as a path: ${why}`);
  };
  if (name === '') bad('it is empty');
  if (name.startsWith('-') || name.endsWith('-') || name.includes('--')) bad("a '-' at either end or '--' makes an empty path segment");
  const bytes: number[] = [];
  for (let i = 0; i < name.length; i++) {
    const c = name[i]!;
    if (c === '-') {
      bytes.push(0x2f);
    } else if (c === '\\') {
      const hex = name.slice(i + 2, i + 4);
      if (name[i + 1] !== 'x' || !/^[0-9a-fA-F]{2}$/.test(hex)) bad(`'\\' at offset ${i} does not start a \\xNN escape`);
      bytes.push(parseInt(hex, 16));
      i += 3;
    } else {
      bytes.push(...Buffer.from(c, 'utf8'));
    }
  }
  const path = '/' + Buffer.from(bytes).toString('utf8');
  if (path.includes('\0')) bad('it decodes to a NUL byte');
  if (path.split('/').slice(1).some((s) => s === '' || s === '.' || s === '..')) bad('it is not a normalized path');
  return path;
}

/**
 * One argument of an `ExecStart=` line: double-quoted, with `\` and `"` escaped, and `%`
 * doubled so systemd does not read it as a specifier.
 */
export function execArgument(text: string): string {
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`).replace(/%/g, '%%')}"`;
}

/** A value of a unit setting that expands specifiers (`Where=`, `PathChanged=`): `%` doubled. */
export function escapeSpecifiers(text: string): string {
  return text.replace(/%/g, '%%');
}
