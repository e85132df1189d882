/**
 * One resource on this host: brings it to the phase the tree asks for (detached,
 * attached, primary with its device served: over NBD by the userspace engine, or as
 * phobos.ko's /dev/phobos<N> linked at /dev/mars/<res> by the kernel engine) and publishes
 * what it reached.
 *
 * Transitions run one at a time (the daemon serialises reconcile passes). A failure to
 * become primary (corrupt log, missing disk) leaves the resource attached, publishes a
 * negative replay-code with the reason, and is retried only when the tree's inputs change
 * or after a minute, so a broken resource does not spin.
 */
import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { KernelEngine, scanFileBatch, UserEngine, type Checkpoint, type DeviceEngine, type EngineKind } from '../dataplane/index.js';
import { NbdServer } from '../nbd/index.js';
import { syncSocketPath, type PeerManager } from '../peer/index.js';
import { historyEnd } from '../replication/history_end.js';
import { parsePositionValue, parseReplayValue, type LogPosition } from '../replication/log_names.js';
import { Replica } from '../replication/replica.js';
import { versionValue } from '../replication/version_value.js';
import { actualKey, replayKey, versionKey, type MarsTree } from '../tree/index.js';
import type { Desired, ResourcePhase } from './types.js';

const RETRY_FAILED_MS = 60_000;
/** A kernel device that stayed open when we left the role: try closing it again this soon. */
const RETRY_BUSY_MS = 10_000;
/** Log numbers skipped after writes that bypassed the log (emergency mode). */
const EMERGENCY_GAP = 11;
/**
 * How long a primary that is no longer designated keeps serving while its device is open:
 * long enough for its stack's trigger to stop what uses it (a forced failover heard late,
 * a handover that raced a fresh open), bounded because a device nobody closes must not keep
 * a stale primary writable for ever.
 */
const LEAVE_GRACE_MS = 20_000;

interface Serving {
  readonly engine: DeviceEngine;
  /** The userspace engine's NBD export; null with the kernel engine. */
  readonly server: NbdServer | null;
  /** Read-only export of the same engine, for fast full sync of peers (peer-serve reads it). */
  readonly syncServer: NbdServer;
  /** What `actual-<host>/device` names: the NBD socket, or /dev/mars/<res>. */
  readonly devicePath: string;
  /** Openers of the device (the kernel engine knows only open or not: 0 or 1). */
  openCount(): number;
}

export interface ResourceControllerOptions {
  readonly resource: string;
  readonly tree: MarsTree;
  /** Where NBD sockets live. */
  readonly runDir: string;
  readonly log: (line: string) => void;
  /** Peers to replicate from; null when the daemon runs alone. */
  readonly peers?: PeerManager | null;
  /** Ask the daemon for another reconcile pass of this resource. */
  readonly requestPass?: () => void;
  /** Which engine serves the device when this host is primary (`marsadm daemon --engine`). @default 'user' */
  readonly engine?: EngineKind;
  /** The daemon's in-memory tree values (the replica's cheap reads, ReplicaOptions.treeValue). */
  readonly treeValue?: (key: string) => string | undefined;
}

