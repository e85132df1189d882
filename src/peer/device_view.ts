/**
 * What fast full sync reads on the source host: the logical device when the daemon serves
 * the resource as primary (its read-only `<run-dir>/<res>.sync.nbd` export, which includes
 * writes not yet written back), otherwise the host's own disk, which nobody writes then.
 * docs/replication.md "Fast full sync" says why the logical view is needed.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import { NbdClient } from '../nbd/index.js';

export type ViewKind = 'logical' | 'disk';

export interface DeviceView {
  readonly kind: ViewKind;
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

/** Socket of the daemon's read-only sync export of `res`. */
export function syncSocketPath(runDir: string, res: string): string {
  return path.join(runDir, `${res}.sync.nbd`);
}

export async function openDeviceView(runDir: string, res: string, diskPath: string): Promise<DeviceView> {
  const client = await NbdClient.connect(syncSocketPath(runDir, res), `${res}.sync`).catch(() => null);
  if (client) {
    return {
      kind: 'logical',
      read: (offset, length) => client.read(offset, length),
      close: () => client.disconnect().catch(() => undefined),
    };
  }
  const handle: FileHandle = await open(diskPath, 'r');
  return {
    kind: 'disk',
    read: (offset, length) => readFullyAt(handle, offset, length),
    close: () => handle.close(),
  };
}

/**
 * `length` bytes at `offset`; past the end of a short file the rest reads as zeros, as a
 * sparse disk does.
 */
export async function readFullyAt(handle: FileHandle, offset: number, length: number, into?: Buffer): Promise<Buffer> {
  const buf = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  buf.fill(0, done);
  return buf;
}

/** Bytes of a block digest: the first 16 of SHA-256 (docs/peer-protocol.md "Sync"). */
export const DIGEST_BYTES = 16;

/** Digests are computed over reads of this size: big enough to stream, small enough to overlap. */
export const DIGEST_READ_BYTES = 4 << 20;

/** Digest of each `blockBytes` block of `data` (the last may be short), concatenated. */
export function digestBlocks(data: Buffer, blockBytes: number): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil(data.length / blockBytes) * DIGEST_BYTES);
  digestBlocksInto(data, blockBytes, out, 0);
  return out;
}

function digestBlocksInto(data: Buffer, blockBytes: number, out: Buffer, at: number): void {
  for (let i = 0; i * blockBytes < data.length; i++) {
    const block = data.subarray(i * blockBytes, Math.min(data.length, (i + 1) * blockBytes));
    createHash('sha256').update(block).digest().copy(out, at + i * DIGEST_BYTES, 0, DIGEST_BYTES);
  }
}

/**
 * Digests of the blocks of [offset, offset+length), read in pieces of at most
 * DIGEST_READ_BYTES through `read`; the next piece is read while this one is hashed
 * (read-ahead), so the I/O, which runs off the main thread (or in another process, for the
 * logical view), hides behind the hashing. At most two pieces are in use at a time, so a
 * reader may alternate between two buffers of its own.
 */
export async function digestRange(
  read: (offset: number, length: number) => Promise<Buffer>, offset: number, length: number, blockBytes: number,
): Promise<Buffer> {
  const step = Math.max(blockBytes, Math.floor(DIGEST_READ_BYTES / blockBytes) * blockBytes);
  const out = Buffer.allocUnsafe(Math.ceil(length / blockBytes) * DIGEST_BYTES);
  const readPiece = (o: number): Promise<Buffer> | null => (o < length ? read(offset + o, Math.min(step, length - o)) : null);
  let ahead = readPiece(0);
  for (let o = 0; ahead; o += step) {
    const data = await ahead;
    ahead = readPiece(o + step);
    digestBlocksInto(data, blockBytes, out, (o / blockBytes) * DIGEST_BYTES);
  }
  return out;
}
