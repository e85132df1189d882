/**
 * Every marsadm verb, one file each under commands/. Add a verb here and in docs.
 */
import type { CommandSpec } from './command.js';
import type { OptionSpec } from './options.js';
import { SSH_SETUP_OPTIONS, TRANSPORT_OPTIONS } from './transport_options.js';

const RES = 'RES';

/** A verb whose run function lives in commands/<file>.ts as `run`. */
function verb(name: string, synopsis: string, summary: string, group: CommandSpec['group'], minArgs: number, maxArgs: number,
  load: CommandSpec['load'], extra: { details?: string; options?: readonly OptionSpec[]; changesState?: boolean } = {}): CommandSpec {
  return { name, synopsis, summary, group, minArgs, maxArgs, load, changesState: STATE_CHANGING.has(name), ...extra };
}

const SWITCH_SUMMARIES: Readonly<Record<string, string>> = {
  attach: 'open the resource\'s disk on this host (and serve the device if primary)',
  detach: 'stop serving and close the disk on this host',
  up: 'attach, fetch and replay (attach + resume-fetch + resume-replay)',
  down: 'the reverse of up',
  'pause-sync': 'stop a full sync to this host', 'resume-sync': 'allow a full sync to this host',
  'pause-fetch': 'stop fetching logs from peers', 'resume-fetch': 'fetch logs from peers again',
  'pause-replay': 'stop replaying logs into the disk', 'resume-replay': 'replay logs into the disk again',
  disconnect: 'stop fetching from peers (before primary --force during an outage)', connect: 'fetch from peers again',
};

const SCOPED = ['pause-sync', 'resume-sync', 'pause-fetch', 'resume-fetch', 'pause-replay', 'resume-replay'];

/**
 * Verbs that change the tree, a disk or a role: hook-pre-/hook-post-<verb> run around
 * them (hooks.ts). A verb can also pass `changesState` to verb().
 */
const STATE_CHANGING: ReadonlySet<string> = new Set([
  'create-cluster', 'join-cluster', 'admit-member', 'leave-cluster', 'update-cluster',
  'create-resource', 'delete-resource', 'join-resource', 'leave-resource', 'primary', 'secondary', 'invalidate',
  'log-rotate', 'cron', 'log-delete-all', 'set-link',
  // Not systemd-trigger-extern: systemd's path units run it, no operator.
  'set-systemd-unit', 'set-systemd-want', 'systemd-trigger',
  ...Object.keys(SWITCH_SUMMARIES), ...SCOPED.flatMap((name) => [`${name}-local`, `${name}-global`]),
]);

const switchVerbs: CommandSpec[] = [
  ...Object.keys(SWITCH_SUMMARIES).map((name) =>
    verb(name, RES, SWITCH_SUMMARIES[name]!, 'resource', 1, 1, async () => (await import('./commands/switches.js')).switchVerb(name))),
  ...SCOPED.flatMap((name) => (['local', 'global'] as const).map((scope) =>
    verb(`${name}-${scope}`, RES, scope === 'local' ? `${name} on this host (the same as ${name})` : `${name} on every member of RES`,
      'resource', 1, 1, async () => (await import('./commands/switches.js')).switchVerb(`${name}-${scope}`)))),
];

const MACRO_HELP: Readonly<Record<string, string>> = {
  'view-role': 'Primary, Secondary or None on this host', 'view-state': 'disk and replication state on this host',
  'view-diskstate': 'UpToDate, Inconsistent (sync not done), Outdated (consistent but old: Orphan), Detached or Failed',
  'view-replstate': 'Logging, Replaying, PausedReplay, Detached, DefectiveLog, VersionMismatch, SplitBrain, Orphan or Emergency',
  'view-flags': 'switches: S sync, F fetch, A attach, R replay', 'view-is-primary': '1 if this host is primary',
  'view-get-primary': 'the designated primary, or (none)', 'view-is-consistent': '1 if this host\'s disk is consistent',
  'view-device-opened': 'openers of the device on this host', 'view-is-split-brain': '1 if the version histories of RES\'s members diverge',
  'view-sync-rest': 'bytes of the disk not yet synced here', 'view-replay-rest': 'bytes of log not yet applied here',
  'view-fetch-rest': 'bytes of log not yet fetched here',
};