export class ResourceController {
  private phase: ResourcePhase = { kind: 'detached' };
  private serving: Serving | null = null;
  private replica: Replica | null = null;
  private deletedBelow = 0;
  private publishTimer: NodeJS.Timeout | null = null;
  private logEndTimer: NodeJS.Timeout | null = null;
  private failedInputs: string | null = null;
  private failedAt = 0;
  /**
   * A start failed and its replay-code is not written yet. It is written even when the value
   * is the same as the last failure's: the new stamp is what tells a waiting marsadm that
   * its request was refused (tree_access.ts daemonRefusal).
   */
  private failureUnpublished = false;
  /** A pass of our own is due (retryLater): the daemon's full pass comes only every 5 min. */
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly published = new Map<string, string>();
  /**
   * publish() runs one at a time (the one in progress, and at most one queued behind it):
   * timers and device events call it outside the passes, and two interleaved runs let the
   * older one's values land last: a stale log-end after stopServing's final one left a
   * secondary waiting for bytes it believed the origin did not have (CI, stop 17).
   */
  private publishing: Promise<void> = Promise.resolve();
  private publishQueued: Promise<void> | null = null;
  /** Where our log ended when we stopped serving: log-end's value until we serve again. */
  private finalLogEnd: string | null = null;
  /** Logging (primary) or fetching (secondary) stopped for lack of space. */
  private emergency = false;
  /** When we learnt we are no longer designated while the device was open (holdWhileOpen). */
  private leavingSince: number | null = null;
  /** The switches the replica was last given (runReplica), serialised. */
  private lastSwitches = '';
  /** Said once: the kernel engine cannot cease logging (followEmergency). */
  private toldNoCease = false;

  readonly resource: string;
  private readonly tree: MarsTree;
  private readonly runDir: string;
  private readonly log: (line: string) => void;
  private readonly peers: PeerManager | null;
  private readonly requestPass: () => void;
  private readonly engineKind: EngineKind;
  private readonly treeValue: ((key: string) => string | undefined) | undefined;

  constructor(opts: ResourceControllerOptions) {
    this.resource = opts.resource;
    this.tree = opts.tree;
    this.runDir = opts.runDir;
    this.log = opts.log;
    this.peers = opts.peers ?? null;
    this.requestPass = opts.requestPass ?? (() => undefined);
    this.engineKind = opts.engine ?? 'user';
    this.treeValue = opts.treeValue;
  }

  get currentPhase(): ResourcePhase {
    return this.phase;
  }

  /**
   * The rules: docs/handover.md "The rule the daemon follows". `why` is 'periodic' when
   * the pass visits the resource without a change of its keys (the daemon's full pass):
   * its replica, if running, is then only woken if the switches differ.
   */
  async reconcile(want: Desired, why: 'changed' | 'periodic' = 'changed'): Promise<void> {
    if (!want.attach) {
      await this.stopReplica();
      await this.stopServing({ seal: !want.primary });
      if (this.serving) return await this.stillOpen();
      this.phase = { kind: 'detached' };
    } else if (!want.primary) {
      if (this.holdWhileOpen()) {
        await this.publish();
        return;
      }
      await this.stopServing({ seal: true });
      if (this.serving) return await this.stillOpen();
      await this.sealLeftOwnLog(want);
      this.runReplica(want, why);
      if (want.emergencyLevel >= 2) await this.dropReplayedLogs();
      this.phase = this.replica ? { kind: 'secondary' } : { kind: 'attached' };
    } else if (this.serving) {
      this.leavingSince = null;
      await this.followEmergency(want);
      if (this.serving.engine.logging) await this.followRotation(want);
    } else if (!this.shouldRetry(want)) {
      // A failed start: wait for changed inputs or the retry interval.
    } else if (this.continuesOwnLog(want)) {
      await this.stopReplica();
      await this.startServing(want, want.newestOwnLog!, want.checkpoint);
    } else if (want.connect && !want.caughtUp && this.peers) {
      // Designated, but others wrote what we lack: fetch and replay it first.
      this.runReplica(want, why);
      this.phase = { kind: 'secondary' };
    } else {
      const logPath = await this.endHistoryHere(want);
      await this.startServing(want, logPath, null);
      if (this.serving) await this.followEmergency(want);
    }
    await this.deleteLogsBelow(want.deleteBelow);
    await this.publish();
  }

