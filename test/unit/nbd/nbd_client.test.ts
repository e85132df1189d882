import { expect } from 'chai';
import type { Duplex } from 'node:stream';

import { NbdClient, NbdConnectionError, NbdProtocolError, nbdProtocol as P } from '../../../src/nbd/index.js';
import { duplexPair } from './_memory_device.js';
import { startServer, stopServer, type Fixture } from './_fixture.js';

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

/** The far end of a duplex, read n bytes at a time: the bones of a scripted fake server. */
function scripted(stream: Duplex): (n: number) => Promise<Buffer> {
  const q = new P.ByteQueue();
  let wake: (() => void) | null = null;
  stream.on('data', (c: Buffer) => {
    q.push(c);
    wake?.();
  });
  return async (n) => {
    while (q.length < n) await new Promise<void>((r) => (wake = r));
    return q.take(n);
  };
}

/** A fake server that greets and waits for the client flags. */
async function greet(stream: Duplex, read: (n: number) => Promise<Buffer>, flags = P.SERVER_HANDSHAKE_FLAGS): Promise<number> {
  stream.write(P.encodeGreeting(flags));
  return (await read(4)).readUInt32BE(0);
}

describe('NbdClient', () => {
  it('NbdClient - falls back to NBD_OPT_EXPORT_NAME when the server lacks NBD_OPT_GO', async () => {
    const [server, client] = duplexPair();
    const read = scripted(server);
    const fake = (async () => {
      expect(await greet(server, read)).to.equal(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES);
      const go = P.decodeOptionHeader(await read(16));
      expect(go.option).to.equal(P.NBD_OPT_GO);
      expect(P.decodeGoRequest(await read(go.length))).to.deep.equal({ name: 'old', infos: [P.NBD_INFO_BLOCK_SIZE] });
      server.write(P.encodeOptionReply(P.NBD_OPT_GO, P.NBD_REP_ERR_UNSUP));
      const en = P.decodeOptionHeader(await read(16));
      expect(en.option).to.equal(P.NBD_OPT_EXPORT_NAME);
      expect((await read(en.length)).toString()).to.equal('old');
      server.write(P.encodeExportNameReply(12345, P.NBD_FLAG_HAS_FLAGS, true));
    })();
    const c = await NbdClient.open(client, 'old');
    await fake;
    expect(c.sizeBytes).to.equal(12345);
    expect(c.transmissionFlags).to.equal(P.NBD_FLAG_HAS_FLAGS);
    c.destroy();
  });

  it('NbdClient - refuses a server that does not speak fixed newstyle', async () => {
    const [server, client] = duplexPair();
    server.write(P.encodeGreeting(0));
    const e = await rejection(NbdClient.open(client, ''));
    expect(e).to.be.instanceOf(NbdProtocolError);
    expect(e.message).to.equal('server handshake flags 0x0 lack FIXED_NEWSTYLE');
    client.destroy();
  });

  it('NbdClient - a reply with a bad magic fails every request in flight and closes', async () => {
    const [server, client] = duplexPair();
    const read = scripted(server);
    const fake = (async () => {
      await greet(server, read);
      const go = P.decodeOptionHeader(await read(16));
      await read(go.length);
      server.write(P.encodeOptionReply(P.NBD_OPT_GO, P.NBD_REP_INFO, P.encodeInfoExport(4096, 1)));
      server.write(P.encodeOptionReply(P.NBD_OPT_GO, P.NBD_REP_ACK));
      await read(2 * 28);
      const bad = P.encodeSimpleReplyHeader(0, 1n);
      bad.writeUInt32BE(0xbadbad00, 0);
      server.write(bad);
    })();
    const c = await NbdClient.open(client, 'x');
    const pending = [rejection(c.read(0, 10)), rejection(c.flush())];
    await fake;
    const [a, b] = await Promise.all(pending);
    expect(a).to.be.instanceOf(NbdProtocolError);
    expect(a!.message).to.equal('bad reply magic 0xbadbad00, expected 0x67446698');
    expect(b).to.equal(a);
    expect(await rejection(c.read(0, 1))).to.equal(a);
  });

  describe('against NbdServer', () => {
    let f: Fixture | undefined;
    beforeEach(async () => {
      f = await startServer(1 << 20);
    });
    afterEach(async () => {
      await stopServer(f);
      f = undefined;
    });

    it('NbdClient - disconnect waits for the requests in flight, then refuses new ones', async () => {
      f!.device.delayMs = () => 30;
      const c = await NbdClient.connect(f!.socketPath, 'r1');
      const writes = [c.write(0, Buffer.from('one')), c.write(10, Buffer.from('two'), true)];
      expect(c.inFlight).to.equal(2);
      await c.disconnect();
      await Promise.all(writes);
      expect(f!.device.data.subarray(0, 13).toString('latin1')).to.equal('one\0\0\0\0\0\0\0two');
      const e = await rejection(c.read(0, 1));
      expect(e).to.be.instanceOf(NbdConnectionError);
    });

    it('NbdClient - a thousand reads in flight each get their own bytes', async () => {
      const c = await NbdClient.connect(f!.socketPath, 'r1');
      for (let i = 0; i < 1000; i++) f!.device.data.writeUInt32BE(i, i * 1024);
      const reads = await Promise.all(Array.from({ length: 1000 }, (_, i) => c.read(i * 1024, 4)));
      reads.forEach((r, i) => expect(r.readUInt32BE(0)).to.equal(i));
      await c.disconnect();
    });

    it('NbdClient - connecting to a socket nobody serves fails with the system error', async () => {
      const e = await rejection(NbdClient.connect(f!.tmp.file('none.nbd')));
      expect((e as NodeJS.ErrnoException).code).to.equal('ENOENT');
    });
  });
});
