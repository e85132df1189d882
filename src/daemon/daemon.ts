/**
 * The Phobos daemon (`marsadm daemon`): runs in the foreground under systemd or a test.
 * It watches the tree, reconciles every resource that has a disk on this host, and
 * publishes liveness (`actual-<host>/alive`, `actual-<host>/time`).
 *
 * Reconcile passes never overlap: a change during a pass schedules exactly one more. A
 * pass reconciles the resources whose keys changed (TreeState, kept from the watcher's
 * events); every FULL_PASS_MS, and when something global changed, it reconciles all.
 * SIGTERM (stop()) finishes the current pass, then stops serving every resource (in-flight
 * requests complete, writeback drains, logs are sealed) and marks the host not alive.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';

import {
  actualKey, dataKey, formatStamp, hostActualKey, MarsTree, pongKey, primaryKey, replayKey, sizeKey, todoKey, TreeWatcher,
  UUID_KEY, type TreeChange,
} from '../tree/index.js';
import { acquireFileLock, KernelEngine, LockTimeoutError } from '../dataplane/index.js';
import { PeerManager } from '../peer/index.js';
import { caughtUp, sealedByUs } from './history.js';
import { TreeState, type Values } from './tree_state.js';
import { DEFAULT_THRESHOLDS, parseThresholds, SpaceMonitor } from './space.js';
import { ResourceController, seqOf } from './resource_controller.js';
import type { DaemonOptions, Desired } from './types.js';

/**
 * A pass over every resource at least this often: a safety net only. Everything a
 * resource waits for is a tree change (a pass of that resource) or a timer of its
 * controller (a failed start's retry, a device still open). At 1000 resources a full pass
 * costs ~0.7 s of CPU on a slow machine: every 30 s, as it was, that alone was 2.3 % of a
 * core on an idle secondary (the target for everything is 2 %).
 */
const FULL_PASS_MS = 300_000;
/**
 * The watcher's full rescan: the safety net for inotify queue overflow, the only way an
 * event is lost (a directory is watched before it is listed). A walk of 35k links costs
 * ~140 ms of CPU, 100 ms of it the syscalls; every 5 min that is 0.05 % of a core.
 */
const RESCAN_MS = 300_000;
/**
 * How often the daemon publishes `actual-<host>/time`. Every beat is written here and
 * merged on every peer, and each host's daemon and peer-serves see it: on three idle hosts
 * (pipe transport, no resources) beats every 2 s cost ~1.0 % of a core per host of 1.35 %,
 * every 4 s ~0.45 %. A host counts as down once its newest beat is 10 s old
 * (ALIVE_WINDOW_MS), so one beat may come late or not at all without a false alarm.
 * Nothing waits for a beat: wait-cluster and the handover ping the peer's daemon.
 */
const HEARTBEAT_MS = 4000;

export class Daemon {
  private readonly controllers = new Map<string, ResourceController>();
  private readonly state = new TreeState();
  /** Resources whose keys changed since the last pass. */
  private dirty = new Set<string>();
  private fullPassDue = true;
  /**
   * The due full pass is only the periodic one (FULL_PASS_MS): it reconciles every
   * resource but wakes no replica whose inputs are unchanged. A peer coming up, a global
   * key or the emergency level changing make it a waking one.
   */
  private fullPassPeriodic = false;
  private lastFullPass = 0;
  private watcher: TreeWatcher | null = null;
  private peers: PeerManager | null = null;
  private releaseLock: () => void = () => undefined;
  private timers: NodeJS.Timeout[] = [];
  private running: Promise<void> | null = null;
  private again = false;
  private stopping = false;
  private readonly log: (line: string) => void;
  private readonly runDir: string;
  private readonly space: SpaceMonitor;
  private badThresholds = '';