  /**
   * Another host is designated, but our device is still open: closing the export now would
   * fail the writes in flight of whoever has it open. A planned handover waited for open
   * count 0 before it moved the role, so this is a device opened again since, or a forced
   * failover that we hear of while our stack still runs (its trigger is stopping it). Keep
   * serving until the last opener closes, at most LEAVE_GRACE_MS. Returns whether we hold.
   */
  private holdWhileOpen(): boolean {
    const openers = this.serving?.openCount() ?? 0;
    if (openers === 0) return false;
    if (this.leavingSince === null) {
      this.leavingSince = Date.now();
      this.log(`resource ${this.resource}: another host is designated primary; serving until the device is closed ` +
        `(${openers} opener(s)), at most ${LEAVE_GRACE_MS / 1000} s`);
      // The last close asks for a pass too (startServing's close handler).
      setTimeout(() => this.requestPass(), LEAVE_GRACE_MS).unref();
    }
    if (Date.now() - this.leavingSince < LEAVE_GRACE_MS) return true;
    this.log(`resource ${this.resource}: the device is still open after ${LEAVE_GRACE_MS / 1000} s: closing it (${openers} opener(s))`);
    return false;
  }

  /** A restart of the primary: our newest log is unsealed and nothing newer exists. */
  private continuesOwnLog(want: Desired): boolean {
    return want.newestOwnLog !== null && !want.newestOwnLogSealed && seqOf(want.newestOwnLog) >= want.maxSeq;
  }

  /**
   * Becoming primary: stop replicating, and (forced, `connect` off) first replay what was
   * fetched here and write our version link where our history now ends, dropping copies
   * of later logs we will never follow. Returns the new log to write: a number nobody used.
   */
  private async endHistoryHere(want: Desired): Promise<string> {
    const replica = this.replica ?? (this.peers && !want.connect ? this.newReplica(want) : null);
    this.replica = null;
    await replica?.stop();
    if (replica && !want.connect) {
      const end = await replica.finishLocal();
      const dir = path.join(this.tree.root, `resource-${this.resource}`);
      if (end) await this.finishForeignLog(end.log, await historyEnd(path.join(dir, end.log), end.offset));
    }
    const historySeq = await this.adoptEmptyLogs(await this.ownHistorySeq());
    return await this.nextLogPath(want.wasEmergency, historySeq);
  }

  /** The highest log number our version links end: where our history reaches. */
  private async ownHistorySeq(): Promise<number> {
    let max = 0;
    for (const e of await this.tree.list(`resource-${this.resource}/version-`)) {
      const m = /\/version-([0-9]{9})-(.+)$/.exec(e.key);
      if (e.value !== null && m && m[2] === this.tree.host) max = Math.max(max, Number(m[1]));
    }
    return max;
  }

  /**
   * Another member started log seq+1 and wrote nothing to it (a handover that compensated
   * after the new primary began serving; a failover that reached a host whose copy of that
   * log was not fetched yet). Its number is taken: our history ends it empty, with our
   * version link and an empty copy here that replicas can fetch, and our log comes after.
   * Reusing the number would give two logs of one number: a split brain out of nothing.
   * Returns the sequence number our history now reaches.
   */
  private async adoptEmptyLogs(seq: number): Promise<number> {
    const dir = path.join(this.tree.root, `resource-${this.resource}`);
    const ends = (await this.tree.list(`resource-${this.resource}/actual-`))
      .filter((e) => e.key.endsWith('/log-end') && !e.key.includes(`/actual-${this.tree.host}/`))
      .map((e) => parsePositionValue(e.value ?? undefined))
      .filter((p): p is LogPosition => p !== null);
    for (;;) {
      const next = ends.filter((p) => seqOf(p.log) === seq + 1);
      if (next.length !== 1 || next[0]!.offset !== 0) return seq;
      const log = next[0]!.log;
      const copy = path.join(dir, log);
      await writeFile(copy, '', { flag: 'a' });
      // Its origin may have sealed it with a final SYNC_MARK: that is still no data.
      await this.finishForeignLog(log, await historyEnd(copy, (await stat(copy)).size));
      this.log(`resource ${this.resource}: ${log} was started and left empty: our history takes it as ended at 0`);
      seq += 1;
    }
  }

