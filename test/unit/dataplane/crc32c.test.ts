import { expect } from 'chai';

import { crc32c, crc32cImplementation, crc32cSync } from '../../../src/dataplane/index.js';
import { randomBytes } from '../../support/tmp.js';

/** Bit-by-bit reference, straight from the definition (reflected poly 0x82F63B78). */
function referenceCrc32c(data: Uint8Array, seed = 0): number {
  let crc = ~seed >>> 0;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

const implementations = ['portable', ...(crc32cImplementation() === 'sse42' ? ['sse42' as const] : [])] as const;

// RFC 3720 (iSCSI) appendix B.4 test vectors, plus the common check value.
const vectors: [string, Buffer, number][] = [
  ['32 bytes of zeros', Buffer.alloc(32, 0), 0x8a9136aa],
  ['32 bytes of 0xff', Buffer.alloc(32, 0xff), 0x62a8ab43],
  ['32 incrementing bytes', Buffer.from(Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e],
  ['32 decrementing bytes', Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c],
  ['"123456789"', Buffer.from('123456789'), 0xe3069283],
  ['empty input', Buffer.alloc(0), 0],
];

describe('crc32c', () => {
  for (const impl of implementations) {
    for (const [name, data, want] of vectors) {
      it(`crc32c (${impl}) - ${name} gives 0x${want.toString(16)}`, async () => {
        expect(await crc32c(data, 0, impl)).to.equal(want);
      });
    }
  }

  it('crc32c - the synchronous small version agrees on the vectors', () => {
    for (const [, data, want] of vectors) expect(crc32cSync(data)).to.equal(want);
  });

  it('crc32c - every implementation agrees with the bitwise reference on odd lengths and alignments', async () => {
    const base = randomBytes(40000, 7);
    for (let offset = 0; offset < 9; offset++) {
      for (let length = 0; length < 20000; length = length * 2 + 1 + offset) {
        const slice = base.subarray(offset, offset + length);
        const want = referenceCrc32c(slice);
        for (const impl of implementations) {
          expect(await crc32c(slice, 0, impl), `${impl} offset ${offset} length ${length}`).to.equal(want);
        }
      }
    }
  });

  it('crc32c - the 3-stream path agrees with the portable one across stripe boundaries', async () => {
    const big = randomBytes(3 * 4096 * 5 + 3 * 256 * 3 + 77, 11);
    for (const length of [3 * 4096 - 1, 3 * 4096, 3 * 4096 + 1, 3 * 256, 3 * 256 + 9, big.length]) {
      const slice = big.subarray(3, 3 + Math.min(length, big.length - 3));
      const results = await Promise.all(implementations.map((impl) => crc32c(slice, 0, impl)));
      expect(new Set(results).size, `length ${length}`).to.equal(1);
    }
  });

  it('crc32c - continuing from a seed equals one pass over the concatenation', async () => {
    const a = randomBytes(1000, 1), b = randomBytes(777, 2);
    expect(await crc32c(b, await crc32c(a))).to.equal(await crc32c(Buffer.concat([a, b])));
  });

  it('crc32cSync - refuses more than 64 KiB with a message naming the async version', () => {
    expect(() => crc32cSync(Buffer.alloc(65537))).to.throw(/at most 64 KiB; use crc32c\(\)/);
  });
});
