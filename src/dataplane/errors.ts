/**
 * Errors of the data plane. A message names the file, the offset and what was expected,
 * so `marsadm` can print it as the one line an operator reads.
 */
import type { LogFault, WalkEnd } from './types.js';

/** A log that cannot be used as asked: corruption, a foreign file, an unknown version. */
export class LogError extends Error {
  override readonly name = 'LogError';
  constructor(
    message: string,
    /** `torn`, `corrupt`, `damaged`, or a Phobos error code such as EPHOBOS_CORRUPT. */
    readonly code: string,
    readonly file: string,
    readonly offset?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A codec the log or the caller needs is not loaded on this host. */
export class CodecUnavailableError extends Error {
  override readonly name = 'CodecUnavailableError';
  readonly code = 'EPHOBOS_CODEC';
}

const hex = (v: bigint): string => `0x${v.toString(16).padStart(8, '0')}`;

/** The fault in words, with the values found and expected. */
export function describeFault(fault: LogFault): string {
  const { code, got, want } = fault;
  switch (code) {
    case 'bad-magic':
      return got === 0n
        ? 'zero bytes where a record header should start'
        : `bad magic ${hex(got)}, expected ${hex(want)} ("PHLG"): not a Phobos log or overwritten`;
    case 'bad-version':
      return `format version ${got}, this build reads version ${want}`;
    case 'header-crc':
      return `header crc32c ${hex(got)} stored, ${hex(want)} computed`;
    case 'payload-crc':
      return `payload crc32c ${hex(got)} computed, ${hex(want)} stored`;
    case 'sequence':
      return `record sequence ${got}, expected ${want}`;
    case 'truncated':
      return `file ends ${want - got} bytes before the record does (${got} of ${want} present)`;
    case 'bad-length':
      return `length ${got} out of range (limit ${want})`;
    case 'bad-stored-length':
      return `stored length ${got} does not fit length ${want} and the codec`;
    case 'synced-pos':
      return `synced position ${got} lies beyond the record at ${want}`;
    case 'padding':
      return `non-zero padding byte ${got} bytes into the payload`;
    case 'bad-type':
      return `unknown record type ${got}`;
    case 'bad-codec':
      return `unknown codec ${got}`;
    case 'codec-unavailable':
      return `record compressed with codec ${got}, which this host cannot load (see marsadm log-check --help)`;
    default:
      return fault.reason;
  }
}

/**
 * One line for a walk that did not end cleanly, or null if it did:
 * `log-000000001-a: corruption at offset 4160: payload crc32c 0x... computed, 0x... stored`.
 */
export function describeWalkEnd(file: string, end: WalkEnd): string | null {
  const { fault } = end;
  if (!fault) return null;
  const what = describeFault(fault);
  switch (end.status) {
    case 'torn':
      return `${file}: torn tail at offset ${fault.offset} (${what}); ` +
        `the log is valid up to offset ${fault.offset}`;
    case 'corrupt': {
      const proof = fault.evidenceOffset !== undefined && fault.evidenceOffset !== fault.offset
        ? `; the record at ${fault.evidenceOffset} shows these bytes were durable` : '';
      return `${file}: corruption at offset ${fault.offset}: ${what}${proof}`;
    }
    case 'damaged':
      return `${file}: damaged record at offset ${fault.offset}: ${what} (log still growing)`;
    default:
      return null;
  }
}
