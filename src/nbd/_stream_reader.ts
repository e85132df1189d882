/**
 * Awaitable fixed-size reads from a byte stream, for the handshakes of both sides, which
 * are strictly one message after another. Once the handshake is over, `detach()` hands
 * back the bytes read ahead so the transmission reader starts where the handshake ended.
 */
import type { Duplex } from 'node:stream';

import { NbdConnectionError } from './errors.js';
import { ByteQueue } from './protocol.js';

export class StreamReader {
  private readonly queue = new ByteQueue();
  private waiter: { bytes: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private ended: Error | null = null;
  private readonly onData = (chunk: Buffer): void => {
    this.queue.push(chunk);
    this.wake();
  };
  private readonly onEnd = (): void => this.fail(new NbdConnectionError(`${this.what}: connection closed by the peer`));
  private readonly onError = (e: Error): void => this.fail(new NbdConnectionError(`${this.what}: ${e.message}`, { cause: e }));

  /** `what` names the side in messages, e.g. 'nbd handshake'. */
  constructor(private readonly stream: Duplex, private readonly what: string) {
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('close', this.onEnd);
    stream.on('error', this.onError);
  }

  /** Resolves with exactly `bytes` bytes; rejects with NbdConnectionError if the stream ends first. */
  read(bytes: number): Promise<Buffer> {
    if (this.waiter) throw new Error('StreamReader: one read at a time');
    if (this.queue.length >= bytes) return Promise.resolve(this.queue.take(bytes));
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      this.waiter = { bytes, resolve, reject };
    });
  }

  /**
   * Stops listening, pauses the stream (so no chunk is lost before the next consumer
   * attaches and resumes it) and returns the bytes read ahead.
   */
  detach(): Buffer {
    this.stream.pause();
    this.stream.off('data', this.onData);
    this.stream.off('end', this.onEnd);
    this.stream.off('close', this.onEnd);
    this.stream.off('error', this.onError);
    return this.queue.drain();
  }

  private wake(): void {
    const w = this.waiter;
    if (w && this.queue.length >= w.bytes) {
      this.waiter = null;
      w.resolve(this.queue.take(w.bytes));
    }
  }

  private fail(e: Error): void {
    if (this.ended) return;
    this.ended = e;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(e);
  }
}
