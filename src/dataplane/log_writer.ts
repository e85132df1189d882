/**
 * LogWriter appends device writes to one transaction log file.
 *
 * Completion: `write()` settles once the record is in the log file (page cache); with
 * `durable: true` it settles only after fdatasync, and every durable write waiting at
 * the same time shares one fdatasync (group commit). `sync()` makes everything before it
 * durable. This is the completion rule of docs/log-format.md ("Writing").
 *
 * @example
 * const log = await LogWriter.open('/mars/resource-r/log-000000001-a');
 * await log.write(4096, Buffer.from('hello'), { durable: true });
 * await log.close();
 */
import { requireCodec } from './codecs.js';
import { native, type NativeLogWriter } from './native.js';
import { CODEC_IDS, type AppendResult, type Codec } from './types.js';

export interface LogWriterOptions {
  /**
   * Payload compression, used per record only when it saves space.
   * @default 'none'
   */
  codec?: Codec;
}

export interface WriteOptions {
  /** Lamport stamp of the write, ns. @default the wall clock */
  stampNs?: bigint;
  /** Settle only once durable (FUA or a write before a FLUSH). @default false */
  durable?: boolean;
}

/** What open() found in an existing log. */
export interface OpenReport {
  /** Valid records found. */
  readonly records: number;
  /** Bytes of torn tail cut off (a crash during the last append). */
  readonly truncatedBytes: number;
}

/** The largest device range one record covers; larger writes become several records. */
export const MAX_RECORD_LENGTH: number = native.maxRecordLength;

export class LogWriter {
  private constructor(
    readonly path: string,
    private readonly handle: NativeLogWriter,
    readonly opened: OpenReport,
  ) {}

  /**
   * Open (or create) a log for appending. An existing log is scanned: a torn tail is cut
   * off, corruption refuses the open (code EPHOBOS_CORRUPT).
   */
  static async open(path: string, options: LogWriterOptions = {}): Promise<LogWriter> {
    const codec = options.codec ?? 'none';
    requireCodec(codec);
    const handle = new native.LogWriter(path, CODEC_IDS[codec]);
    const report = await handle.open();
    return new LogWriter(path, handle, { records: report.records, truncatedBytes: report.truncatedBytes });
  }

  /** Log data written at deviceOffset. Resolves with one result per record used. */
  write(deviceOffset: number, data: Uint8Array, options: WriteOptions = {}): Promise<AppendResult[]> {
    const stamp = options.stampNs ?? wallClockNs();
    const durable = options.durable ?? false;
    const parts: Promise<AppendResult>[] = [];
    for (let at = 0; at < data.length; at += MAX_RECORD_LENGTH) {
      const piece = data.subarray(at, Math.min(data.length, at + MAX_RECORD_LENGTH));
      parts.push(this.handle.append(deviceOffset + at, piece, piece.length, stamp, durable));
    }
    return Promise.all(parts);
  }

  /** Log that [deviceOffset, deviceOffset+length) now reads as zeros (TRIM, WRITE_ZEROES). */
  zero(deviceOffset: number, length: number, options: WriteOptions = {}): Promise<AppendResult[]> {
    const stamp = options.stampNs ?? wallClockNs();
    const parts: Promise<AppendResult>[] = [];
    for (let at = 0; at < length; at += MAX_RECORD_LENGTH) {
      const n = Math.min(MAX_RECORD_LENGTH, length - at);
      parts.push(this.handle.append(deviceOffset + at, null, n, stamp, options.durable ?? false));
    }
    return Promise.all(parts);
  }

  /** Make every record written so far durable. */
  async sync(): Promise<void> {
    await this.handle.sync();
  }

  /** Settle everything queued, seal the log with a sync mark (unless seal is false), close. */
  async close(options: { seal?: boolean } = {}): Promise<void> {
    await this.handle.close(options.seal ?? true);
  }

  /** Log offset after the last written record. */
  get position(): number {
    return this.handle.position;
  }

  /** Log offset up to which the log is durable. */
  get syncedPosition(): number {
    return this.handle.syncedPosition;
  }

  /** fdatasync calls made so far (group commit makes this far fewer than durable writes). */
  get syncs(): number {
    return this.handle.syncs;
  }

  /** Sequence number the next record gets. */
  get nextSeq(): number {
    return this.handle.nextSeq;
  }
}

function wallClockNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}
