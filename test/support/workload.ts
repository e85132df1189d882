/**
 * A write workload for handover tests: 4 KiB writes of fresh content to random blocks of
 * a device's first `spanBytes`, through whatever export it is pointed at. It remembers
 * the content of every acknowledged write (FLUSH after each batch), so a test can check
 * that a new primary has all of them.
 */
import { expect } from 'chai';

import { NbdClient } from '../../src/nbd/index.js';
import { randomBytes } from './tmp.js';

const BLOCK = 4096;

export class Workload {
  /** Block index -> content of the last acknowledged write there. */
  readonly acknowledged = new Map<number, Buffer>();
  private seed: number;
  private device: NbdClient | null = null;
  private running: Promise<void> | null = null;
  private stopping = false;
  writes = 0;

  /** Workloads with different `firstSeed`s write different content (and blocks). */
  constructor(private readonly spanBytes: number, private readonly exportName: string, firstSeed = 1) {
    this.seed = firstSeed;
  }

  /** Write to the export at `socket` until stop(). */
  start(socket: string): void {
    this.stopping = false;
    this.running = (async () => {
      this.device = await NbdClient.connect(socket, this.exportName);
      while (!this.stopping) await this.batch(this.device, 8);
    })();
  }

  /** Finish the batch in flight and close the device (what stopping a service does). */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
    await this.device?.disconnect();
    this.device = null;
  }

  private async batch(device: NbdClient, n: number): Promise<void> {
    const done: [number, Buffer][] = [];
    for (let i = 0; i < n; i++) {
      const block = (this.seed * 2654435761 >>> 0) % (this.spanBytes / BLOCK);
      const data = randomBytes(BLOCK, this.seed++);
      await device.write(block * BLOCK, data);
      done.push([block, data]);
    }
    await device.flush();
    for (const [block, data] of done) this.acknowledged.set(block, data);
    this.writes += n;
  }

  /** Every acknowledged write reads back from the export at `socket`. */
  async verify(socket: string, where: string): Promise<void> {
    const device = await NbdClient.connect(socket, this.exportName);
    try {
      for (const [block, data] of this.acknowledged) {
        const got = await device.read(block * BLOCK, BLOCK);
        expect(got.equals(data), `block ${block} on ${where}`).to.equal(true);
      }
    } finally {
      await device.disconnect();
    }
  }
}
