/**
 * The kernel engine: a resource's device on the primary is phobos.ko's /dev/phobos<N>
 * (docs/kernel.md); the module logs, acknowledges and writes back, the daemon only steers.
 *
 *  - open(): replays the rest of an older checkpoint's log in userspace (the module only
 *    replays the log it is given), then PHOBOS_IOC_CREATE with `replay_from` at the
 *    checkpoint, so the module replays the current log's tail before the device appears.
 *    A device the module still runs for this log (the daemon was restarted, the machine
 *    was not) is adopted as it is: I/O never stopped.
 *  - once a second, PHOBOS_IOC_QUERY: the log end and open state for the indicators, and
 *    the durable writeback position as the checkpoint (`replay-<host>`).
 *  - rotate(): PHOBOS_IOC_SWITCH_LOG; writeback of the old log's tail goes on in the
 *    module, so the checkpoint stays in the old log until the module is past it.
 *  - close(): PHOBOS_IOC_DESTROY (drains, seals the log with a SYNC_MARK); refused with
 *    EBUSY while the device is open.
 *
 * `/dev/mars/<res>` is linked to the device here (the module leaves names to userspace).
 */
import { lstat, mkdir, open as openFile, rename, rm, stat, symlink, truncate } from 'node:fs/promises';
import path from 'node:path';

import { EngineError, kernelModuleMissing, replayForRecovery, type Checkpoint, type DeviceEngine, type EngineOptions, type RecoveryReport } from './engine.js';
import { native, type KernelQueryResult } from './native.js';
import { CODEC_IDS } from './types.js';

/** PHOBOS_STATE_OPEN in kernel/uapi/phobos_ioctl.h. */
const STATE_OPEN = 1 << 2;

export interface KernelEngineOptions extends EngineOptions {
  /** The resource: the module's device name and `/dev/mars/<resource>`. */
  resource: string;
  /** @default native.kernelCtlDevice (/dev/phobos-ctl) */
  ctlPath?: string;
  /** Where the resource's link goes. @default '/dev/mars' */
  linkDir?: string;
  /** After a query that found the device opened or closed. */
  onOpenChange?: () => void;
}

export class KernelEngine implements DeviceEngine {
  readonly kind = 'kernel' as const;
  readonly canCeaseLogging = false;
  readonly logging = true;
  private last: KernelQueryResult;
  /** Log paths by sequence number: the current one, and older ones writeback may still be in. */
  private readonly logs = new Map<number, string>();
  private saved: Checkpoint | null = null;
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<void> | null = null;
  private closed = false;
  /** open() has returned: the callbacks may be called (the caller holds the engine). */
  private ready = false;

  private constructor(
    private readonly opts: KernelEngineOptions & { ctlPath: string; linkDir: string },
    private currentLog: string,
    first: KernelQueryResult,
    readonly recovery: RecoveryReport,
  ) {
    this.last = first;
    this.logs.set(first.logSeq, currentLog);
  }

  static async open(options: KernelEngineOptions): Promise<KernelEngine> {
    const opts = { ctlPath: native.kernelCtlDevice, linkDir: '/dev/mars', ...options };
    const seq = logSeqOf(opts.logPath);
    const missing = await kernelModuleMissing(opts.ctlPath);
    if (missing) throw new EngineError(`kernel engine: ${missing}`, 'ENODEV');
    let recovery: RecoveryReport;
    const running = await query(opts, opts.resource);
    if (running && running.logSeq === seq) {
      recovery = { truncatedBytes: 0, replayedRecords: 0, replayedBytes: 0, adopted: true };
    } else {
      if (running) await destroy(opts, opts.resource);   // left from another log: seal and drop it
      recovery = await KernelEngine.create(opts, seq);
    }
    const first = (await query(opts, opts.resource))!;
    const engine = new KernelEngine(opts, opts.logPath, first, recovery);
    await engine.link();
    await engine.poll();
    engine.timer = setInterval(() => void engine.poll().catch(() => undefined), opts.checkpointIntervalMs ?? 1000);
    engine.timer.unref();
    engine.ready = true;
    return engine;
  }

