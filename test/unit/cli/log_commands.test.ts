import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { PassThrough } from 'node:stream';

import { main } from '../../../src/cli/main.js';
import { LogWriter } from '../../../src/dataplane/index.js';
import { randomBytes, tempDir, textBytes, type TempDir } from '../../support/tmp.js';

process.env['PHOBOS_NO_SYSLOG'] = '1'; // main() logs every command; not to this machine's journal

async function marsadm(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out = new PassThrough(), err = new PassThrough();
  let o = '', e = '';
  out.on('data', (d: Buffer) => (o += d.toString()));
  err.on('data', (d: Buffer) => (e += d.toString()));
  const code = await main(argv, out, err);
  return { code, out: o, err: e };
}

describe('marsadm log-check and log-cat', () => {
  let tmp: TempDir;
  let log: string;
  before(async () => {
    tmp = tempDir();
    log = tmp.file('log-000000001-a');
    const w = await LogWriter.open(log, { codec: 'lz4' });
    await w.write(0, textBytes(65536), { stampNs: 5n });
    await w.write(65536, randomBytes(4096, 1), { stampNs: 6n });
    await w.zero(1 << 20, 8192, { stampNs: 7n });
    await w.close();
  });
  after(() => tmp.remove());

  it('marsadm log-check - a clean log: summary line, exit 0', async () => {
    const r = await marsadm('log-check', log);
    expect(r.code).to.equal(0);
    expect(r.err).to.equal('');
    expect(r.out).to.match(/log-000000001-a: ok: 4 records \(2 write, 1 zero, 1 sync-mark\).*compression ratio \d+\.\d\d/);
  });

  it('marsadm log-check --json - records, bytes, compression ratio and no fault', async () => {
    const r = await marsadm('log-check', '--json', log);
    const report = JSON.parse(r.out);
    expect(report).to.include({ status: 'end', records: 4, deviceBytes: 65536 + 4096 + 8192 });
    expect(report.recordsByCodec).to.deep.equal({ none: 3, lz4: 1, zstd: 0 });
    expect(report.compressionRatio).to.be.greaterThan(1.5);
    expect(report).to.not.have.property('fault');
  });

  it('marsadm log-check - a truncated log: one line with file, offset and what was expected, exit 3', async () => {
    const bytes = readFileSync(log);
    const cut = tmp.file('cut');
    writeFileSync(cut, bytes.subarray(0, bytes.length - 70));
    const r = await marsadm('log-check', cut);
    expect(r.code).to.equal(3);
    expect(r.err.trim().split('\n')).to.have.length(1);
    expect(r.err).to.match(/cut: torn tail at offset \d+ \(file ends \d+ bytes before the record does/);
  });

  it('marsadm log-check - garbage and wrong-version files: corruption at offset 0, exit 1, file untouched', async () => {
    const garbage = tmp.file('garbage');
    writeFileSync(garbage, randomBytes(5000, 3));
    const before = readFileSync(garbage);
    const r = await marsadm('log-check', garbage);
    expect(r.code).to.equal(1);
    expect(r.err).to.match(/garbage: corruption at offset 0: bad magic 0x[0-9a-f]{8}, expected 0x474c4850/);
    expect(readFileSync(garbage).equals(before)).to.equal(true);
    const v9 = tmp.file('v9');
    const bytes = readFileSync(log);
    bytes[4] = 9;
    writeFileSync(v9, bytes);
    const v = await marsadm('log-check', v9);
    expect(v.code).to.equal(1);
    expect(v.err).to.match(/corruption at offset 0: format version 9, this build reads version 1/);
  });

  it('marsadm log-check - a missing file or a directory: one line naming it, exit 1', async () => {
    const r = await marsadm('log-check', tmp.file('nope'));
    expect([r.code, r.err]).to.deep.equal([1, `marsadm log-check: ${tmp.file('nope')} does not exist\n`]);
    const d = await marsadm('log-check', tmp.dir);
    expect(d.code).to.equal(1);
    expect(d.err).to.match(/is a directory; give a log file/);
  });

  it('marsadm log-cat - one line per record, in order', async () => {
    const r = await marsadm('log-cat', log);
    expect(r.code).to.equal(0);
    const lines = r.out.trim().split('\n');
    expect(lines).to.have.length(4);
    expect(lines[0]).to.match(/^seq 1  offset 0  write  dev 0\+65536  codec lz4  stored \d+  crc [0-9a-f]{8}  stamp 5  synced 0$/);
    expect(lines[2]).to.match(/^seq 3 .* zero  dev 1048576\+8192  codec none  stored 0/);
    expect(lines[3]).to.match(/^seq 4 .* sync-mark/);
  });

  it('marsadm log-cat --json --from - JSON lines starting at a record boundary', async () => {
    const all = (await marsadm('log-cat', '--json', log)).out.trim().split('\n').map((l) => JSON.parse(l));
    const r = await marsadm('log-cat', '--json', '--from', String(all[1].offset), log);
    const lines = r.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.seq)).to.deep.equal([2, 3, 4]);
    expect(lines[0].stampNs).to.equal('6');
  });

  it('marsadm - usage errors name the command and the help to read, exit 2', async () => {
    expect(await marsadm('log-check')).to.deep.include({ code: 2 });
    expect((await marsadm('log-check')).err).to.match(/marsadm log-check: expected FILE, got 0 argument\(s\); see `marsadm log-check --help`/);
    expect((await marsadm('log-check', '--frm', '1', log)).err).to.match(/unknown option --frm; see `marsadm log-check --help`/);
    expect((await marsadm('log-cat', '--from', 'x', log)).err).to.match(/--from: 'x' is not a non-negative integer/);
    expect((await marsadm('bogus')).err).to.match(/unknown command 'bogus'; run `marsadm help`/);
  });

  it('marsadm help - lists the commands and shows each command\'s help', async () => {
    const list = await marsadm('help');
    expect(list.out).to.match(/log-check FILE/).and.match(/--root DIR/);
    const one = await marsadm('log-check', '--help');
    expect(one.code).to.equal(0);
    expect(one.out).to.match(/usage: marsadm log-check FILE/).and.match(/Exit status: 0 the log is clean; 3 torn tail/);
  });

  it('marsadm - the compiled bin runs from dist (what npm install links)', function () {
    const bin = new URL('../../../dist/src/cli/main.js', import.meta.url).pathname;
    if (!existsSync(bin)) this.skip();
    const r = spawnSync(bin, ['log-check', log], { encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/ok: 4 records/);
  });
});
