/**
 * The userspace engine: a resource's device on the primary, served by the daemon (through
 * NBD) when the kernel module is not used.
 *
 * Write path, in this order:
 *  1. the write is appended to the transaction log (LogWriter);
 *  2. it enters the pending overlay, so reads see it at once;
 *  3. it is acknowledged: a plain write once the log has it (page cache), a FUA write
 *     once the log is durable; FLUSH makes every acknowledged write durable in the log;
 *  4. writeback applies pending writes to the disk asynchronously, in log order, and
 *     drops them from the overlay;
 *  5. a checkpoint (disk fdatasync, then the log position written back) is saved now and
 *     then, so recovery knows where to start replaying.
 *
 * Recovery: open() cuts a torn log tail, replays the log from the last checkpoint onto the
 * disk (idempotent, so an old checkpoint only costs time) and only then serves. Because
 * the log holds every acknowledged write before it is acknowledged, killing the daemon at
 * any point loses none; a machine crash loses only writes never made durable (no FUA or
 * FLUSH covered them), as with any disk. docs/userspace-engine.md has the worked trace.
 */
import { constants as fsConstants } from 'node:fs';
import { open as openFile, type FileHandle } from 'node:fs/promises';

import { LogWriter } from './log_writer.js';
import { native } from './native.js';
import { EngineError, replayForRecovery, type Checkpoint, type DeviceEngine, type EngineOptions, type RecoveryReport } from './engine.js';
import type { Codec } from './types.js';

export interface UserEngineOptions extends EngineOptions {
  /** Most bytes held in the overlay before writes wait for writeback. @default 64 MiB */
  maxPendingBytes?: number;
}

export { EngineError, type Checkpoint, type RecoveryReport };

/** A write not yet on the disk. `data` null means a zeroed range. */
interface Pending {
  readonly order: number;
  readonly offset: number;
  readonly length: number;
  readonly data: Buffer | null;
  /** Log offset after this write's last record. */
  end: number;
}

/**
 * `data`, or a copy when it is a small view into a larger buffer (a 4 KiB write cut from a
 * 64 KiB socket read): the overlay would otherwise pin the whole chunk until writeback.
 * A large write has a buffer of its own (the server assembles it), and copying it cost
 * the daemon 15 % of its CPU in the nbd-write benchmark.
 */
function ownBuffer(data: Buffer): Buffer {
  return data.byteLength * 2 >= data.buffer.byteLength ? data : Buffer.from(data);
}

/** Granule of the overlay index: a pending write is filed under each 64 KiB it touches. */
const GRANULE_SHIFT = 16;
const ZEROS = Buffer.alloc(1 << 20);

export class UserEngine implements DeviceEngine {
  readonly kind = 'user' as const;
  readonly canCeaseLogging = true;
  private readonly pending: Pending[] = [];
  private readonly index = new Map<number, Set<Pending>>();
  private pendingBytes = 0;
  private order = 0;
  private writebackRunning = false;
  private writebackError: Error | null = null;
  private drainedWaiters: (() => void)[] = [];
  private spaceWaiters: (() => void)[] = [];
  private writtenBack: number;
  /** The last checkpoint saved; null until the first one after recovery. */
  private saved: Checkpoint | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  /** Set while the log is being switched: new requests wait for it. */
  private switching: Promise<void> | null = null;
  private closed = false;
  /** Emergency mode (docs/emergency.md): no log, writes go straight to the disk. */
  private direct = false;

  private constructor(
    private readonly opts: Required<Omit<UserEngineOptions, 'checkpoint' | 'onLogGrowth'>> & Pick<UserEngineOptions, 'onLogGrowth'>,
    private readonly disk: FileHandle,
    private log: LogWriter,
    readonly recovery: RecoveryReport,
  ) {
    this.writtenBack = log.position;
  }

