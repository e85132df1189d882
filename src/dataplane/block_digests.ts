/**
 * Block digests for fast full sync: crc32c of each block of a range of a file or block
 * device, compared between hosts so only differing blocks travel.
 */
import { native } from './native.js';

export interface DigestOptions {
  /** @default 0 */
  offset?: number;
  /** Bytes to cover; the last block may be short. @default to the end of the file */
  length?: number;
  /** @default 65536 */
  blockBytes?: number;
}

export async function blockDigests(path: string, options: DigestOptions = {}): Promise<Uint32Array> {
  const offset = options.offset ?? 0;
  const blockBytes = options.blockBytes ?? 65536;
  let length = options.length;
  if (length === undefined) {
    const { stat } = await import('node:fs/promises');
    length = Math.max(0, (await stat(path)).size - offset);
  }
  return native.blockDigests(path, offset, length, blockBytes);
}
