/**
 * The data plane: the transaction log (write, scan, replay), crc32c, codecs and block
 * digests, and the two engines behind one interface (engine.ts): userspace and phobos.ko.
 */
export { blockDigests, type DigestOptions } from './block_digests.js';
export { CODECS, codecRoundTrip, codecStatus, isCodec, requireCodec } from './codecs.js';
export { crc32c, crc32cImplementation, crc32cSync, type Crc32cImplementation } from './crc32c.js';
export { CodecUnavailableError, describeFault, describeWalkEnd, LogError } from './errors.js';
export { replayLog, type ReplayOptions } from './log_replayer.js';
export { checkLog, scanBuffer, scanFileBatch, scanLog, type LogCheckReport, type ScanOptions } from './log_scanner.js';
export { acquireFileLock, LockTimeoutError, withFileLock } from './file_lock.js';
export { EngineError, UserEngine, type UserEngineOptions } from './user_engine.js';
export { KernelEngine, type KernelEngineOptions } from './kernel_engine.js';
export { chooseEngine, ENGINE_CHOICES, kernelModuleMissing, type Checkpoint, type DeviceEngine, type EngineChoice, type EngineKind,
  type EngineOptions, type RecoveryReport } from './engine.js';
export { LogWriter, MAX_RECORD_LENGTH, type LogWriterOptions, type OpenReport, type WriteOptions } from './log_writer.js';
export * from './types.js';
