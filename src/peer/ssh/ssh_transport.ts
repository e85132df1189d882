/**
 * The SSH transport: an ssh2 client opens an exec channel to the peer's sshd, where the
 * cluster key's `authorized_keys` line forces `marsadm peer-serve`. The channel's stdout is
 * the transport's input and its stdin the output; peer-serve's stderr becomes log lines.
 *
 * Measured choices (docs/peer-protocol.md "SSH", reference node-ecosystem.md section 3):
 *  - our own TCP socket with setNoDelay(true): ssh2's socket keeps Nagle on, which adds
 *    ~45 ms to every small round trip;
 *  - the host key is compared byte for byte with the key pinned for that peer; nothing
 *    else is trusted (no known_hosts lookup by name, no trust on first use);
 *  - keepalive every 5 s, three unanswered => the link is declared dead (~15-20 s), since
 *    TCP alone can take many minutes to notice a cut cable.
 */
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import ssh2 from 'ssh2';
import type { Client, ClientChannel, ClientErrorExtensions, ConnectConfig, ServerHostKeyAlgorithm } from 'ssh2';

import type { PeerAddress, PeerTransport, TransportFactory } from '../transport.js';
import { fingerprint } from './keys.js';

export interface SshTransportOptions {
  /** The cluster key (OpenSSH private key file). */
  readonly privateKeyPath: string;
  /** The peer's sshd host key (SSH wire format) pinned for it; undefined = not pinned. */
  readonly hostKeyFor: (host: string) => Buffer | undefined;
  /** The peer's sshd port; default 22. */
  readonly portFor?: (host: string) => number;
  /** Default 'root'. */
  readonly user?: string;
  /** From TCP connect to an open channel; default 10000. */
  readonly connectTimeoutMs?: number;
  /** SSH keepalive period; three missed answers close the transport. Default 5000. */
  readonly keepaliveIntervalMs?: number;
  /** What to ask the server to run; the server's forced command wins anyway. */
  readonly command?: string;
  readonly log?: (line: string) => void;
}

const KEEPALIVE_COUNT_MAX = 3;
/** How long close() lets the SSH disconnect message go out before dropping the socket. */
const CLOSE_GRACE_MS = 1000;

interface Target {
  readonly host: string;
  readonly address: string;
  readonly port: number;
  readonly user: string;
  readonly pinned: Buffer;
  readonly description: string;
}

export function sshTransportFactory(opts: SshTransportOptions): TransportFactory {
  return async (peer: PeerAddress): Promise<PeerTransport> => {
    const target = resolveTarget(opts, peer);
    const privateKey = await readClusterKey(opts.privateKeyPath);
    return connect(opts, target, privateKey);
  };
}

function resolveTarget(opts: SshTransportOptions, peer: PeerAddress): Target {
  if (!peer.address || peer.address === '-') {
    throw new Error(`peer ${peer.host} has no network address (ips/ip-${peer.host} is '${peer.address}'); set it with marsadm join-cluster on ${peer.host}`);
  }
  const pinned = opts.hostKeyFor(peer.host);
  if (!pinned || pinned.length === 0) {
    throw new Error(`no SSH host key pinned for peer ${peer.host} (ips/hostkey-${peer.host} is missing); re-run marsadm join-cluster on ${peer.host} so it publishes its sshd key`);
  }
  const port = opts.portFor?.(peer.host) ?? 22;
  const user = opts.user ?? 'root';
  const hostPart = net.isIPv6(peer.address) ? `[${peer.address}]` : peer.address;
  return { host: peer.host, address: peer.address, port, user, pinned, description: `ssh:${user}@${hostPart}:${port}` };
}

async function readClusterKey(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (e) {
    throw new Error(`cannot read the cluster key ${file} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); create it with marsadm create-cluster or join-cluster`);
  }
}

/** Connect, authenticate and open the exec channel; rejects with one line naming the peer. */
function connect(opts: SshTransportOptions, target: Target, privateKey: Buffer): Promise<PeerTransport> {
  const timeoutMs = opts.connectTimeoutMs ?? 10000;
  const started = Date.now();
  const client = new ssh2.Client();
  const sock = net.connect({ host: target.address, port: target.port });
  sock.setNoDelay(true);
  let presentedKey: Buffer | null = null;

  return new Promise<PeerTransport>((resolve, reject) => {
    let settled = false;
    const fail = (message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      client.destroy();
      sock.destroy();
      reject(new Error(message));
    };
    const timer = setTimeout(() => {
      fail(`timed out after ${timeoutMs} ms connecting to peer ${target.host} (${target.description}); is the address right and the host up?`);
    }, timeoutMs);

    client.on('error', (err: Error & ClientErrorExtensions) => fail(describeConnectError(err, target, presentedKey, opts.privateKeyPath)));
    client.on('close', () => fail(`peer ${target.host} (${target.description}) closed the connection during setup`));
    client.on('ready', () => {
      client.exec(opts.command ?? 'marsadm peer-serve', (err, channel) => {
        if (settled) {
          channel?.destroy();
          return;
        }
        if (err) return fail(`peer ${target.host} (${target.description}) refused to run the peer command: ${err.message}`);
        settled = true;
        clearTimeout(timer);
        opts.log?.(`ssh ${target.host}: connected to ${target.description} in ${Date.now() - started} ms`);
        resolve(openTransport(opts, target, client, channel));
      });
    });

    try {
      client.connect(connectConfig(opts, target, { sock, privateKey, timeoutMs }, (key) => (presentedKey = key)));
    } catch (e) {
      // ssh2 parses the private key synchronously here.
      fail(`the cluster key ${opts.privateKeyPath} cannot be used: ${firstLine((e as Error).message)}`);
    }
  });
}