  private constructor(private readonly tree: MarsTree, private readonly opts: DaemonOptions) {
    this.runDir = opts.runDir ?? '/run/phobos';
    const prefix = `phobos-daemon[${tree.host}]`;
    this.log = opts.log ?? ((line) => process.stderr.write(`${new Date().toISOString()} ${prefix}: ${line}\n`));
    this.space = new SpaceMonitor(tree.root, this.log);
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const tree = await MarsTree.open({ root: opts.root, host: opts.host });
    // Two daemons on one tree would serve one log twice and corrupt it.
    const release = await acquireFileLock(path.join(tree.root, '.daemon'), 3000).catch((e: Error) => {
      throw e instanceof LockTimeoutError
        ? new Error(`another daemon already runs on ${tree.root}; stop it first (systemctl stop phobos-daemon)`)
        : e;
    });
    const daemon = new Daemon(tree, opts);
    daemon.releaseLock = release;
    await daemon.clearServingIndicators();
    await daemon.markAlive();
    daemon.watcher = await TreeWatcher.start({
      root: tree.root, rescanMs: RESCAN_MS, onChange: (c) => daemon.onTreeChange(c), onFile: (f) => daemon.onLogFile(f),
    });
    daemon.state.load(daemon.watcher.entries());
    if (opts.transport) {
      daemon.peers = new PeerManager({
        tree, factory: opts.transport, log: daemon.log,
        known: (key) => daemon.state.entry(key),
        // A peer that comes back may be what a waiting replica (or sync) needs: wake them all.
        onState: (_host, up) => {
          if (!up) return;
          daemon.wakingFullPass();
          daemon.schedule();
        },
      });
    }
    daemon.timers.push(setInterval(() => void daemon.tick().catch((e: Error) => daemon.log(`tick: ${e.message}`)),
      opts.reconcileIntervalMs ?? 1000));
    daemon.timers.push(setInterval(() => void daemon.markAlive().catch((e: Error) => daemon.log(`liveness: ${e.message}`)),
      opts.aliveIntervalMs ?? HEARTBEAT_MS));
    daemon.log(`started on ${tree.root}, ${opts.engine ?? 'user'} engine, NBD sockets in ${daemon.runDir}`);
    daemon.schedule();
    await daemon.running;
    return daemon;
  }

  private onTreeChange(change: TreeChange): void {
    const res = this.state.apply(change);
    this.answerPing(change);
    if (!this.matters(change.key)) return;
    if (res === null) this.wakingFullPass();
    else this.dirty.add(res);
    this.schedule();
  }

  /**
   * A log file appeared: `marsadm log-rotate` or `cron` on this primary (the engine follows
   * it, resource_controller.ts followRotation), or a copy a replica started. Log files are
   * not keys, so only this tells the resource at once rather than at the next full pass.
   */
  private onLogFile(file: string): void {
    const res = /^resource-([^/]+)\/log-[0-9]{9}-[^/]+$/.exec(file)?.[1];
    if (res === undefined) return;
    this.dirty.add(res);
    this.schedule();
  }

  /**
   * Once a second: the log area's emergency level (a change concerns every resource), and
   * the periodic full pass. Nothing else: an idle daemon does no work per resource.
   */
  private async tick(): Promise<void> {
    if (this.stopping) return;
    if (await this.sampleSpace()) this.wakingFullPass();
    if (!this.fullPassDue && Date.now() - this.lastFullPass >= FULL_PASS_MS) {
      this.fullPassDue = true;
      this.fullPassPeriodic = true;
    }
    if (this.fullPassDue || this.dirty.size > 0) this.schedule();
  }

  private wakingFullPass(): void {
    this.fullPassDue = true;
    this.fullPassPeriodic = false;
  }

  /** Run a reconcile pass now, or one more after the current one. */
  schedule(): void {
    if (this.stopping) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.reconcileAll()
      .catch((e: Error) => this.log(`reconcile failed: ${e.message}`))
      .finally(() => {
        this.running = null;
        if (this.again && !this.stopping) {
          this.again = false;
          this.schedule();
        }
      });
  }