  private async localMaxSeq(): Promise<number> {
    const dir = path.join(this.tree.root, `resource-${this.resource}`);
    const logs = await readdir(dir).catch(() => [] as string[]);
    return logs.reduce((m, f) => Math.max(m, seqOf(f)), 0);
  }

  /**
   * The next log of ours: one past the highest log here or in our history, or
   * EMERGENCY_GAP past it after writes that bypassed the log (emergency mode). Secondaries
   * then find no next log and report Orphan instead of replaying a history with writes missing.
   */
  private async nextLogPath(afterEmergency: boolean, historySeq = 0): Promise<string> {
    const max = Math.max(historySeq, await this.localMaxSeq());
    const dir = path.join(this.tree.root, `resource-${this.resource}`);
    return path.join(dir, logName(max + (afterEmergency ? EMERGENCY_GAP : 1), this.tree.host));
  }

  /**
   * Level 4 on the primary: seal the log and write straight to the disk. Below it again
   * (space.ts leaves a level only with a margin): log into a new log after the gap.
   */
  private async followEmergency(want: Desired): Promise<void> {
    const serving = this.serving!;
    if (want.emergencyLevel >= 4 && !serving.engine.canCeaseLogging) {
      if (!this.toldNoCease) {
        this.log(`resource ${this.resource}: EMERGENCY: log area nearly full; the kernel engine cannot bypass its log: ` +
          'writes will fail with ENOSPC once /mars is full; free space there');
      }
      this.toldNoCease = true;
      return;
    }
    this.toldNoCease = false;
    if (want.emergencyLevel >= 4 && serving.engine.logging) {
      const sealed = serving.engine.logPath;
      await serving.engine.ceaseLogging();
      await this.publishVersion(sealed);
      this.emergency = true;
      this.log(`resource ${this.resource}: EMERGENCY: log area nearly full; logging ceased after ${path.basename(sealed)}, ` +
        `writes go to ${want.disk} only; secondaries will need \`marsadm invalidate ${this.resource}\``);
    } else if (want.emergencyLevel < 4 && !serving.engine.logging) {
      const next = await this.nextLogPath(true);
      await serving.engine.resumeLogging(next);
      this.emergency = false;
      this.phase = { kind: 'primary', devicePath: serving.devicePath, logPath: next };
      this.log(`resource ${this.resource}: space is back: logging again into ${path.basename(next)}`);
    }
  }

  /** Level 2 on a secondary: delete our copies of logs replay has finished with. */
  private async dropReplayedLogs(): Promise<void> {
    const replay = parseReplayValue(await this.tree.getValue(replayKey(this.resource, this.tree.host)));
    if (!replay) return;
    const dir = path.join(this.tree.root, `resource-${this.resource}`);
    for (const f of await readdir(dir).catch(() => [] as string[])) {
      if (seqOf(f) >= 0 && seqOf(f) < seqOf(replay.log)) {
        await rm(path.join(dir, f), { force: true });
        this.log(`resource ${this.resource}: emergency: deleted ${f} (replayed here)`);
      }
    }
  }

  /** version-<seq>-<us> ending `log` at `offset`, and later logs of other origins dropped here. */
  private async finishForeignLog(log: string, offset: number): Promise<void> {
    const seq = seqOf(log);
    const key = versionKey(this.resource, seq, this.tree.host);
    const value = versionValue(await this.tree.getValue(versionKey(this.resource, seq - 1, this.tree.host)), log, offset);
    if ((await this.tree.getValue(key)) !== value) await this.tree.set(key, value);
    const dir = path.join(this.tree.root, `resource-${this.resource}`);
    for (const f of await readdir(dir).catch(() => [] as string[])) {
      if (seqOf(f) > seq && !f.endsWith(`-${this.tree.host}`)) await rm(path.join(dir, f), { force: true });
    }
    this.log(`resource ${this.resource}: forced primary: history ends at ${log},${offset}`);
  }

