import { expect } from 'chai';
import { appendFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';

import { LogWriter, MAX_RECORD_LENGTH, checkLog, scanLog, type LogRecord } from '../../../src/dataplane/index.js';
import { randomBytes, tempDir, textBytes, type TempDir } from '../../support/tmp.js';

async function allRecords(path: string, withData = false): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for await (const r of scanLog(path, { withData })) out.push(r);
  return out;
}

describe('LogWriter', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.remove());

  it('LogWriter - appends records that read back with their data, in order, numbered from 1', async () => {
    const path = tmp.file('log-000000001-a');
    const log = await LogWriter.open(path);
    const data = [randomBytes(4096, 1), textBytes(10000), randomBytes(1, 2)];
    const results = await Promise.all(data.map((d, i) => log.write(i * 65536, d, { stampNs: BigInt(i + 1) })));
    expect(results.map((r) => r[0]!.seq)).to.deep.equal([1, 2, 3]);
    await log.close();
    const recs = await allRecords(path, true);
    expect(recs.map((r) => r.type)).to.deep.equal(['write', 'write', 'write', 'sync-mark']);
    for (const [i, d] of data.entries()) {
      expect(recs[i]!.data!.equals(d)).to.equal(true);
      expect(recs[i]!.deviceOffset).to.equal(i * 65536);
      expect(recs[i]!.stampNs).to.equal(BigInt(i + 1));
    }
  });

  it('LogWriter - durable writes issued together share fdatasyncs (group commit)', async () => {
    const path = tmp.file('log');
    const log = await LogWriter.open(path);
    await log.write(0, randomBytes(4096, 1), { durable: true });
    expect(log.syncedPosition).to.equal(log.position);
    const before = log.syncs;
    await Promise.all(Array.from({ length: 64 }, (_, i) => log.write(i * 4096, randomBytes(4096, i), { durable: true })));
    expect(log.syncedPosition).to.equal(log.position);
    // One sync per batch the writer thread took: a few, never one per write.
    const batches = log.syncs - before;
    expect(batches).to.be.within(1, 16);
    await log.close({ seal: false });
    // Each batch's records carry the synced position its predecessor reached.
    const recs = await allRecords(path);
    expect(new Set(recs.slice(1).map((r) => r.syncedPosition)).size).to.equal(batches);
  });

  it('LogWriter - plain writes are not synced until sync() or a durable write', async () => {
    const log = await LogWriter.open(tmp.file('log'));
    const before = log.syncs;
    await Promise.all(Array.from({ length: 32 }, (_, i) => log.write(i * 4096, randomBytes(4096, i))));
    expect(log.syncs).to.equal(before);
    expect(log.syncedPosition).to.be.lessThan(log.position);
    await log.sync();
    expect([log.syncs, log.syncedPosition]).to.deep.equal([before + 1, log.position]);
    await log.close();
  });

  it('LogWriter - a write larger than one record is split into 4 MiB records', async () => {
    const path = tmp.file('log');
    const log = await LogWriter.open(path);
    const big = randomBytes(MAX_RECORD_LENGTH * 2 + 100, 5);
    const parts = await log.write(1 << 20, big);
    expect(parts).to.have.length(3);
    await log.close();
    const recs = await allRecords(path, true);
    expect(Buffer.concat(recs.slice(0, 3).map((r) => r.data!)).equals(big)).to.equal(true);
    expect(recs.slice(0, 3).map((r) => r.deviceOffset)).to.deep.equal([1 << 20, (1 << 20) + MAX_RECORD_LENGTH, (1 << 20) + 2 * MAX_RECORD_LENGTH]);
  });

  it('LogWriter - compresses with lz4 and zstd only where it saves space', async () => {
    for (const codec of ['lz4', 'zstd'] as const) {
      const path = tmp.file(`log-${codec}`);
      const log = await LogWriter.open(path, { codec });
      await log.write(0, textBytes(65536));
      await log.write(65536, randomBytes(65536, 9));
      await log.close();
      const recs = await allRecords(path, true);
      expect(recs.slice(0, 2).map((r) => r.codec)).to.deep.equal([codec, 'none']);
      expect(recs[0]!.data!.equals(textBytes(65536))).to.equal(true);
    }
  });

  it('LogWriter - reopening continues the sequence after the seal', async () => {
    const path = tmp.file('log');
    let log = await LogWriter.open(path);
    await log.write(0, textBytes(100));
    await log.close();
    log = await LogWriter.open(path);
    expect(log.opened).to.deep.equal({ records: 2, truncatedBytes: 0 });
    expect(log.nextSeq).to.equal(3);
    await log.write(0, textBytes(100));
    await log.close();
    expect((await checkLog(path)).status).to.equal('end');
  });

  it('LogWriter - reopening after a crash cuts the torn tail and appends after the last good record', async () => {
    const path = tmp.file('log');
    let log = await LogWriter.open(path);
    await log.write(0, textBytes(1000), { durable: true });
    await log.write(4096, textBytes(1000));
    await log.close({ seal: false });
    const good = statSync(path).size;
    truncateSync(path, good - 100);          // the last append only half reached the disk
    appendFileSync(path, Buffer.alloc(3000)); // and the file size got ahead of the data
    log = await LogWriter.open(path);
    expect(log.opened.records).to.equal(1);
    expect(log.opened.truncatedBytes).to.equal(good - 100 + 3000 - log.position);
    await log.write(8192, textBytes(10));
    await log.close();
    const recs = await allRecords(path);
    expect(recs.map((r) => [r.seq, r.deviceOffset])).to.deep.equal([[1, 0], [2, 8192], [3, 0]]);
  });

  it('LogWriter - refuses to open a corrupt log and leaves it untouched', async () => {
    const path = tmp.file('log');
    const log = await LogWriter.open(path);
    await log.write(0, textBytes(1000), { durable: true });
    await log.write(4096, textBytes(1000), { durable: true });
    await log.close();
    const bytes = readFileSync(path);
    bytes[100]! ^= 1;                        // rot inside the first, synced record
    writeFileSync(path, bytes);
    let error: (Error & { code?: string }) | undefined;
    try {
      await LogWriter.open(path);
    } catch (e) {
      error = e as Error;
    }
    expect(error?.code).to.equal('EPHOBOS_CORRUPT');
    expect(error?.message).to.match(/corruption at offset 0: payload crc32c mismatch; refusing to append/);
    expect(readFileSync(path).equals(bytes)).to.equal(true);
  });

  it('LogWriter - refuses to append to a foreign file', async () => {
    const path = tmp.file('notes.txt');
    writeFileSync(path, 'not a log\n');
    let error: (Error & { code?: string }) | undefined;
    try {
      await LogWriter.open(path);
    } catch (e) {
      error = e as Error;
    }
    expect(error?.code).to.equal('EPHOBOS_CORRUPT');
    expect(readFileSync(path, 'utf8')).to.equal('not a log\n');
  });

  it('LogWriter - zero ranges are logged as zero records, split at 4 MiB', async () => {
    const path = tmp.file('log');
    const log = await LogWriter.open(path);
    await log.zero(0, MAX_RECORD_LENGTH + 4096);
    await log.close();
    const recs = await allRecords(path);
    expect(recs.map((r) => [r.type, r.length])).to.deep.equal([['zero', MAX_RECORD_LENGTH], ['zero', 4096], ['sync-mark', 0]]);
  });

  it('LogWriter - bad arguments fail at once with a message naming the argument', async () => {
    const log = await LogWriter.open(tmp.file('log'));
    expect(() => log.zero(0, 0)).to.not.throw(); // nothing to log
    expect(() => log.write(-1, Buffer.alloc(1))).to.throw(/deviceOffset must be a non-negative integer/);
    await log.close();
    expect(() => log.write(0, Buffer.alloc(1))).to.throw(/is not open/);
  });

  it('LogWriter - an unwritable path fails to open with the errno code', async () => {
    let error: (Error & { code?: string }) | undefined;
    try {
      await LogWriter.open(tmp.file('missing-dir/log'));
    } catch (e) {
      error = e as Error;
    }
    expect(error?.code).to.equal('ENOENT');
    expect(error?.message).to.match(/open log .*missing-dir\/log: No such file/);
  });
});
