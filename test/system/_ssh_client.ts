/**
 * The client half of test/system/ssh_transport.test.ts. It runs inside a lab namespace
 * (`ip netns exec <ns> node --import tsx _ssh_client.ts '<json>'`), because the peer's
 * address only exists there, uses sshTransportFactory, and reports one JSON object per
 * line on stdout: {"event": ...}. Transport log lines go to stderr.
 */
import { createHash, randomBytes } from 'node:crypto';

import { sshTransportFactory } from '../../src/peer/ssh/ssh_transport.js';
import type { PeerTransport } from '../../src/peer/transport.js';

export interface ClientArgs {
  /**
   * roundtrip: echo `bytes` random bytes, then close(); connect: echo one line (or report
   * why it could not connect); eof: end the output, the far command exits; cut: stream
   * until the link dies.
   */
  readonly mode: 'roundtrip' | 'connect' | 'eof' | 'cut';
  readonly host: string;
  readonly address: string;
  readonly port: number;
  /** Base64 of the pinned host key blob. */
  readonly hostKey: string;
  readonly privateKeyPath: string;
  readonly command?: string;
  readonly bytes?: number;
  readonly keepaliveIntervalMs?: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as ClientArgs;

function report(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function open(): Promise<{ transport: PeerTransport; connectMs: number }> {
  const factory = sshTransportFactory({
    privateKeyPath: args.privateKeyPath,
    hostKeyFor: (host) => (host === args.host ? Buffer.from(args.hostKey, 'base64') : undefined),
    portFor: () => args.port,
    command: args.command,
    keepaliveIntervalMs: args.keepaliveIntervalMs,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  const started = performance.now();
  const transport = await factory({ host: args.host, address: args.address });
  return { transport, connectMs: performance.now() - started };
}

/** Read from the transport until `length` bytes arrived (or it ends). */
function readBytes(transport: PeerTransport, length: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let got = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      got += chunk.length;
      if (got >= length) finish();
    };
    const finish = (): void => {
      transport.input.off('data', onData);
      transport.input.pause();
      resolve(Buffer.concat(chunks));
    };
    transport.input.on('data', onData);
    transport.input.once('end', finish);
  });
}

async function timed<T>(promise: Promise<T>, ms: number): Promise<number | null> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)));
  const result = await Promise.race([promise.then(() => performance.now() - started), expired]);
  clearTimeout(timer);
  return result;
}

async function roundTrip(): Promise<void> {
  const { transport, connectMs } = await open();
  const data = randomBytes(args.bytes ?? 1024);
  const started = performance.now();
  const echoed = readBytes(transport, data.length);
  transport.output.write(data);
  const back = await echoed;
  const transferMs = performance.now() - started;
  let closedEarly = false;
  void transport.closed.then(() => (closedEarly = true));
  await new Promise((resolve) => setImmediate(resolve));
  const wasOpen = !closedEarly;
  transport.close();
  transport.close();
  const closeMs = await timed(transport.closed, 5000);
  report('result', {
    connectMs, transferMs, closeMs, wasOpen, description: transport.description,
    sent: data.length, received: back.length, identical: back.equals(data), sentSha: sha256(data), receivedSha: sha256(back),
  });
}

async function connectOnce(): Promise<void> {
  let opened: Awaited<ReturnType<typeof open>>;
  try {
    opened = await open();
  } catch (e) {
    report('result', { ok: false, error: (e as Error).message });
    return;
  }
  const line = Buffer.from('hello through the forced command\n');
  const echoed = readBytes(opened.transport, line.length);
  opened.transport.output.write(line);
  const back = await Promise.race([echoed, new Promise<Buffer>((resolve) => setTimeout(() => resolve(Buffer.alloc(0)), 5000))]);
  opened.transport.close();
  await timed(opened.transport.closed, 5000);
  report('result', { ok: true, connectMs: opened.connectMs, echoed: back.toString('utf8'), sent: line.toString('utf8') });
}

/** End our output: cat sees EOF and exits, and that alone must resolve `closed`. */
async function farSideExits(): Promise<void> {
  const { transport } = await open();
  const echoed = readBytes(transport, Number.MAX_SAFE_INTEGER);
  transport.output.end('last words\n');
  const closeMs = await timed(transport.closed, 5000);
  report('result', { closeMs, echoed: (await echoed).toString('utf8') });
}

/** Stream both ways until the transport reports closed; say when the data is flowing. */
async function streamUntilCut(): Promise<void> {
  const { transport } = await open();
  let echoedBytes = 0;
  let announced = false;
  transport.input.on('data', (chunk: Buffer) => {
    echoedBytes += chunk.length;
    if (!announced && echoedBytes >= 1 << 20) {
      announced = true;
      report('streaming', { echoedBytes });
    }
  });
  let gone = false;
  const closed = transport.closed.then(() => (gone = true));
  const chunk = randomBytes(64 * 1024);
  void (async () => {
    while (!gone) {
      await new Promise((resolve) => setImmediate(resolve));
      if (!transport.output.write(chunk)) {
        await Promise.race([new Promise((resolve) => transport.output.once('drain', resolve)), closed]);
      }
    }
  })();
  await closed;
  report('closed', { echoedBytes });
}

const modes = { roundtrip: roundTrip, connect: connectOnce, eof: farSideExits, cut: streamUntilCut };

modes[args.mode]()
  .catch((e: Error) => report('error', { error: e.message }))
  .finally(() => process.stdout.write('', () => process.exit(0)));
