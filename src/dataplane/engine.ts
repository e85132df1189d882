/**
 * What the daemon needs of an engine, the part of a primary that turns writes into log
 * records: the userspace engine (user_engine.ts, served over NBD by the daemon) or the
 * kernel engine (kernel_engine.ts, phobos.ko's /dev/phobos<N>). And which one to use.
 */
import { access, constants } from 'node:fs/promises';

import { replayLog } from './log_replayer.js';
import { native } from './native.js';
import type { Codec } from './types.js';

export type EngineKind = 'user' | 'kernel';
/** `--engine`: `auto` is the kernel engine when phobos.ko is loaded, else the userspace one. */
export type EngineChoice = EngineKind | 'auto';
export const ENGINE_CHOICES: readonly EngineChoice[] = ['auto', 'kernel', 'user'];

/** Where writeback had got to: every record before `position` of `logPath` is on the disk. */
export interface Checkpoint {
  readonly logPath: string;
  readonly position: number;
}

/** What recovery did before the device was served. */
export interface RecoveryReport {
  /** Torn-tail bytes cut from the current log. */
  readonly truncatedBytes: number;
  /** Records replayed onto the disk (from the checkpoint on). */
  readonly replayedRecords: number;
  readonly replayedBytes: number;
  /** The kernel engine found its device still running (only the daemon had stopped). */
  readonly adopted?: boolean;
}

/** Options both engines take. */
export interface EngineOptions {
  /** Underlying disk: a block device, or a regular file (sparse test mode). */
  diskPath: string;
  /** Device size exposed, bytes (at most the disk's size). */
  sizeBytes: number;
  /** The current log file, e.g. /mars/resource-r/log-000000001-a. */
  logPath: string;
  /** @default 'none' */
  codec?: Codec;
  /** The last saved checkpoint, or null on a fresh resource. */
  checkpoint: Checkpoint | null;
  /** Persist a checkpoint (the daemon writes the replay-<host> link). */
  saveCheckpoint: (checkpoint: Checkpoint) => Promise<void>;
  /** Lamport stamp for each write (the kernel engine takes one as its floor). */
  stamp: () => bigint;
  /** Checkpoint interval. @default 1000 */
  checkpointIntervalMs?: number;
  /** The log grew (an append settled; the kernel engine: seen by its poll). */
  onLogGrowth?: () => void;
}

/** A primary's device as the daemon drives it; also what the read-only sync export reads. */
export interface DeviceEngine {
  readonly kind: EngineKind;
  readonly recovery: RecoveryReport;
  readonly sizeBytes: number;
  /** The log being appended to. */
  readonly logPath: string;
  /** Log offset after the last appended record (the kernel engine: as of its last query). */
  readonly logPosition: number;
  /** False in emergency mode (writes bypass the log). */
  readonly logging: boolean;
  /** Whether ceaseLogging() is possible (the kernel engine has no way around its log). */
  readonly canCeaseLogging: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer, fua: boolean): Promise<void>;
  zero(offset: number, length: number, fua: boolean): Promise<void>;
  flush(): Promise<void>;
  /** Continue in the next log file (`marsadm log-rotate`). */
  rotate(nextLogPath: string): Promise<void>;
  ceaseLogging(): Promise<void>;
  resumeLogging(nextLogPath: string): Promise<void>;
  /** Stop: drain, seal the log, checkpoint. Safe to call twice. */
  close(): Promise<void>;
}

/** A failure of an engine, with an errno-style or EPHOBOS_* code. */
export class EngineError extends Error {
  override readonly name = 'EngineError';
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

/**
 * Recovery's replay of one log onto the disk from `from` (a record boundary): what both
 * engines do before serving. A corrupt or damaged log refuses, naming the file.
 */
export async function replayForRecovery(logPath: string, diskPath: string, from: number): Promise<{ records: number; bytes: number }> {
  const r = await replayLog(logPath, diskPath, { from, direct: 'auto' });
  if (r.status === 'corrupt' || r.status === 'damaged') {
    throw new EngineError(`cannot recover from ${logPath}: ${r.status} at offset ${r.fault?.offset} (${r.fault?.reason}); ` +
      `run \`marsadm log-check ${logPath}\``, 'EPHOBOS_CORRUPT');
  }
  return { records: r.records, bytes: r.bytes };
}

/** Whether phobos.ko answers on its control device; null if it does, else why not. */
export async function kernelModuleMissing(ctlPath = native.kernelCtlDevice): Promise<string | null> {
  try {
    await access(ctlPath, constants.R_OK | constants.W_OK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? `${ctlPath} does not exist (phobos.ko is not loaded; \`modprobe phobos\`)` : `${ctlPath}: ${code}`;
  }
  try {
    const v = await native.kernelVersion(ctlPath);
    if (v.moduleAbi !== native.kernelAbiVersion) {
      return `phobos.ko speaks control ABI ${v.moduleAbi}, this marsadm ${native.kernelAbiVersion}; install matching versions`;
    }
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Resolve `--engine`: `auto` picks the kernel engine when the module answers. */
export async function chooseEngine(choice: EngineChoice, ctlPath = native.kernelCtlDevice): Promise<{ kind: EngineKind; why: string }> {
  if (choice === 'user') return { kind: 'user', why: '--engine user' };
  const missing = await kernelModuleMissing(ctlPath);
  if (choice === 'kernel') {
    if (missing) throw new Error(`--engine kernel: ${missing}; or use --engine user`);
    return { kind: 'kernel', why: '--engine kernel' };
  }
  return missing ? { kind: 'user', why: `auto: ${missing}` } : { kind: 'kernel', why: `auto: ${ctlPath} answers` };
}