  /**
   * `actual-<asker>/ping-<us>` = nonce: a planned handover or wait-cluster on <asker>
   * proving that its tree reaches us now and our answer reaches it (primary.ts,
   * cluster_sync.ts, docs/handover.md). Echo the nonce in `actual-<us>/pong-<asker>` (a
   * ping asks for no pass: matters()).
   */
  private answerPing(change: TreeChange): void {
    const m = /^actual-([^/]+)\/ping-([^/]+)$/.exec(change.key);
    if (!m) return;
    const [, asker, to] = m;
    if (to === this.tree.host && asker !== to && change.kind === 'set' && change.value !== null) {
      void this.tree.set(pongKey(this.tree.host, asker!), change.value)
        .catch((e: Error) => this.log(`ping from ${asker}: ${e.message}`));
    }
  }

  /**
   * Does a change ask for a pass? A resource's key asks for that resource's, except our own
   * indicators (we wrote them). Outside the resources only the membership (`ips/`: a peer
   * to link to or drop, which every replica may fetch from) and the cluster's `uuid` concern
   * resources, and ask for a full pass; nothing a pass reads depends on any other global
   * key (liveness stamps, pings and pongs, other hosts' indicators, `defaults*`: the
   * space thresholds are read at each tick). A full pass for each such change (a pong on
   * a third host, an operator's key) woke all 1000 replicas of a bench host; its daemon
   * used up to 9 ticks (90 ms) of CPU while one change travelled, and the slowest change
   * took 1.8 s (propagate-ssh, docs/benchmarks.md).
   */
  private matters(key: string): boolean {
    if (!key.startsWith('resource-')) return key.startsWith('ips/') || key === UUID_KEY;
    return !key.includes(`/actual-${this.tree.host}/`);
  }

  /** Wait for the reconcile pass in progress, if any (tests use it). */
  async settled(): Promise<void> {
    while (this.running) await this.running;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.watcher?.close();
    await this.settled();
    this.peers?.stop();
    // Every resource gets its drain and seal, even if another one fails to stop.
    for (const c of this.controllers.values()) {
      await c.shutdown().catch((e: Error) => this.log(`resource ${c.resource}: stop failed: ${e.message}`));
    }
    await this.tree.set(hostActualKey(this.tree.host, 'alive'), '0').catch(() => undefined);
    this.releaseLock();
    this.log('stopped');
  }

  /**
   * A daemon killed while serving left is-primary = 1 and its device in the tree. Until
   * this one has recovered and listens, nothing is served: say so before anything else,
   * so no script connects to a device that is not there yet.
   */
  private async clearServingIndicators(): Promise<void> {
    const host = this.tree.host;
    for (const res of await this.tree.listResources()) {
      if ((await this.tree.getValue(dataKey(res, host))) === undefined) continue;
      // phobos.ko went on serving while no daemon ran: the device is there (and the stack
      // on it must not be stopped); the first pass adopts it.
      if (this.opts.engine === 'kernel' && (await KernelEngine.running(res))) continue;
      for (const [name, idle] of [['is-primary', '0'], ['open-count', '0'], ['device', '(none)']] as const) {
        const key = actualKey(res, host, name);
        const now = await this.tree.getValue(key);
        if (now !== undefined && now !== idle) await this.tree.set(key, idle);
      }
    }
  }

  private async markAlive(): Promise<void> {
    const host = this.tree.host;
    if ((await this.tree.getValue(hostActualKey(host, 'alive'))) !== '1') await this.tree.set(hostActualKey(host, 'alive'), '1');
    await this.tree.set(hostActualKey(host, 'time'), formatStamp(await this.tree.stamp()));
  }

