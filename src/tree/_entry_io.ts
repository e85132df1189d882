/**
 * Private to src/tree: reading and writing one symlink entry on disk, the stamp <-> mtime
 * conversion, and the names that are not entries.
 */
import { lstatSync, lutimesSync, promises as fsp, readlinkSync, renameSync, symlinkSync, unlinkSync } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import path from 'node:path';

import type { LamportStamp, TreeEntry } from './types.js';
import { TOMBSTONE } from './types.js';

/** Names in the tree that are never entries: `.phobos/` (lock and clock), `.tmp.*`. */
export function isHiddenName(name: string): boolean {
  return name.startsWith('.');
}

/**
 * The seconds argument for lutimes that reads back as exactly `stamp` microseconds.
 * libuv truncates to whole microseconds, so aim at the middle of the microsecond: the
 * double's rounding error (< 0.24 us before 2106) cannot leave it.
 */
export function stampToSeconds(stamp: LamportStamp): number {
  const sec = Math.floor(stamp / 1e6);
  return sec + (stamp - sec * 1e6 + 0.5) / 1e6;
}

/** The stamp of a link from its bigint lstat. */
export function statToStamp(st: BigIntStats): LamportStamp {
  return Number(st.mtimeNs / 1000n);
}

/** What is at a path of the tree. */
export type OnDisk =
  | {
    readonly kind: 'link'; readonly value: string; readonly stamp: LamportStamp;
    /** The lstat that value and stamp belong to: what TreeWatcher compares the next event with. */
    readonly stats: BigIntStats;
  }
  | { readonly kind: 'file' }
  | { readonly kind: 'dir' }
  | { readonly kind: 'other' }
  | { readonly kind: 'missing' };

const sameVersion = (a: BigIntStats, b: BigIntStats): boolean =>
  a.ino === b.ino && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;

/**
 * Read a path without locking: lstat, readlink, lstat again, retried until both lstats
 * agree, so the value and the stamp belong to the same version of the link.
 */
export async function readOnDisk(file: string): Promise<OnDisk> {
  for (;;) {
    let before: BigIntStats;
    try {
      before = await fsp.lstat(file, { bigint: true });
    } catch (e) {
      if (isGone(e)) return { kind: 'missing' };
      throw e;
    }
    if (before.isDirectory()) return { kind: 'dir' };
    if (before.isFile()) return { kind: 'file' };
    if (!before.isSymbolicLink()) return { kind: 'other' };
    let value: string;
    let after: BigIntStats;
    try {
      value = await fsp.readlink(file);
      after = await fsp.lstat(file, { bigint: true });
    } catch (e) {
      if (isGone(e) || (e as NodeJS.ErrnoException).code === 'EINVAL') continue; // replaced meanwhile
      throw e;
    }
    if (sameVersion(before, after)) return { kind: 'link', value, stamp: statToStamp(after), stats: after };
  }
}

/** The entry for an on-disk link. */
export function toEntry(key: string, link: { value: string; stamp: LamportStamp }): TreeEntry {
  return { key, value: link.value === TOMBSTONE ? null : link.value, stamp: link.stamp };
}

let tmpCounter = 0;

/** Write a link atomically: symlink to a tmp name in the same directory, lutimes, rename. */
export async function writeLink(file: string, value: string, stamp: LamportStamp): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.tmp.${process.pid}.${tmpCounter++}.${path.basename(file)}`);
  await fsp.symlink(value, tmp);
  try {
    const seconds = stampToSeconds(stamp);
    await fsp.lutimes(tmp, seconds, seconds);
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.unlink(tmp).catch(() => undefined);
    throw e;
  }
}

export function isGone(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * Synchronous twins of readOnDisk and writeLink, for the locked sections of MarsTree:
 * a few microseconds per syscall instead of a thread-pool round trip (~70 us each on the
 * dev VM), which keeps the cross-process lock held as briefly as possible.
 */
export function readOnDiskSync(file: string): OnDisk {
  for (;;) {
    const before = lstatSync(file, { bigint: true, throwIfNoEntry: false });
    if (before === undefined) return { kind: 'missing' };
    if (before.isDirectory()) return { kind: 'dir' };
    if (before.isFile()) return { kind: 'file' };
    if (!before.isSymbolicLink()) return { kind: 'other' };
    let value: string;
    try {
      value = readlinkSync(file);
    } catch (e) {
      if (isGone(e) || (e as NodeJS.ErrnoException).code === 'EINVAL') continue;
      throw e;
    }
    const after = lstatSync(file, { bigint: true, throwIfNoEntry: false });
    if (after && sameVersion(before, after)) return { kind: 'link', value, stamp: statToStamp(after), stats: after };
  }
}

export function writeLinkSync(file: string, value: string, stamp: LamportStamp): void {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.tmp.${process.pid}.${tmpCounter++}.${path.basename(file)}`);
  symlinkSync(value, tmp);
  try {
    const seconds = stampToSeconds(stamp);
    lutimesSync(tmp, seconds, seconds);
    renameSync(tmp, file);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw e;
  }
}