  /** Recover (cut torn tail, replay from the checkpoint) and return a device ready to serve. */
  static async open(options: UserEngineOptions): Promise<UserEngine> {
    const opts = {
      codec: 'none' as Codec,
      maxPendingBytes: 64 << 20,
      checkpointIntervalMs: 1000,
      ...options,
    };
    // O_EXCL claims a block device as phobos.ko does: a mounted disk (an operator looking
    // at a secondary's copy) is refused with EBUSY instead of being written under its
    // filesystem. Our own recovery replay opens it again without O_EXCL, which a claim
    // allows. For a regular file O_EXCL without O_CREAT means nothing.
    const disk = await openFile(opts.diskPath, fsConstants.O_RDWR | fsConstants.O_EXCL).catch((e: NodeJS.ErrnoException) => {
      throw new EngineError(`cannot open disk ${opts.diskPath}: ${e.message}` +
        (e.code === 'EBUSY' ? ' (the disk is in use: mounted, or held by another program; free it and retry)' : ''), e.code ?? 'EIO');
    });
    try {
      const st = await disk.stat();
      if (st.isFile() && st.size < opts.sizeBytes) {
        await disk.truncate(opts.sizeBytes);      // sparse test mode: grow, never shrink
      } else if (!st.isFile()) {
        const size = native.deviceSize(opts.diskPath);
        if (size < opts.sizeBytes) {
          throw new EngineError(`disk ${opts.diskPath} has ${size} bytes, the resource needs ${opts.sizeBytes}; ` +
            'use a larger device or a smaller resource size', 'EPHOBOS_SIZE');
        }
      }
      const log = await LogWriter.open(opts.logPath, { codec: opts.codec });
      const replayed = await UserEngine.recover(opts.checkpoint, opts.logPath, opts.diskPath);
      const engine = new UserEngine(opts, disk, log, {
        truncatedBytes: log.opened.truncatedBytes,
        replayedRecords: replayed.records,
        replayedBytes: replayed.bytes,
      });
      await engine.saveCheckpoint();
      return engine;
    } catch (error) {
      await disk.close();
      throw error;
    }
  }

  /**
   * Replay what the disk may lack: the rest of the checkpoint's log (if rotation left an
   * older one), then the current log from the checkpoint (or from its start).
   */
  private static async recover(checkpoint: Checkpoint | null, logPath: string, diskPath: string): Promise<{ records: number; bytes: number }> {
    const older = checkpoint && checkpoint.logPath !== logPath
      ? await replayForRecovery(checkpoint.logPath, diskPath, checkpoint.position)
      : { records: 0, bytes: 0 };
    const current = await replayForRecovery(logPath, diskPath, checkpoint?.logPath === logPath ? checkpoint.position : 0);
    return { records: older.records + current.records, bytes: older.bytes + current.bytes };
  }

  get sizeBytes(): number {
    return this.opts.sizeBytes;
  }

  /** Log offset after the last appended record. */
  get logPosition(): number {
    return this.log.position;
  }

  /** Log offset up to which writes are on the disk. */
  get writtenBackPosition(): number {
    return this.writtenBack;
  }

  get logPath(): string {
    return this.opts.logPath;
  }

  /** Bytes waiting for writeback. */
  get pendingWriteBytes(): number {
    return this.pendingBytes;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.checkRange(offset, length);
    // Take the overlapping pending writes before reading the disk: one written back and
    // dropped meanwhile is then still applied (same bytes), never lost.
    const overlay = this.overlapping(offset, length);
    const out = Buffer.alloc(length);
    const { bytesRead } = await this.disk.read(out, 0, length, offset);
    if (bytesRead < length) out.fill(0, bytesRead);
    for (const p of overlay) {
      const from = Math.max(offset, p.offset), to = Math.min(offset + length, p.offset + p.length);
      if (p.data) p.data.copy(out, from - offset, from - p.offset, to - p.offset);
      else out.fill(0, from - offset, to - offset);
    }
    return out;
  }

