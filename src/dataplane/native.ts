/**
 * The native addon (addon/, built by `npm install`), loaded once, with its exact shape.
 * Only src/dataplane/ imports this file; everything else uses the typed wrappers.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { AppendResult, CodecStatus, ReplayResult, ScanResult } from './types.js';

/** ABI version this TypeScript expects; the addon reports its own. */
export const EXPECTED_ABI = 2;

export interface NativeLogWriter {
  open(): Promise<{ position: number; nextSeq: number; records: number; truncatedBytes: number }>;
  append(deviceOffset: number, data: Uint8Array | null, length: number, stampNs: bigint,
    durable: boolean): Promise<AppendResult>;
  sync(): Promise<{ position: number }>;
  close(seal: boolean): Promise<{ position: number }>;
  readonly position: number;
  readonly syncedPosition: number;
  readonly nextSeq: number;
  readonly syncs: number;
}

export interface EncodeInput {
  type?: number;
  deviceOffset?: number;
  data?: Uint8Array;
  length?: number;
  seq: number;
  stampNs?: bigint;
  syncedPos?: number;
}

/** PHOBOS_IOC_CREATE's inputs (kernel/uapi/phobos_ioctl.h). */
export interface KernelCreateArgs {
  backingPath: string;
  logPath: string;
  logSeq: number;
  /** Log offset replay starts from (a record boundary); -1: no replay, only verify. */
  replayFrom: number;
  /** 0: the whole backing. */
  sizeBytes: number;
  stampFloorNs: bigint;
  /** 0 logged, 1 durable. */
  completion: number;
  /** CODEC_IDS. */
  codec: number;
}

export interface KernelCreateResult {
  minor: number;
  logEnd: number;
  replayedRecords: number;
  replayedBytes: number;
  truncatedBytes: number;
}

/** PHOBOS_IOC_QUERY's outputs: positions as numbers, counters as bigints. */
export interface KernelQueryResult {
  minor: number;
  /** PHOBOS_STATE_* bits: 1 log error, 2 writeback error, 4 open. */
  state: number;
  completion: number;
  codec: number;
  sizeBytes: number;
  logSeq: number;
  logPos: number;
  syncedPos: number;
  wbLogSeq: number;
  wbPos: number;
  wbDurableLogSeq: number;
  wbDurablePos: number;
  pendingBytes: number;
  writes: bigint;
  zeroes: bigint;
  flushes: bigint;
  reads: bigint;
  records: bigint;
  logFsyncs: bigint;
  logErrors: bigint;
  wbErrors: bigint;
}

export interface NativeAddon {
  readonly abiVersion: number;
  readonly formatVersion: number;
  readonly maxRecordLength: number;
  crc32c(data: Uint8Array, seed?: number, impl?: 'auto' | 'portable' | 'sse42'): Promise<number>;
  crc32cSmall(data: Uint8Array, seed?: number): number;
  codecInfo(): { none: CodecStatus; lz4: CodecStatus; zstd: CodecStatus; crc32c: 'sse42' | 'portable' };
  codecRoundTrip(codec: number, data: Uint8Array, recordBytes: number): Promise<{
    inputBytes: number; outputBytes: number; compressNs: number; decompressNs: number }>;
  blockDigests(path: string, offset: number, length: number, blockBytes: number): Promise<Uint32Array>;
  scanFile(path: string, opts: { from?: number; expectSeq?: number; final?: boolean;
    maxRecords?: number; withData?: boolean }): Promise<ScanResult>;
  scanBuffer(buf: Uint8Array, opts: { base?: number; expectSeq?: number; atEof?: boolean }): Promise<ScanResult>;
  encodeRecords(records: EncodeInput[], codec?: number): Promise<Buffer>;
  replayLog(logPath: string, targetPath: string, opts: { from?: number; to?: number;
    expectSeq?: number; final?: boolean; direct?: 'auto' | 'on' | 'off'; create?: boolean }): Promise<ReplayResult>;
  LogWriter: new (path: string, codec: number) => NativeLogWriter;
  /** Every link under root/subdir: keys relative to root, values, stamps (µs; 0 when stamps is false). */
  readTreeLinks(root: string, subdir?: string, stamps?: boolean): Promise<{ keys: string[]; values: string[]; stamps: Float64Array }>;
  /**
   * Each directory's version, `ino:mtimeNs:ctimeNs` (as TreeWatcher spells a BigIntStats),
   * or null where the key is missing or no directory. Keys are relative to root.
   */
  statTreeDirs(root: string, keys: string[]): Promise<(string | null)[]>;
  /**
   * Every link under root with its value, from the cache at cachePath where a directory's
   * version still matches, listing only the others (settleMs as readTreeDirs); rewrites
   * the cache if anything differed. `dirs` directories in all, `reread` listed again.
   */
  readTreeValuesCached(root: string, cachePath: string, settleMs: number): Promise<{ keys: string[]; values: string[];
    dirs: number; reread: number; written: boolean }>;
  /**
   * The links (with stamps) and subdirectory keys directly inside each of `dirs`, and each
   * directory's version from before its listing: null where it is gone or no directory,
   * '' where it changed within settleMs of the listing (too recent to trust).
   */
  readTreeDirs(root: string, dirs: string[], settleMs: number): Promise<{
    keys: string[]; values: string[]; stamps: Float64Array; subdirs: string[]; versions: (string | null)[];
  }>;
  /** pwrite each buffer at its offset, in order, in one worker job. */
  writeBatch(fd: number, offsets: Float64Array, buffers: Uint8Array[]): Promise<void>;
  /** Size of a block device or file, bytes. */
  deviceSize(path: string): number;
  /** One datagram to a UNIX datagram socket, never blocking: null when sent, else the errno name. */
  sendUnixDatagram(path: string, message: string): string | null;
  /** flock(LOCK_EX|LOCK_NB): the fd, or null if another process holds the lock. */
  tryLock(path: string): number | null;
  unlock(fd: number): void;
  /** phobos.ko's control device, /dev/phobos-ctl; every kernel* call takes its path first. */
  readonly kernelCtlDevice: string;
  /** PHOBOS_IOCTL_VERSION the addon was built with. */
  readonly kernelAbiVersion: number;
  kernelVersion(ctl: string): Promise<{ moduleAbi: number; logFormat: number }>;
  kernelCreate(ctl: string, name: string, args: KernelCreateArgs): Promise<KernelCreateResult>;
  kernelDestroy(ctl: string, name: string): Promise<{ logEnd: number }>;
  kernelSwitchLog(ctl: string, name: string, logPath: string, logSeq: number): Promise<{ oldEnd: number }>;
  kernelQuery(ctl: string, name: string): Promise<KernelQueryResult>;
  kernelSetCompletion(ctl: string, name: string, completion: number): Promise<void>;
}

function load(): NativeAddon {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // From src/dataplane (tsx) or dist/src/dataplane (compiled): find the package root.
  let root = here;
  while (!existsSync(path.join(root, 'package.json')) && path.dirname(root) !== root) {
    root = path.dirname(root);
  }
  const file = path.join(root, 'build', 'Release', 'phobos.node');
  if (!existsSync(file)) {
    throw new Error(`native addon missing: ${file}; run \`npm install\` (or \`npm run build\`) in ${root}`);
  }
  const addon = createRequire(import.meta.url)(file) as NativeAddon;
  if (addon.abiVersion !== EXPECTED_ABI) {
    throw new Error(`native addon ABI ${addon.abiVersion} found, ${EXPECTED_ABI} wanted; rebuild with \`npm run build\``);
  }
  return addon;
}

export const native: NativeAddon = load();
