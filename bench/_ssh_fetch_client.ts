/**
 * The diagnostic half of ship-ssh: what the replica's fetch does, minus the daemon. Runs in
 * the fetching host's namespace (`ip netns exec <ns> node --import tsx ...`), opens the SSH
 * transport (sshTransportFactory, the cluster key, the pinned host key) to the origin's
 * sshd, whose forced command starts the real `marsadm peer-serve`, says HELLO and reads
 * the log with LOG_READ, `window` requests of 1 MiB in flight, each reply written to the
 * copy in offset order (as Replica.fetchWindow does). Prints one JSON line.
 */
import { open } from 'node:fs/promises';

import { PeerConnection } from '../src/peer/connection.js';
import { MessageType, PROTOCOL_VERSION } from '../src/peer/frames.js';
import { sshTransportFactory } from '../src/peer/ssh/ssh_transport.js';

export interface FetchClientArgs {
  readonly key: string;
  /** Base64 of the origin sshd's pinned host key blob. */
  readonly hostKey: string;
  readonly host: string;
  readonly address: string;
  readonly port: number;
  readonly uuid: string;
  readonly self: string;
  readonly res: string;
  readonly log: string;
  readonly size: number;
  readonly window: number;
  /** Where to write the copy; none: received and dropped. */
  readonly out?: string;
}

async function main(a: FetchClientArgs): Promise<void> {
  const factory = sshTransportFactory({ privateKeyPath: a.key, hostKeyFor: () => Buffer.from(a.hostKey, 'base64'), portFor: () => a.port });
  const transport = await factory({ host: a.host, address: a.address });
  const conn = new PeerConnection(transport, { peer: a.host, log: () => undefined });
  await conn.call(MessageType.HELLO, { proto: PROTOCOL_VERSION, cluster: a.uuid, host: a.self, features: [] });
  const out = a.out ? await open(a.out, 'w') : null;
  const cpu = process.cpuUsage();
  const started = performance.now();
  let next = 0, have = 0;
  const inflight = new Set<Promise<void>>();
  let previous: Promise<void> = Promise.resolve();
  while (next < a.size || inflight.size > 0) {
    while (inflight.size < a.window && next < a.size) {
      const offset = next, length = Math.min(1 << 20, a.size - offset);
      next += length;
      const before = previous;
      const slot: Promise<void> = (async () => {
        const reply = await conn.call(MessageType.LOG_READ, { res: a.res, name: a.log, offset, length, waitMs: 0 });
        await before;
        if (out) await out.writev([...reply.payloadParts], offset);
        have += reply.payloadLength;
      })().finally(() => inflight.delete(slot));
      previous = slot;
      inflight.add(slot);
    }
    await Promise.race(inflight);
  }
  const ms = performance.now() - started;
  const used = process.cpuUsage(cpu);
  await out?.close();
  conn.close();
  console.log(JSON.stringify({ bytes: have, ms, cpuPercent: (used.user + used.system) / 10 / ms }));
}

main(JSON.parse(process.argv[2] ?? '{}') as FetchClientArgs)
  .catch((e: Error) => console.log(JSON.stringify({ error: e.message })))
  .finally(() => process.stdout.write('', () => process.exit(0)));
