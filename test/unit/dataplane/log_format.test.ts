import { expect } from 'chai';

import { native, type EncodeInput } from '../../../src/dataplane/native.js';
import { scanBuffer, type ScanResult } from '../../../src/dataplane/index.js';
import { randomBytes, textBytes } from '../../support/tmp.js';

const WRITE = 1, ZERO = 2, SYNC_MARK = 3;

/** Encode records back to back; each record's syncedPos is its own offset (all prior data durable). */
async function buildLog(specs: Omit<EncodeInput, 'seq'>[], codec = 0, evidence = true): Promise<{ log: Buffer; offsets: number[] }> {
  const parts: Buffer[] = [];
  const offsets: number[] = [];
  let offset = 0;
  for (const [i, spec] of specs.entries()) {
    const rec = await native.encodeRecords([{ ...spec, seq: i + 1, syncedPos: evidence ? offset : 0 }], codec);
    offsets.push(offset);
    parts.push(rec);
    offset += rec.length;
  }
  return { log: Buffer.concat(parts), offsets };
}

describe('log format', () => {
  describe('round trips', () => {
    const sizes = [1, 7, 8, 9, 511, 4096, 65536, 1 << 20, 4 << 20];
    for (const [codecName, codec] of [['none', 0], ['lz4', 1], ['zstd', 2]] as const) {
      it(`log format - every record size round-trips with codec ${codecName}, compressible and random data`, async function () {
        this.timeout(60000);
        for (const size of sizes) {
          for (const data of [textBytes(size), randomBytes(size, size)]) {
            const log = await native.encodeRecords([{ type: WRITE, deviceOffset: 512, data, seq: 1 }], codec);
            const scanned = await scanBuffer(log, { atEof: true });
            expect(scanned.status, `size ${size}`).to.equal('end');
            expect(scanned.records).to.have.length(1);
            const rec = scanned.records[0]!;
            expect(rec.length).to.equal(size);
            expect(rec.deviceOffset).to.equal(512);
            // Compressed only when it pays after padding to 8 bytes.
            const pad8 = (n: number) => (n + 7) & ~7;
            if (rec.codec !== 'none') expect(pad8(rec.storedLength)).to.be.lessThan(pad8(size));
            if (codec === 0) expect(rec.codec).to.equal('none');
          }
        }
      });
    }

    it('log format - compressible data is stored compressed, random data is not', async () => {
      const log = await native.encodeRecords([
        { type: WRITE, data: textBytes(65536), seq: 1 },
        { type: WRITE, data: randomBytes(65536, 3), seq: 2 },
      ], 1);
      const { records } = await scanBuffer(log);
      expect(records.map((r) => r.codec)).to.deep.equal(['lz4', 'none']);
      expect(records[0]!.storedLength).to.be.lessThan(65536 / 4);
    });

    it('log format - zero and sync-mark records carry no payload', async () => {
      const log = await native.encodeRecords([
        { type: ZERO, deviceOffset: 8192, length: 1 << 20, seq: 1 },
        { type: SYNC_MARK, seq: 2, syncedPos: 64 },
      ]);
      expect(log.length).to.equal(128);
      const { records, status } = await scanBuffer(log);
      expect(status).to.equal('end');
      expect(records.map((r) => [r.type, r.length, r.size])).to.deep.equal([['zero', 1 << 20, 64], ['sync-mark', 0, 64]]);
    });

    it('log format - refuses to encode a record over 4 MiB', async () => {
      let error: Error | undefined;
      try {
        await native.encodeRecords([{ type: WRITE, data: Buffer.alloc((4 << 20) + 1), seq: 1 }]);
      } catch (e) {
        error = e as Error;
      }
      expect(error?.message).to.match(/exceeds 4 MiB/);
    });
  });

  describe('torn tail and corruption', () => {
    const specs = [
      { type: WRITE, deviceOffset: 0, data: textBytes(300) },
      { type: ZERO, deviceOffset: 4096, length: 4096 },
      { type: WRITE, deviceOffset: 8192, data: randomBytes(200, 9) },
    ];

    it('log format - a log cut at every byte of its last record reads as a torn tail there', async () => {
      const { log, offsets } = await buildLog(specs);
      const last = offsets[2]!;
      for (let cut = last + 1; cut < log.length; cut++) {
        const r = await scanBuffer(log.subarray(0, cut), { atEof: true });
        expect(r.status, `cut at ${cut}`).to.equal('torn');
        expect(r.fault!.offset).to.equal(last);
        expect(r.records).to.have.length(2);
        expect(r.position).to.equal(last);
        const growing = await scanBuffer(log.subarray(0, cut), { atEof: false });
        expect(growing.status, `growing, cut at ${cut}`).to.equal('need-more');
        // Inside the header only the header's missing bytes are known; after it, the record's.
        const inHeader = cut - last < 64;
        expect(growing.needBytes).to.equal(inHeader ? 64 - (cut - last) : log.length - cut);
      }
      expect((await scanBuffer(log.subarray(0, last))).status).to.equal('end');
    });

    it('log format - a zero-filled tail is torn, not corrupt', async () => {
      const { log, offsets } = await buildLog(specs);
      const withZeros = Buffer.concat([log, Buffer.alloc(4096)]);
      const r = await scanBuffer(withZeros);
      expect(r.status).to.equal('torn');
      expect(r.fault!.offset).to.equal(log.length);
      expect(r.records).to.have.length(offsets.length);
    });

    it('log format - every single-bit flip in a small log is detected and nothing after it is returned', async function () {
      this.timeout(120000);
      const { log, offsets } = await buildLog(specs);
      const originals = (await scanBuffer(log)).records;
      for (let bit = 0; bit < log.length * 8; bit++) {
        const bad = Buffer.from(log);
        bad[bit >> 3]! ^= 1 << (bit & 7);
        const r = await scanBuffer(bad);
        const at = offsets.findLastIndex((o) => o <= bit >> 3);
        expect(r.status, `bit ${bit}`).to.be.oneOf(['torn', 'corrupt']);
        expect(r.fault!.offset, `bit ${bit}`).to.equal(offsets[at]);
        expect(r.records, `bit ${bit}`).to.deep.equal(originals.slice(0, at));
        // Later records vouch for earlier ones; only the last record is unproven.
        const magicFlip = (bit >> 3) - offsets[at]! < 4;
        if (at < offsets.length - 1 || magicFlip) expect(r.status, `bit ${bit}`).to.equal('corrupt');
      }
    });

    it('log format - damage in the unsynced last group is torn, damage the next group vouches for is corrupt', async () => {
      // Records 1-2 synced; records 3-4 are one unsynced group (synced_pos stays at 3's offset).
      const a = await native.encodeRecords([{ type: WRITE, data: textBytes(100), seq: 1 }]);
      const b = await native.encodeRecords([{ type: WRITE, data: textBytes(100), seq: 2, syncedPos: a.length }]);
      const g = a.length + b.length;
      const c = await native.encodeRecords([{ type: WRITE, data: randomBytes(100, 1), seq: 3, syncedPos: g }]);
      const d = await native.encodeRecords([{ type: WRITE, data: randomBytes(100, 2), seq: 4, syncedPos: g }]);
      const log = Buffer.concat([a, b, c, d]);
      const damageC = Buffer.from(log);
      damageC[g + 64 + 10]! ^= 0xff;
      const torn = await scanBuffer(damageC);
      expect([torn.status, torn.fault!.offset, torn.fault!.code]).to.deep.equal(['torn', g, 'payload-crc']);
      const damageB = Buffer.from(log);
      damageB[a.length + 64 + 10]! ^= 0xff;
      const corrupt = await scanBuffer(damageB);
      expect([corrupt.status, corrupt.fault!.offset, corrupt.fault!.evidenceOffset]).to.deep.equal(['corrupt', a.length, g]);
    });

    it('log format - a foreign file and an unknown version are corruption at offset 0', async () => {
      const foreign = await scanBuffer(Buffer.from('root:x:0:0:root:/root:/bin/bash\n'.repeat(4)));
      expect([foreign.status, foreign.fault!.code, foreign.fault!.offset]).to.deep.equal(['corrupt', 'bad-magic', 0]);
      const v2 = await native.encodeRecords([{ type: WRITE, data: textBytes(64), seq: 1 }]);
      v2[4] = 2;
      const r = await scanBuffer(v2);
      expect([r.status, r.fault!.code, r.fault!.got, r.fault!.want]).to.deep.equal(['corrupt', 'bad-version', 2n, 1n]);
    });

    it('log format - a sequence gap is reported with the numbers found and expected', async () => {
      const log = Buffer.concat([
        await native.encodeRecords([{ type: WRITE, data: textBytes(10), seq: 1 }]),
        await native.encodeRecords([{ type: WRITE, data: textBytes(10), seq: 3, syncedPos: 80 }]),
        await native.encodeRecords([{ type: WRITE, data: textBytes(10), seq: 4, syncedPos: 160 }]),
      ]);
      const r = await scanBuffer(log, { expectSeq: 1 });
      expect([r.status, r.fault!.code, r.fault!.got, r.fault!.want]).to.deep.equal(['corrupt', 'sequence', 3n, 2n]);
    });

    it('log format - random buffers and mutated logs never crash the scanner', async function () {
      this.timeout(60000);
      const { log } = await buildLog(specs, 1);
      const seen = new Set<string>();
      for (let i = 0; i < 3000; i++) {
        const noise = randomBytes((i * 37) % 700, i + 1);
        const input = i % 2 ? noise : Buffer.concat([log.subarray(0, i % log.length), noise]);
        const r: ScanResult = await scanBuffer(input, { atEof: i % 3 !== 0 });
        seen.add(r.status);
        expect(r.position).to.be.at.most(input.length);
      }
      expect(seen).to.include('corrupt');
    });
  });
});