/** view-{sync,fetch,replay}-{percent,rate,remain}: how far each flow is and how fast it goes. */
const FLOW_HELP: Readonly<Record<string, string>> = {
  sync: 'the full sync to this host', fetch: 'fetching the current log', replay: 'replaying the fetched log',
};
const SAMPLE_OPTION: OptionSpec = { name: 'sample-ms', kind: 'integer', value: 'MS', help: 'measure the rate over this long (default 1000)' };
const flowMacros: CommandSpec[] = Object.entries(FLOW_HELP).flatMap(([flow, what]) => [
  [`view-${flow}-percent`, `percent of ${what} done (done / (done + rest), rounded down)`],
  [`view-${flow}-rate`, `bytes/s of ${what}, from two samples --sample-ms apart`],
  [`view-${flow}-remain`, `seconds until ${what} is done at that rate (-1: no progress)`],
]).map(([name, summary]) => verb(name!, '[RES]', summary!, 'views', 0, 1,
  async () => (await import('./commands/view.js')).macro(name!), name!.endsWith('-percent') ? {} : { options: [SAMPLE_OPTION] }));

const macros: CommandSpec[] = [
  ...Object.keys(MACRO_HELP).map((name) =>
    verb(name, '[RES]', MACRO_HELP[name]!, 'views', 0, 1, async () => (await import('./commands/view.js')).macro(name))),
  ...flowMacros,
];

/** The systemd verbs (commands/systemd.ts, docs/systemd.md). */
const UNIT_DIR_OPTIONS: readonly OptionSpec[] = [
  { name: 'unit-dir', kind: 'string', value: 'DIR', help: 'where generated units go (env PHOBOS_UNIT_DIR; default /run/systemd/system)' },
  { name: 'script-dir', kind: 'string', value: 'DIR', help: 'where generated .script units go (env PHOBOS_SCRIPT_DIR; default /var/lib/phobos/systemd-scripts)' },
];
const systemd = async () => import('./commands/systemd.js');
const systemdVerbs: CommandSpec[] = [
  verb('set-systemd-unit', `${RES} START|KEYWORD [STOP]`, 'declare the unit stack of RES (top, bottom) and generate its units here', 'resource', 2, 3,
    async () => (await systemd()).setSystemdUnit, {
      details: 'START is the unit at the top of the stack (started where RES runs), STOP the bottom (default: START).\n' +
        'A KEYWORD (capitals, e.g. DEFAULT) selects the templates marked `# KEYWORD_START` / `# KEYWORD_STOP`.\n' +
        'A unit must match a template or be installed (--force skips that check); generation and\n' +
        '`systemd-analyze verify` run before the tree changes. An empty START (\'\') removes the stack.\n' +
        'The first time, systemd-want is set to the current primary. See docs/systemd.md.',
      options: UNIT_DIR_OPTIONS,
    }),
  verb('get-systemd-unit', RES, 'show the start and stop unit of RES (--json: also what they resolve to here)', 'resource', 1, 1,
    async () => (await systemd()).getSystemdUnit),
  verb('set-systemd-want', `${RES} HOST|(none)`, 'where the stack of RES should run; (none) stops it everywhere (maintenance)', 'resource', 2, 2,
    async () => (await systemd()).setSystemdWant, {
      details: 'The path units start the stack on HOST once the device is exported there, and stop it elsewhere.\n' +
        '`marsadm primary` sets it too. Resume after (none) with `marsadm set-systemd-want RES HOST`.',
    }),
  verb('get-systemd-want', RES, 'show where the stack of RES should run (--json: with each host\'s last start/stop)', 'resource', 1, 1,
    async () => (await systemd()).getSystemdWant),
  verb('systemd-trigger', '[RES]', 'regenerate the units of RES (or of all) here; with RES, also re-run its trigger', 'resource', 0, 1,
    async () => (await systemd()).systemdTrigger, { options: UNIT_DIR_OPTIONS }),
  verb('systemd-trigger-extern', '[RES]', 'what the path units run: regenerate, then start or stop the stack of RES here', 'expert', 0, 1,
    async () => (await systemd()).systemdTriggerExtern, {
      details: 'Starts the start unit(s) if systemd-want is this host and the device is exported here\n' +
        '(actual-<host>/is-primary = 1), stops the stop unit(s) otherwise, and records the outcome in\n' +
        'resource-RES/actual-<host>/systemd-status as <start|stop>,<exit code>,<want>[,<detail>].\n' +
        'Without RES it only regenerates the units of every resource.',
      options: UNIT_DIR_OPTIONS,
    }),
];

