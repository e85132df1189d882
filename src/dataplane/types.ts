/**
 * Types of the data plane: log records, scan outcomes and faults, as the native addon
 * reports them. docs/log-format.md is the reference for every field.
 */

/** Record types, spelled as `marsadm log-cat` prints them. */
export type RecordType = 'write' | 'zero' | 'sync-mark';

/** Payload codecs. `none` stores the data as is. */
export type Codec = 'none' | 'lz4' | 'zstd';

/** Wire numbers of the codecs (the `codec` byte of a record header). */
export const CODEC_IDS: Readonly<Record<Codec, number>> = { none: 0, lz4: 1, zstd: 2 };

/** One verified record of a log file. */
export interface LogRecord {
  /** Log offset of the record header, bytes. */
  readonly offset: number;
  /** Bytes the record takes in the log, header and padding included. */
  readonly size: number;
  /** Record number within its log file; the first is 1. */
  readonly seq: number;
  readonly type: RecordType;
  readonly codec: Codec;
  /** Payload bytes stored in the log (compressed size if compressed). */
  readonly storedLength: number;
  /** Device bytes covered by the record. */
  readonly length: number;
  /** Byte offset on the device. */
  readonly deviceOffset: number;
  /** Lamport stamp of the write, nanoseconds since the epoch. */
  readonly stampNs: bigint;
  /** Log offset that was durable when this record was written. */
  readonly syncedPosition: number;
  /** crc32c of the uncompressed payload. */
  readonly payloadCrc: number;
  /** The uncompressed data, when asked for (`withData`); null for non-write records. */
  readonly data?: Buffer | null;
}

/** Stable codes of the reasons a record is refused (kernel/common phobos_log_err). */
export type FaultCode =
  | 'truncated' | 'bad-magic' | 'bad-version' | 'header-crc' | 'bad-type' | 'bad-codec'
  | 'bad-length' | 'bad-stored-length' | 'device-range' | 'synced-pos' | 'reserved'
  | 'padding' | 'sequence' | 'decompress' | 'payload-crc' | 'codec-unavailable';

/** Why reading stopped at a damaged record. */
export interface LogFault {
  /** Log offset of the damaged record, bytes. */
  readonly offset: number;
  readonly code: FaultCode;
  /** The core's words for the code, e.g. "payload crc32c mismatch". */
  readonly reason: string;
  /** The value found (meaning depends on code; see kernel/common/phobos_log.h). */
  readonly got: bigint;
  /** The value expected. */
  readonly want: bigint;
  /** For corruption: offset of the later header whose synced position proves the damage. */
  readonly evidenceOffset?: number;
}

/**
 * How a walk over a log ended.
 * - `end`: clean end of the log.
 * - `need-more`: the file ends inside a record and may still grow.
 * - `torn`: torn tail at `fault.offset`; the bytes from there are discarded.
 * - `corrupt`: corruption at `fault.offset`; nothing from there is used.
 * - `damaged`: a damaged record in a log that is not final; judged once it is.
 * - `limit`: stopped early by `maxRecords` or a `to` position; more may follow.
 */
export type WalkStatus = 'end' | 'need-more' | 'torn' | 'corrupt' | 'damaged' | 'limit';

export interface WalkEnd {
  readonly status: WalkStatus;
  /** Log offset reached: the next record starts here. */
  readonly position: number;
  /** Sequence number the next record must carry (0 if unknown). */
  readonly nextSeq: number;
  /** File size seen, bytes. */
  readonly fileSize: number;
  readonly fault?: LogFault;
}

export interface ScanResult extends WalkEnd {
  readonly records: LogRecord[];
  /**
   * Bytes known to be missing at `position` (scanBuffer, `need-more`): the rest of the
   * header while the header is incomplete, then the rest of the record.
   */
  readonly needBytes?: number;
}

export interface ReplayResult extends WalkEnd {
  /** Records applied (sync marks excluded). */
  readonly records: number;
  /** Device bytes applied. */
  readonly bytes: number;
  /** Whether O_DIRECT was used for aligned writes. */
  readonly direct: boolean;
}

/** Where an append landed. */
export interface AppendResult {
  readonly seq: number;
  /** Log offset of the record. */
  readonly position: number;
  /** Log offset after the record. */
  readonly end: number;
  /** Payload bytes stored (smaller than the data when compressed). */
  readonly stored: number;
}

export interface CodecStatus {
  readonly available: boolean;
  /** File looked for with dlopen, e.g. liblz4.so.1. */
  readonly library: string;
  readonly version: string;
  /** Why it is unavailable. */
  readonly error: string;
}
