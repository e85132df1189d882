/**
 * How the daemon (and join-cluster) reach peers, from the options:
 *  - `--pipe-root TEMPLATE` (env PHOBOS_PIPE_ROOT): the pipe transport; `{host}` in the
 *    template is replaced by the peer's name, e.g. `/tmp/demo/{host}/mars`, and
 *    `--pipe-run-dir TEMPLATE` (env PHOBOS_PIPE_RUN_DIR) says where its NBD sockets are;
 *  - otherwise SSH with the cluster key in `--ssh-dir` (env PHOBOS_SSH_DIR, default
 *    /etc/phobos/ssh), the peer's pinned host key from `ips/hostkey-<host>` and its port
 *    from `defaults-<host>/ssh-port` (default 22).
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { pipeTransportFactory, type TransportFactory } from '../peer/index.js';
import { hostKeyKey, type MarsTree } from '../tree/index.js';
import type { CommandContext } from './command.js';
import { DEFAULT_SSH_DIR } from './transport_options.js';

export function option(ctx: CommandContext, name: string, env: string): string | undefined {
  return (ctx.options[name] as string | undefined) ?? process.env[env] ?? undefined;
}

export function sshDir(ctx: CommandContext): string {
  return option(ctx, 'ssh-dir', 'PHOBOS_SSH_DIR') ?? DEFAULT_SSH_DIR;
}

/** The transport the options ask for. */
export function transportFromOptions(ctx: CommandContext, tree: MarsTree, log: (line: string) => void): TransportFactory {
  const pipeRoot = option(ctx, 'pipe-root', 'PHOBOS_PIPE_ROOT');
  if (pipeRoot) {
    const runDir = option(ctx, 'pipe-run-dir', 'PHOBOS_PIPE_RUN_DIR') ?? '/run/phobos';
    return pipeTransportFactory({
      rootFor: (host) => pipeRoot.replaceAll('{host}', host),
      runDirFor: (host) => runDir.replaceAll('{host}', host),
      cutMarkerFor: (peer) => path.join(runDir.replaceAll('{host}', tree.host), `cut-${peer}`),
      log,
    });
  }
  const dir = sshDir(ctx);
  const keyPath = path.join(dir, 'cluster_ed25519');
  if (!existsSync(keyPath)) {
    // Normal on a new cluster's first host: admit-member creates the key when the first
    // peer joins, and each connection attempt looks again.
    log(`no cluster key at ${keyPath} yet: peers are reached once a host joins (marsadm join-cluster), or pass --ssh-dir`);
  }
  return async (peer) => {
    if (!existsSync(keyPath)) {
      throw new Error(`no cluster key at ${keyPath}; join the cluster (marsadm join-cluster) or pass the daemon --ssh-dir`);
    }
    const { sshTransportFactory } = await import('../peer/ssh/ssh_transport.js');
    const { parsePublicKeyLine } = await import('../peer/ssh/keys.js');
    const line = await tree.getValue(hostKeyKey(peer.host));
    const port = Number((await tree.getValue(`defaults-${peer.host}/ssh-port`)) ?? 22);
    return sshTransportFactory({
      privateKeyPath: keyPath,
      hostKeyFor: () => (line ? parsePublicKeyLine(line).blob : undefined),
      portFor: () => port,
      // The peer's authorized_keys is the one of the account marsadm runs as (root in
      // production, whoever runs the demo otherwise).
      user: os.userInfo().username,
      log,
    })(peer);
  };
}
