/**
 * The Phobos daemon (`marsadm daemon`): runs in the foreground under systemd or a test.
 * It watches the tree, reconciles every resource that has a disk on this host, and
 * publishes liveness (`actual-<host>/alive`, `actual-<host>/time`).
 *
 * Reconcile passes never overlap: a change during a pass schedules exactly one more.
 * SIGTERM (stop()) finishes the current pass, then stops serving every resource (in-flight
 * requests complete, writeback drains, logs are sealed) and marks the host not alive.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';

import {
  actualKey, dataKey, formatStamp, hostActualKey, MarsTree, primaryKey, replayKey, sizeKey, todoKey, TreeWatcher,
} from '../tree/index.js';
import { acquireFileLock, LockTimeoutError } from '../dataplane/index.js';
import { PeerManager } from '../peer/index.js';
import { caughtUp, sealedByUs } from './history.js';
import { DEFAULT_THRESHOLDS, parseThresholds, SpaceMonitor } from './space.js';
import { ResourceController, seqOf } from './resource_controller.js';
import type { DaemonOptions, Desired } from './types.js';

export class Daemon {
  private readonly controllers = new Map<string, ResourceController>();
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
    daemon.watcher = await TreeWatcher.start({ root: tree.root, onChange: (c) => { if (daemon.matters(c.key)) daemon.schedule(); } });
    if (opts.transport) {
      daemon.peers = new PeerManager({ tree, factory: opts.transport, log: daemon.log });
    }
    daemon.timers.push(setInterval(() => daemon.schedule(), opts.reconcileIntervalMs ?? 1000));
    daemon.timers.push(setInterval(() => void daemon.markAlive().catch((e: Error) => daemon.log(`liveness: ${e.message}`)),
      opts.aliveIntervalMs ?? 2000));
    daemon.log(`started on ${tree.root}, NBD sockets in ${daemon.runDir}`);
    daemon.schedule();
    await daemon.running;
    return daemon;
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
   * Liveness stamps of every host and our own indicators change all the time and ask
   * nothing of us; a pass for each would cost every daemon CPU for every peer's heartbeat.
   */
  private matters(key: string): boolean {
    if (/^actual-[^/]+\/(time|alive)$/.test(key)) return false;
    return !key.startsWith('resource-') || !key.includes(`/actual-${this.tree.host}/`);
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
    // One values-only walk per pass: per-key reads cost ~0.3 ms each, and a pass would
    // otherwise read ~8 keys for every resource every second.
    const values = await this.tree.values('');
    await this.sampleSpace(values);
    await this.peers?.refresh();
    const resources = new Set(await this.tree.listResources());
    for (const [res, controller] of this.controllers) {
      if (!resources.has(res)) {
        await controller.shutdown();
        this.controllers.delete(res);
      }
    }
    for (const res of resources) {
      const want = await this.desired(res, values);
      let controller = this.controllers.get(res);
      if (!want) {
        if (controller) {
          await controller.shutdown();
          this.controllers.delete(res);
        }
        continue;
      }
      if (!controller) {
        controller = new ResourceController(res, this.tree, this.runDir, this.log, this.peers);
        this.controllers.set(res, controller);
      }
      await controller.reconcile(want);
    }
  }

  /**
   * The emergency level of the log area, with the thresholds from
   * `defaults-<host>/emergency-free` or `userspace/emergency-free` (docs/emergency.md).
   */
  private async sampleSpace(values: ReadonlyMap<string, string | null>): Promise<void> {
    const host = this.tree.host;
    const configured = values.get(`defaults-${host}/emergency-free`) ?? values.get('userspace/emergency-free') ?? undefined;
    const thresholds = parseThresholds(configured) ?? DEFAULT_THRESHOLDS;
    if (configured && !parseThresholds(configured) && configured !== this.badThresholds) {
      this.badThresholds = configured;
      this.log(`emergency-free '${configured}' is not four decreasing percentages like 10,7,5,2; using ${DEFAULT_THRESHOLDS.join(',')}`);
    }
    const level = await this.space.sample(thresholds);
    const key = hostActualKey(host, 'emergency-level');
    if (values.get(key) !== String(level)) await this.tree.set(key, String(level));
  }

  /** What the tree asks for res on this host; null if this host has no disk for it. */
  private async desired(res: string, values: ReadonlyMap<string, string | null>): Promise<Desired | null> {
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
    };
  }
}
