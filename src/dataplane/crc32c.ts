/**
 * crc32c (Castagnoli) from the addon: SSE4.2 with three interleaved streams where the CPU
 * has it, a portable table version otherwise.
 *
 * @example
 * await crc32c(Buffer.from('123456789')) // 0xe3069283
 */
import { native } from './native.js';

export type Crc32cImplementation = 'auto' | 'portable' | 'sse42';

/** crc32c of data, continuing from seed, computed on a worker thread. */
export function crc32c(data: Uint8Array, seed = 0, impl: Crc32cImplementation = 'auto'): Promise<number> {
  return native.crc32c(data, seed, impl);
}

/** Synchronous crc32c for at most 64 KiB (a few microseconds on the event loop). */
export function crc32cSync(data: Uint8Array, seed = 0): number {
  return native.crc32cSmall(data, seed);
}

/** Which implementation `auto` picked on this CPU. */
export function crc32cImplementation(): 'sse42' | 'portable' {
  return native.codecInfo().crc32c;
}
