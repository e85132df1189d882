/**
 * marsadm wait-cluster: wait until every peer has answered: its daemon echoed our ping, or
 * published an `actual-<peer>/time` newer than when we started (it reached us through the tree).
 * marsadm update-cluster: pull the whole tree from every peer now.
 */
import { randomBytes } from 'node:crypto';

import { PeerLink } from '../../peer/index.js';
import { hostActualKey, pingKey, pongKey, type MarsTree } from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { openTree, timeoutMs } from '../tree_access.js';
import { transportFromOptions } from '../transport.js';

async function peers(tree: MarsTree): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const [key, value] of await tree.values('ips')) {
    const m = /^ips\/ip-(.+)$/.exec(key);
    if (m && value !== null && m[1] !== tree.host) out.set(m[1]!, value);
  }
  return out;
}

export async function waitCluster(ctx: CommandContext): Promise<number> {
  const tree = await openTree(ctx);
  const started = Date.now() * 1000;
  const waiting = new Map<string, Ping>();
  for (const host of (await peers(tree)).keys()) waiting.set(host, await ping(tree, host));
  const deadline = Date.now() + timeoutMs(ctx);
  while (waiting.size) {
    for (const [host, sent] of waiting) {
      if (await answered(tree, host, sent, started)) waiting.delete(host);
    }
    if (!waiting.size) break;
    if (Date.now() > deadline) {
      throw new CommandError(`no answer from ${[...waiting.keys()].join(', ')} within ${Math.round(timeoutMs(ctx) / 1000)} s; ` +
        'check that their daemons run and that this daemon reaches them (marsadm view shows each peer\'s link)');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  ctx.out.write('every peer answered\n');
  return 0;
}

interface Ping {
  readonly nonce: string;
  readonly stamp: number;
}

/**
 * Ask host's daemon for an answer now rather than at its next heartbeat: write a nonce to
 * `actual-<me>/ping-<host>`, which daemon.ts answerPing echoes in `actual-<host>/pong-<me>`.
 * While an echo is still due (a handover on this host waits for it, primary.ts pingOld)
 * its nonce is stamped anew instead of replaced, so that handover still gets its echo.
 */
async function ping(tree: MarsTree, host: string): Promise<Ping> {
  const pong = await tree.getValue(pongKey(host, tree.host));
  const written = await tree.update(pingKey(tree.host, host),
    (current) => (current?.value && current.value !== pong ? current.value : randomBytes(8).toString('hex')));
  return { nonce: written!.value!, stamp: written!.stamp };
}

/**
 * The peer has answered once it echoed our ping, or published a heartbeat newer than our
 * start (a daemon that answers no pings).
 */
async function answered(tree: MarsTree, host: string, ping: Ping, started: number): Promise<boolean> {
  const pong = await tree.get(pongKey(host, tree.host));
  if (pong && pong.value === ping.nonce && pong.stamp > ping.stamp) return true;
  const time = await tree.get(hostActualKey(host, 'time'));
  return time !== undefined && time.value !== null && time.stamp > started;
}

export async function updateCluster(ctx: CommandContext): Promise<number> {
  const tree = await openTree(ctx);
  const log = (line: string): void => void (ctx.options['verbose'] ? ctx.err.write(`${line}\n`) : undefined);
  const factory = transportFromOptions(ctx, tree, log);
  const failed: string[] = [];
  await Promise.all([...(await peers(tree))].map(async ([host, address]) => {
    const link = new PeerLink({ tree, peer: { host, address }, factory, log });
    link.start();
    const up = await link.waitConnected(timeoutMs(ctx));
    await link.merged();
    link.stop();
    if (!up) failed.push(`${host} (${link.error || 'timeout'})`);
  }));
  if (failed.length) throw new CommandError(`could not reach ${failed.join(', ')}; the rest of the tree is up to date`);
  ctx.out.write('tree updated from every peer\n');
  return 0;
}
