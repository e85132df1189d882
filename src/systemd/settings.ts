/**
 * The systemd settings of a resource, as tree keys (docs/systemd.md, docs/tree.md):
 *
 * | key | value |
 * |---|---|
 * | `resource-<res>/systemd-start-unit` | a unit name, or a KEYWORD selecting `# KEYWORD_START` templates |
 * | `resource-<res>/systemd-stop-unit` | a unit name, or a KEYWORD (`# KEYWORD_STOP`); unset = the start unit |
 * | `resource-<res>/systemd-want` | the host where the stack should run, or `(none)` (paused) |
 * | `resource-<res>/actual-<host>/systemd-status` | `<action>,<exit code>,<want>[,<detail>]`: the last activation on `<host>` |
 */
import { utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { actualKey, resourceDir, resourceKey, type MarsTree } from '../tree/index.js';

export const NONE = '(none)';

/**
 * The local trigger file: a regular file in the resource's directory. Touching it makes
 * the path unit, which watches that directory, run systemd-trigger-extern again (the
 * trigger script's fingerprint includes it). Its name starts with `.`, so the tree never
 * takes it for a key and never replicates it.
 */
export const TRIGGER_FILE = '.systemd-trigger';

/** Touch `res`'s trigger file here: this host's path unit runs its trigger again. */
export async function touchTrigger(tree: MarsTree, res: string): Promise<void> {
  const file = path.join(tree.root, resourceDir(res), TRIGGER_FILE);
  await writeFile(file, `${Date.now()}\n`);
  const now = new Date();
  await utimes(file, now, now);
}

export interface SystemdSettings {
  /** Unit name or KEYWORD; undefined when the resource has no stack. */
  readonly startUnit: string | undefined;
  readonly stopUnit: string | undefined;
  /** Host that should run the stack, `(none)`, or undefined (never set). */
  readonly want: string | undefined;
}

export const startUnitKey = (res: string): string => resourceKey(res, 'systemd-start-unit');
export const stopUnitKey = (res: string): string => resourceKey(res, 'systemd-stop-unit');
export const wantKey = (res: string): string => resourceKey(res, 'systemd-want');
export const statusKey = (res: string, host: string): string => actualKey(res, host, 'systemd-status');

export async function readSettings(tree: MarsTree, res: string): Promise<SystemdSettings> {
  const [startUnit, stopUnit, want] = await Promise.all([
    tree.getValue(startUnitKey(res)), tree.getValue(stopUnitKey(res)), tree.getValue(wantKey(res)),
  ]);
  return { startUnit, stopUnit: stopUnit ?? startUnit, want };
}

/** What `systemd-trigger-extern` did last on a host. */
export interface ActivationStatus {
  readonly action: 'start' | 'stop';
  /** 0 = done; otherwise systemctl's (or the script's) exit code. */
  readonly code: number;
  /** The `systemd-want` value the action answered. */
  readonly want: string;
  readonly detail?: string;
}

export function formatStatus(s: ActivationStatus): string {
  const detail = s.detail ? `,${s.detail.replace(/\s+/g, ' ').slice(0, 300)}` : '';
  return `${s.action},${s.code},${s.want}${detail}`;
}

export function parseStatus(value: string | undefined): ActivationStatus | undefined {
  const m = value === undefined ? null : /^(start|stop),(-?\d+),([^,]+)(?:,(.*))?$/.exec(value);
  if (!m) return undefined;
  return { action: m[1] as 'start' | 'stop', code: Number(m[2]), want: m[3]!, ...(m[4] ? { detail: m[4] } : {}) };
}
