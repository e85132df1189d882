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
    read: async (offset, length) => {
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await handle.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) break; // past the end of a short file: zeros, as a sparse disk reads
        done += bytesRead;
      }
      return buf;
    },
    close: () => handle.close(),
  };
}

/** Bytes of a block digest: the first 16 of SHA-256 (docs/peer-protocol.md "Sync"). */
export const DIGEST_BYTES = 16;

/** Digest of each `blockBytes` block of `data` (the last may be short), concatenated. */
export function digestBlocks(data: Buffer, blockBytes: number): Buffer {
  const count = Math.ceil(data.length / blockBytes);
  const out = Buffer.allocUnsafe(count * DIGEST_BYTES);
  for (let i = 0; i < count; i++) {
    const block = data.subarray(i * blockBytes, Math.min(data.length, (i + 1) * blockBytes));
    createHash('sha256').update(block).digest().copy(out, i * DIGEST_BYTES, 0, DIGEST_BYTES);
  }
  return out;
}
