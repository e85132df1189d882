/** Options that choose how peers are reached (src/cli/transport.ts); kept light for `marsadm help`. */
import type { OptionSpec } from './options.js';

export const DEFAULT_SSH_DIR = '/etc/phobos/ssh';

export const TRANSPORT_OPTIONS: readonly OptionSpec[] = [
  { name: 'pipe-root', kind: 'string', value: 'TEMPLATE', help: 'pipe transport: peers\' tree roots, {host} = peer name (env PHOBOS_PIPE_ROOT)' },
  { name: 'pipe-run-dir', kind: 'string', value: 'TEMPLATE', help: 'pipe transport: peers\' run dirs (env PHOBOS_PIPE_RUN_DIR)' },
  { name: 'ssh-dir', kind: 'string', value: 'DIR', help: `cluster key and known_hosts (env PHOBOS_SSH_DIR; default ${DEFAULT_SSH_DIR})` },
];

/** Where join-cluster / admit-member set up SSH on a host. */
export const SSH_SETUP_OPTIONS: readonly OptionSpec[] = [
  { name: 'ssh-port', kind: 'string', value: 'PORT', help: 'this host\'s sshd port, published to peers (env PHOBOS_SSH_PORT; default 22)' },
  { name: 'ssh-opts', kind: 'string', value: 'OPTS', help: 'extra options for the one ssh call of join-cluster (env PHOBOS_SSH_OPTS)' },
  { name: 'remote-marsadm', kind: 'string', value: 'CMD', help: 'marsadm on the peer, with any options, for that ssh call (env PHOBOS_REMOTE_MARSADM; default marsadm)' },
  { name: 'host-key', kind: 'string', value: 'FILE', help: 'this host\'s sshd public key (env PHOBOS_HOST_KEY; default /etc/ssh/ssh_host_ed25519_key.pub)' },
  { name: 'authorized-keys', kind: 'string', value: 'FILE', help: 'where the cluster key is authorized (env PHOBOS_AUTHORIZED_KEYS; default /root/.ssh/authorized_keys)' },
  { name: 'run-dir', kind: 'string', value: 'DIR', help: 'the daemon\'s run dir, passed to peer-serve (env PHOBOS_RUN_DIR)' },
];
