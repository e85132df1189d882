/** Test helpers of the NBD tests: a Buffer-backed BlockDevice and an in-memory duplex pair. */
import { Duplex } from 'node:stream';

import type { BlockDevice } from '../../../src/nbd/index.js';

export interface DeviceCall {
  readonly op: 'read' | 'write' | 'flush' | 'zero';
  readonly offset: number;
  readonly length: number;
  readonly fua: boolean;
}

/**
 * A BlockDevice over a Buffer. `durable` holds what a crash would keep: a FUA write or
 * zero copies its range there, a flush copies everything completed so far. `delayMs`
 * delays each call (e.g. randomly, to complete requests out of order); `failNext` makes
 * the next matching call throw an error with that code.
 */
export class MemoryDevice implements BlockDevice {
  readonly data: Buffer;
  readonly durable: Buffer;
  readonly calls: DeviceCall[] = [];
  delayMs: (op: DeviceCall['op']) => number = () => 0;
  failNext: { op: DeviceCall['op']; code: string } | null = null;
  /** Calls started and not yet settled. */
  active = 0;
  /** The most calls ever active at once. */
  peakActive = 0;

  constructor(readonly sizeBytes: number) {
    this.data = Buffer.alloc(sizeBytes);
    this.durable = Buffer.alloc(sizeBytes);
  }

  async read(offset: number, length: number): Promise<Buffer> {
    await this.enter({ op: 'read', offset, length, fua: false });
    try {
      return Buffer.from(this.data.subarray(offset, offset + length));
    } finally {
      this.active--;
    }
  }

  async write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    await this.enter({ op: 'write', offset, length: data.length, fua });
    data.copy(this.data, offset);
    if (fua) data.copy(this.durable, offset);
    this.active--;
  }

  async flush(): Promise<void> {
    await this.enter({ op: 'flush', offset: 0, length: 0, fua: false });
    this.data.copy(this.durable);
    this.active--;
  }

  async zero(offset: number, length: number, fua: boolean): Promise<void> {
    await this.enter({ op: 'zero', offset, length, fua });
    this.data.fill(0, offset, offset + length);
    if (fua) this.durable.fill(0, offset, offset + length);
    this.active--;
  }

  private async enter(call: DeviceCall): Promise<void> {
    this.calls.push(call);
    this.active++;
    this.peakActive = Math.max(this.peakActive, this.active);
    const delay = this.delayMs(call.op);
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    const fail = this.failNext;
    if (fail && fail.op === call.op) {
      this.failNext = null;
      this.active--;
      throw Object.assign(new Error(`injected ${fail.code}`), { code: fail.code });
    }
  }
}

/** Two connected in-memory streams: what one writes, the other reads. */
export function duplexPair(): [Duplex, Duplex] {
  const ends: Duplex[] = [];
  const make = (peer: () => Duplex): Duplex => new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      peer().push(Buffer.from(chunk));
      callback();
    },
    final(callback) {
      peer().push(null);
      callback();
    },
    destroy(error, callback) {
      const other = peer();
      if (!other.destroyed) other.destroy();
      callback(error);
    },
  });
  ends.push(make(() => ends[1]!), make(() => ends[0]!));
  return [ends[0]!, ends[1]!];
}

/** Resolves when `stream` has closed. */
export function closedOf(stream: Duplex): Promise<void> {
  return stream.destroyed && stream.closed ? Promise.resolve() : new Promise((r) => stream.once('close', () => r()));
}