  /** Replay what the module will not (an older log), then create with the current log's replay. */
  private static async create(opts: KernelEngineOptions & { ctlPath: string }, seq: number): Promise<RecoveryReport> {
    const { checkpoint, logPath, diskPath } = opts;
    const st = await stat(diskPath).catch((e: NodeJS.ErrnoException) => {
      throw new EngineError(`cannot use disk ${diskPath}: ${e.message}`, e.code ?? 'EIO');
    });
    if (st.isFile() && st.size < opts.sizeBytes) await truncate(diskPath, opts.sizeBytes); // sparse test mode
    const older = checkpoint && checkpoint.logPath !== logPath
      ? await replayForRecovery(checkpoint.logPath, diskPath, checkpoint.position)
      : { records: 0, bytes: 0 };
    const created = await native.kernelCreate(opts.ctlPath, opts.resource, {
      backingPath: diskPath,
      logPath,
      logSeq: seq,
      replayFrom: checkpoint?.logPath === logPath ? checkpoint.position : 0,
      sizeBytes: opts.sizeBytes,
      stampFloorNs: opts.stamp(),
      completion: 0,
      codec: CODEC_IDS[opts.codec ?? 'none'],
    }).catch((e: NodeJS.ErrnoException) => {
      throw new EngineError(`phobos.ko refused ${opts.resource} (disk ${diskPath}, log ${logPath}): ${e.message}` +
        `${createHint(e.code)}; the kernel log (dmesg) has the module's line`, e.code ?? 'EIO');
    });
    return {
      truncatedBytes: created.truncatedBytes,
      replayedRecords: older.records + created.replayedRecords,
      replayedBytes: older.bytes + created.replayedBytes,
    };
  }

  /** Whether the module runs a device for `resource` (it outlives a daemon that stopped). */
  static async running(resource: string, ctlPath = native.kernelCtlDevice): Promise<boolean> {
    return (await query({ ctlPath }, resource).catch(() => null)) !== null;
  }

  get sizeBytes(): number {
    return this.last.sizeBytes;
  }

  get logPath(): string {
    return this.currentLog;
  }

  get logPosition(): number {
    return this.last.logPos;
  }

  /** /dev/phobos<N>. */
  get devicePath(): string {
    return `/dev/phobos${this.last.minor}`;
  }

  /** /dev/mars/<res>, the name the stack mounts. */
  get linkPath(): string {
    return path.join(this.opts.linkDir, this.opts.resource);
  }

  /** 1 while the device is open (the module reports open or not, not how often). */
  get openCount(): number {
    return (this.last.state & STATE_OPEN) !== 0 ? 1 : 0;
  }

  /** The module's counters as of the last query. */
  get counters(): KernelQueryResult {
    return this.last;
  }

  /**
   * For the read-only sync export (a peer's fast full sync): read through the device, so
   * pending writes are seen. Opened per read: a held descriptor would count as an opener.
   */
  async read(offset: number, length: number): Promise<Buffer> {
    this.throwIfClosed();
    const fh = await openFile(this.devicePath, 'r');
    try {
      const out = Buffer.alloc(length);
      const { bytesRead } = await fh.read(out, 0, length, offset);
      if (bytesRead < length) out.fill(0, bytesRead);
      return out;
    } finally {
      await fh.close();
    }
  }

  async write(): Promise<void> {
    throw new EngineError(`the kernel engine is written through ${this.devicePath}, not by the daemon`, 'EPERM');
  }

  async zero(): Promise<void> {
    throw new EngineError(`the kernel engine is written through ${this.devicePath}, not by the daemon`, 'EPERM');
  }

  async flush(): Promise<void> {
    // Nothing is written through the daemon; writers flush /dev/phobos<N> themselves.
  }

  async rotate(nextLogPath: string): Promise<void> {
    this.throwIfClosed();
    const seq = logSeqOf(nextLogPath);
    await native.kernelSwitchLog(this.opts.ctlPath, this.opts.resource, nextLogPath, seq).catch((e: NodeJS.ErrnoException) => {
      throw new EngineError(`phobos.ko could not switch ${this.opts.resource} to ${nextLogPath}: ${e.message}`, e.code ?? 'EIO');
    });
    this.currentLog = nextLogPath;
    this.logs.set(seq, nextLogPath);
    await this.poll();
  }

  async ceaseLogging(): Promise<void> {
    throw new EngineError(`the kernel engine cannot write ${this.opts.resource} without its log; ` +
      'free space in /mars (writes fail with ENOSPC once it is full)', 'EOPNOTSUPP');
  }

  async resumeLogging(): Promise<void> {
    // Logging never ceases with the kernel engine.
  }

