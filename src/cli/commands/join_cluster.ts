/**
 * marsadm join-cluster PEER [ADDRESS]: make this host a member of PEER's cluster.
 * marsadm admit-member HOST ADDRESS [HOSTKEY...]: the half that runs on PEER.
 * marsadm leave-cluster: stop being a member.
 *
 * Joining uses the operator's own access to PEER once (OpenSSH `ssh`, or the local pipe
 * transport's root when --pipe-root is given): `admit-member` on PEER records this host
 * (address, sshd host key) in PEER's tree and prints the cluster bundle (uuid, tree,
 * cluster key); this host installs it. From then on daemons talk with the cluster key.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  dataKey, hostKeyKey, ipKey, MarsTree, resolveTreeLocation, UUID_KEY, type TreeEntry,
} from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { liveResources, openTree } from '../tree_access.js';
import { option, sshDir } from '../transport.js';

/** What admit-member prints (one JSON line). */
interface ClusterBundle {
  readonly uuid: string;
  readonly host: string;
  readonly entries: readonly [string, string | null, number][];
  readonly clusterKey: { readonly privateKey: string; readonly publicKey: string } | null;
}

export async function admitMember(ctx: CommandContext): Promise<number> {
  const [host, address, ...keyWords] = ctx.args as string[];
  const tree = await openTree(ctx);
  if (host === tree.host) throw new CommandError(`admit-member: ${host} is this host; run join-cluster on the new host`);
  // Written here on the joiner's behalf: the joiner cannot reach our tree before it is a member.
  await tree.set(ipKey(host!), address!);
  if (keyWords.length) await tree.set(hostKeyKey(host!), keyWords.join(' '));
  const memberPort = ctx.options['member-ssh-port'] as string | undefined;
  if (memberPort) await tree.set(sshPortKey(host!), memberPort);
  let clusterKey: ClusterBundle['clusterKey'] = null;
  if (!option(ctx, 'pipe-root', 'PHOBOS_PIPE_ROOT')) {
    // The first join of a cluster sets up SSH here: the cluster key, and this host's
    // authorized_keys entry and host key, so the joiner can reach us with the key.
    const keys = await import('../../peer/ssh/keys.js');
    const { privateKeyPath, publicKeyLine } = await keys.ensureClusterKey(sshDir(ctx));
    await authorize(ctx, tree, publicKeyLine);
    await publishSshEndpoint(ctx, tree);
    clusterKey = { privateKey: await readFile(privateKeyPath, 'utf8'), publicKey: publicKeyLine };
  }
  const bundle: ClusterBundle = {
    uuid: (await tree.getValue(UUID_KEY))!,
    host: tree.host,
    entries: (await tree.snapshot()).map((e) => [e.key, e.value, e.stamp]),
    clusterKey,
  };
  ctx.out.write(`${JSON.stringify(bundle)}\n`);
  return 0;
}

export async function joinCluster(ctx: CommandContext): Promise<number> {
  const [peer, addressArg] = ctx.args as [string, string | undefined];
  const location = resolveTreeLocation({ root: ctx.options['root'] as string | undefined, host: ctx.options['host'] as string | undefined });
  const tree = await MarsTree.open({ ...location, create: true, requireCluster: false, sweepStaleTmp: false });
  const address = addressArg ?? (option(ctx, 'pipe-root', 'PHOBOS_PIPE_ROOT') ? '-' : tree.host);
  const existing = await tree.getValue(UUID_KEY);
  const hostKey = await ownHostKey(ctx);
  if (ctx.options['dry-run']) {
    ctx.out.write(`would join the cluster of ${peer} as ${tree.host} (address ${address})\n`);
    return 0;
  }
  const bundle = await fetchBundle(ctx, peer, tree.host, address, hostKey);
  if (existing !== undefined && existing !== bundle.uuid) {
    throw new CommandError(`${tree.root} already belongs to cluster ${existing}, ${peer} to ${bundle.uuid}; ` +
      'leave that cluster first (marsadm leave-cluster), or use another --root');
  }
  const entries: TreeEntry[] = bundle.entries.map(([key, value, stamp]) => ({ key, value, stamp }));
  await tree.merge(entries);
  await tree.set(ipKey(tree.host), address);
  if (bundle.clusterKey) {
    const keys = await import('../../peer/ssh/keys.js');
    await keys.installClusterKey(sshDir(ctx), bundle.clusterKey.privateKey, bundle.clusterKey.publicKey.trim());
    await authorize(ctx, tree, bundle.clusterKey.publicKey.trim());
    await publishSshEndpoint(ctx, tree);
  }
  ctx.out.write(`joined cluster ${bundle.uuid} through ${peer}: ${entries.length} keys received; ` +
    'start (or restart) the daemon to connect to the peers\n');
  return 0;
}

export async function leaveCluster(ctx: CommandContext): Promise<number> {
  const tree = await openTree(ctx);
  const mine: string[] = [];
  for (const res of await liveResources(tree)) if ((await tree.getValue(dataKey(res, tree.host))) !== undefined) mine.push(res);
  if (mine.length && !ctx.options['force']) {
    throw new CommandError(`${tree.host} is still a member of ${mine.join(', ')}; run \`marsadm leave-resource\` for each first`);
  }
  if ((await tree.getValue(ipKey(tree.host))) === undefined) {
    ctx.out.write(`${tree.host} is not a member; nothing to do\n`);
    return 0;
  }
  if (ctx.options['dry-run']) {
    ctx.out.write(`would remove ${tree.host} from the cluster\n`);
    return 0;
  }
  await tree.delete(ipKey(tree.host));
  if ((await tree.getValue(hostKeyKey(tree.host))) !== undefined) await tree.delete(hostKeyKey(tree.host));
  ctx.out.write(`${tree.host} left the cluster; peers stop connecting once they see it\n`);
  return 0;
}

