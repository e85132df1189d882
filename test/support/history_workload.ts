/**
 * A write workload that remembers the whole history of its writes, for tests that move the
 * primary around (test/cluster/schedules.test.ts). Like workload.ts it writes 4 KiB of
 * fresh content to random blocks of a device's first `spanBytes` and FLUSHes after each
 * batch; a write counts as acknowledged only once that FLUSH succeeded. Unlike
 * workload.ts it survives an export that goes away under it (what a primary that leaves
 * does): the batch in flight is then "maybe written", neither required nor forbidden.
 *
 * The history answers "may this device hold this content, given that it has every
 * acknowledged write up to sequence number S?": each block must hold the last write
 * acknowledged at or before S (or the baseline when there is none), or some write issued
 * after that one (a later write may have arrived too).
 *
 *   h.base = span at the baseline; writes 1..n (seq, block, data, acked)
 *   allowed(block, S) = { last acked write to block with seq <= S, else base }
 *                       + { every write to block with a higher seq than that one }
 */
import { NbdClient } from '../../src/nbd/index.js';
import { randomBytes } from './tmp.js';

export const BLOCK_BYTES = 4096;

export interface WriteRecord {
  readonly seq: number;
  readonly block: number;
  readonly data: Buffer;
  acked: boolean;
}

export class WriteHistory {
  /** The span's content at the baseline (zeros at first, or what a forced primary had). */
  private base: Buffer;
  private writes: WriteRecord[] = [];
  /** Sequence number of the last write issued. */
  seq = 0;
  /** Every write with seq <= ackedSeq that was issued is acknowledged or maybe-written. */
  ackedSeq = 0;
  /** Sequence number at the baseline: writes at or below it are folded into base. */
  baseSeq = 0;

  constructor(readonly spanBytes: number, seedBase = 1) {
    this.base = Buffer.alloc(spanBytes);
    this.nextSeed = seedBase;
  }

  private nextSeed: number;

  get blocks(): number {
    return this.spanBytes / BLOCK_BYTES;
  }

  get acknowledgedWrites(): number {
    return this.writes.filter((w) => w.acked).length;
  }

  /** A new write (not yet acknowledged): block and fresh content. */
  issue(): WriteRecord {
    const seed = this.nextSeed++;
    const block = (Math.imul(seed, 2654435761) >>> 0) % this.blocks;
    const w: WriteRecord = { seq: ++this.seq, block, data: randomBytes(BLOCK_BYTES, seed), acked: false };
    this.writes.push(w);
    return w;
  }

  acknowledge(ws: readonly WriteRecord[]): void {
    for (const w of ws) {
      w.acked = true;
      this.ackedSeq = Math.max(this.ackedSeq, w.seq);
    }
  }

  /**
   * Blocks of `image` (the span read from some host) that contradict "has every write
   * acknowledged up to `upTo`": one line per bad block, empty when it is fine.
   */
  problems(image: Buffer, upTo: number): string[] {
    const out: string[] = [];
    const byBlock = new Map<number, WriteRecord[]>();
    for (const w of this.writes) {
      const list = byBlock.get(w.block) ?? [];
      list.push(w);
      byBlock.set(w.block, list);
    }
    for (let b = 0; b < this.blocks; b++) {
      const got = image.subarray(b * BLOCK_BYTES, (b + 1) * BLOCK_BYTES);
      const list = byBlock.get(b) ?? [];
      let required = -1;
      for (let i = 0; i < list.length; i++) if (list[i]!.acked && list[i]!.seq <= upTo) required = i;
      const allowed = [required < 0 ? this.base.subarray(b * BLOCK_BYTES, (b + 1) * BLOCK_BYTES) : list[required]!.data,
        ...list.slice(required + 1).map((w) => w.data)];
      if (allowed.some((a) => a.equals(got))) continue;
      const need = required < 0 ? `its baseline content (base seq ${this.baseSeq})` : `write seq ${list[required]!.seq}`;
      const matches = list.find((w) => w.data.equals(got));
      out.push(`block ${b}: lacks ${need}` + (matches ? ` (holds older write seq ${matches.seq})` : ' (holds content from no write of this history)'));
    }
    return out;
  }

  /** The span as it is once every acknowledged write is applied (maybe-writes left out). */
  expected(): Buffer {
    const image = Buffer.from(this.base);
    for (const w of this.writes) if (w.acked) w.data.copy(image, w.block * BLOCK_BYTES);
    return image;
  }

  /** Start a new history from `image` (what a forced primary has): earlier writes are settled. */
  rebase(image: Buffer): void {
    this.base = Buffer.from(image.subarray(0, this.spanBytes));
    this.writes = [];
    this.baseSeq = this.seq;
    this.ackedSeq = this.seq;
  }
}

/** Writes of a WriteHistory to one export, until stop() or until the export fails. */
export class HistoryWorkload {
  private device: NbdClient | null = null;
  private running: Promise<void> | null = null;
  private stopping = false;
  /** Why the last run ended early (the export went away), or null. */
  failure: Error | null = null;
  writes = 0;

  constructor(private readonly history: WriteHistory, private readonly exportName: string) {}

  /** Connect (fails if nothing is served at `socket`), then write batches of 8 until stop(). */
  async start(socket: string): Promise<void> {
    this.stopping = false;
    this.failure = null;
    this.device = await NbdClient.connect(socket, this.exportName);
    const device = this.device;
    this.running = (async () => {
      while (!this.stopping) await this.batch(device, 8);
    })().catch((e: Error) => {
      this.failure = e;
    });
  }

  /** Finish the batch in flight and close the device (what stopping a service does). */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
    this.running = null;
    await this.device?.disconnect().catch(() => undefined);
    this.device = null;
  }

  /** `batches` batches of 8 writes through a fresh connection; false if the export failed. */
  async burst(socket: string, batches: number): Promise<boolean> {
    let device: NbdClient;
    try {
      device = await NbdClient.connect(socket, this.exportName);
    } catch (e) {
      this.failure = e as Error;
      return false;
    }
    try {
      for (let i = 0; i < batches; i++) await this.batch(device, 8);
      return true;
    } catch (e) {
      this.failure = e as Error;
      return false;
    } finally {
      await device.disconnect().catch(() => undefined);
    }
  }

  private async batch(device: NbdClient, n: number): Promise<void> {
    const done: WriteRecord[] = [];
    for (let i = 0; i < n; i++) {
      const w = this.history.issue();
      await device.write(w.block * BLOCK_BYTES, w.data);
      done.push(w);
    }
    await device.flush();
    this.history.acknowledge(done);
    this.writes += n;
  }
}

/** The first `bytes` of the export at `socket`. */
export async function readExport(socket: string, exportName: string, bytes: number): Promise<Buffer> {
  const device = await NbdClient.connect(socket, exportName);
  try {
    return await device.read(0, bytes);
  } finally {
    await device.disconnect().catch(() => undefined);
  }
}
