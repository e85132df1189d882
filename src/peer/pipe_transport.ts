/**
 * The pipe transport: `marsadm peer-serve` as a child process on this machine, with the
 * peer's own tree root. The demo and the cluster test tier run several hosts as separate
 * roots on one machine this way; the protocol above is the same as over SSH.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { PeerAddress, PeerTransport, TransportFactory } from './transport.js';

export interface PipeTransportOptions {
  /** The peer's tree root from its host name, e.g. `(h) => '/tmp/demo/' + h + '/mars'`. */
  readonly rootFor: (host: string) => string;
  /** The peer's NBD socket directory (for the sync view). */
  readonly runDirFor: (host: string) => string;
  readonly log?: (line: string) => void;
  /**
   * Fault injection for the cluster tier: while the file this names exists, the link to
   * `peer` is cut (connects fail, an open link closes within 200 ms) — the pipe
   * transport's stand-in for a cable pulled between two data centres.
   */
  readonly cutMarkerFor?: (peer: string) => string;
}

const CUT_POLL_MS = 200;

/** dist/src/cli/main.js (or src/cli/main.ts under tsx) next to this file. */
function cliEntry(): { args: string[] } {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const ts = here.includes(`${path.sep}dist${path.sep}`) ? null : path.join(here, '..', 'cli', 'main.ts');
  if (ts) return { args: ['--import', 'tsx', ts] };
  return { args: [path.join(here, '..', 'cli', 'main.js')] };
}

export function pipeTransportFactory(opts: PipeTransportOptions): TransportFactory {
  return async (peer: PeerAddress): Promise<PeerTransport> => {
    const marker = opts.cutMarkerFor?.(peer.host);
    if (marker && existsSync(marker)) throw new Error(`link to ${peer.host} is cut (${marker} exists)`);
    const root = opts.rootFor(peer.host);
    const child = spawn(process.execPath, [...cliEntry().args, '--root', root, '--host', peer.host,
      'peer-serve', '--run-dir', opts.runDirFor(peer.host)], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stderr.setEncoding('utf8');
    let tail = '';
    child.stderr.on('data', (s: string) => {
      tail += s;
      const lines = tail.split('\n');
      tail = lines.pop() ?? '';
      for (const line of lines) if (line) opts.log?.(`peer-serve ${peer.host}: ${line}`);
    });
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (e) => reject(new Error(`cannot start peer-serve for ${peer.host}: ${e.message}`)));
    });
    const close = (): void => {
      child.stdin.destroy();
      child.stdout.destroy();
      if (child.exitCode === null) child.kill('SIGTERM');
    };
    if (marker) {
      const watch = setInterval(() => { if (existsSync(marker)) close(); }, CUT_POLL_MS);
      watch.unref();
      void closed.then(() => clearInterval(watch));
    }
    return {
      input: child.stdout,
      output: child.stdin,
      description: `pipe:${root}`,
      closed,
      close,
    };
  };
}
