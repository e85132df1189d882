import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { statSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';

import {
  NbdClient, NbdConnectionError, NbdOptionError, NbdServer, nbdProtocol as P,
} from '../../../src/nbd/index.js';
import { tempDir } from '../../support/tmp.js';
import { MemoryDevice, duplexPair } from './_memory_device.js';
import { closed, connectRaw, openSession, startServer, stopServer, until, type Fixture } from './_fixture.js';

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

describe('NbdServer handshake', () => {
  let f: Fixture | undefined;
  beforeEach(async () => {
    f = await startServer(1 << 20);
  });
  afterEach(async () => {
    await stopServer(f);
    f = undefined;
  });

  it('NbdServer - NBD_OPT_GO gives size, flags and block sizes', async () => {
    const c = await NbdClient.connect(f!.socketPath, 'r1');
    expect(c.sizeBytes).to.equal(1 << 20);
    const want = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_SEND_TRIM |
      P.NBD_FLAG_SEND_WRITE_ZEROES | P.NBD_FLAG_CAN_MULTI_CONN;
    expect(c.transmissionFlags).to.equal(want);
    expect(c.blockSize).to.deep.equal({ minBytes: 1, preferredBytes: 4096, maxBytes: 32 << 20 });
    await c.disconnect();
  });

  it('NbdServer - the default export "" is the same device', async () => {
    f!.device.data.write('default', 0);
    const c = await NbdClient.connect(f!.socketPath, '');
    expect((await c.read(0, 7)).toString()).to.equal('default');
    await c.disconnect();
  });

  it('NbdServer - NBD_OPT_EXPORT_NAME enters transmission with NO_ZEROES', async () => {
    const c = await NbdClient.connect(f!.socketPath, 'r1', { handshake: 'export-name' });
    expect(c.sizeBytes).to.equal(1 << 20);
    expect(c.blockSize).to.equal(undefined);
    await c.write(0, Buffer.from('abc'));
    expect((await c.read(0, 3)).toString()).to.equal('abc');
    await c.disconnect();
  });

  it('NbdServer - NBD_OPT_EXPORT_NAME without NO_ZEROES sends the 124 zero bytes', async () => {
    const socket = await connectRaw(f!.socketPath);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.write(P.encodeClientFlags(P.NBD_FLAG_FIXED_NEWSTYLE));
    socket.write(P.encodeOption(P.NBD_OPT_EXPORT_NAME, Buffer.from('r1')));
    await until(() => Buffer.concat(chunks).length >= 18 + 134);
    socket.write(P.encodeRequestHeader(0, P.NBD_CMD_READ, 9n, 0, 4));
    await until(() => Buffer.concat(chunks).length >= 18 + 134 + 16 + 4);
    const all = Buffer.concat(chunks);
    expect(P.decodeExportNameReply(all.subarray(18))).to.deep.equal({ sizeBytes: 1 << 20, transmissionFlags: 0x16d });
    expect(all.subarray(28, 152).every((b) => b === 0)).to.equal(true);
    expect(all.readUInt32BE(152)).to.equal(P.SIMPLE_REPLY_MAGIC);
    expect(all.readBigUInt64BE(160)).to.equal(9n);
    expect(all.length).to.equal(18 + 134 + 16 + 4);
    socket.destroy();
  });

  it('NbdServer - NBD_OPT_LIST names the export, NBD_OPT_INFO describes it, NBD_OPT_ABORT closes', async () => {
    const { socket, session } = await openSession(f!.socketPath);
    expect(session.handshakeFlags).to.equal(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES);
    expect(await session.list()).to.deep.equal(['r1']);
    const info = await session.info('r1');
    expect(info.sizeBytes).to.equal(1 << 20);
    expect(info.blockSize?.preferredBytes).to.equal(4096);
    await session.abort();
    await closed(socket);
    expect(f!.server.openCount).to.equal(0);
  });

  it('NbdServer - an unknown option gets NBD_REP_ERR_UNSUP and haggling goes on', async () => {
    const { socket, session } = await openSession(f!.socketPath);
    for (const option of [P.NBD_OPT_STRUCTURED_REPLY, P.NBD_OPT_STARTTLS, 99]) {
      session.send(option);
      const reply = await session.readReply();
      expect(reply.option).to.equal(option);
      expect(reply.type).to.equal(P.NBD_REP_ERR_UNSUP);
    }
    expect(await session.list()).to.deep.equal(['r1']);
    socket.destroy();
  });

  it('NbdServer - NBD_OPT_GO for an unknown export gets NBD_REP_ERR_UNKNOWN and haggling goes on', async () => {
    const { socket, session } = await openSession(f!.socketPath);
    const e = await rejection(session.go('nope'));
    expect(e).to.be.instanceOf(NbdOptionError);
    expect((e as NbdOptionError).code).to.equal('NBD_REP_ERR_UNKNOWN');
    expect(e.message).to.equal('NBD_OPT_GO refused with NBD_REP_ERR_UNKNOWN: unknown export "nope"');
    expect((await session.go('r1')).sizeBytes).to.equal(1 << 20);
    socket.destroy();
  });

  it('NbdServer - NBD_OPT_EXPORT_NAME for an unknown export closes the connection', async () => {
    const e = await rejection(NbdClient.connect(f!.socketPath, 'nope', { handshake: 'export-name' }));
    expect(e).to.be.instanceOf(NbdConnectionError);
    await until(() => f!.errors.length > 0);
    expect(f!.errors[0]!.message).to.match(/unknown export "nope"/);
  });

  it('NbdServer - NBD_OPT_LIST with data and a malformed NBD_OPT_GO get NBD_REP_ERR_INVALID', async () => {
    const { socket, session } = await openSession(f!.socketPath);
    session.send(P.NBD_OPT_LIST, Buffer.from('x'));
    expect((await session.readReply()).type).to.equal(P.NBD_REP_ERR_INVALID);
    session.send(P.NBD_OPT_GO, Buffer.from([0, 0, 0, 9, 1, 2]));
    const reply = await session.readReply();
    expect(reply.type).to.equal(P.NBD_REP_ERR_INVALID);
    expect(reply.data.toString()).to.match(/export name length 9 exceeds/);
    socket.destroy();
  });

  it('NbdServer - a bad option magic closes the connection and reports the value', async () => {
    const { socket } = await openSession(f!.socketPath);
    const o = P.encodeOption(P.NBD_OPT_LIST);
    o.writeUInt32BE(0x12345678, 0);
    socket.write(o);
    await closed(socket);
    expect(f!.errors[0]!.message).to.match(/bad option magic 0x12345678454f5054/);
  });

  it('NbdServer - unknown client flags close the connection', async () => {
    const socket = await connectRaw(f!.socketPath);
    socket.resume();
    socket.write(P.encodeClientFlags(0x81));
    await closed(socket);
    expect(f!.errors[0]!.message).to.equal('unknown client flags 0x81 (known: 0x3)');
  });

  it('NbdServer - an option longer than the limit closes the connection', async () => {
    const { socket } = await openSession(f!.socketPath);
    const o = P.encodeOption(P.NBD_OPT_GO);
    o.writeUInt32BE(P.MAX_OPTION_BYTES + 1, 12);
    socket.write(o);
    await closed(socket);
    expect(f!.errors[0]!.message).to.equal('NBD_OPT_GO of 65537 bytes, limit 65536');
  });

  it('NbdServer - a client silent past the handshake timeout is cut', async () => {
    await stopServer(f);
    f = await startServer(4096, { handshakeTimeoutMs: 100 });
    const socket = await connectRaw(f.socketPath);
    socket.resume();
    await closed(socket);
    expect(f.errors[0]!.message).to.equal('nbd handshake not finished after 100 ms');
  });
});

describe('NbdServer lifecycle', () => {
  it('NbdServer - listen creates the directory, a 0660 socket, and close removes it', async () => {
    const f = await startServer(4096);
    try {
      expect(statSync(path.dirname(f.socketPath)).mode & 0o777).to.equal(0o755);
      const st = statSync(f.socketPath);
      expect(st.isSocket()).to.equal(true);
      expect(st.mode & 0o777).to.equal(0o660);
    } finally {
      await f.server.close();
    }
    expect(existsSync(f.socketPath)).to.equal(false);
    f.tmp.remove();
  });

  it('NbdServer - listen replaces a stale socket file nobody listens on', async () => {
    const f = await startServer(4096);
    // A second server on the same path while the first listens is refused...
    const second = new NbdServer({ socketPath: f.socketPath, exportName: 'r1', device: new MemoryDevice(4096) });
    const e = await rejection(second.listen());
    expect((e as NodeJS.ErrnoException).code).to.equal('EADDRINUSE');
    expect(e.message).to.match(/another process serves this socket/);
    // ...a stale socket file (left by a killed process) is replaced.
    await f.server.close();
    const holder = spawn(process.execPath, ['-e',
      "require('net').createServer().listen(process.argv[1], () => console.log('up'))", f.socketPath]);
    await new Promise<void>((r) => holder.stdout.once('data', () => r()));
    holder.kill('SIGKILL');
    await new Promise<void>((r) => holder.once('exit', () => r()));
    expect(statSync(f.socketPath).isSocket()).to.equal(true);
    const third = new NbdServer({ socketPath: f.socketPath, exportName: 'r1', device: new MemoryDevice(4096) });
    await third.listen();
    const c = await NbdClient.connect(f.socketPath, 'r1');
    await c.disconnect();
    await third.close();
    f.tmp.remove();
  });

  it('NbdServer - listen refuses a path that is not a socket', async () => {
    const tmp = tempDir('phobos-nbd-');
    try {
      mkdirSync(tmp.file('run'));
      writeFileSync(tmp.file('run/r1.nbd'), 'data');
      const s = new NbdServer({ socketPath: tmp.file('run/r1.nbd'), exportName: 'r1', device: new MemoryDevice(4096) });
      const e = await rejection(s.listen());
      expect(e.message).to.match(/exists and is not a socket; remove it/);
    } finally {
      tmp.remove();
    }
  });

  it('NbdServer - the open count rises after the handshake and falls on close', async () => {
    const f = await startServer(4096);
    try {
      const events: string[] = [];
      f.server.on('open', (n) => events.push(`open ${n}`));
      f.server.on('close', (n) => events.push(`close ${n}`));
      const { socket } = await openSession(f.socketPath);
      expect(f.server.openCount).to.equal(0); // still haggling: not open
      const a = await NbdClient.connect(f.socketPath, 'r1');
      const b = await NbdClient.connect(f.socketPath, 'r1', { handshake: 'export-name' });
      await until(() => f.server.openCount === 2);
      await a.disconnect();
      await until(() => f.server.openCount === 1);
      b.destroy();
      await until(() => f.server.openCount === 0);
      socket.destroy();
      expect(events).to.deep.equal(['open 1', 'open 2', 'close 1', 'close 0']);
    } finally {
      await stopServer(f);
    }
  });

  it('NbdServer - close() lets in-flight requests finish, then closes every connection', async () => {
    const f = await startServer(1 << 20);
    f.device.delayMs = (op) => (op === 'write' ? 100 : 0);
    const a = await NbdClient.connect(f.socketPath, 'r1');
    const b = await NbdClient.connect(f.socketPath, 'r1');
    const { socket } = await openSession(f.socketPath); // one still in the handshake
    const write = a.write(0, Buffer.from('kept'));
    await until(() => f.device.active === 1);
    await f.server.close();
    await write; // replied before the connection closed
    expect(f.device.data.subarray(0, 4).toString()).to.equal('kept');
    expect(f.server.openCount).to.equal(0);
    expect(existsSync(f.socketPath)).to.equal(false);
    await closed(socket);
    expect(await rejection(b.read(0, 1))).to.be.instanceOf(NbdConnectionError);
    await a.disconnect();
    f.tmp.remove();
  });

  it('NbdServer - close() cuts connections whose requests outlast the close timeout', async () => {
    const f = await startServer(4096, { closeTimeoutMs: 100 });
    f.device.delayMs = () => 1000;
    const a = await NbdClient.connect(f.socketPath, 'r1');
    const read = rejection(a.read(0, 1));
    await until(() => f.device.active === 1);
    const started = Date.now();
    await f.server.close();
    expect(Date.now() - started).to.be.lessThan(900);
    expect(await read).to.be.instanceOf(NbdConnectionError);
    await until(() => f.device.active === 0);
    f.tmp.remove();
  });

  it('NbdServer - serves a connection over an in-memory duplex', async () => {
    const device = new MemoryDevice(8192);
    const server = new NbdServer({ socketPath: '/nonexistent/unused.nbd', exportName: 'mem', device });
    const [serverEnd, clientEnd] = duplexPair();
    server.serveStream(serverEnd);
    const c = await NbdClient.open(clientEnd, 'mem');
    await c.write(100, Buffer.from('over a duplex'), true);
    expect((await c.read(100, 13)).toString()).to.equal('over a duplex');
    expect(server.openCount).to.equal(1);
    await c.disconnect();
    await until(() => server.openCount === 0);
    await server.close();
  });

  it('NbdServer - refuses a block size setting that is not a power of two', () => {
    expect(() => new NbdServer({ socketPath: '/x', exportName: 'r', device: new MemoryDevice(1), minBlockBytes: 3 }))
      .to.throw(RangeError, /minBlockBytes 3 must be a power of two/);
  });
});