  private async reconcileAll(): Promise<void> {
    const full = this.fullPassDue;
    const dirty = this.dirty;
    this.fullPassDue = false;
    const periodic = full && this.fullPassPeriodic;
    this.fullPassPeriodic = false;
    this.dirty = new Set();
    if (full) {
      this.lastFullPass = Date.now();
      await this.peers?.refresh();
    }
    const existing = new Set(await this.tree.listResources());
    for (const [res, controller] of this.controllers) {
      if (!existing.has(res)) {
        await controller.shutdown();
        this.controllers.delete(res);
      }
    }
    for (const res of full ? existing : dirty) {
      if (!existing.has(res)) continue;
      const want = await this.desired(res, this.state.resource(res));
      let controller = this.controllers.get(res);
      if (!want) {
        if (controller) {
          await controller.shutdown();
          this.controllers.delete(res);
        }
        continue;
      }
      if (!controller) {
        controller = new ResourceController({
          resource: res, tree: this.tree, runDir: this.runDir, log: this.log, peers: this.peers,
          requestPass: () => {
            this.dirty.add(res);
            this.schedule();
          },
          engine: this.opts.engine ?? 'user',
          treeValue: (key) => this.state.resource(res).get(key) ?? undefined,
        });
        this.controllers.set(res, controller);
      }
      // A full pass also visits resources nothing changed for: no need to wake their replicas.
      await controller.reconcile(want, periodic && !dirty.has(res) ? 'periodic' : 'changed');
    }
  }

  /**
   * The emergency level of the log area, with the thresholds from
   * `defaults-<host>/emergency-free` or `userspace/emergency-free` (docs/emergency.md).
   * Returns whether the level changed.
   */
  private async sampleSpace(): Promise<boolean> {
    const host = this.tree.host;
    const configured = this.state.globalValue(`defaults-${host}/emergency-free`) ?? this.state.globalValue('userspace/emergency-free') ?? undefined;
    const thresholds = parseThresholds(configured) ?? DEFAULT_THRESHOLDS;
    if (configured && !parseThresholds(configured) && configured !== this.badThresholds) {
      this.badThresholds = configured;
      this.log(`emergency-free '${configured}' is not four decreasing percentages like 10,7,5,2; using ${DEFAULT_THRESHOLDS.join(',')}`);
    }
    const before = this.space.level;
    const level = await this.space.sample(thresholds);
    const key = hostActualKey(host, 'emergency-level');
    if (this.state.globalValue(key) !== String(level)) await this.tree.set(key, String(level));
    return level !== before;
  }

  /** What the tree asks for res on this host; null if this host has no disk for it. */
  private async desired(res: string, values: Values): Promise<Desired | null> {
    const host = this.tree.host;
    const value = (key: string) => values.get(key) ?? undefined;
    const disk = value(dataKey(res, host));
    if (!disk) return null;
    const dir = path.join(this.tree.root, `resource-${res}`);
    const logs = (await readdir(dir).catch(() => [] as string[])).filter((f) => /^log-[0-9]{9}-/.test(f));
    const own = logs.filter((f) => f.slice(14) === host).sort();
    const replay = value(replayKey(res, host));
    const m = replay ? /^(log-[0-9]{9}-[^,]+),([0-9]+),/.exec(replay) : null;
    const newestOwn = own.length ? own[own.length - 1]! : null;
    return {
      resource: res,
      attach: value(todoKey(res, host, 'attach')) === '1',
      primary: value(primaryKey(res)) === host,
      primaryHost: value(primaryKey(res)) ?? '(none)',
      disk,
      sizeBytes: Number(value(sizeKey(res)) ?? 0),
      connect: value(todoKey(res, host, 'connect')) !== '0',
      caughtUp: caughtUp(res, host, values),
      newestOwnLog: newestOwn ? path.join(dir, newestOwn) : null,
      newestOwnLogSealed: newestOwn !== null && sealedByUs(res, host, newestOwn, values),
      maxSeq: logs.reduce((max, f) => Math.max(max, seqOf(f)), 0),
      deleteBelow: Number(value(`resource-${res}/userspace/log-delete-below`) ?? 0),
      emergencyLevel: this.space.level,
      wasEmergency: value(actualKey(res, host, 'emergency')) === '1',
      checkpoint: m ? { logPath: path.join(dir, m[1]!), position: Number(m[2]) } : null,
      requestStamp: Math.max(this.state.stamp(primaryKey(res)), this.state.stamp(todoKey(res, host, 'attach'))),
    };
  }
}
