/**
 * marsadm's systemd verbs (docs/systemd.md):
 *
 * - set-systemd-unit RES START|KEYWORD [STOP]  declare the stack, generate its units
 * - get-systemd-unit RES                        show it (and what it resolves to here)
 * - set-systemd-want RES HOST|(none)            where the stack should run; (none) pauses it
 * - get-systemd-want RES                        show it, with each host's last activation
 * - systemd-trigger [RES]                       regenerate units (all resources without RES)
 * - systemd-trigger-extern [RES]                what the path units run: regenerate, then start or stop
 */
import {
  activate, commitResource, generatedResources, GenerateError, NONE, parseStatus, planResource, readSettings,
  resolveConfig, resolveUnitSetting, resourceVars, startUnitKey, statusKey, stopUnitKey, Systemctl, TemplateError, touchTrigger,
  TemplateLibrary, wantKey, type CommitReport, type SystemdConfig, type SystemdSettings,
} from '../../systemd/index.js';
import { dataKey, isValidName, primaryKey, resourceDir, sizeKey, type MarsTree } from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { liveResources, openTree } from '../tree_access.js';

interface Session {
  readonly tree: MarsTree;
  readonly config: SystemdConfig;
  readonly library: TemplateLibrary;
  readonly systemctl: Systemctl;
}

async function session(ctx: CommandContext): Promise<Session> {
  const tree = await openTree(ctx);
  const config = resolveConfig({
    ...(ctx.options['unit-dir'] ? { unitDir: String(ctx.options['unit-dir']) } : {}),
    ...(ctx.options['script-dir'] ? { scriptDir: String(ctx.options['script-dir']) } : {}),
  });
  const library = await TemplateLibrary.load(config.templatePath);
  return { tree, config, library, systemctl: new Systemctl({ binary: config.systemctl }) };
}

async function requireResource(tree: MarsTree, verb: string, res: string): Promise<void> {
  if (!isValidName(res) || (await tree.getValue(sizeKey(res))) === undefined) {
    throw new CommandError(`marsadm ${verb}: no resource ${res}; \`marsadm view\` lists them`);
  }
}

/** Template, generation and verify failures become one operator line naming the verb. */
function operatorError(verb: string, e: unknown): never {
  if (e instanceof GenerateError || e instanceof TemplateError || (e as Error).name === 'EscapeError') {
    throw new CommandError(`marsadm ${verb}: ${(e as Error).message}`, 1, { cause: e });
  }
  throw e;
}

/** Plan and commit one resource's units with the given settings. */
async function regenerate(s: Session, res: string, settings: SystemdSettings, force = false): Promise<CommitReport> {
  const vars = resourceVars(s.config, s.tree.root, s.tree.host, res);
  const units = planResource(s.library, vars, settings, s.config, { force });
  return commitResource(res, units, s.config, s.systemctl);
}

function reportLine(res: string, r: CommitReport, config: SystemdConfig): string {
  const parts = [`${r.written.length} written`, `${r.unchanged.length} unchanged`, `${r.removed.length} removed`];
  return `${res}: units in ${config.unitDir}: ${parts.join(', ')}${r.reloaded ? ' (daemon-reload)' : ''}`;
}

function writeProblems(ctx: CommandContext, res: string, r: CommitReport): boolean {
  for (const p of r.problems) ctx.err.write(`marsadm: ${res}: ${p}\n`);
  return r.problems.length === 0;
}

export async function setSystemdUnit(ctx: CommandContext): Promise<number> {
  const [res, start, stop] = ctx.args as [string, string, string | undefined];
  const s = await session(ctx);
  await requireResource(s.tree, 'set-systemd-unit', res);
  const settings: SystemdSettings = start === ''
    ? { startUnit: undefined, stopUnit: undefined, want: undefined }
    : { startUnit: start, stopUnit: stop ?? start, want: undefined };
  if (ctx.options['dry-run']) {
    const vars = resourceVars(s.config, s.tree.root, s.tree.host, res);
    let units;
    try {
      units = planResource(s.library, vars, settings, s.config, { force: Boolean(ctx.options['force']) });
    } catch (e) {
      operatorError('set-systemd-unit', e);
    }
    ctx.out.write(`would generate for ${res}: ${units.map((u) => u.name).join(' ')}\n`);
    return 0;
  }
  // Generate first: a bad unit or template is refused before the tree changes.
  const report = await regenerate(s, res, settings, Boolean(ctx.options['force'])).catch((e) => operatorError('set-systemd-unit', e));
  await storeUnits(s.tree, res, settings);
  ctx.out.write(`${reportLine(res, report, s.config)}\n`);
  return writeProblems(ctx, res, report) ? 0 : 1;
}

/** Write the start/stop keys; the first time, the stack is wanted where the resource is primary. */
async function storeUnits(tree: MarsTree, res: string, settings: SystemdSettings): Promise<void> {
  if (settings.startUnit === undefined) {
    for (const key of [startUnitKey(res), stopUnitKey(res)]) if ((await tree.getValue(key)) !== undefined) await tree.delete(key);
    return;
  }
  await tree.set(startUnitKey(res), settings.startUnit);
  await tree.set(stopUnitKey(res), settings.stopUnit ?? settings.startUnit);
  if ((await tree.getValue(wantKey(res))) === undefined) await tree.set(wantKey(res), (await tree.getValue(primaryKey(res))) ?? NONE);
}

