import { expect } from 'chai';

import { NbdProtocolError } from '../../../src/nbd/index.js';
import {
  ByteQueue, NBD_CMD_FLUSH, NBD_CMD_READ, NBD_CMD_WRITE, NBD_ERRNO, NBD_INFO_BLOCK_SIZE, NBD_INFO_EXPORT,
  NBD_OPT_GO, REQUEST_HEADER_BYTES, ReplyReader, RequestReader, SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC,
  decodeGoRequest, decodeGreeting, decodeInfo, decodeOptionHeader, decodeOptionReplyHeader, decodeServerReply,
  encodeGoRequest, encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeOption, encodeOptionReply,
  encodeRequestHeader, encodeServerReply, encodeSimpleReplyHeader, errnoName, errnoOf,
} from '../../../src/nbd/protocol.js';

function thrown(fn: () => unknown): NbdProtocolError {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(NbdProtocolError);
    return e as NbdProtocolError;
  }
  throw new Error('expected a throw');
}

function request(type: number, handle: bigint, offset: number, length: number, data?: Buffer, flags = 0): Buffer {
  const h = encodeRequestHeader(flags, type, handle, offset, length);
  return data ? Buffer.concat([h, data]) : h;
}

describe('nbd protocol', () => {
  it('protocol - the greeting is NBDMAGIC, IHAVEOPT and the flags, and decodes back', () => {
    const g = encodeGreeting(3);
    expect(g.subarray(0, 8).toString('latin1')).to.equal('NBDMAGIC');
    expect(g.subarray(8, 16).toString('latin1')).to.equal('IHAVEOPT');
    expect(decodeGreeting(g)).to.equal(3);
  });

  it('protocol - a greeting with a foreign magic is refused naming the value', () => {
    const g = encodeGreeting(3);
    g.writeUInt32BE(0x12345678, 0);
    expect(thrown(() => decodeGreeting(g)).message).to.match(/bad greeting magic 0x1234567841474943/);
  });

  it('protocol - an option with a bad magic is refused naming the value', () => {
    const o = encodeOption(NBD_OPT_GO, Buffer.from('x'));
    expect(decodeOptionHeader(o)).to.deep.equal({ option: NBD_OPT_GO, length: 1 });
    o.writeUInt32BE(0, 0);
    const e = thrown(() => decodeOptionHeader(o));
    expect(e.code).to.equal('bad-magic');
    expect(e.message).to.match(/bad option magic 0x00000000454f5054/);
  });

  it('protocol - an option reply round-trips and a bad magic is refused', () => {
    const r = encodeOptionReply(7, 3, Buffer.from('abc'));
    expect(decodeOptionReplyHeader(r)).to.deep.equal({ option: 7, type: 3, length: 3 });
    r.writeUInt8(0xff, 0);
    expect(thrown(() => decodeOptionReplyHeader(r)).message).to.match(/bad option reply magic 0xff/);
  });

  it('protocol - the GO payload round-trips with its info requests', () => {
    const b = encodeGoRequest({ name: 'r1', infos: [NBD_INFO_BLOCK_SIZE, 1] });
    expect(b.length).to.equal(4 + 2 + 2 + 4);
    expect(decodeGoRequest(b)).to.deep.equal({ name: 'r1', infos: [NBD_INFO_BLOCK_SIZE, 1] });
  });

  it('protocol - a GO payload whose name length overruns it is refused with the length', () => {
    const b = encodeGoRequest({ name: 'r1', infos: [] });
    b.writeUInt32BE(1000, 0);
    expect(thrown(() => decodeGoRequest(b)).message).to.match(/export name length 1000 exceeds the 8-byte request/);
  });

  it('protocol - a GO payload whose info count does not match its length is refused', () => {
    const b = encodeGoRequest({ name: 'r1', infos: [3] });
    b.writeUInt16BE(5, 6);
    expect(thrown(() => decodeGoRequest(b)).message).to.match(/5 info types need 18/);
    expect(thrown(() => decodeGoRequest(Buffer.alloc(3))).code).to.equal('bad-length');
  });

  it('protocol - NBD_REP_SERVER and NBD_REP_INFO payloads round-trip', () => {
    expect(decodeServerReply(encodeServerReply('r1'))).to.equal('r1');
    expect(decodeInfo(encodeInfoExport(2 ** 40, 0x14d))).to.deep.equal({ info: NBD_INFO_EXPORT, sizeBytes: 2 ** 40, transmissionFlags: 0x14d });
    expect(decodeInfo(encodeInfoBlockSize({ minBytes: 1, preferredBytes: 4096, maxBytes: 32 << 20 }))).to.deep.equal({
      info: NBD_INFO_BLOCK_SIZE, blockSize: { minBytes: 1, preferredBytes: 4096, maxBytes: 32 << 20 },
    });
    expect(thrown(() => decodeInfo(encodeInfoExport(1, 1).subarray(0, 11))).message).to.match(/NBD_INFO_EXPORT of 11 bytes/);
  });

  it('RequestReader - reads requests fed one byte at a time', () => {
    const reader = new RequestReader(1 << 20);
    const bytes = Buffer.concat([
      request(NBD_CMD_WRITE, 7n, 2 ** 33, 5, Buffer.from('hello'), 1),
      request(NBD_CMD_READ, 8n, 512, 4096),
    ]);
    const got = [];
    for (const byte of bytes) {
      reader.push(Buffer.from([byte]));
      for (let r = reader.next(); r; r = reader.next()) got.push(r);
    }
    expect(got).to.have.length(2);
    expect(got[0]).to.deep.include({ type: NBD_CMD_WRITE, flags: 1, handle: 7n, offset: 2 ** 33, length: 5, oversize: false });
    expect(got[0]!.data!.toString()).to.equal('hello');
    expect(got[1]).to.deep.include({ type: NBD_CMD_READ, handle: 8n, offset: 512, length: 4096, data: null });
  });

  it('RequestReader - a bad request magic throws naming the value', () => {
    const reader = new RequestReader(1 << 20);
    const b = request(NBD_CMD_FLUSH, 1n, 0, 0);
    b.writeUInt32BE(0x12345678, 0);
    reader.push(b);
    const e = thrown(() => reader.next());
    expect(e.message).to.equal('bad request magic 0x12345678, expected 0x25609513');
    expect(e.got).to.equal(0x12345678);
  });

  it('RequestReader - an oversize write is reported and its payload skipped, the next request reads', () => {
    const reader = new RequestReader(8);
    reader.push(request(NBD_CMD_WRITE, 1n, 0, 20, Buffer.alloc(10, 1)));
    const first = reader.next();
    expect(first).to.deep.include({ handle: 1n, oversize: true, data: null, length: 20 });
    expect(reader.skipPending).to.equal(10);
    reader.push(Buffer.concat([Buffer.alloc(10, 1), request(NBD_CMD_FLUSH, 2n, 0, 0)]));
    expect(reader.next()).to.deep.include({ handle: 2n, type: NBD_CMD_FLUSH, oversize: false });
    expect(reader.next()).to.equal(null);
  });

  it('RequestReader - an oversize read is reported without any payload', () => {
    const reader = new RequestReader(8);
    reader.push(Buffer.concat([request(NBD_CMD_READ, 1n, 0, 9), request(NBD_CMD_READ, 2n, 0, 8)]));
    expect(reader.next()).to.deep.include({ handle: 1n, oversize: true });
    expect(reader.next()).to.deep.include({ handle: 2n, oversize: false });
  });

  it('RequestReader - a 64-bit offset beyond 2^53 stays larger than any export', () => {
    const reader = new RequestReader(8);
    const b = request(NBD_CMD_READ, 1n, 0, 1);
    b.writeBigUInt64BE(0xffffffffffffffffn, 16);
    reader.push(b);
    expect(reader.next()!.offset).to.be.greaterThan(Number.MAX_SAFE_INTEGER);
  });

  it('ReplyReader - reads a read reply split anywhere, data included', () => {
    const reader = new ReplyReader((h) => (h === 5n ? 6 : h === 6n ? 0 : undefined));
    const bytes = Buffer.concat([encodeSimpleReplyHeader(0, 5n), Buffer.from('abcdef'), encodeSimpleReplyHeader(28, 6n)]);
    const got = [];
    for (let i = 0; i < bytes.length; i += 3) {
      reader.push(bytes.subarray(i, i + 3));
      for (let r = reader.next(); r; r = reader.next()) got.push(r);
    }
    expect(got.map((r) => [r.handle, r.error, r.data?.toString() ?? null])).to.deep.equal([[5n, 0, 'abcdef'], [6n, 28, null]]);
  });

  it('ReplyReader - an error reply to a read carries no data', () => {
    const reader = new ReplyReader(() => 4096);
    reader.push(encodeSimpleReplyHeader(NBD_ERRNO.EINVAL, 1n));
    expect(reader.next()).to.deep.equal({ error: 22, handle: 1n, data: null });
  });

  it('ReplyReader - a bad reply magic throws naming the value', () => {
    const reader = new ReplyReader(() => 0);
    const b = encodeSimpleReplyHeader(0, 1n);
    b.writeUInt32BE(0xdeadbeef, 0);
    reader.push(b);
    expect(thrown(() => reader.next()).message).to.equal(`bad reply magic 0xdeadbeef, expected 0x${SIMPLE_REPLY_MAGIC.toString(16)}`);
  });

  it('ReplyReader - a structured reply is refused as never negotiated', () => {
    const reader = new ReplyReader(() => 0);
    const b = encodeSimpleReplyHeader(0, 1n);
    b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, 0);
    reader.push(b);
    expect(thrown(() => reader.next()).message).to.match(/structured reply \(never negotiated\) 0x668e33ef/);
  });

  it('ReplyReader - a reply for a handle not in flight is refused naming the handle', () => {
    const reader = new ReplyReader(() => undefined);
    reader.push(encodeSimpleReplyHeader(0, 0xabn));
    const e = thrown(() => reader.next());
    expect(e.code).to.equal('bad-handle');
    expect(e.message).to.match(/handle 0x00000000000000ab/);
  });

  it('ByteQueue - takes views inside a chunk and copies across chunks', () => {
    const q = new ByteQueue();
    const a = Buffer.from('abcd');
    q.push(a);
    q.push(Buffer.from('efgh'));
    const view = q.take(2);
    expect(view.buffer).to.equal(a.buffer);
    expect(q.take(4).toString()).to.equal('cdef');
    expect(q.skip(10)).to.equal(2);
    expect(q.length).to.equal(0);
    expect(REQUEST_HEADER_BYTES).to.equal(28);
  });

  it('errnoOf - maps device error codes to NBD error numbers, unknown to EIO', () => {
    const e = (code?: unknown): unknown => Object.assign(new Error('x'), { code });
    expect(errnoOf(e('ENOSPC'))).to.equal(28);
    expect(errnoOf(e('EPERM'))).to.equal(1);
    expect(errnoOf(e('EROFS'))).to.equal(1);
    expect(errnoOf(e('EDQUOT'))).to.equal(28);
    expect(errnoOf(e('EWHATEVER'))).to.equal(5);
    expect(errnoOf(e(42))).to.equal(5);
    expect(errnoOf('boom')).to.equal(5);
    expect(errnoOf(e('toString'))).to.equal(5);
    expect(errnoName(108)).to.equal('ESHUTDOWN');
    expect(errnoName(99)).to.equal('EUNKNOWN99');
  });
});
