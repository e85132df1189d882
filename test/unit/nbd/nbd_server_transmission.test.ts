import { expect } from 'chai';

import { NbdClient, NbdConnectionError, NbdRequestError, nbdProtocol as P } from '../../../src/nbd/index.js';
import { randomBytes } from '../../support/tmp.js';
import { closed, openSession, startServer, stopServer, until, type Fixture } from './_fixture.js';

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

async function requestError(p: Promise<unknown>): Promise<NbdRequestError> {
  const e = await rejection(p);
  expect(e).to.be.instanceOf(NbdRequestError);
  return e as NbdRequestError;
}

describe('NbdServer transmission', () => {
  let f: Fixture | undefined;
  let c: NbdClient | undefined;
  async function serve(options: Parameters<typeof startServer>[1] = {}, sizeBytes = 1 << 20): Promise<NbdClient> {
    f = await startServer(sizeBytes, options);
    c = await NbdClient.connect(f.socketPath, 'r1');
    return c;
  }
  afterEach(async () => {
    c?.destroy();
    c = undefined;
    await stopServer(f);
    f = undefined;
  });

  it('NbdServer - every command round-trips to the device', async () => {
    const c = await serve();
    const dev = f!.device;
    const data = randomBytes(65536, 1);
    await c.write(4096, data);
    expect((await c.read(4096, 65536)).equals(data)).to.equal(true);
    await c.flush();
    expect(dev.durable.subarray(4096, 4096 + 65536).equals(data)).to.equal(true);
    await c.trim(4096, 1000);
    await c.writeZeroes(8192, 512);
    const back = await c.read(4096, 65536);
    expect(back.subarray(0, 1000).every((b) => b === 0)).to.equal(true);
    expect(back.subarray(1000, 4096).equals(data.subarray(1000, 4096))).to.equal(true);
    expect(back.subarray(4096, 4608).every((b) => b === 0)).to.equal(true);
    expect(back.subarray(4608).equals(data.subarray(4608))).to.equal(true);
    expect(dev.calls.map((x) => x.op)).to.deep.equal(['write', 'read', 'flush', 'zero', 'zero', 'read']);
    expect(dev.calls[3]).to.deep.equal({ op: 'zero', offset: 4096, length: 1000, fua: false });
  });

  it('NbdServer - zero-length reads and writes succeed without touching the device', async () => {
    const c = await serve();
    expect((await c.read(0, 0)).length).to.equal(0);
    await c.write(1 << 20, Buffer.alloc(0));
    expect(f!.device.calls).to.deep.equal([]);
  });

  it('NbdServer - the FUA flag reaches the device on write, trim and write-zeroes', async () => {
    const c = await serve();
    await c.write(0, Buffer.from('durable'), true);
    await c.write(100, Buffer.from('volatile'));
    expect(f!.device.durable.subarray(0, 7).toString()).to.equal('durable');
    expect(f!.device.durable.subarray(100, 108).every((b) => b === 0)).to.equal(true);
    await c.trim(0, 10, true);
    await c.writeZeroes(10, 10, true);
    expect(f!.device.calls.map((x) => x.fua)).to.deep.equal([true, false, true, true]);
  });

  it('NbdServer - pipelined requests complete out of order, each with its own data', async function () {
    const c = await serve({}, 4 << 20);
    let seed = 7;
    f!.device.delayMs = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % 15;
    };
    const blocks = 256;
    const payloads = Array.from({ length: blocks }, (_, i) => randomBytes(4096, i + 1));
    const order: number[] = [];
    await Promise.all(payloads.map((p, i) => c.write(i * 16384, p).then(() => order.push(i))));
    expect(order).to.have.length(blocks);
    expect(order).to.not.deep.equal([...order].sort((a, b) => a - b)); // replies overtook each other
    const reads = await Promise.all(payloads.map((_, i) => c.read(i * 16384, 4096)));
    reads.forEach((r, i) => expect(r.equals(payloads[i]!), `block ${i}`).to.equal(true));
    expect(f!.device.peakActive).to.be.greaterThan(32);
  });

  it('NbdServer - in-flight requests per connection stay within maxInFlight', async () => {
    const c = await serve({ maxInFlight: 4 });
    f!.device.delayMs = () => 5;
    await Promise.all(Array.from({ length: 40 }, (_, i) => c.write(i * 512, Buffer.alloc(512, i))));
    expect(f!.device.peakActive).to.equal(4);
    expect(f!.device.calls).to.have.length(40);
  });

  it('NbdServer - a flush covers writes received before it, even ones not yet replied to', async () => {
    const c = await serve();
    f!.device.delayMs = (op) => (op === 'write' ? 50 : 0);
    const write = c.write(0, Buffer.from('before flush'));
    await c.flush(); // sent while the write is still at the device
    expect(f!.device.durable.subarray(0, 12).toString()).to.equal('before flush');
    await write;
    const ops = f!.device.calls.map((x) => x.op);
    expect(ops).to.deep.equal(['write', 'flush']);
  });

  it('NbdServer - a flush on one connection covers writes completed on another (CAN_MULTI_CONN)', async () => {
    const c = await serve();
    const other = await NbdClient.connect(f!.socketPath, 'r1');
    await c.write(0, Buffer.from('from a'));
    await other.flush();
    expect(f!.device.durable.subarray(0, 6).toString()).to.equal('from a');
    await other.disconnect();
  });

  it('NbdServer - device errors reach the client as their errno, and the connection goes on', async () => {
    const c = await serve();
    f!.device.failNext = { op: 'write', code: 'ENOSPC' };
    const e = await requestError(c.write(0, Buffer.from('x')));
    expect(e.code).to.equal('ENOSPC');
    expect(e.errno).to.equal(28);
    expect(e.message).to.equal('nbd write at 0+1 failed: ENOSPC');
    f!.device.failNext = { op: 'read', code: 'EIO' };
    expect((await requestError(c.read(0, 1))).code).to.equal('EIO');
    f!.device.failNext = { op: 'flush', code: 'ESOMETHINGELSE' };
    expect((await requestError(c.flush())).code).to.equal('EIO');
    f!.device.failNext = { op: 'zero', code: 'EROFS' };
    expect((await requestError(c.trim(0, 1))).code).to.equal('EPERM');
    await c.write(0, Buffer.from('ok'));
    expect((await c.read(0, 2)).toString()).to.equal('ok');
  });

  it('NbdServer - a request past the end gets EINVAL, its payload is consumed, the connection goes on', async () => {
    const c = await serve({}, 65536);
    expect((await requestError(c.write(65536 - 10, Buffer.alloc(11, 0xee)))).code).to.equal('EINVAL');
    expect((await requestError(c.read(65536, 1))).code).to.equal('EINVAL');
    expect((await requestError(c.writeZeroes(0, 65537))).code).to.equal('EINVAL');
    expect((await requestError(c.command(P.NBD_CMD_READ, 0, 2 ** 60, 1))).code).to.equal('EINVAL');
    await c.write(65536 - 10, Buffer.alloc(10, 0xdd)); // up to the last byte is fine
    expect((await c.read(65526, 10)).every((b) => b === 0xdd)).to.equal(true);
    expect(f!.device.calls.map((x) => x.op)).to.deep.equal(['write', 'read']);
  });

  it('NbdServer - a request over the size limit gets EINVAL, a write payload is skipped', async () => {
    const c = await serve({ maxRequestBytes: 65536 });
    expect(c.blockSize?.maxBytes).to.equal(65536);
    expect((await requestError(c.write(0, Buffer.alloc(65537, 1)))).code).to.equal('EINVAL');
    expect((await requestError(c.read(0, 65537))).code).to.equal('EINVAL');
    await c.write(0, Buffer.alloc(65536, 2));
    expect((await c.read(0, 65536)).every((b) => b === 2)).to.equal(true);
  });

  it('NbdServer - a read-only export refuses writes, trims and zeroes with EPERM', async () => {
    const c = await serve({ readOnly: true });
    expect(c.transmissionFlags & P.NBD_FLAG_READ_ONLY).to.equal(P.NBD_FLAG_READ_ONLY);
    expect((await requestError(c.write(0, Buffer.from('x')))).code).to.equal('EPERM');
    expect((await requestError(c.trim(0, 1))).code).to.equal('EPERM');
    expect((await requestError(c.writeZeroes(0, 1))).code).to.equal('EPERM');
    expect((await c.read(0, 1)).length).to.equal(1);
    await c.flush();
  });

  it('NbdServer - CACHE and unknown commands get EINVAL', async () => {
    const c = await serve();
    expect((await requestError(c.command(P.NBD_CMD_CACHE, 0, 0, 4096))).code).to.equal('EINVAL');
    expect((await requestError(c.command(42, 0, 0, 0))).code).to.equal('EINVAL');
    await c.flush();
  });

  it('NbdServer - a bad request magic closes that connection only, naming the value', async () => {
    const c = await serve();
    const { socket, session } = await openSession(f!.socketPath);
    await session.go('r1');
    session.detach();
    socket.resume();
    const bad = P.encodeRequestHeader(0, P.NBD_CMD_READ, 1n, 0, 1);
    bad.writeUInt32BE(0x12345678, 0);
    socket.write(bad);
    await closed(socket);
    expect(f!.errors.map((e) => e.message)).to.deep.equal(['bad request magic 0x12345678, expected 0x25609513']);
    expect((await c.read(0, 1)).length).to.equal(1); // the other connection is unaffected
  });

  it('NbdServer - DISC gets no reply; requests before it finish, then the server closes', async () => {
    const c = await serve();
    const { socket, session } = await openSession(f!.socketPath);
    await session.go('r1');
    session.detach();
    const received: Buffer[] = [];
    socket.on('data', (d: Buffer) => received.push(d));
    socket.resume();
    f!.device.delayMs = () => 30;
    socket.write(Buffer.concat([
      P.encodeRequestHeader(0, P.NBD_CMD_WRITE, 1n, 0, 3), Buffer.from('abc'),
      P.encodeRequestHeader(0, P.NBD_CMD_DISC, 2n, 0, 0),
      P.encodeRequestHeader(0, P.NBD_CMD_READ, 3n, 0, 3), // after DISC: ignored
    ]));
    await closed(socket);
    const all = Buffer.concat(received);
    expect(all.length).to.equal(16);
    expect(all.readBigUInt64BE(8)).to.equal(1n);
    expect(f!.device.data.subarray(0, 3).toString()).to.equal('abc');
    await c.disconnect();
  });

  it('NbdServer - a client vanishing mid-request does not disturb the server', async () => {
    const c = await serve();
    f!.device.delayMs = () => 40;
    const victim = await NbdClient.connect(f!.socketPath, 'r1');
    const pending = [victim.write(0, Buffer.alloc(65536, 1)), victim.read(0, 65536), victim.flush()]
      .map((p) => rejection(p));
    await until(() => f!.device.active > 0);
    victim.destroy();
    for (const e of await Promise.all(pending)) expect(e).to.be.instanceOf(NbdConnectionError);
    await until(() => f!.device.active === 0 && f!.server.openCount === 1);
    f!.device.delayMs = () => 0;
    await c.write(0, Buffer.from('still serving'));
    expect((await c.read(0, 13)).toString()).to.equal('still serving');
  });

  it('NbdServer - a client that half-sends a write payload and leaves does not disturb the server', async () => {
    const c = await serve();
    const { socket, session } = await openSession(f!.socketPath);
    await session.go('r1');
    session.detach();
    await until(() => f!.server.openCount === 2);
    socket.write(Buffer.concat([P.encodeRequestHeader(0, P.NBD_CMD_WRITE, 1n, 0, 4096), Buffer.alloc(100)]));
    socket.destroy();
    await until(() => f!.server.openCount === 1);
    expect(f!.device.calls).to.deep.equal([]);
    await c.flush();
  });
});