  /**
   * Destroy the device: the module drains writeback and seals the log. Refused (EBUSY)
   * while the device is open; then it stays as it is and close() may be called again.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.polling;
    const { logEnd } = await native.kernelDestroy(this.opts.ctlPath, this.opts.resource).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return { logEnd: -1 };    // gone already (module reloaded)
      throw new EngineError(e.code === 'EBUSY'
        ? `${this.devicePath} (${this.opts.resource}) is still open; close it (umount) and retry`
        : `phobos.ko could not destroy ${this.opts.resource}: ${e.message}`, e.code ?? 'EIO');
    });
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await rm(this.linkPath, { force: true });
    if (logEnd >= 0) await this.saveCheckpoint({ logPath: this.currentLog, position: logEnd });
  }

  /**
   * Stop steering without destroying (daemon shutdown while the device is open): the
   * module goes on serving, and the next open() adopts the device.
   */
  release(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** Query the module; save the checkpoint when writeback moved; report changes. */
  private poll(): Promise<void> {
    if (this.polling || this.closed) return this.polling ?? Promise.resolve();
    this.polling = (async () => {
      const before = this.last;
      const q = await query(this.opts, this.opts.resource);
      if (!q) return;
      this.last = q;
      const durableLog = this.logs.get(q.wbDurableLogSeq);
      if (durableLog) {
        await this.saveCheckpoint({ logPath: durableLog, position: q.wbDurablePos });
        for (const seq of this.logs.keys()) if (seq < q.wbDurableLogSeq) this.logs.delete(seq);
      }
      if (this.ready && before.logPos !== q.logPos) this.opts.onLogGrowth?.();
      if (this.ready && (before.state & STATE_OPEN) !== (q.state & STATE_OPEN)) this.opts.onOpenChange?.();
    })().finally(() => {
      this.polling = null;
    });
    return this.polling;
  }

  private async saveCheckpoint(c: Checkpoint): Promise<void> {
    if (this.saved?.logPath === c.logPath && this.saved.position === c.position) return;
    await this.opts.saveCheckpoint(c);
    this.saved = c;
  }

  /** /dev/mars/<res> -> /dev/phobos<N>, replaced atomically. */
  private async link(): Promise<void> {
    await mkdir(this.opts.linkDir, { recursive: true, mode: 0o755 });
    const st = await lstat(this.linkPath).catch(() => null);
    if (st && !st.isSymbolicLink()) {
      throw new EngineError(`${this.linkPath} exists and is not a link; remove it so the device can be linked there`, 'EEXIST');
    }
    const tmp = `${this.linkPath}.tmp-${process.pid}`;
    await rm(tmp, { force: true });
    await symlink(this.devicePath, tmp);
    await rename(tmp, this.linkPath);
  }

  private throwIfClosed(): void {
    if (this.closed) throw new EngineError(`${this.opts.resource}: the kernel engine was closed`, 'ESHUTDOWN');
  }
}

/** The module's view of a resource, or null if it has no device of that name. */
async function query(opts: { ctlPath: string }, name: string): Promise<KernelQueryResult | null> {
  try {
    return await native.kernelQuery(opts.ctlPath, name);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new EngineError(`phobos.ko: query of ${name} failed: ${(e as Error).message}`, (e as NodeJS.ErrnoException).code ?? 'EIO');
  }
}

async function destroy(opts: { ctlPath: string }, name: string): Promise<void> {
  await native.kernelDestroy(opts.ctlPath, name).catch((e: NodeJS.ErrnoException) => {
    throw new EngineError(`phobos.ko still runs ${name} on another log and could not stop it: ${e.message}` +
      (e.code === 'EBUSY' ? ` (its device is open: close it)` : ''), e.code ?? 'EIO');
  });
}

/** What the operator can do about each refusal of PHOBOS_IOC_CREATE (docs/kernel.md). */
function createHint(code: string | undefined): string {
  switch (code) {
    case 'EBUSY': return ' (the disk is in use: mounted, open exclusively, or another resource\'s)';
    case 'ENOSPC': return ' (the disk is smaller than the resource)';
    case 'EUCLEAN': return ' (the log is corrupt: `marsadm log-check` names the offset)';
    case 'EOPNOTSUPP': return ' (the module has no zstd: use lz4 or none, or --engine user)';
    case 'ENOENT': return ' (a path is missing)';
    default: return '';
  }
}

/** 7 for .../log-000000007-alpha. */
function logSeqOf(logPath: string): number {
  const m = /^log-([0-9]{9})-/.exec(path.basename(logPath));
  if (!m) throw new EngineError(`${logPath} is not named log-<seq>-<host>`, 'EINVAL');
  return Number(m[1]);
}
