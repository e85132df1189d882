/**
 * Activation, the heart of `systemd-trigger-extern RES`: start the stack where
 * `systemd-want` names this host and the device is exported here, stop it everywhere
 * else, and record the outcome in `actual-<host>/systemd-status` so a handover can wait
 * for the old side's stop. Idempotent: starting a running stack or stopping a stopped
 * one changes nothing.
 */
import path from 'node:path';

import { actualKey, primaryKey, type MarsTree } from '../tree/index.js';
import type { SystemdConfig } from './config.js';
import { resolveUnitSetting } from './generate.js';
import { formatStatus, NONE, readSettings, statusKey, type ActivationStatus } from './settings.js';
import { run, type RunResult, type Systemctl } from './systemctl.js';
import type { TemplateLibrary, TemplateVars } from './templates.js';

export type Decision =
  | { readonly action: 'none'; readonly why: string }
  | { readonly action: 'start' | 'stop'; readonly units: readonly string[]; readonly want: string; readonly why: string };

/** The inputs activation depends on; equal snapshots give equal decisions. */
async function snapshot(tree: MarsTree, res: string): Promise<string> {
  const keys = [primaryKey(res), actualKey(res, tree.host, 'is-primary'), actualKey(res, tree.host, 'device')];
  const settings = await readSettings(tree, res);
  const values = await Promise.all(keys.map((k) => tree.getValue(k)));
  return JSON.stringify([settings, values]);
}

/** What should happen on this host now. */
export async function decide(tree: MarsTree, res: string, library: TemplateLibrary, vars: TemplateVars): Promise<Decision> {
  const settings = await readSettings(tree, res);
  if (settings.startUnit === undefined) return { action: 'none', why: `no systemd unit is set for ${res}` };
  const want = settings.want ?? NONE;
  const exported = (await tree.getValue(actualKey(res, tree.host, 'is-primary'))) === '1';
  if (want === tree.host && exported) {
    return { action: 'start', units: resolveUnitSetting(library, vars, settings.startUnit, 'start'), want,
      why: `systemd-want is ${tree.host} and the device is exported here` };
  }
  const why = want !== tree.host ? `systemd-want is ${want}` : `the device is not exported on ${tree.host} (yet)`;
  return { action: 'stop', units: resolveUnitSetting(library, vars, settings.stopUnit ?? settings.startUnit, 'stop'), want, why };
}

/** Run one decision: `.script` units directly (`<script> start|stop`), the rest through systemctl. */
async function perform(d: Extract<Decision, { units: readonly string[] }>, config: SystemdConfig, systemctl: Systemctl): Promise<RunResult> {
  const scripts = d.units.filter((u) => u.endsWith('.script'));
  const units = d.units.filter((u) => !u.endsWith('.script'));
  // Start from the bottom (native units, then scripts), stop from the top.
  const steps: Array<() => Promise<RunResult>> = [
    ...(units.length > 0 ? [() => (d.action === 'start' ? systemctl.start(units) : systemctl.stop(units))] : []),
    ...scripts.map((s) => () => run(path.join(config.scriptDir, s), [d.action])),
  ];
  if (d.action === 'stop') steps.reverse();
  let last: RunResult = { code: 0, stdout: '', stderr: '' };
  for (const step of steps) {
    last = await step();
    if (last.code !== 0) return last;
  }
  return last;
}

export interface ActivationResult {
  readonly decision: Decision;
  readonly status?: ActivationStatus;
}

/**
 * Decide, act, record; then look again and repeat while the inputs moved during the action
 * (a systemd path unit does not watch while its service runs, so a change then would
 * otherwise wait for the next unrelated event). At most `maxRounds` rounds.
 */
export async function activate(tree: MarsTree, res: string, library: TemplateLibrary, vars: TemplateVars,
  config: SystemdConfig, systemctl: Systemctl, maxRounds = 5): Promise<ActivationResult> {
  let result: ActivationResult | undefined;
  for (let round = 0; round < maxRounds; round++) {
    const before = await snapshot(tree, res);
    const decision = await decide(tree, res, library, vars);
    if (decision.action === 'none') return { decision };
    const r = await perform(decision, config, systemctl);
    const status: ActivationStatus = { action: decision.action, code: r.code, want: decision.want,
      ...(r.code !== 0 ? { detail: `${decision.units.join(' ')}: ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}` } : {}) };
    await tree.set(statusKey(res, tree.host), formatStatus(status));
    result = { decision, status };
    if ((await snapshot(tree, res)) === before) break;
  }
  return result!;
}