  /**
   * `data` is handed over (the NBD server's contract, nbd/types.ts): the caller must not
   * change it afterwards. The log and the overlay keep it until writeback.
   */
  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    this.checkRange(offset, data.length);
    await this.admit(data.length);
    // Checked synchronously right before the enqueue and append below (see rotate()).
    while (this.switching) await this.switching.catch(() => undefined);
    this.throwIfClosed();
    if (this.direct) return await this.writeDirect(offset, data.length, data, fua);
    const kept = ownBuffer(data);
    const p = this.enqueue(offset, kept.length, kept);
    await this.logged(p, this.log.write(offset, kept, { stampNs: this.opts.stamp(), durable: fua }));
  }

  async zero(offset: number, length: number, fua: boolean): Promise<void> {
    this.checkRange(offset, length);
    await this.admit(0);
    while (this.switching) await this.switching.catch(() => undefined);
    this.throwIfClosed();
    if (this.direct) return await this.writeDirect(offset, length, null, fua);
    const p = this.enqueue(offset, length, null);
    await this.logged(p, this.log.zero(offset, length, { stampNs: this.opts.stamp(), durable: fua }));
  }

  /**
   * Settle a pending write with its log append: on success it may be written back; on
   * failure it leaves the overlay, so no read ever shows data the log does not hold.
   */
  private async logged(p: Pending, append: Promise<{ end: number }[]>): Promise<void> {
    try {
      const results = await append;
      p.end = results[results.length - 1]!.end;
      this.opts.onLogGrowth?.();
    } catch (error) {
      this.pending.splice(this.pending.indexOf(p), 1);
      this.forget(p);
      throw error;
    } finally {
      this.kickWriteback();
    }
  }

  /** Every write acknowledged before this call is durable in the log when it settles. */
  async flush(): Promise<void> {
    while (this.switching) await this.switching.catch(() => undefined);
    this.throwIfClosed();
    if (this.direct) await this.disk.datasync();
    else await this.log.sync();
  }

  /** Emergency mode: the overlay is empty (drained when logging ceased); FUA means fdatasync. */
  private async writeDirect(offset: number, length: number, data: Buffer | null, fua: boolean): Promise<void> {
    await this.applyToDisk([{ order: this.order++, offset, length, data, end: 0 }]);
    if (fua) await this.disk.datasync();
  }

  /** False while in emergency mode. */
  get logging(): boolean {
    return !this.direct;
  }

  /**
   * Emergency mode: drain writeback, seal the log, and from now on write straight to the
   * disk. Secondaries then lag behind for good: resuming logs into a later log number.
   */
  async ceaseLogging(): Promise<void> {
    if (this.direct) return;
    await this.exclusive(async () => {
      await this.drain();
      await this.log.close();
      this.writtenBack = this.log.position;
      await this.saveCheckpoint();
      this.direct = true;
    });
  }

  /** Leave emergency mode: log again, into `nextLogPath` (a new file). */
  async resumeLogging(nextLogPath: string): Promise<void> {
    if (!this.direct) return;
    await this.exclusive(async () => {
      await this.disk.datasync();
      this.log = await LogWriter.open(nextLogPath, { codec: this.opts.codec });
      this.opts.logPath = nextLogPath;
      this.writtenBack = this.log.position;
      this.direct = false;
      await this.saveCheckpoint();
    });
  }

  /** Wait until everything acknowledged so far is on the disk. */
  async drain(): Promise<void> {
    if (this.pending.length === 0 && !this.writebackRunning) return;
    await new Promise<void>((resolve) => this.drainedWaiters.push(resolve));
    if (this.writebackError) throw this.writebackError;
  }

  /**
   * Switch to the next log file: drain writeback, seal the current log, checkpoint at
   * the start of the new one. Requests that arrive meanwhile wait for the switch; those
   * already appending to the old log finish there first (drain waits for them).
   */
  async rotate(nextLogPath: string): Promise<void> {
    if (this.direct) throw new EngineError(`no log to rotate on ${this.opts.diskPath}: logging ceased (emergency mode)`, 'EPHOBOS_EMERGENCY');
    await this.exclusive(async () => {
      await this.drain();
      await this.log.close();
      this.log = await LogWriter.open(nextLogPath, { codec: this.opts.codec });
      this.opts.logPath = nextLogPath;
      this.writtenBack = this.log.position;
      await this.saveCheckpoint();
    });
  }

  /** Run a log switch while new requests wait (they check `switching` right before they append). */
  private async exclusive(run: () => Promise<void>): Promise<void> {
    this.throwIfClosed();
    if (this.switching) throw new EngineError(`a log switch is already running on ${this.opts.diskPath}`, 'EBUSY');
    this.switching = run();
    try {
      await this.switching;
    } finally {
      this.switching = null;
    }
  }

  /** Drain, seal the log, checkpoint, close the disk. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    try {
      await this.drain();
      if (!this.direct) await this.log.close();
      this.writtenBack = this.log.position;
      await this.saveCheckpoint();
      if (this.direct) await this.disk.datasync();
    } finally {
      await this.disk.close();
    }
  }

  // ---- overlay ----

  private enqueue(offset: number, length: number, data: Buffer | null): Pending {
    const p: Pending = { order: this.order++, offset, length, data, end: -1 };
    this.pending.push(p);
    this.pendingBytes += data ? length : 0;
    for (let g = offset >> GRANULE_SHIFT; g <= (offset + length - 1) >> GRANULE_SHIFT; g++) {
      let set = this.index.get(g);
      if (!set) this.index.set(g, (set = new Set()));
      set.add(p);
    }
    return p;
  }

  private forget(p: Pending): void {
    this.pendingBytes -= p.data ? p.length : 0;
    for (let g = p.offset >> GRANULE_SHIFT; g <= (p.offset + p.length - 1) >> GRANULE_SHIFT; g++) {
      const set = this.index.get(g);
      set?.delete(p);
      if (set?.size === 0) this.index.delete(g);
    }
  }

  private overlapping(offset: number, length: number): Pending[] {
    const found = new Set<Pending>();
    for (let g = offset >> GRANULE_SHIFT; g <= (offset + length - 1) >> GRANULE_SHIFT; g++) {
      for (const p of this.index.get(g) ?? []) {
        if (p.offset < offset + length && offset < p.offset + p.length) found.add(p);
      }
    }
    return [...found].sort((a, b) => a.order - b.order);
  }

  /** Backpressure: wait while the overlay holds more than maxPendingBytes. */
  private async admit(bytes: number): Promise<void> {
    this.throwIfClosed();
    if (this.writebackError) throw this.writebackError;
    while (this.pendingBytes + bytes > this.opts.maxPendingBytes && this.pending.length > 0) {
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
      if (this.writebackError) throw this.writebackError;
    }
  }

  // ---- writeback ----

  private kickWriteback(): void {
    if (!this.writebackRunning) {
      this.writebackRunning = true;
      void this.writeback();
    }
  }

  /**
   * Apply logged writes to the disk in log order. A write is taken only once its log
   * append has settled (end >= 0): the disk never gets ahead of the log. Writes that do
   * not overlap go out together; an overlap waits for the earlier one.
   */
  private async writeback(): Promise<void> {
    try {
      for (;;) {
        const batch: Pending[] = [];
        for (const p of this.pending) {
          if (p.end < 0 || batch.length >= 256) break;
          if (batch.some((q) => q.offset < p.offset + p.length && p.offset < q.offset + q.length)) break;
          batch.push(p);
        }
        if (batch.length === 0) break;
        await this.applyToDisk(batch);
        this.pending.splice(0, batch.length);
        for (const p of batch) this.forget(p);
        this.writtenBack = batch[batch.length - 1]!.end;
        this.armCheckpoint();
        for (const wake of this.spaceWaiters.splice(0)) wake();
      }
    } catch (error) {
      this.writebackError = new EngineError(`writeback to ${this.opts.diskPath} failed: ${(error as Error).message}`,
        (error as NodeJS.ErrnoException).code ?? 'EIO');
      for (const wake of this.spaceWaiters.splice(0)) wake();
    } finally {
      this.writebackRunning = false;
      // A write may have settled its log append while we were finishing.
      if (!this.writebackError && this.pending.length > 0 && this.pending[0]!.end >= 0) {
        this.kickWriteback();
      } else if (this.pending.length === 0 || this.writebackError) {
        for (const wake of this.drainedWaiters.splice(0)) wake();
      }
    }
  }

  /**
   * Write a batch of non-overlapping pending writes to the disk in one native job (one
   * thread hop per batch: per-write hops were most of the CPU for random 4 KiB writes).
   */
  private async applyToDisk(batch: readonly Pending[]): Promise<void> {
    const offsets: number[] = [];
    const buffers: Buffer[] = [];
    for (const p of batch) {
      if (p.data) {
        offsets.push(p.offset);
        buffers.push(p.data);
        continue;
      }
      for (let at = 0; at < p.length; at += ZEROS.length) {
        offsets.push(p.offset + at);
        buffers.push(ZEROS.subarray(0, Math.min(ZEROS.length, p.length - at)));
      }
    }
    await native.writeBatch(this.disk.fd, Float64Array.from(offsets), buffers);
  }

  // ---- checkpoints ----

  /**
   * Save a checkpoint within checkpointIntervalMs of writeback moving. Armed by writeback,
   * not a standing interval: 1000 idle primaries must not wake every second.
   */
  private armCheckpoint(): void {
    if (this.checkpointTimer || this.closed) return;
    this.checkpointTimer = setTimeout(() => {
      this.checkpointTimer = null;
      this.saveCheckpoint().catch(() => this.armCheckpoint()); // retried; close() reports
    }, this.opts.checkpointIntervalMs);
    this.checkpointTimer.unref();
  }

  /** Make the written-back part durable on the disk, then record how far it goes. */
  private async saveCheckpoint(): Promise<void> {
    const checkpoint: Checkpoint = { logPath: this.opts.logPath, position: this.writtenBack };
    if (this.saved?.logPath === checkpoint.logPath && this.saved.position === checkpoint.position) return;
    await this.disk.datasync();
    await this.opts.saveCheckpoint(checkpoint);
    this.saved = checkpoint;
  }

  private checkRange(offset: number, length: number): void {
    this.throwIfClosed();
    if (!Number.isSafeInteger(offset) || offset < 0 || length <= 0 || offset + length > this.opts.sizeBytes) {
      throw new EngineError(`request ${offset}+${length} outside the device (${this.opts.sizeBytes} bytes)`, 'EINVAL');
    }
  }

  private throwIfClosed(): void {
    if (this.closed) throw new EngineError(`device on ${this.opts.diskPath} is closed`, 'ESHUTDOWN');
  }
}
