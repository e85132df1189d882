/**
 * The peer protocol on an in-memory transport: frames, HELLO checks, path confinement,
 * malformed and oversized frames, and that peer-serve answers reads without writing.
 */
import { lutimesSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';

import { expect } from 'chai';

import { FrameDecoder, encodeFrame, MAX_FRAME_BYTES, MAX_JSON_BYTES, MessageType, ProtocolError } from '../../../src/peer/frames.js';
import { packRows, type TreeRow } from '../../../src/peer/server.js';
import { PeerConnection, PeerLink, PeerServer, PROTOCOL_VERSION, RemoteError, type PeerTransport } from '../../../src/peer/index.js';
import { ipKey, MarsTree, userspaceKey, UUID_KEY } from '../../../src/tree/index.js';
import { stampToSeconds } from '../../../src/tree/_entry_io.js';
import { eventually } from '../../support/test_host.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

/** Two transports joined back to back. */
function pair(): [PeerTransport, PeerTransport] {
  const aToB = new PassThrough(), bToA = new PassThrough();
  let closeAll = (): void => undefined;
  const closed = new Promise<void>((r) => (closeAll = r));
  const end = (): void => {
    aToB.destroy();
    bToA.destroy();
    closeAll();
  };
  return [
    { input: bToA, output: aToB, description: 'mem:a', closed, close: end },
    { input: aToB, output: bToA, description: 'mem:b', closed, close: end },
  ];
}

describe('peer protocol', () => {
  describe('frames', () => {
    it('round-trips frames cut at every byte boundary', () => {
      const bytes = Buffer.concat([
        ...encodeFrame(MessageType.LOG_READ, 7, { res: 'r', offset: 12 }),
        ...encodeFrame(MessageType.LOG_DATA, 7, { size: 3 }, Buffer.from('abc')),
      ]);
      for (let cut = 1; cut < bytes.length; cut++) {
        const d = new FrameDecoder();
        const frames = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut))];
        expect(frames.map((f) => f.type)).to.deep.equal([MessageType.LOG_READ, MessageType.LOG_DATA]);
        expect(frames[1]!.payload.toString()).to.equal('abc');
        expect(frames[0]!.json).to.deep.equal({ res: 'r', offset: 12 });
      }
    });

    it('refuses oversized, unknown, non-object and reserved-bit frames', () => {
      const big = Buffer.alloc(4);
      big.writeUInt32LE(MAX_FRAME_BYTES + 1);
      expect(() => new FrameDecoder().push(big)).to.throw(ProtocolError, /frame length/);
      const unknown = Buffer.concat(encodeFrame(MessageType.PING, 1, {}));
      unknown.writeUInt8(99, 4);
      expect(() => new FrameDecoder().push(unknown)).to.throw(ProtocolError, /unknown message type 99/);
      const arr = Buffer.concat(encodeFrame(MessageType.PING, 1, {}));
      const json = Buffer.from('[1]');
      const notObject = Buffer.concat([arr.subarray(0, 12), Buffer.alloc(4), json]);
      notObject.writeUInt32LE(12 + json.length, 0);
      notObject.writeUInt32LE(json.length, 12);
      expect(() => new FrameDecoder().push(notObject)).to.throw(ProtocolError, /not an object/);
      const reserved = Buffer.concat(encodeFrame(MessageType.PING, 1, {}));
      reserved.writeUInt16LE(1, 6);
      expect(() => new FrameDecoder().push(reserved)).to.throw(ProtocolError, /reserved/);
    });
  });

  describe('peer-serve', () => {
    let tmp: TempDir;
    let tree: MarsTree;
    let uuid: string;
    const logs: string[] = [];

    before(async () => {
      tmp = tempDir('phobos-peer-');
      tree = await MarsTree.open({ root: tmp.file('mars'), host: 'beta', create: true, requireCluster: false });
      uuid = '01234567-89ab-cdef-0123-456789abcdef';
      await tree.set(UUID_KEY, uuid);
      await tree.set(ipKey('beta'), '-');
      await tree.set(ipKey('alpha'), '-');
      await tree.set('resource-r1/size', '1048576');
      writeFileSync(path.join(tmp.file('mars'), 'resource-r1', 'log-000000001-beta'), Buffer.alloc(1000, 7));
      writeFileSync(tmp.file('secret'), 'do not read');
    });
    after(() => tmp.remove());

    async function connect(): Promise<{ client: PeerConnection; served: Promise<void> }> {
      const [a, b] = pair();
      const server = new PeerServer({ tree, runDir: tmp.file('run'), log: (l) => logs.push(l) });
      const served = server.serve(b);
      const client = new PeerConnection(a, { peer: 'beta', log: (l) => logs.push(l) });
      return { client, served };
    }

    async function hello(client: PeerConnection, fields: Record<string, unknown> = {}): Promise<void> {
      await client.call(MessageType.HELLO, { proto: PROTOCOL_VERSION, cluster: uuid, host: 'alpha', features: [], ...fields });
    }

    it('answers HELLO from a member and serves log bytes', async () => {
      const { client, served } = await connect();
      await hello(client);
      const list = await client.call(MessageType.LOG_LIST, { res: 'r1' });
      expect(list.json['logs']).to.deep.equal([['log-000000001-beta', 1000]]);
      const data = await client.call(MessageType.LOG_READ, { res: 'r1', name: 'log-000000001-beta', offset: 990, length: 100 });
      expect(data.payload.length).to.equal(10);
      expect(data.json['size']).to.equal(1000);
      client.close();
      await served;
    });

    it('answers 40 concurrent long polls with the true size (a file in use is never closed)', async () => {
      // More waits than the server keeps idle files open: a plain cache closed handles that
      // waits still held, and the replies said "size 0", which a secondary takes for a
      // log cut short by a crash.
      for (let r = 0; r < 40; r++) {
        await tree.set(`resource-p${r}/size`, '1048576');
        writeFileSync(path.join(tmp.file('mars'), `resource-p${r}`, 'log-000000001-beta'), Buffer.alloc(100 + r, 1));
      }
      const { client, served } = await connect();
      await hello(client);
      const polls = Array.from({ length: 40 }, (_, r) =>
        client.call(MessageType.LOG_READ, { res: `p${r}`, name: 'log-000000001-beta', offset: 100 + r, length: 10, waitMs: 300 }));
      const replies = await Promise.all(polls);
      expect(replies.map((f) => f.json['size'])).to.deep.equal(Array.from({ length: 40 }, (_, r) => 100 + r));
      const again = await client.call(MessageType.LOG_READ, { res: 'p3', name: 'log-000000001-beta', offset: 0, length: 1000 });
      expect(again.payload.length).to.equal(103);
      client.close();
      await served;
    });

    for (const [what, fields, message] of [
      ['another cluster', { cluster: '11111111-2222-3333-4444-555555555555' }, /belongs to cluster 1111/],
      ['a host that is not a member', { host: 'mallory' }, /'mallory' is not a member/],
      ['another protocol version', { proto: 99 }, /speaks protocol 99/],
    ] as const) {
      it(`refuses ${what}, logs it with the peer's name, and closes`, async () => {
        const { client, served } = await connect();
        const error = await hello(client, fields).then(() => null, (e: Error) => e);
        expect(error).to.be.instanceOf(RemoteError);
        expect(error!.message).to.match(message);
        await served;
        expect(logs.some((l) => message.test(l))).to.equal(true);
      });
    }

    it('refuses requests before HELLO', async () => {
      const { client } = await connect();
      const error = await client.call(MessageType.LOG_LIST, { res: 'r1' }).then(() => null, (e: Error) => e);
      expect(error?.message).to.match(/HELLO first/);
      client.close();
    });

    for (const [what, request] of [
      ['a resource name with a path', { res: '../secret' }],
      ['a log name outside the pattern', { res: 'r1', name: '../../secret' }],
      ['an absolute path as a log name', { res: 'r1', name: '/etc/passwd' }],
    ] as const) {
      it(`refuses ${what} and closes the connection, reading nothing`, async () => {
        const { client, served } = await connect();
        await hello(client);
        const error = await client.call(MessageType.LOG_READ, { offset: 0, length: 10, ...request }).then(() => null, (e: RemoteError) => e);
        expect(error).to.be.instanceOf(RemoteError);
        expect((error as RemoteError).code).to.equal('EPHOBOS_PATH');
        await served;
      });
    }

    it('closes the connection on a malformed frame', async () => {
      const [a, b] = pair();
      const server = new PeerServer({ tree, runDir: tmp.file('run'), log: (l) => logs.push(l) });
      const served = server.serve(b);
      a.output.write(Buffer.from([0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0]));
      await served;
      expect(logs.some((l) => /protocol error: frame length/.test(l))).to.equal(true);
    });

    it('sends a large tree and a burst of changes in frames within the JSON limit', async () => {
      // Rows shaped like a 1000-resource tree: 2000 of them came to 130 KB in one frame.
      const value = `/var/lib/phobos/disks/${'x'.repeat(60)}`;
      const rows = Array.from({ length: 5000 }, (_, i) => [`resource-r${i}/data-alpha`, value, 1_700_000_000_000_000 + i] as TreeRow);
      const chunks = packRows(rows);
      expect(chunks.flat()).to.deep.equal(rows);
      for (const c of chunks) expect(Buffer.byteLength(JSON.stringify({ snapshot: false, entries: c }))).to.be.below(MAX_JSON_BYTES);

      // Through a peer-serve: long values, so that few keys make frames over the limit.
      const long = 'y'.repeat(3000);
      const keys = Array.from({ length: 40 }, (_, i) => userspaceKey(`burst-${String(i).padStart(4, '0')}`, 'r1'));
      for (const k of keys.slice(0, 25)) await tree.set(k, long);
      const [a, b] = pair();
      const served = new PeerServer({ tree, runDir: tmp.file('run'), log: (l) => logs.push(l) }).serve(b);
      const seen = new Set<string>();
      const client = new PeerConnection(a, {
        peer: 'beta', log: (l) => logs.push(l),
        onMessage: (f) => { for (const [key] of f.json['entries'] as TreeRow[]) seen.add(key); },
      });
      await hello(client);
      for (const f of await client.request(MessageType.TREE_SUBSCRIBE, { since: 0 })) {
        for (const [key] of f.json['entries'] as TreeRow[]) seen.add(key);
      }
      expect(keys.slice(0, 25).every((k) => seen.has(k)), 'snapshot complete').to.equal(true);
      await Promise.all(keys.map((k) => tree.set(k, `${long}-2`)));
      await eventually('the burst of changes to arrive', async () => keys.every((k) => seen.has(k)) && !client.isClosed, 20_000);
      client.close();
      await served;
      for (const k of keys) await tree.delete(k);
    });

    it('two subscriptions at once share one tree watcher, which the end of the connection closes', async () => {
      // The second used to start a watcher of its own while the first was still listing the
      // tree, and nothing closed the first: its inotify handles (one per directory) kept the
      // process alive (mocha did not exit after this file when a periodic resync came early).
      const watchers = (): number => (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles()
        .filter((h) => h.constructor.name === 'FSWatcher').length;
      const before = watchers();
      const { client, served } = await connect();
      await hello(client);
      const [first, second] = await Promise.all([
        client.request(MessageType.TREE_SUBSCRIBE, { since: 0 }),
        client.request(MessageType.TREE_SUBSCRIBE, { since: 0 }),
      ]);
      const keysOf = (frames: typeof first): string[] => frames.flatMap((f) => (f.json['entries'] as TreeRow[]).map(([k]) => k)).sort();
      expect(keysOf(second)).to.deep.equal(keysOf(first));
      expect(keysOf(first)).to.include('resource-r1/size');
      expect(watchers()).to.be.greaterThan(before);
      client.close();
      await served;
      await eventually('every watch handle closed', async () => watchers() === before, 2000);
    });

    it('answers a resync with `unsent` with only the rows the connection was not sent', async () => {
      const [a, b] = pair();
      const server = new PeerServer({ tree, runDir: tmp.file('run'), log: (l) => logs.push(l) });
      const served = server.serve(b);
      const pushed: string[] = [];
      const client = new PeerConnection(a, {
        peer: 'beta', log: (l) => logs.push(l),
        onMessage: (f) => { for (const [key] of f.json['entries'] as TreeRow[]) pushed.push(key); },
      });
      const keysOf = async (json: Record<string, unknown>): Promise<string[]> =>
        (await client.request(MessageType.TREE_SUBSCRIBE, json)).flatMap((f) => (f.json['entries'] as TreeRow[]).map(([key]) => key));
      try {
        await hello(client);
        const all = await keysOf({ since: 0 });
        expect(all).to.include('resource-r1/size');
        expect(await keysOf({ since: 0, unsent: true })).to.deep.equal([]);
        // A change the watcher delivers counts as sent.
        await tree.set(userspaceKey('seen', 'r1'), '1');
        await eventually('the change to be pushed', () => pushed.includes(userspaceKey('seen', 'r1')), 5000);
        expect(await keysOf({ since: 0, unsent: true })).to.deep.equal([]);
        // One whose push was lost (dropped here) comes with the next resync, and only it.
        const link = server as unknown as { flushDeltas(rows: TreeRow[]): void };
        const flush = link.flushDeltas;
        link.flushDeltas = () => undefined;
        await tree.set(userspaceKey('missed', 'r1'), '1');
        await new Promise((r) => setTimeout(r, 200)); // the watcher saw it; nothing was sent
        link.flushDeltas = flush;
        expect(await keysOf({ since: 0, unsent: true })).to.deep.equal([userspaceKey('missed', 'r1')]);
        expect(pushed).to.not.include(userspaceKey('missed', 'r1'));
        expect(await keysOf({ since: 0, unsent: true })).to.deep.equal([]);
        // Without `unsent` the whole tree comes, as before, read again from the disk: a
        // stamp changed in place (no rename, no directory moves) is in it.
        const sizeLink = path.join(tree.root, 'resource-r1', 'size');
        const sizeBefore = (await tree.get('resource-r1/size'))!;
        await new Promise((r) => setTimeout(r, 2100)); // directories quiet: only a full read sees it
        expect(await keysOf({ since: 0, unsent: true })).to.deep.equal([]);
        lutimesSync(sizeLink, 2_000_000_000, 2_000_000_000);
        const full = (await client.request(MessageType.TREE_SUBSCRIBE, { since: 0 })).flatMap((f) => f.json['entries'] as TreeRow[]);
        expect(full.length).to.equal(all.length + 2);
        expect(full.find(([key]) => key === 'resource-r1/size')?.[2]).to.equal(2_000_000_000_000_000);
        const seconds = stampToSeconds(sizeBefore.stamp);
        lutimesSync(sizeLink, seconds, seconds);
      } finally {
        client.close();
        await served;
        await tree.delete(userspaceKey('seen', 'r1'));
        await tree.delete(userspaceKey('missed', 'r1'));
      }
    });

    it('a link\'s periodic resync asks for unsent rows, and every 12th time for the whole tree', async () => {
      const local = await MarsTree.open({ root: tmp.file('gamma-mars'), host: 'gamma', create: true, requireCluster: false });
      await local.set(UUID_KEY, uuid);
      await tree.set(ipKey('gamma'), '-');
      const asked: Record<string, unknown>[] = [];
      const link = new PeerLink({
        tree: local,
        peer: { host: 'beta', address: '-' },
        resyncIntervalMs: 20,
        factory: async () => {
          const [a, b] = pair();
          const decoder = new FrameDecoder();
          a.output.on('data', (chunk: Buffer) => {
            for (const f of decoder.push(chunk)) if (f.type === MessageType.TREE_SUBSCRIBE) asked.push(f.json);
          });
          void new PeerServer({ tree, runDir: tmp.file('run'), log: (l) => logs.push(l) }).serve(b);
          return a;
        },
        log: (l) => logs.push(l),
      });
      link.start();
      try {
        expect(await link.waitConnected(5000)).to.equal(true);
        await eventually('13 subscriptions', () => asked.length >= 13, 10_000);
        expect(asked[0]).to.deep.equal({ since: 0 });                 // the first connect
        expect(asked.slice(1, 12).every((j) => j['unsent'] === true && j['since'] === 0)).to.equal(true);
        expect(asked[12]).to.deep.equal({ since: 0 });                // the 12th resync
      } finally {
        link.stop();
        await tree.delete(ipKey('gamma'));
      }
    });

    it('a link merges only rows that can win against what the local tree holds', async () => {
      // The periodic resync sends the whole tree; rows the daemon already holds (same or
      // older stamp) are not merged again. Here `known` claims one key at a newer stamp
      // than beta's: it stays out of alpha's tree, the others arrive.
      const local = await MarsTree.open({ root: tmp.file('alpha-mars'), host: 'alpha', create: true, requireCluster: false });
      await local.set(UUID_KEY, uuid);
      await tree.set(userspaceKey('fresh', 'r1'), 'yes');
      const asked: string[] = [];
      const link = new PeerLink({
        tree: local,
        peer: { host: 'beta', address: '-' },
        factory: async () => {
          const [a, b] = pair();
          void new PeerServer({ tree, runDir: tmp.file('run'), log: (l) => logs.push(l) }).serve(b);
          return a;
        },
        log: (l) => logs.push(l),
        known: (key) => {
          asked.push(key);
          return key === 'resource-r1/size' ? { value: '1048576', stamp: Number.MAX_SAFE_INTEGER } : undefined;
        },
      });
      link.start();
      try {
        expect(await link.waitConnected(5000)).to.equal(true);
        await link.merged();
        expect(asked).to.include('resource-r1/size');
        expect(await local.getValue(userspaceKey('fresh', 'r1'))).to.equal('yes');
        expect(await local.getValue('resource-r1/size')).to.equal(undefined);
      } finally {
        link.stop();
      }
    });

    it('writes nothing into its tree, whatever it is asked', async () => {
      const before = readdirSync(tmp.file('mars'), { recursive: true }).map(String).sort();
      const stamp = statSync(tmp.file('mars/.phobos/lamport')).mtimeMs;
      const { client, served } = await connect();
      await hello(client);
      await client.request(MessageType.TREE_SUBSCRIBE, { since: 0 });
      await client.call(MessageType.LOG_LIST, { res: 'r1' });
      await client.call(MessageType.LOG_READ, { res: 'r1', name: 'log-000000001-beta', offset: 0, length: 10 });
      client.close();
      await served;
      expect(readdirSync(tmp.file('mars'), { recursive: true }).map(String).sort()).to.deep.equal(before);
      expect(statSync(tmp.file('mars/.phobos/lamport')).mtimeMs).to.equal(stamp);
    });
  });
});