export async function getSystemdUnit(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0]!;
  const s = await session(ctx);
  await requireResource(s.tree, 'get-systemd-unit', res);
  const settings = await readSettings(s.tree, res);
  const vars = resourceVars(s.config, s.tree.root, s.tree.host, res);
  const resolve = (value: string | undefined, side: 'start' | 'stop'): string[] | string => {
    if (value === undefined) return [];
    try {
      return resolveUnitSetting(s.library, vars, value, side);
    } catch (e) {
      return (e as Error).message;
    }
  };
  const view = {
    resource: res, startUnit: settings.startUnit ?? null, stopUnit: settings.stopUnit ?? null,
    startUnits: resolve(settings.startUnit, 'start'), stopUnits: resolve(settings.stopUnit, 'stop'),
  };
  if (ctx.options['json']) {
    ctx.out.write(`${JSON.stringify(view)}\n`);
  } else if (settings.startUnit === undefined) {
    ctx.out.write(`${res}: no systemd unit set\n`);
  } else {
    const show = (v: string[] | string): string => (Array.isArray(v) ? v.join(' ') : `(${v})`);
    ctx.out.write(`${settings.startUnit} ${settings.stopUnit}\n`);
    if (ctx.options['verbose']) ctx.out.write(`  start: ${show(view.startUnits)}\n  stop:  ${show(view.stopUnits)}\n`);
  }
  return 0;
}

export async function setSystemdWant(ctx: CommandContext): Promise<number> {
  const [res, host] = ctx.args as [string, string];
  const tree = await openTree(ctx);
  await requireResource(tree, 'set-systemd-want', res);
  if (host !== NONE) {
    if (!isValidName(host)) throw new CommandError(`marsadm set-systemd-want: '${host}' is not a host name; give a member of ${res} or (none)`);
    if ((await tree.getValue(dataKey(res, host))) === undefined && !ctx.options['force']) {
      throw new CommandError(`marsadm set-systemd-want: ${host} is not a member of ${res}; give a member, (none) to pause the stack, or --force`);
    }
  }
  if ((await tree.getValue(startUnitKey(res))) === undefined) {
    ctx.err.write(`marsadm: note: ${res} has no systemd unit yet (set-systemd-unit); the want is stored for later\n`);
  }
  if (ctx.options['dry-run']) {
    ctx.out.write(`would set systemd-want of ${res} to ${host}\n`);
    return 0;
  }
  await tree.set(wantKey(res), host);
  return 0;
}

export async function getSystemdWant(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0]!;
  const tree = await openTree(ctx);
  await requireResource(tree, 'get-systemd-want', res);
  const want = (await tree.getValue(wantKey(res))) ?? null;
  if (!ctx.options['json']) {
    ctx.out.write(`${want ?? NONE}\n`);
    return 0;
  }
  const hosts = (await tree.list(`${resourceDir(res)}/`)).map((e) => /^resource-[^/]+\/data-(.+)$/.exec(e.key)?.[1])
    .filter((h): h is string => h !== undefined);
  const status: Record<string, unknown> = {};
  for (const host of hosts) status[host] = parseStatus(await tree.getValue(statusKey(res, host))) ?? null;
  ctx.out.write(`${JSON.stringify({ resource: res, want, status })}\n`);
  return 0;
}

/** Regenerate `res`, or all resources (and drop units of resources that are gone). */
async function regenerateAll(ctx: CommandContext, s: Session, verb: string, only: string | undefined): Promise<boolean> {
  const live = await liveResources(s.tree);
  const targets = only !== undefined ? [only] : [...new Set([...live, ...await generatedResources(s.config)])];
  let ok = true;
  for (const res of targets) {
    try {
      const settings = live.includes(res) ? await readSettings(s.tree, res) : undefined;
      const report = settings ? await regenerate(s, res, settings, true) : await commitResource(res, [], s.config, s.systemctl);
      if (ctx.options['verbose']) ctx.out.write(`${reportLine(res, report, s.config)}\n`);
      ok = writeProblems(ctx, res, report) && ok;
    } catch (e) {
      ok = false;
      ctx.err.write(`marsadm ${verb}: ${(e as Error).message}\n`);
      if (!(e instanceof GenerateError || e instanceof TemplateError || (e as Error).name === 'EscapeError')) throw e;
    }
  }
  return ok;
}

export async function systemdTrigger(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0];
  const s = await session(ctx);
  if (res !== undefined) await requireResource(s.tree, 'systemd-trigger', res);
  const ok = await regenerateAll(ctx, s, 'systemd-trigger', res);
  if (res !== undefined) await touchTrigger(s.tree, res);
  return ok ? 0 : 1;
}

export async function systemdTriggerExtern(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0];
  const s = await session(ctx);
  if (res === undefined) return (await regenerateAll(ctx, s, 'systemd-trigger-extern', undefined)) ? 0 : 1;
  await requireResource(s.tree, 'systemd-trigger-extern', res);
  // Old units stay in place when generation fails, so activation still runs with them.
  const generated = await regenerateAll(ctx, s, 'systemd-trigger-extern', res);
  const vars = resourceVars(s.config, s.tree.root, s.tree.host, res);
  const result = await activate(s.tree, res, s.library, vars, s.config, s.systemctl).catch((e) => operatorError('systemd-trigger-extern', e));
  const { decision, status } = result;
  if (decision.action === 'none') {
    if (ctx.options['verbose']) ctx.out.write(`${res}: ${decision.why}; nothing to do\n`);
    return generated ? 0 : 1;
  }
  const line = `${res}: ${decision.action} ${decision.units.join(' ')} (${decision.why}): exit ${status?.code}`;
  if (status?.code !== 0) {
    throw new CommandError(`marsadm systemd-trigger-extern: ${line}: ${status?.detail ?? ''}; see journalctl -u ${decision.units[0]}`);
  }
  if (ctx.options['verbose']) ctx.out.write(`${line}\n`);
  return generated ? 0 : 1;
}
