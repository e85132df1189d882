/** Temporary directories that a test creates and removes itself. */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TempDir {
  readonly dir: string;
  file(name: string): string;
  remove(): void;
}

export function tempDir(prefix = 'phobos-test-'): TempDir {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return {
    dir,
    file: (name) => path.join(dir, name),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function randomBytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Compressible bytes: repeated text lines. */
export function textBytes(length: number): Buffer {
  const line = Buffer.from('2026-11-22T04:00:00Z host-a phobos: replay position 123456 of log-000000042-a\n');
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += line.length) line.copy(out, i);
  return out;
}
