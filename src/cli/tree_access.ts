/**
 * How verbs reach the tree: open it from the global options (--root, --host), check the
 * daemon is alive, and wait for its indicators with --timeout.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { actualKey, hostActualKey, sizeKey } from '../tree/keys.js';
import { MarsTree } from '../tree/mars_tree.js';
import { resolveTreeLocation } from '../tree/tree_location.js';
import type { LamportStamp } from '../tree/types.js';
import type { CommandContext } from './command.js';
import { CommandError } from './errors.js';
import { timeoutMs } from './options.js';

export { DEFAULT_TIMEOUT_S, timeoutMs } from './options.js';

/** A daemon whose actual-<host>/time is older than this is not running, ms. */
export const ALIVE_WINDOW_MS = 10_000;

export async function openTree(ctx: CommandContext, options: { create?: boolean; requireCluster?: boolean } = {}): Promise<MarsTree> {
  const location = resolveTreeLocation({ root: ctx.options['root'] as string | undefined, host: ctx.options['host'] as string | undefined });
  try {
    return await MarsTree.open({ ...location, create: options.create ?? false, requireCluster: options.requireCluster ?? true, sweepStaleTmp: false });
  } catch (error) {
    const e = error as Error & { code?: string };
    if (e.code === 'EPHOBOS_NOT_CLUSTER' || e.code === 'ENOENT') {
      throw new CommandError(`${location.root} is not a Phobos cluster tree; create one with \`marsadm create-cluster\` ` +
        '(or pass --root / set MARS_ROOT)', 1, { cause: error });
    }
    throw new CommandError(e.message, 1, { cause: error });
  }
}

/** Is the daemon on host publishing its liveness? */
export async function daemonAlive(tree: MarsTree, host = tree.host): Promise<boolean> {
  if ((await tree.getValue(hostActualKey(host, 'alive'))) !== '1') return false;
  const time = await tree.get(hostActualKey(host, 'time'));
  return time !== undefined && Date.now() - time.stamp / 1000 < ALIVE_WINDOW_MS;
}

/**
 * Wait until check() is true. Fails with a message naming what was awaited, the host,
 * and (if the daemon is not running) how to start it. The switch already written stays:
 * the command is safe to retry.
 */
export async function waitFor(ctx: CommandContext, tree: MarsTree, what: string, check: () => Promise<boolean>,
  refused?: () => Promise<string | null>): Promise<void> {
  const limit = timeoutMs(ctx);
  const started = Date.now();
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    if (await check()) return;
    const refusal = await refused?.();
    if (refusal) throw new CommandError(refusal);
    const waited = Date.now() - started;
    if (waited >= limit) {
      const alive = await daemonAlive(tree);
      throw new CommandError(`timed out after ${Math.round(waited / 1000)} s waiting for ${what} on ${tree.host}` +
        (alive ? '; see the daemon log (journalctl -u phobos-daemon) and retry, or raise --timeout'
          : `; the daemon on ${tree.host} is not running: start it (systemctl start phobos-daemon, or marsadm daemon) and retry`));
    }
    if (!(await daemonAlive(tree)) && waited >= Math.min(limit, 3000)) {
      throw new CommandError(`the daemon on ${tree.host} is not running, so ${what} cannot happen; ` +
        'start it (systemctl start phobos-daemon, or marsadm daemon) and retry: the switch is already set');
    }
    await sleep(delay);
  }
}

/**
 * For waitFor's `refused`: the reason the daemon on `host` gave for not starting `res`'s
 * device (a negative replay-code, resource_controller.ts), if it gave one after `since`, the
 * stamp of the switch that asked. A refusal is final for this request (the daemon retries
 * only when asked again or after a minute), so waiting out --timeout would only hide it.
 */
export function daemonRefusal(tree: MarsTree, res: string, host: string, since: LamportStamp): () => Promise<string | null> {
  return async () => {
    const code = await tree.get(actualKey(res, host, 'replay-code'));
    if (!code || code.stamp <= since || !code.value?.startsWith('-')) return null;
    const reason = code.value.slice(code.value.indexOf(',') + 1);
    return `${host} could not serve ${res}: ${reason}`;
  };
}

/** Resources that exist: listed by the tree and not deleted (their size is set). */
export async function liveResources(tree: MarsTree): Promise<string[]> {
  const all = await tree.listResources();
  const live = await Promise.all(all.map(async (r) => ((await tree.getValue(sizeKey(r))) !== undefined ? r : null)));
  return live.filter((r): r is string => r !== null);
}
