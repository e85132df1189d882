/**
 * Markers: comment lines in a template (exactly one `#`, a space, then the marker) that
 * say what the generator and `systemd-trigger-extern` do with the unit. They are read
 * from the rendered text, so `# ALSO=` may use template variables.
 *
 * | marker | meaning |
 * |---|---|
 * | `# ALWAYS_START` | started (and enabled if it has `[Install]`) whenever it is generated: the path watchers |
 * | `# KEEP_RUNNING` | when it is no longer wanted its file goes, but it is not stopped |
 * | `# ALWAYS_DISABLED` | generated only; never enabled or started by the generator |
 * | `# <KEYWORD>_START` | a start unit of `set-systemd-unit RES <KEYWORD>` (e.g. `DEFAULT`, `MOUNTED`) |
 * | `# <KEYWORD>_STOP` | a stop unit of `set-systemd-unit RES <KEYWORD>` |
 * | `# ALSO=<unit>` | generate `<unit>` too (a dependency systemd cannot see, e.g. a script) |
 */

export interface UnitMarkers {
  readonly alwaysStart: boolean;
  readonly keepRunning: boolean;
  readonly alwaysDisabled: boolean;
  /** Keywords this unit starts for (`DEFAULT` from `# DEFAULT_START`). */
  readonly startFor: readonly string[];
  /** Keywords this unit stops for. */
  readonly stopFor: readonly string[];
  /** Extra units to generate with this one. */
  readonly also: readonly string[];
}

/** A keyword of `set-systemd-unit`: capitals, digits and `_`, starting with a capital. */
export const KEYWORD_PATTERN = /^[A-Z][A-Z0-9_]*$/;

/** ALWAYS is a marker of its own, not a keyword. */
const RESERVED_KEYWORDS = new Set(['ALWAYS']);

export function isKeyword(word: string): boolean {
  return KEYWORD_PATTERN.test(word) && !RESERVED_KEYWORDS.has(word);
}

export function parseMarkers(text: string): UnitMarkers {
  const startFor: string[] = [], stopFor: string[] = [], also: string[] = [];
  let alwaysStart = false, keepRunning = false, alwaysDisabled = false;
  for (const line of text.split('\n')) {
    const m = /^# ([A-Z][A-Z0-9_]*?)_(START|STOP)\s*$/.exec(line);
    if (m) {
      if (m[1] === 'ALWAYS' && m[2] === 'START') alwaysStart = true;
      else if (isKeyword(m[1]!)) (m[2] === 'START' ? startFor : stopFor).push(m[1]!);
      continue;
    }
    const a = /^# ALSO=(\S+)\s*$/.exec(line);
    if (a) also.push(a[1]!);
    else if (/^# KEEP_RUNNING\s*$/.test(line)) keepRunning = true;
    else if (/^# ALWAYS_DISABLED\s*$/.test(line)) alwaysDisabled = true;
  }
  return { alwaysStart, keepRunning, alwaysDisabled, startFor, stopFor, also };
}

/** Settings whose values name other units: the generator follows them (transitive closure). */
const REFERENCE_SETTINGS = /^(Unit|Requires|Requisite|Wants|BindsTo|PartOf|Upholds|After|Before|OnFailure|OnSuccess|Also|PropagatesReloadTo|ReloadPropagatedFrom)=(.*)$/;

/** Unit names referenced by the rendered unit: dependency settings plus `# ALSO=` lines. */
export function referencedUnits(text: string): string[] {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const m = REFERENCE_SETTINGS.exec(line.trim());
    if (m) for (const name of m[2]!.split(/\s+/)) if (name !== '') names.add(name);
  }
  for (const name of parseMarkers(text).also) names.add(name);
  return [...names];
}
