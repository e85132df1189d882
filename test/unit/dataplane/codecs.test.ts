import { expect } from 'chai';
import { spawnSync } from 'node:child_process';

import { codecRoundTrip, codecStatus, LogWriter } from '../../../src/dataplane/index.js';
import { randomBytes, textBytes } from '../../support/tmp.js';

describe('codecs', () => {
  it('codecs - lz4 and zstd load from the runtime libraries and round-trip', async () => {
    for (const codec of ['lz4', 'zstd'] as const) {
      const status = codecStatus(codec);
      expect(status.available, status.error).to.equal(true);
      expect(status.library).to.match(codec === 'lz4' ? /liblz4\.so\.1/ : /libzstd\.so\.1/);
      const data = Buffer.concat([textBytes(300000), randomBytes(100000, 1), Buffer.alloc(200000)]);
      for (const record of [4096, 65536, 1 << 20]) {
        const r = await codecRoundTrip(codec, data, record);
        expect(r.inputBytes).to.equal(data.length);
        expect(r.outputBytes).to.be.lessThan(data.length);
      }
    }
  });

  it('codecs - a missing library makes only that codec unavailable, with a message naming the file', () => {
    const script = `
      import { codecStatus, LogWriter } from './src/dataplane/index.ts';
      const lz4 = codecStatus('lz4'), zstd = codecStatus('zstd');
      let openError = '';
      try { await LogWriter.open('/tmp/never-created-phobos-log', { codec: 'lz4' }); } catch (e) { openError = e.message; }
      console.log(JSON.stringify({ lz4, zstd, openError }));`;
    const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      env: { ...process.env, PHOBOS_LZ4_LIBRARY: 'liblz4-missing.so.1' },
    });
    expect(run.status, run.stderr).to.equal(0);
    const out = JSON.parse(run.stdout) as { lz4: { available: boolean; error: string }; zstd: { available: boolean }; openError: string };
    expect(out.lz4.available).to.equal(false);
    expect(out.lz4.error).to.match(/cannot load liblz4-missing\.so\.1/);
    expect(out.zstd.available).to.equal(true);
    expect(out.openError).to.match(/codec lz4 is unavailable: cannot load liblz4-missing\.so\.1.*install the library \(Debian: liblz4-1\)/);
  });

  it('codecs - unknown and unavailable codec numbers are refused by the writer', () => {
    expect(() => LogWriter.open('/tmp/x', { codec: 'lzo' as never })).to.throw;
  });
});