/** This host's sshd key, published so peers can pin it (none with the pipe transport). */
async function ownHostKey(ctx: CommandContext): Promise<string | null> {
  if (option(ctx, 'pipe-root', 'PHOBOS_PIPE_ROOT')) return null;
  const file = option(ctx, 'host-key', 'PHOBOS_HOST_KEY') ?? '/etc/ssh/ssh_host_ed25519_key.pub';
  const text = await readFile(file, 'utf8').catch(() => {
    throw new CommandError(`cannot read this host's sshd key ${file}; install openssh-server, or pass --host-key FILE`);
  });
  return text.trim().split(/\s+/).slice(0, 2).join(' ');
}

/** Run admit-member on the peer: through its root (pipe) or the operator's ssh. */
async function fetchBundle(ctx: CommandContext, peer: string, self: string, address: string, hostKey: string | null): Promise<ClusterBundle> {
  const pipeRoot = option(ctx, 'pipe-root', 'PHOBOS_PIPE_ROOT');
  // Port and host key travel with the request: the peer must reach us before it can
  // read them from our tree.
  const port = option(ctx, 'ssh-port', 'PHOBOS_SSH_PORT');
  const admit = ['admit-member', self, address, ...(hostKey ? hostKey.split(' ') : []),
    ...(port && !pipeRoot ? ['--member-ssh-port', port] : [])];
  let command: string;
  let args: string[];
  if (pipeRoot) {
    command = process.execPath;
    args = [...cliArgs(), ...admit, '--root', pipeRoot.replaceAll('{host}', peer), '--host', peer, '--pipe-root', pipeRoot];
  } else {
    const sshOpts = option(ctx, 'ssh-opts', 'PHOBOS_SSH_OPTS');
    command = 'ssh';
    const remote = option(ctx, 'remote-marsadm', 'PHOBOS_REMOTE_MARSADM') ?? 'marsadm';
    args = [...(sshOpts ? sshOpts.split(/\s+/) : []), peer, ...remote.split(' '), ...admit.map(shellQuote)];
  }
  const { code, stdout, stderr } = await run(command, args);
  if (code !== 0) {
    throw new CommandError(`join-cluster: admit-member on ${peer} failed (exit ${code}): ${stderr.trim().split('\n').pop() ?? ''}`);
  }
  try {
    const bundle = JSON.parse(stdout.trim().split('\n').pop() ?? '') as ClusterBundle;
    if (typeof bundle.uuid !== 'string' || !Array.isArray(bundle.entries)) throw new Error('bad shape');
    return bundle;
  } catch {
    throw new CommandError(`join-cluster: ${peer} answered something that is not a cluster bundle; is marsadm on ${peer} the same version?`);
  }
}

/** Let the cluster key run `marsadm peer-serve` as this host, and nothing else. */
async function authorize(ctx: CommandContext, tree: MarsTree, publicKeyLine: string): Promise<void> {
  const keys = await import('../../peer/ssh/keys.js');
  const file = option(ctx, 'authorized-keys', 'PHOBOS_AUTHORIZED_KEYS') ?? '/root/.ssh/authorized_keys';
  const runDir = option(ctx, 'run-dir', 'PHOBOS_RUN_DIR');
  const forced = `${option(ctx, 'marsadm', 'PHOBOS_MARSADM') ?? thisMarsadm()} --root ${tree.root} --host ${tree.host} peer-serve` +
    (runDir ? ` --run-dir ${runDir}` : '');
  const comment = `phobos-${await tree.getValue(UUID_KEY)}`;
  await keys.installAuthorizedKey(file, keys.authorizedKeysLine(publicKeyLine, forced, comment), comment);
}

/** Publish this host's sshd key (pinned by peers) and port. */
async function publishSshEndpoint(ctx: CommandContext, tree: MarsTree): Promise<void> {
  const hostKey = await ownHostKey(ctx);
  if (hostKey && (await tree.getValue(hostKeyKey(tree.host))) !== hostKey) await tree.set(hostKeyKey(tree.host), hostKey);
  const port = option(ctx, 'ssh-port', 'PHOBOS_SSH_PORT');
  if (port && (await tree.getValue(sshPortKey(tree.host))) !== port) await tree.set(sshPortKey(tree.host), port);
}

/**
 * The absolute command line of this marsadm, for the forced command: sshd runs it with a
 * minimal PATH, and it must be the same installation that set the key up.
 */
function thisMarsadm(): string {
  return [process.execPath, ...cliArgs()].map(shellQuote).join(' ');
}

function sshPortKey(host: string): string {
  return `defaults-${host}/ssh-port`;
}

function cliArgs(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const js = path.join(here, '..', 'main.js');
  return existsSync(js) ? [js] : ['--import', 'tsx', path.join(here, '..', 'main.ts')];
}

function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:@=+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

function run(command: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => reject(new CommandError(`cannot run ${command}: ${e.message}`)));
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}
