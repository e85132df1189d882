/** A server on a UNIX socket in a temp dir, over a MemoryDevice, torn down after each test. */
import net from 'node:net';

import { NbdOptionSession, NbdServer, type NbdServerOptions } from '../../../src/nbd/index.js';
import { tempDir, type TempDir } from '../../support/tmp.js';
import { MemoryDevice } from './_memory_device.js';

export interface Fixture {
  readonly tmp: TempDir;
  readonly device: MemoryDevice;
  readonly server: NbdServer;
  readonly socketPath: string;
  readonly errors: Error[];
}

export async function startServer(
  sizeBytes = 1 << 20,
  options: Partial<Omit<NbdServerOptions, 'device' | 'socketPath'>> = {},
): Promise<Fixture> {
  const tmp = tempDir('phobos-nbd-');
  const device = new MemoryDevice(sizeBytes);
  const socketPath = tmp.file('run/r1.nbd');
  const server = new NbdServer({ socketPath, exportName: 'r1', device, ...options });
  const errors: Error[] = [];
  server.on('connection-error', (e) => errors.push(e));
  await server.listen();
  return { tmp, device, server, socketPath, errors };
}

export async function stopServer(f: Fixture | undefined): Promise<void> {
  if (!f) return;
  await f.server.close();
  f.tmp.remove();
}

/** A connected raw socket. */
export function connectRaw(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(socketPath);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** A raw socket in the option phase. */
export async function openSession(socketPath: string): Promise<{ socket: net.Socket; session: NbdOptionSession }> {
  const socket = await connectRaw(socketPath);
  return { socket, session: await NbdOptionSession.open(socket) };
}

/** Resolves when the socket has closed. */
export function closed(socket: net.Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((r) => socket.once('close', () => r()));
}

/** Resolves once `predicate` holds, polling every 5 ms; rejects after `timeoutMs`. */
export async function until(predicate: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
