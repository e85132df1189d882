/**
 * A transport carries the peer protocol's bytes between a daemon (the client) and a
 * `marsadm peer-serve` process on the far host. It knows nothing of frames: the same
 * protocol code runs over a child process's pipes and over an SSH exec channel.
 */
import type { Readable, Writable } from 'node:stream';

/** An open byte stream to one peer's `peer-serve`. */
export interface PeerTransport {
  /** Bytes from the far side (peer-serve's stdout). */
  readonly input: Readable;
  /** Bytes to the far side (peer-serve's stdin). */
  readonly output: Writable;
  /** For log lines: `pipe:/tmp/x/beta/mars`, `ssh:root@10.0.0.2:22`. */
  readonly description: string;
  /** Resolves once the transport is gone (far side exited, link dropped, or close()). */
  readonly closed: Promise<void>;
  /** Tear it down; safe to call twice. */
  close(): void;
}

/** Where and how to reach one peer. */
export interface PeerAddress {
  /** The peer's host name (its tree suffix). */
  readonly host: string;
  /** `ips/ip-<host>`: an address or DNS name (ssh), '-' when not reachable by network. */
  readonly address: string;
}

/** Opens a transport to a peer; rejects with a one-line reason. */
export type TransportFactory = (peer: PeerAddress) => Promise<PeerTransport>;