export const COMMANDS: readonly CommandSpec[] = [
  verb('create-cluster', '[ADDRESS]', 'start a new cluster with this host as its first member', 'cluster', 0, 1,
    async () => (await import('./commands/create_cluster.js')).run, {
      details: 'ADDRESS is where peers reach this host over SSH (ips/ip-<host>; default: the host name).',
    }),
  verb('daemon', '', 'run the Phobos daemon in the foreground (for systemd and tests)', 'cluster', 0, 0,
    async () => (await import('./commands/daemon.js')).run, {
      details: 'Acts on the todo-<host>/* switches and shared keys of the tree and publishes actual-<host>/*.\n' +
        'The primary\'s device: with the kernel engine phobos.ko\'s /dev/phobos<N>, linked at /dev/mars/<res>;\n' +
        'with the userspace engine an NBD export at <run-dir>/<res>.nbd (use nbd-client -unix, qemu-io, nbdcopy).\n' +
        'Stops cleanly on SIGTERM: in-flight requests finish, writeback drains, logs are sealed.',
      options: [{ name: 'run-dir', kind: 'string', value: 'DIR', help: 'where NBD sockets live (env PHOBOS_RUN_DIR; default /run/phobos)' },
        { name: 'engine', kind: 'string', value: 'auto|kernel|user',
          help: 'who logs the primary\'s writes: phobos.ko or the daemon (env PHOBOS_ENGINE; default auto: kernel when /dev/phobos-ctl answers)' },
        ...TRANSPORT_OPTIONS],
    }),
  verb('peer-serve', '', 'serve one peer on stdin/stdout (run by sshd for the cluster key, or by the pipe transport)', 'expert', 0, 0,
    async () => (await import('./commands/peer_serve.js')).run, {
      details: 'Reads this host\'s tree, logs and disk for one peer daemon; never writes. See docs/peer-protocol.md.',
      options: [{ name: 'run-dir', kind: 'string', value: 'DIR', help: 'the daemon\'s NBD socket dir (env PHOBOS_RUN_DIR; default /run/phobos)' }],
    }),
  verb('join-cluster', 'PEER [ADDRESS]', 'join the cluster PEER belongs to (uses your own ssh access to PEER once)', 'cluster', 1, 2,
    async () => (await import('./commands/join_cluster.js')).joinCluster, {
      details: 'Runs `marsadm admit-member` on PEER (OpenSSH ssh, or the pipe transport with --pipe-root), which\n' +
        'records this host in PEER\'s tree and sends back the cluster uuid, tree and cluster key.\n' +
        'ADDRESS is how peers reach this host (default: its host name). Restart the daemon afterwards.',
      options: [...TRANSPORT_OPTIONS, ...SSH_SETUP_OPTIONS],
    }),
  verb('admit-member', 'HOST ADDRESS [HOSTKEY]', 'the far half of join-cluster: record HOST, print the cluster bundle', 'expert', 2, 4,
    async () => (await import('./commands/join_cluster.js')).admitMember, {
      options: [...TRANSPORT_OPTIONS, ...SSH_SETUP_OPTIONS,
        { name: 'member-ssh-port', kind: 'string', value: 'PORT', help: 'the joining host\'s sshd port (defaults-<host>/ssh-port)' }],
    }),
  verb('leave-cluster', '', 'stop being a member (leave every resource first)', 'cluster', 0, 0,
    async () => (await import('./commands/join_cluster.js')).leaveCluster),
  verb('wait-cluster', '', 'wait until every peer\'s daemon has answered a ping (or published a newer heartbeat)', 'cluster', 0, 0,
    async () => (await import('./commands/cluster_sync.js')).waitCluster),
  verb('update-cluster', '', 'pull the whole tree from every peer now', 'cluster', 0, 0,
    async () => (await import('./commands/cluster_sync.js')).updateCluster, { options: TRANSPORT_OPTIONS }),
  verb('join-resource', `${RES} DISK`, 'become a secondary of RES on DISK: fast full sync from the primary, then log replay', 'resource', 2, 2,
    async () => (await import('./commands/join_resource.js')).joinResource, {
      details: 'Waits until the sync is done (a progress bar on a terminal; --json prints progress objects).\n' +
        '--timeout counts from the last progress. Safe to rerun: it then just waits.',
    }),
  verb('leave-resource', RES, 'stop being a member of RES (secondary only); the disk keeps its contents', 'resource', 1, 1,
    async () => (await import('./commands/join_resource.js')).leaveResource),
  verb('create-resource', `${RES} DISK [SIZE]`, 'create a resource on DISK (block device, or regular file in test mode); this host becomes primary', 'resource', 2, 3,
    async () => (await import('./commands/create_resource.js')).run, {
      details: 'SIZE takes k/M/G/T suffixes (binary). A regular file is grown to SIZE (sparse).\nWaits until the daemon serves the device.',
    }),
  verb('delete-resource', RES, 'stop serving, detach, and remove the resource and its logs', 'resource', 1, 1,
    async () => (await import('./commands/delete_resource.js')).run),
  ...switchVerbs,
  verb('secondary', RES, 'no host is primary any more; the device stops being served', 'resource', 1, 1,
    async () => (await import('./commands/secondary.js')).run),
  verb('primary', RES, 'make this host primary of RES: a planned handover, or with --force a failover', 'resource', 1, 1,
    async () => (await import('./commands/primary.js')).run, {
      details: 'Planned (no secondary before it): phases check, wait-close, leave, catch-up, become; a failure\n' +
        'after check gives the old primary its role back. Refused if the current primary cannot be reached.\n' +
        '--force (after `marsadm disconnect RES`): becomes primary with the data this host has; the old\n' +
        'primary stops serving when it hears of it. --dry-run prints the phases. See docs/handover.md.',
      options: [{ name: 'ignore-sync', kind: 'boolean', help: 'hand over even while a sync runs on another member' }],
    }),
  verb('invalidate', RES, 'discard this host\'s version of RES: fast full sync from the primary, then replay', 'resource', 1, 1,
    async () => (await import('./commands/invalidate.js')).run, {
      details: 'The repair for the losing side of a split brain, or a replica stuck on a DefectiveLog.\n' +
        'Waits for the sync like join-resource (progress bar; --json progress objects).',
    }),
  verb('wait-resource', `${RES} [COND]`, 'wait until this host\'s daemon reports COND for RES (default attach-on)', 'resource', 1, 2,
    async () => (await import('./commands/wait.js')).waitResource, {
      details: 'COND is attach, fetch, replay or sync, with -on (the default) or -off: the indicator\n' +
        'actual-<host>/is-attached, is-copying, is-replaying or is-syncing of RES reaching 1 or 0.\n' +
        'Gives up after --timeout seconds (default 60) with a line naming what it waited for.',
    }),
  verb('wait-umount', RES, 'wait until no member has the device of RES open (open-count 0 everywhere)', 'resource', 1, 1,
    async () => (await import('./commands/wait.js')).waitUmount, {
      details: 'Reads actual-<host>/open-count of every member of RES in this host\'s tree (a peer\'s count is\n' +
        'as recent as its last exchange). Gives up after --timeout seconds (default 60).',
    }),
  verb('log-rotate', RES, 'start the next transaction log on the primary', 'logs', 1, 1,
    async () => (await import('./commands/log_rotate.js')).run),
  verb('cron', '', 'housekeeping: rotate the primary\'s big or old logs, delete logs every member has replayed', 'logs', 0, 0,
    async () => (await import('./commands/cron.js')).cron, {
      details: 'Run it every few minutes (a systemd timer). Deletion is cluster-wide and all-or-nothing:\n' +
        'a log goes only when every member has replayed past it.',
      options: [
        { name: 'rotate-bytes', kind: 'integer', value: 'BYTES', help: 'rotate a log larger than this (default 1 GiB)' },
        { name: 'rotate-age', kind: 'integer', value: 'SECONDS', help: 'rotate a log older than this (default 86400)' },
      ],
    }),
  verb('log-delete-all', RES, 'delete, on every member, the logs of RES every member has replayed', 'logs', 1, 1,
    async () => (await import('./commands/cron.js')).logDeleteAll),
  verb('view', '[RES]', 'show resources and each host\'s role, state, device and log', 'views', 0, 1,
    async () => (await import('./commands/view.js')).run),
  ...macros,
  ...systemdVerbs,
  verb('set-link', 'KEY VALUE', 'set a tree key (validated against the key table, docs/tree.md)', 'expert', 2, 2,
    async () => (await import('./commands/links.js')).setLink),
  verb('get-link', 'KEY', 'print a tree key\'s value (--json: with its Lamport stamp)', 'expert', 1, 1,
    async () => (await import('./commands/links.js')).getLink),
  verb('cat', 'FILE', 'print a regular file of the tree', 'expert', 1, 1,
    async () => (await import('./commands/cat.js')).run),
  {
    name: 'log-check',
    synopsis: 'FILE',
    summary: 'verify a transaction log: records, bytes, compression, first bad offset and why',
    details:
      'Reads every record, checks header and payload crc32c and the sequence, and applies the\n' +
      'torn-tail rule of docs/log-format.md at the first damaged record.\n' +
      'Exit status: 0 the log is clean; 3 torn tail (valid up to the reported offset, the\n' +
      'normal result of a crash during an append); 1 corruption, or not a Phobos log.\n' +
      'Compressed records need liblz4.so.1 / libzstd.so.1 on this host.',
    options: [
      { name: 'growing', kind: 'boolean', help: 'the log may still grow: a record cut by the end of the file is not a torn tail' },
    ],
    minArgs: 1,
    maxArgs: 1,
    group: 'logs',
    load: async () => (await import('./commands/log_check.js')).run,
  },
  {
    name: 'log-cat',
    synopsis: 'FILE',
    summary: 'print one line per record of a transaction log',
    details:
      'Each line: seq, log offset, type, device range, codec, stored bytes, payload crc32c,\n' +
      'Lamport stamp and synced position. With --json, one JSON object per line.\n' +
      'Stops at the first damaged record with the same message and exit status as log-check.',
    options: [
      { name: 'from', kind: 'integer', value: 'OFFSET', help: 'start at this log offset (a record boundary)' },
    ],
    minArgs: 1,
    maxArgs: 1,
    group: 'logs',
    load: async () => (await import('./commands/log_cat.js')).run,
  },
  {
    name: 'help',
    synopsis: '[COMMAND]',
    summary: 'list the commands, or show one command\'s help',
    minArgs: 0,
    maxArgs: 1,
    group: 'help',
    load: async () => (await import('./commands/help.js')).run,
  },
];

export function findCommand(name: string | undefined): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}
