/**
 * Reading logs: iterate verified records, or check a whole file.
 *
 * @example
 * for await (const rec of scanLog(path)) console.log(rec.seq, rec.deviceOffset);
 */
import { native } from './native.js';
import type { Codec, LogRecord, RecordType, ScanResult, WalkEnd } from './types.js';

export interface ScanOptions {
  /** Log offset to start at (a record boundary). @default 0 */
  from?: number;
  /** Sequence number the first record must have; 0 accepts any. @default 0 */
  expectSeq?: number;
  /**
   * The end of the file is the end of the log (no writer appends). When false, a record
   * cut by the end of the file means "need more bytes", not a torn tail.
   * @default true
   */
  final?: boolean;
  /** Include each record's uncompressed data. @default false */
  withData?: boolean;
  /** Records per native call. @default 4096 */
  batchRecords?: number;
}

/** Scan one batch of records from a file. */
export function scanFileBatch(path: string, options: ScanOptions & { maxRecords?: number }): Promise<ScanResult> {
  return native.scanFile(path, {
    from: options.from ?? 0,
    expectSeq: options.expectSeq ?? 0,
    final: options.final ?? true,
    withData: options.withData ?? false,
    maxRecords: options.maxRecords ?? options.batchRecords ?? 4096,
  });
}

/**
 * Yield every verified record of a log; the generator's return value says how the walk
 * ended (end, torn, corrupt, ...). Memory stays bounded by one batch.
 */
export async function* scanLog(path: string, options: ScanOptions = {}): AsyncGenerator<LogRecord, WalkEnd> {
  let from = options.from ?? 0;
  let expectSeq = options.expectSeq ?? 0;
  for (;;) {
    const batch = await scanFileBatch(path, { ...options, from, expectSeq });
    yield* batch.records;
    if (batch.status !== 'limit') {
      const { records: _records, ...end } = batch;
      return end;
    }
    from = batch.position;
    expectSeq = batch.nextSeq;
  }
}

/** Verify records held in memory, e.g. bytes just fetched from a peer. */
export function scanBuffer(buf: Uint8Array, options: { base?: number; expectSeq?: number; atEof?: boolean } = {}): Promise<ScanResult> {
  return native.scanBuffer(buf, options);
}

/** Summary of a whole log file, as `marsadm log-check` prints it. */
export interface LogCheckReport {
  readonly file: string;
  readonly status: WalkEnd['status'];
  readonly records: number;
  readonly recordsByType: Readonly<Record<RecordType, number>>;
  readonly recordsByCodec: Readonly<Record<Codec, number>>;
  /** Bytes of device data the records cover. */
  readonly deviceBytes: number;
  /** Payload bytes stored (after compression). */
  readonly storedBytes: number;
  /** Bytes of valid log (offset after the last good record). */
  readonly validBytes: number;
  readonly fileBytes: number;
  /** deviceBytes / storedBytes over write records (1 when nothing is compressed). */
  readonly compressionRatio: number;
  readonly firstSeq: number | null;
  readonly lastSeq: number | null;
  /** Where and why reading stopped, when it did not end cleanly. */
  readonly fault?: WalkEnd['fault'];
}

export async function checkLog(file: string, options: Pick<ScanOptions, 'final'> = {}): Promise<LogCheckReport> {
  const byType: Record<RecordType, number> = { write: 0, zero: 0, 'sync-mark': 0 };
  const byCodec: Record<Codec, number> = { none: 0, lz4: 0, zstd: 0 };
  let records = 0, deviceBytes = 0, storedBytes = 0, writeBytes = 0, writeStored = 0;
  let firstSeq: number | null = null, lastSeq: number | null = null;
  const walk = scanLog(file, { final: options.final ?? true, batchRecords: 16384 });
  let step = await walk.next();
  while (!step.done) {
    const rec = step.value;
    records++;
    byType[rec.type]++;
    byCodec[rec.codec]++;
    deviceBytes += rec.length;
    storedBytes += rec.storedLength;
    if (rec.type === 'write') {
      writeBytes += rec.length;
      writeStored += rec.storedLength;
    }
    firstSeq ??= rec.seq;
    lastSeq = rec.seq;
    step = await walk.next();
  }
  const end = step.value;
  return {
    file,
    status: end.status,
    records,
    recordsByType: byType,
    recordsByCodec: byCodec,
    deviceBytes,
    storedBytes,
    validBytes: end.position,
    fileBytes: end.fileSize,
    compressionRatio: writeStored > 0 ? writeBytes / writeStored : 1,
    firstSeq,
    lastSeq,
    ...(end.fault ? { fault: end.fault } : {}),
  };
}
