/**
 * The bulk data path of the peer protocol: frame payloads handed on without copies,
 * header and payload written as one batch, control frames ahead of queued bulk frames,
 * and block digests computed with read-ahead.
 */
import { writeFileSync } from 'node:fs';
import { PassThrough, Writable } from 'node:stream';

import { expect } from 'chai';

import { PeerConnection, type PeerTransport } from '../../../src/peer/index.js';
import { DIGEST_BYTES, digestBlocks, digestRange } from '../../../src/peer/device_view.js';
import { encodeFrame, FrameDecoder, MessageType } from '../../../src/peer/frames.js';
import { randomBytes, tempDir } from '../../support/tmp.js';

/** A transport whose output records each write batch and drains only when told to. */
function recordingTransport(): { transport: PeerTransport; batches: Buffer[][]; drain: () => void } {
  const batches: Buffer[][] = [];
  let release: (() => void)[] = [];
  const output = new Writable({
    highWaterMark: 16,
    writev(chunks, callback) {
      batches.push(chunks.map((c) => c.chunk as Buffer));
      release.push(() => callback());
    },
    write(chunk: Buffer, _enc, callback) {
      batches.push([chunk]);
      release.push(() => callback());
    },
  });
  const transport: PeerTransport = {
    input: new PassThrough(), output, description: 'mem:recording', closed: new Promise(() => undefined), close: () => undefined,
  };
  const drain = (): void => {
    const now = release;
    release = [];
    for (const r of now) r();
  };
  return { transport, batches, drain };
}

function typeOf(batch: Buffer[]): number {
  return batch[0]!.readUInt8(4);
}

describe('peer bulk path', () => {
  describe('FrameDecoder', () => {
    it('hands a payload inside one chunk on as a view of it, without a copy', () => {
      const payload = randomBytes(4096, 1);
      const bytes = Buffer.concat(encodeFrame(MessageType.LOG_DATA, 3, { offset: 0, size: 4096 }, payload));
      const [frame] = new FrameDecoder().push(bytes);
      expect(frame!.payloadParts).to.have.length(1);
      expect(frame!.payloadParts[0]!.buffer).to.equal(bytes.buffer);
      expect(frame!.payload.equals(payload)).to.equal(true);
    });

    it('keeps a payload that spans chunks as views of those chunks, in order', () => {
      const payload = randomBytes(1 << 20, 2);
      const bytes = Buffer.concat([
        ...encodeFrame(MessageType.LOG_DATA, 3, { offset: 0, size: 1 << 20 }, payload),
        ...encodeFrame(MessageType.PONG, 4, {}),
      ]);
      const chunks: Buffer[] = [];
      for (let at = 0; at < bytes.length; at += 65536) chunks.push(Buffer.from(bytes.subarray(at, at + 65536)));
      const d = new FrameDecoder();
      const frames = chunks.flatMap((c) => d.push(c));
      expect(frames.map((f) => f.type)).to.deep.equal([MessageType.LOG_DATA, MessageType.PONG]);
      const data = frames[0]!;
      expect(data.payloadParts.length).to.be.greaterThan(1);
      expect(data.payloadParts.every((p) => chunks.some((c) => c.buffer === p.buffer))).to.equal(true);
      expect(data.payloadLength).to.equal(payload.length);
      expect(Buffer.concat(data.payloadParts).equals(payload)).to.equal(true);
    });
  });

  describe('PeerConnection sending', () => {
    it('writes a frame\'s header and payload as one batch', async () => {
      const { transport, batches, drain } = recordingTransport();
      const conn = new PeerConnection(transport, { peer: 'test', log: () => undefined });
      conn.reply(9, [{ type: MessageType.LOG_DATA, json: { offset: 0, size: 3 }, payload: Buffer.from('abc') }]);
      await new Promise((r) => setImmediate(r));
      expect(batches).to.have.length(1);
      expect(batches[0]).to.have.length(2);
      expect(batches[0]![1]!.toString()).to.equal('abc');
      drain();
      conn.close();
    });

    it('sends a control frame before bulk frames queued ahead of it, after at most the one being written', async () => {
      const { transport, batches, drain } = recordingTransport();
      const conn = new PeerConnection(transport, { peer: 'test', log: () => undefined });
      const block = Buffer.alloc(1 << 20);
      for (let id = 1; id <= 3; id++) conn.reply(id, [{ type: MessageType.BLOCKS_DATA, json: {}, payload: block }]);
      await new Promise((r) => setImmediate(r));
      conn.notify(MessageType.TREE_ENTRIES, { snapshot: false, entries: [] });
      for (let i = 0; i < 4; i++) {
        drain();
        await new Promise((r) => setImmediate(r));
      }
      expect(batches.map(typeOf)).to.deep.equal([
        MessageType.BLOCKS_DATA, MessageType.TREE_ENTRIES, MessageType.BLOCKS_DATA, MessageType.BLOCKS_DATA,
      ]);
      conn.close();
    });
  });

  describe('digestRange', () => {
    it('equals digestBlocks over the whole range, reading the next piece while hashing this one', async () => {
      const tmp = tempDir('phobos-digest-');
      try {
        const data = randomBytes((9 << 20) + 12345, 3);
        writeFileSync(tmp.file('disk'), data);
        const reads: [number, number][] = [];
        let inFlight = 0, maxInFlight = 0;
        const read = async (offset: number, length: number): Promise<Buffer> => {
          reads.push([offset, length]);
          maxInFlight = Math.max(maxInFlight, ++inFlight);
          await new Promise((r) => setImmediate(r));
          inFlight--;
          return data.subarray(offset, offset + length);
        };
        const offset = 65536, length = data.length - offset;
        const digests = await digestRange(read, offset, length, 65536);
        expect(digests.equals(digestBlocks(data.subarray(offset), 65536))).to.equal(true);
        expect(digests.length).to.equal(Math.ceil(length / 65536) * DIGEST_BYTES);
        expect(reads[0]).to.deep.equal([offset, 4 << 20]);
        expect(reads.reduce((sum, [, n]) => sum + n, 0)).to.equal(length);
        expect(maxInFlight).to.equal(1); // one piece read ahead: a reader may alternate two buffers
      } finally {
        tmp.remove();
      }
    });
  });
});
