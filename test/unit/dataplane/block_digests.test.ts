import { expect } from 'chai';
import { writeFileSync } from 'node:fs';

import { blockDigests, crc32c } from '../../../src/dataplane/index.js';
import { randomBytes, tempDir, type TempDir } from '../../support/tmp.js';

describe('blockDigests', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.remove());

  it('blockDigests - gives the crc32c of every block, the last one short', async () => {
    const data = randomBytes(3 * 65536 + 1000, 1);
    writeFileSync(tmp.file('disk'), data);
    const digests = await blockDigests(tmp.file('disk'));
    expect(digests.length).to.equal(4);
    for (let i = 0; i < 4; i++) {
      expect(digests[i]).to.equal(await crc32c(data.subarray(i * 65536, (i + 1) * 65536)));
    }
  });

  it('blockDigests - covers a sub-range with any block size, across read chunks', async () => {
    const data = randomBytes(20 << 20, 2);
    writeFileSync(tmp.file('disk'), data);
    const digests = await blockDigests(tmp.file('disk'), { offset: 4096, length: 12 << 20, blockBytes: 3 << 20 });
    expect(digests.length).to.equal(4);
    expect(digests[3]).to.equal(await crc32c(data.subarray(4096 + (9 << 20), 4096 + (12 << 20))));
  });

  it('blockDigests - a range past the end is refused with the sizes', async () => {
    writeFileSync(tmp.file('disk'), Buffer.alloc(1000));
    let error: Error | undefined;
    try {
      await blockDigests(tmp.file('disk'), { offset: 0, length: 2000 });
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).to.match(/range 0\+2000 ends past the end \(1000 bytes\)/);
  });
});
