/**
 * The Lamport clock of a tree: stamps that never go backwards, never lag real time, and
 * are strictly greater than every stamp handed out or received before, across restarts
 * and across processes.
 *
 * Locking: `now()` and `observe()` read, advance and rewrite the state file. They must
 * run with the tree lock (`<root>/.phobos/lock`) held; that is what makes the stamps of
 * concurrent processes unique. `MarsTree` calls them only inside its locked sections.
 *
 * @example
 * const clock = new LamportClock({ statePath: '/mars/.phobos/lamport' });
 * const a = clock.now();          // >= Date.now() * 1000
 * clock.observe(a + 5_000_000);   // a peer is 5 s ahead
 * clock.now() > a + 5_000_000;    // true
 */
import { closeSync, constants, openSync, readFileSync, writeSync } from 'node:fs';

import type { LamportClockOptions, LamportStamp } from './types.js';

/** Default bound on how far a received stamp may pull the clock ahead of real time, ms. */
export const DEFAULT_MAX_FUTURE_MS = 600_000;

export class LamportClock {
  readonly statePath: string;
  readonly maxFutureMs: number;
  readonly #wallClockMs: () => number;
  /** The largest stamp this object returned or observed (the file may be ahead of it). */
  #last: LamportStamp = 0;

  constructor(options: LamportClockOptions) {
    this.statePath = options.statePath;
    this.maxFutureMs = options.maxFutureMs ?? DEFAULT_MAX_FUTURE_MS;
    this.#wallClockMs = options.wallClockMs ?? Date.now;
  }

  /** Real time in microseconds (millisecond resolution: Date.now). */
  realTime(): LamportStamp {
    return Math.floor(this.#wallClockMs()) * 1000;
  }

  /** The latest stamp handed out or observed, by any process (reads the file). */
  peek(): LamportStamp {
    return Math.max(this.#last, this.#readPersisted());
  }

  /** A new stamp: > everything before, >= real time. Call with the tree lock held. */
  now(): LamportStamp {
    const stamp = Math.max(this.realTime(), this.peek() + 1);
    this.#persist(stamp);
    return stamp;
  }

  /**
   * Advance past a received stamp, bounded to real time + maxFutureMs. Returns the
   * clock's value afterwards. Call with the tree lock held.
   */
  observe(stamp: LamportStamp): LamportStamp {
    const bounded = Math.min(stamp, this.futureLimit());
    const current = this.peek();
    if (bounded <= current) {
      this.#last = current;
      return current;
    }
    this.#persist(bounded);
    return bounded;
  }

  /** The largest stamp accepted from outside right now. */
  futureLimit(): LamportStamp {
    return this.realTime() + this.maxFutureMs * 1000;
  }

  #readPersisted(): LamportStamp {
    let text: string;
    try {
      text = readFileSync(this.statePath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw e;
    }
    const value = Number(text.trim());
    // A damaged file counts as empty: real time and the existing stamps still order writes.
    return Number.isSafeInteger(value) && value > 0 ? value : 0;
  }

  #persist(stamp: LamportStamp): void {
    // One fixed-width 21-byte pwrite at offset 0, never a truncate: the record lies in one
    // disk sector, so a crash leaves the old number or the new one. (tmp + rename, or
    // truncate + write, cost ~0.4 ms per stamp on ext4, whose auto_da_alloc flushes on them.)
    const fd = openSync(this.statePath, constants.O_RDWR | constants.O_CREAT, 0o644);
    try {
      writeSync(fd, `${String(stamp).padStart(20, '0')}\n`, 0);
    } finally {
      closeSync(fd);
    }
    this.#last = stamp;
  }
}

/** A stamp as people read it: `sec.usec`, e.g. `1763800000.123456`. */
export function formatStamp(stamp: LamportStamp): string {
  const sec = Math.floor(stamp / 1e6);
  return `${sec}.${String(stamp - sec * 1e6).padStart(6, '0')}`;
}
