/**
 * Version links (docs/replication.md "Version links"): every host that has written
 * (origin) or completely replayed (replica) log N publishes
 * `version-<N>-<host>` = `<digest>,<log name>,<end offset>:<previous first section>`.
 * The digest covers the log name, the end offset and the previous link's first section,
 * which holds the previous digest: a hash chain over the whole history, so two hosts agree
 * on log N iff they agree on every log before it.
 *
 * Reading links is here; making one (versionValue, which needs node:crypto) is in
 * version_value.ts, so that views, which only read them, do not load crypto (~7 ms).
 */
export interface VersionLink {
  readonly digest: string;
  readonly log: string;
  readonly offset: number;
  /** `<digest>,<log>,<offset>` of the previous link, or '' at the start of a chain. */
  readonly previous: string;
}

export function parseVersion(value: string | undefined): VersionLink | null {
  if (!value) return null;
  const m = /^([0-9a-f]{32}),(log-[0-9]{9}-[^,:]+),([0-9]+):(.*)$/.exec(value);
  return m ? { digest: m[1]!, log: m[2]!, offset: Number(m[3]), previous: m[4]! } : null;
}

/** `<digest>,<log>,<offset>` of a version link's value: what the next link chains to. */
export function firstSection(value: string): string {
  const i = value.indexOf(':');
  return i < 0 ? value : value.slice(0, i);
}