function connectConfig(
  opts: SshTransportOptions, target: Target, io: { sock: net.Socket; privateKey: Buffer; timeoutMs: number },
  sawKey: (key: Buffer) => void,
): ConnectConfig {
  return {
    sock: io.sock,
    username: target.user,
    privateKey: io.privateKey,
    // Exactly the pinned key: no known_hosts lookup by name, no trust on first use.
    hostVerifier: (key: Buffer) => {
      sawKey(Buffer.from(key));
      return key.equals(target.pinned);
    },
    algorithms: hostKeyAlgorithmsFor(target.pinned),
    readyTimeout: io.timeoutMs,
    keepaliveInterval: opts.keepaliveIntervalMs ?? 5000,
    keepaliveCountMax: KEEPALIVE_COUNT_MAX,
  };
}

/**
 * Ask the server for the pinned key's type only: an sshd has several host keys (ed25519,
 * ecdsa, rsa), and negotiating another type than the pinned one would look like a
 * mismatch. Unknown types leave ssh2's defaults.
 */
function hostKeyAlgorithmsFor(pinned: Buffer): { serverHostKey: ServerHostKeyAlgorithm[] } | undefined {
  const type = keyTypeOf(pinned);
  if (type === 'ssh-rsa') return { serverHostKey: ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] };
  const known: readonly string[] = ['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521'];
  return known.includes(type) ? { serverHostKey: [type as ServerHostKeyAlgorithm] } : undefined;
}

/** The type name an SSH wire-format key starts with (uint32 length + name). */
function keyTypeOf(blob: Buffer): string {
  if (blob.length < 4) return 'unknown';
  const length = blob.readUInt32BE(0);
  return length > 0 && length <= 64 && 4 + length <= blob.length ? blob.toString('latin1', 4, 4 + length) : 'unknown';
}

function describeConnectError(err: Error & ClientErrorExtensions, target: Target, presented: Buffer | null, keyPath: string): string {
  const where = `peer ${target.host} (${target.description})`;
  if (presented && !presented.equals(target.pinned)) {
    return `host key mismatch for ${where}: it presented ${fingerprint(presented)}, pinned is ${fingerprint(target.pinned)}; if ${target.host}'s sshd key changed on purpose, re-run marsadm join-cluster on ${target.host}`;
  }
  if (!presented && err.level === 'handshake' && /host key/i.test(err.message)) {
    return `${where} offers no ${keyTypeOf(target.pinned)} host key, the type pinned for it (${fingerprint(target.pinned)}); re-run marsadm join-cluster on ${target.host}`;
  }
  if (err.level === 'client-authentication') {
    return `the cluster key ${keyPath} was refused by ${where}; its authorized_keys lacks the cluster key line (re-run marsadm join-cluster on ${target.host})`;
  }
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ECONNREFUSED') return `connection refused by ${where}: no sshd listening on port ${target.port}`;
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return `${where} is unreachable (${code}); check the address and the network`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve ${target.address} for peer ${target.host} (${code})`;
  if (err.level === 'client-timeout') return `timed out connecting to ${where} (${err.message})`;
  return `cannot connect to ${where}: ${firstLine(err.message)}`;
}

function firstLine(text: string): string {
  return text.split('\n')[0] ?? text;
}

/** Wrap an open channel; `closed` resolves once, whichever of channel or client goes first. */
function openTransport(opts: SshTransportOptions, target: Target, client: Client, channel: ClientChannel): PeerTransport {
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  let gone = false;
  let graceTimer: NodeJS.Timeout | undefined;
  const markGone = (why: string): void => {
    if (gone) return;
    gone = true;
    opts.log?.(`ssh ${target.host}: ${why}`);
    // The channel may be unread now; drain it or ssh2 never finishes closing it.
    channel.resume();
    channel.stderr.resume();
    if (graceTimer) clearTimeout(graceTimer);
    client.end();
    setTimeout(() => client.destroy(), CLOSE_GRACE_MS).unref();
    resolveClosed();
  };

  forwardStderr(channel, target.host, opts.log);
  channel.on('close', () => markGone('channel closed'));
  channel.on('error', (err: Error) => markGone(`channel error: ${err.message}`));
  client.removeAllListeners('error');
  client.removeAllListeners('close');
  client.on('error', (err: Error) => markGone(`connection lost: ${err.message}`));
  client.on('end', () => markGone('connection ended'));
  client.on('close', () => markGone('connection closed'));

  let closing = false;
  const close = (): void => {
    if (closing || gone) return;
    closing = true;
    channel.end();
    channel.resume();
    channel.stderr.resume();
    client.end();
    // A dead link never answers the disconnect; do not wait for TCP to give up.
    graceTimer = setTimeout(() => markGone('closed'), CLOSE_GRACE_MS);
    graceTimer.unref();
  };

  return { input: channel, output: channel, description: target.description, closed, close };
}

/** peer-serve's stderr, line by line, prefixed with the peer's name. */
function forwardStderr(channel: ClientChannel, host: string, log: ((line: string) => void) | undefined): void {
  let tail = '';
  channel.stderr.setEncoding('utf8');
  channel.stderr.on('data', (text: string) => {
    tail += text;
    const lines = tail.split('\n');
    tail = lines.pop() ?? '';
    for (const line of lines) if (line) log?.(`peer-serve ${host}: ${line}`);
  });
  channel.stderr.on('end', () => {
    if (tail) log?.(`peer-serve ${host}: ${tail}`);
    tail = '';
  });
}