  /**
   * A log of ours that nobody sealed: we were primary, crashed, and another host is
   * designated now. Seal it where its complete records end; replay then finishes the
   * disk from the checkpoint, and a history that ended it earlier shows a split brain.
   */
  private async sealLeftOwnLog(want: Desired): Promise<void> {
    if (this.serving || !want.newestOwnLog || want.newestOwnLogSealed) return;
    let end = 0;
    for (;;) {
      const r = await scanFileBatch(want.newestOwnLog, { from: end, final: false, maxRecords: 4096 });
      end = r.position;
      if (r.status !== 'limit') break;
    }
    await this.publishVersion(want.newestOwnLog, end);
    this.log(`resource ${this.resource}: sealed ${path.basename(want.newestOwnLog)} at ${end} (not primary any more)`);
  }

  /** marsadm cron decided these logs are replayed by every member: drop our copies. */
  private async deleteLogsBelow(below: number): Promise<void> {
    if (below <= this.deletedBelow) return;
    const dir = path.join(this.tree.root, `resource-${this.resource}`);
    for (const f of await readdir(dir).catch(() => [] as string[])) {
      const seq = seqOf(f);
      if (seq >= 0 && seq < below && path.join(dir, f) !== this.serving?.engine.logPath) {
        await rm(path.join(dir, f), { force: true });
        this.log(`resource ${this.resource}: deleted ${f} (replayed by every member)`);
      }
    }
    this.deletedBelow = below;
  }

  /** Replicate from peers while secondary (a host running alone has no peers). */
  private runReplica(want: Desired, why: 'changed' | 'periodic'): void {
    const switches = { connect: want.connect, emergency: want.emergencyLevel >= 3 };
    this.emergency = switches.emergency;
    const serialised = JSON.stringify(switches);
    const same = serialised === this.lastSwitches;
    this.lastSwitches = serialised;
    if (this.replica) {
      // 3 loops x 1000 idle replicas woken every full pass was a third of its CPU.
      if (!same || why === 'changed') this.replica.kick(switches);
      return;
    }
    if (!this.peers) return;
    // The size comes with the primary's tree; until it is here there is nothing to sync
    // to (a replica started with size 0 would never sync), and its arrival is a change.
    if (want.sizeBytes <= 0) return;
    this.replica = this.newReplica(want);
    this.replica.kick(switches);
    this.replica.start();
  }

  private newReplica(want: Desired): Replica {
    return new Replica({
      tree: this.tree, resource: this.resource, disk: want.disk, sizeBytes: want.sizeBytes, peers: this.peers!, log: this.log,
      onStatus: () => this.publishSoon(), treeValue: this.treeValue,
    });
  }

  private async stopReplica(): Promise<void> {
    const replica = this.replica;
    if (!replica) return;
    this.replica = null;
    await replica.stop();
  }

  /** Replica status changes come fast; publish them at most every 200 ms. */
  private publishSoon(): void {
    if (this.publishTimer) return;
    this.publishTimer = setTimeout(() => {
      this.publishTimer = null;
      void this.publish().catch((e: Error) => this.log(`resource ${this.resource}: publish: ${e.message}`));
    }, 200);
  }

  /** The kernel device stayed open when we left the role: say so, and try again soon. */
  private async stillOpen(): Promise<void> {
    this.retryLater(RETRY_BUSY_MS);
    await this.publish();
  }

