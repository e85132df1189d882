import { expect } from 'chai';
import { readFileSync } from 'node:fs';

import { crc32c, scanBuffer } from '../../../src/dataplane/index.js';

/** The hex dump under "### A sample record" in docs/log-format.md, as bytes. */
function sampleFromDoc(): Buffer {
  const doc = readFileSync(new URL('../../../docs/log-format.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('### A sample record'));
  const block = /```\n([\s\S]*?)```/.exec(section)![1]!;
  const bytes: number[] = [];
  for (const line of block.trim().split('\n')) {
    const hex = line.slice(10, 58).trim().split(/\s+/);
    bytes.push(...hex.map((h) => parseInt(h, 16)));
  }
  return Buffer.from(bytes);
}

describe('docs/log-format.md', () => {
  it('log format doc - the sample record decodes to the fields the doc describes', async () => {
    const sample = sampleFromDoc();
    expect(sample.length).to.equal(72);
    const { status, records } = await scanBuffer(sample);
    expect(status).to.equal('end');
    const rec = records[0]!;
    expect(rec).to.include({ seq: 1, type: 'write', codec: 'none', length: 8, storedLength: 8, deviceOffset: 4096, syncedPosition: 0 });
    expect(rec.stampNs).to.equal(1700000000000000000n);
    expect(rec.payloadCrc).to.equal(await crc32c(Buffer.from('phobos!\n')));
    expect(rec.payloadCrc).to.equal(0x0f5ac04d);
    expect(sample.readUInt32LE(60)).to.equal(await crc32c(sample.subarray(0, 60)));
    expect(sample.readUInt32LE(60)).to.equal(0x4de1ab67);
  });
});
