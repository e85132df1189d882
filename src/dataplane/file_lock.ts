/**
 * Exclusive file locks that the kernel releases when the holder dies (flock), so no
 * crash can leave a stale lock. Waiting is polling with backoff, bounded by a timeout.
 *
 * @example
 * await withFileLock('/mars/.phobos/lock', 5000, async () => { ... });
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { native } from './native.js';

export class LockTimeoutError extends Error {
  override readonly name = 'LockTimeoutError';
  readonly code = 'EPHOBOS_LOCKED';
  constructor(readonly path: string, readonly waitedMs: number, readonly holderPid: number | null) {
    super(`${path} is locked by ${holderPid ? `pid ${holderPid}` : 'another process'}; waited ${waitedMs} ms ` +
      '(another marsadm or the daemon is changing the tree: retry, or raise --timeout)');
  }
}

/** Take the lock, waiting up to timeoutMs; returns the release function. */
export async function acquireFileLock(path: string, timeoutMs: number): Promise<() => void> {
  const started = Date.now();
  let delay = 1;
  for (;;) {
    const fd = native.tryLock(path);
    if (fd !== null) return () => native.unlock(fd);
    const waited = Date.now() - started;
    if (waited >= timeoutMs) throw new LockTimeoutError(path, waited, holderPid(path));
    await sleep(Math.min(delay, timeoutMs - waited));
    delay = Math.min(delay * 2, 50);
  }
}

export async function withFileLock<T>(path: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const release = await acquireFileLock(path, timeoutMs);
  try {
    return await fn();
  } finally {
    release();
  }
}

function holderPid(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}
