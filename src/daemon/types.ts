/**
 * Types of the daemon: its options and what it decides for each resource. The daemon
 * reads switches (`todo-<host>/*`) and shared keys (`primary`), acts, and publishes
 * indicators (`actual-<host>/*`), as MARS's kernel part does (reference/mars.md 1.3-1.4).
 */
import type { EngineKind } from '../dataplane/index.js';
import type { TransportFactory } from '../peer/index.js';
import type { EmergencyLevel } from './space.js';

export interface DaemonOptions {
  /** The tree root. */
  readonly root: string;
  /** This host's name. */
  readonly host: string;
  /** Where NBD sockets live: `<runDir>/<res>.nbd`. @default '/run/phobos' */
  readonly runDir?: string;
  /** Reconcile at least this often even without tree events, ms. @default 1000 */
  readonly reconcileIntervalMs?: number;
  /** Publish `actual-<host>/time` this often (liveness), ms. @default HEARTBEAT_MS (4000) */
  readonly aliveIntervalMs?: number;
  /** Where log lines go (one line each, no trailing newline). @default stderr */
  readonly log?: (line: string) => void;
  /** How to reach peers; without one the daemon runs alone (no replication). */
  readonly transport?: TransportFactory;
  /** The engine of a primary's device (resolved from `--engine`, engine.ts). @default 'user' */
  readonly engine?: EngineKind;
}

/** What the tree asks of one resource on this host. */
export interface Desired {
  readonly resource: string;
  /** `todo-<host>/attach` is 1. */
  readonly attach: boolean;
  /** `primary` names this host. */
  readonly primary: boolean;
  /** `primary`'s value: the designated primary, or '(none)'. */
  readonly primaryHost: string;
  /** `data-<host>`: the underlying disk. */
  readonly disk: string;
  /** `size`, bytes. */
  readonly sizeBytes: number;
  /** `todo-<host>/connect`: off after `marsadm disconnect` (a forced failover follows). */
  readonly connect: boolean;
  /**
   * This host has everything other hosts wrote (history.ts caughtUp): as designated
   * primary it may start serving. Until then it goes on fetching and replaying.
   */
  readonly caughtUp: boolean;
  /** Newest log file written by this host, as a path, if any. */
  readonly newestOwnLog: string | null;
  /** That log has our version link: it is sealed and never appended to again. */
  readonly newestOwnLogSealed: boolean;
  /** Highest log sequence number in the resource (any origin), 0 if none. */
  readonly maxSeq: number;
  /** `userspace/log-delete-below`: logs numbered below it are deleted everywhere (0 = none). */
  readonly deleteBelow: number;
  /** Emergency level of the log area on this host, 0-4 (space.ts, docs/emergency.md). */
  readonly emergencyLevel: EmergencyLevel;
  /** `actual-<host>/emergency` is 1: this host ceased logging (or fetching) before; a new log leaves a gap. */
  readonly wasEmergency: boolean;
  /**
   * Newest stamp of the switches an operator sets to ask for this phase (`primary`,
   * `todo-<host>/attach`): re-asking after a refusal is a changed input, retried at once.
   */
  readonly requestStamp: number;
  /** The `replay-<host>` checkpoint, if any. */
  readonly checkpoint: { readonly logPath: string; readonly position: number } | null;
}

/** Where a resource is on this host. */
export type ResourcePhase =
  | { readonly kind: 'detached' }
  | { readonly kind: 'attached' }
  | { readonly kind: 'secondary' }
  /** devicePath: the NBD socket (userspace engine) or /dev/mars/<res> (kernel engine). */
  | { readonly kind: 'primary'; readonly devicePath: string; readonly logPath: string }
  | { readonly kind: 'failed'; readonly reason: string; readonly code: string };