  /**
   * Ask for a pass of this resource after `ms`. A state that only time can change (a
   * failed start, a device still open) needs it: no tree change will come, and the
   * daemon's full pass is only a safety net.
   */
  private retryLater(ms: number): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.requestPass();
    }, ms);
    this.retryTimer.unref();
  }

  /** Stop everything (daemon shutdown or resource gone). */
  async shutdown(): Promise<void> {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    await this.stopReplica();
    await this.stopServing({ seal: false });
    this.phase = { kind: 'detached' };
    await this.publish().catch(() => undefined);
  }

  private shouldRetry(want: Desired): boolean {
    if (this.phase.kind !== 'failed') return true;
    return JSON.stringify(want) !== this.failedInputs || Date.now() - this.failedAt > RETRY_FAILED_MS;
  }

  private async startServing(want: Desired, logPath: string, checkpoint: Checkpoint | null): Promise<void> {
    const res = this.resource;
    try {
      const stamp = recordClock(BigInt(await this.tree.stamp()) * 1000n);
      const engineOptions = {
        diskPath: want.disk, sizeBytes: want.sizeBytes, logPath, checkpoint, stamp,
        saveCheckpoint: (c: Checkpoint) => this.saveCheckpoint(c),
        onLogGrowth: () => this.logGrew(),
      };
      this.serving = this.engineKind === 'kernel'
        ? await this.serveKernel(engineOptions)
        : await this.serveUser(engineOptions);
      this.phase = { kind: 'primary', devicePath: this.serving.devicePath, logPath };
      this.failedInputs = null;
      const r = this.serving.engine.recovery;
      this.log(`resource ${res}: primary, serving ${this.serving.devicePath} (${this.engineKind} engine), log ${path.basename(logPath)}` +
        (r.adopted ? ' (the module was still running it: adopted)' : '') +
        (r.replayedRecords || r.truncatedBytes ? ` (recovered: ${r.replayedRecords} records replayed, ${r.truncatedBytes} torn bytes cut)` : ''));
    } catch (error) {
      const e = error as Error & { code?: string };
      this.phase = { kind: 'failed', reason: e.message, code: e.code ?? 'EIO' };
      this.failedInputs = JSON.stringify(want);
      this.failedAt = Date.now();
      this.failureUnpublished = true;
      // shouldRetry compares Date.now() with failedAt; the margin keeps a timer that fires
      // a millisecond early by that clock from finding the retry not yet due.
      this.retryLater(RETRY_FAILED_MS + 100);
      this.log(`resource ${res}: cannot become primary: ${e.message}`);
    }
  }

  /** The userspace engine, exported over NBD at <runDir>/<res>.nbd. */
  private async serveUser(options: Parameters<typeof UserEngine.open>[0]): Promise<Serving> {
    const res = this.resource;
    const socketPath = path.join(this.runDir, `${res}.nbd`);
    const engine = await UserEngine.open(options);
    try {
      await mkdir(this.runDir, { recursive: true, mode: 0o755 });
      const server = new NbdServer({ socketPath, exportName: res, device: engine });
      server.on('open', () => void this.publish().catch(() => undefined));
      server.on('close', () => {
        void this.publish().catch(() => undefined);
        if (this.leavingSince !== null) this.requestPass();
      });
      await server.listen();
      const syncServer = await this.listenSync(engine);
      return { engine, server, syncServer, devicePath: socketPath, openCount: () => server.openCount };
    } catch (error) {
      await engine.close().catch(() => undefined);
      throw error;
    }
  }

  /** phobos.ko's device, linked at /dev/mars/<res>; its open state is polled once a second. */
  private async serveKernel(options: Omit<Parameters<typeof KernelEngine.open>[0], 'resource'>): Promise<Serving> {
    const engine: KernelEngine = await KernelEngine.open({
      ...options, resource: this.resource,
      onOpenChange: () => {
        void this.publish().catch(() => undefined);
        if (engine.openCount === 0 && this.leavingSince !== null) this.requestPass();
      },
    });
    try {
      const syncServer = await this.listenSync(engine);
      return { engine, server: null, syncServer, devicePath: engine.linkPath, openCount: () => engine.openCount };
    } catch (error) {
      await engine.close().catch(() => undefined);
      throw error;
    }
  }

  private async listenSync(engine: DeviceEngine): Promise<NbdServer> {
    await mkdir(this.runDir, { recursive: true, mode: 0o755 });
    const res = this.resource;
    const syncServer = new NbdServer({ socketPath: syncSocketPath(this.runDir, res), exportName: `${res}.sync`, device: engine, readOnly: true });
    await syncServer.listen();
    return syncServer;
  }

  /** marsadm log-rotate created a newer log of ours: switch to it. */
  private async followRotation(want: Desired): Promise<void> {
    const serving = this.serving!;
    if (!want.newestOwnLog || want.newestOwnLog === serving.engine.logPath) return;
    if (seqOf(want.newestOwnLog) <= seqOf(serving.engine.logPath)) return;
    const sealed = serving.engine.logPath;
    await serving.engine.rotate(want.newestOwnLog);
    await this.publishVersion(sealed);
    this.phase = { kind: 'primary', devicePath: serving.devicePath, logPath: want.newestOwnLog };
    this.log(`resource ${this.resource}: switched to ${path.basename(want.newestOwnLog)}`);
  }

  /** version-<seq>-<host> for a log this host wrote and sealed (docs/replication.md). */
  private async publishVersion(logPath: string, end?: number): Promise<void> {
    const seq = seqOf(logPath);
    const size = await historyEnd(logPath, end ?? (await stat(logPath)).size);
    const previous = await this.tree.getValue(versionKey(this.resource, seq - 1, this.tree.host));
    await this.tree.set(versionKey(this.resource, seq, this.tree.host), versionValue(previous, path.basename(logPath), size));
  }

  /**
   * The log end moves with every write; peers and view see it within a second. Armed by
   * the engine's onLogGrowth: an idle device has no timer (1000 idle primaries ticking
   * every second cost their daemon ~1 % of a core).
   */
  private logGrew(): void {
    if (this.logEndTimer) return;
    this.logEndTimer = setTimeout(() => {
      this.logEndTimer = null;
      if (this.serving) this.publishSoon();
    }, 1000);
    this.logEndTimer.unref();
  }

  /**
   * Close the exports (in-flight requests complete), drain writeback, close the log.
   * Leaving the primary role also seals the log: its final length goes into our version
   * link, so the next primary knows where our history ends. A daemon stop does not seal:
   * the same host goes on with the same log after its restart.
   */
  private async stopServing(how: { seal: boolean }): Promise<void> {
    const serving = this.serving;
    if (!serving) return;
    if (serving.server) {
      // Userspace engine: exports first, so no request reaches a closed engine.
      await serving.syncServer.close();
      await serving.server.close();
    }
    if (!(await this.closeEngine(serving, how))) return;
    this.serving = null;
    this.leavingSince = null;
    if (serving.server) await rm(serving.devicePath, { force: true });
    else await serving.syncServer.close();
    // The final log end, not the one the ticker published up to a second ago; before the
    // version link, so no peer sees the seal with an older end.
    const end = await historyEnd(serving.engine.logPath, (await stat(serving.engine.logPath)).size);
    this.finalLogEnd = `${path.basename(serving.engine.logPath)},${end}`;
    await this.publish();
    if (how.seal) await this.publishVersion(serving.engine.logPath);
    // Until the indicators say so, the handover waits: tell it now, not at the next pass.
    this.phase = { kind: 'attached' };
    await this.publish();
    this.log(`resource ${this.resource}: stopped serving ${serving.devicePath}${how.seal ? `, sealed ${path.basename(serving.engine.logPath)}` : ''}`);
  }

  /**
   * Close the export and the engine; false if the kernel engine's device is still open.
   * Leaving the role, the device stays (close() is retried at the next pass, and the
   * handover is refused until then); at daemon shutdown the module keeps serving it
   * unsteered, and the next daemon adopts it.
   */
  private async closeEngine(serving: Serving, how: { seal: boolean }): Promise<boolean> {
    try {
      await serving.engine.close();
      return true;
    } catch (error) {
      if ((error as { code?: string }).code !== 'EBUSY' || !(serving.engine instanceof KernelEngine)) throw error;
      if (how.seal) {
        this.log(`resource ${this.resource}: cannot stop serving: ${(error as Error).message}`);
        return false;
      }
      serving.engine.release();
      this.log(`resource ${this.resource}: ${serving.engine.devicePath} is open: phobos.ko keeps serving it; ` +
        'the next daemon adopts it');
      return true;
    }
  }

  private async saveCheckpoint(c: Checkpoint): Promise<void> {
    await this.tree.set(replayKey(this.resource, this.tree.host), `${path.basename(c.logPath)},${c.position},0`);
  }

  /**
   * Write the indicators that changed since the last time, after any publish in progress
   * (see `publishing`). Calls made while one waits share it: its values are taken when it
   * starts, so they are at least as new as every caller's state.
   */
  private publish(): Promise<void> {
    if (this.publishQueued) return this.publishQueued;
    const run = this.publishing.then(() => {
      this.publishQueued = null;
      return this.publishNow();
    });
    this.publishQueued = run;
    this.publishing = run.catch(() => undefined);
    return run;
  }

  private async publishNow(): Promise<void> {
    const host = this.tree.host, res = this.resource;
    const phase = this.phase;
    const replica = this.replica?.status();
    const values: Record<string, string> = {
      'is-attached': phase.kind === 'detached' ? '0' : '1',
      'is-primary': phase.kind === 'primary' ? '1' : '0',
      'open-count': String(this.serving?.openCount() ?? 0),
      'replay-code': phase.kind === 'failed' ? `-1,${phase.code}: ${phase.reason.replace(/\s+/g, ' ').slice(0, 300)}` : replica?.replayCode ?? '0',
      'device': phase.kind === 'primary' ? phase.devicePath : '(none)',
      'is-copying': replica?.fetching ? '1' : '0',
      'is-replaying': replica?.replaying ? '1' : '0',
      'is-syncing': replica?.syncing ? '1' : '0',
      'emergency': this.emergency && phase.kind !== 'detached' ? '1' : '0',
    };
    if (replica) values['fetch-pos'] = replica.fetchPos;
    if (this.serving) values['log-end'] = `${path.basename(this.serving.engine.logPath)},${this.serving.engine.logPosition}`;
    else if (this.finalLogEnd) values['log-end'] = this.finalLogEnd;
    const restamp = this.failureUnpublished && phase.kind === 'failed' ? actualKey(res, host, 'replay-code') : null;
    this.failureUnpublished = false;
    for (const [name, value] of Object.entries(values)) {
      const key = actualKey(res, host, name);
      if (key !== restamp) {
        if (this.published.get(key) === value) continue;
        if (this.published.get(key) === undefined && (await this.tree.getValue(key)) === value) {
          this.published.set(key, value);
          continue;
        }
      }
      await this.tree.set(key, value);
      this.published.set(key, value);
    }
  }
}

/**
 * Stamps for log records, ns: never below the tree's Lamport time at start, strictly
 * increasing, following the wall clock. Per-write stamps must not take the tree lock.
 */
function recordClock(startNs: bigint): () => bigint {
  let last = startNs;
  return () => {
    const wall = BigInt(Date.now()) * 1_000_000n;
    last = wall > last ? wall : last + 1n;
    return last;
  };
}

/** `log-000000007-alpha` */
export function logName(seq: number, host: string): string {
  return `log-${String(seq).padStart(9, '0')}-${host}`;
}

/** The sequence number in a log file name, or -1. */
export function seqOf(logPath: string): number {
  const m = /^log-([0-9]{9})-/.exec(path.basename(logPath));
  return m ? Number(m[1]) : -1;
}
