/**
 * Generation: render the units of one resource, verify them, and commit them into the
 * unit directory so that a failure at any step before the commit leaves the previously
 * generated units exactly as they were.
 *
 * 1. plan: the resource's `# ALWAYS_START` templates plus its start and stop units, and
 *    every unit they reference that a template serves (transitive closure);
 * 2. stage: write the files into a temp dir inside the unit (script) dir;
 * 3. verify: `systemd-analyze verify`, any output fails;
 * 4. commit: stop and remove the resource's units no longer wanted, rename the staged
 *    files into place, one `systemctl daemon-reload` (only if a file changed), then enable
 *    and start the `# ALWAYS_START` units.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { SystemdConfig } from './config.js';
import { isKeyword, parseMarkers, referencedUnits } from './markers.js';
import type { SystemdSettings } from './settings.js';
import type { Systemctl } from './systemctl.js';
import { UNIT_SUFFIXES, type RenderedUnit, type Template, type TemplateLibrary, type TemplateVars } from './templates.js';
import { verifyUnits } from './verify.js';

export class GenerateError extends Error {
  override readonly name = 'GenerateError';
}

/** First line of every generated file; how the generator knows which files are its own. */
const HEADER = /^### phobos: generated for resource (\S+) from (.*)$/m;

export function header(res: string, template: Template): string {
  return `### phobos: generated for resource ${res} from ${template.file}\n### Do not edit: \`marsadm systemd-trigger ${res}\` rewrites it.\n`;
}

/** The text written to disk: the header first (after a script's `#!` line). */
function fileText(res: string, unit: RenderedUnit): string {
  const head = header(res, unit.template);
  if (unit.kind === 'script' && unit.text.startsWith('#!')) {
    const eol = unit.text.indexOf('\n') + 1;
    return unit.text.slice(0, eol) + head + unit.text.slice(eol);
  }
  return head + unit.text;
}

/** Does a template's file name depend on the resource (so its units belong to one resource)? */
function isPerResource(t: Template): boolean {
  return /\{\{[^}]*\bres(dir)?\b[^}]*\}\}/.test(t.fileName) || t.fileName.includes('^{');
}

/**
 * Unit names for a start/stop setting: a KEYWORD selects the templates marked
 * `# KEYWORD_START` (or `_STOP`); anything else is one unit name.
 */
export function resolveUnitSetting(library: TemplateLibrary, vars: TemplateVars, value: string, side: 'start' | 'stop'): string[] {
  if (!isKeyword(value)) return [value];
  const names = perResourceUnits(library, vars)
    .filter((u) => (side === 'start' ? u.markers.startFor : u.markers.stopFor).includes(value))
    .map((u) => u.name);
  if (names.length === 0) {
    throw new GenerateError(`no template is marked \`# ${value}_${side.toUpperCase()}\` (searched ${library.searchPath.join(', ')}); ` +
      `add the marker to a template or name a unit instead of ${value}`);
  }
  return names;
}

/** Every per-resource template without a match operator, rendered (for their markers). */
function perResourceUnits(library: TemplateLibrary, vars: TemplateVars): RenderedUnit[] {
  return library.templates.filter((t) => isPerResource(t) && !t.fileName.includes('^{')).map((t) => {
    const name = library.renderName(t, vars);
    return library.render(t, name, vars);
  });
}

/** Is `name` installed outside our generation (a unit file, or the template of an instance)? */
export function isInstalledUnit(name: string, searchPath: readonly string[]): boolean {
  const at = name.indexOf('@');
  const dot = name.lastIndexOf('.');
  const candidates = at > 0 && dot > at ? [name, `${name.slice(0, at + 1)}${name.slice(dot)}`] : [name];
  return searchPath.some((dir) => candidates.some((c) => existsSync(path.join(dir, c))));
}

export function checkUnitName(name: string): void {
  if (name.includes('/') || !UNIT_SUFFIXES.some((s) => name.endsWith(`.${s}`)) || name.startsWith('.')) {
    throw new GenerateError(`'${name}' is not a unit name: use NAME.SUFFIX with a suffix of ${UNIT_SUFFIXES.join(', ')} ` +
      '(for a path, `systemd-escape --path --suffix=mount PATH` gives the mount unit\'s name)');
  }
}

/**
 * The units to generate for a resource on this host. Throws GenerateError naming the unit
 * or template at fault; nothing is written.
 */
export function planResource(library: TemplateLibrary, vars: TemplateVars, settings: SystemdSettings,
  config: Pick<SystemdConfig, 'unitSearchPath'>, options: { force?: boolean } = {}): RenderedUnit[] {
  const roots = perResourceUnits(library, vars).filter((u) => u.markers.alwaysStart).map((u) => u.name);
  const wanted = new Set<string>();
  for (const [value, side] of [[settings.startUnit, 'start'], [settings.stopUnit, 'stop']] as const) {
    if (value === undefined) continue;
    for (const name of resolveUnitSetting(library, vars, value, side)) {
      checkUnitName(name);
      if (!library.find(name, vars) && !options.force && !isInstalledUnit(name, config.unitSearchPath)) {
        throw new GenerateError(`unit ${name} matches no template (searched ${library.searchPath.join(', ')}) and is not ` +
          `installed (${config.unitSearchPath.join(', ')}); add a template for it, install it, or pass --force`);
      }
      wanted.add(name);
    }
  }
  return closure(library, vars, [...roots, ...wanted]);
}

/** Render `names` and every unit they reference that a template serves. */
function closure(library: TemplateLibrary, vars: TemplateVars, names: readonly string[]): RenderedUnit[] {
  const done = new Map<string, RenderedUnit>();
  const queue = [...names];
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (done.has(name)) continue;
    const found = library.find(name, vars);
    if (!found) continue; // a unit of the system (network.target, an installed service)
    if (!isPerResource(found.template)) {
      throw new GenerateError(`template ${found.template.file} serves ${name} but its file name does not use the resource ` +
        `(put {{esc res}} or a ^{var} in it; shared units belong in systemd-units/)`);
    }
    const unit = library.render(found.template, name, found.vars);
    done.set(name, unit);
    queue.push(...referencedUnits(unit.text));
  }
  return [...done.values()];
}

export interface CommitReport {
  readonly written: readonly string[];
  readonly removed: readonly string[];
  readonly unchanged: readonly string[];
  readonly reloaded: boolean;
  readonly started: readonly string[];
  /** systemctl failures after the files were committed (one line each). */
  readonly problems: readonly string[];
}

interface OwnedFile {
  readonly name: string;
  readonly file: string;
  readonly text: string;
}

/** Files in `dir` that the generator wrote for `res`. */
async function ownedFiles(dir: string, res: string): Promise<OwnedFile[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const owned: OwnedFile[] = [];
  for (const name of names.filter((n) => !n.startsWith('.'))) {
    const file = path.join(dir, name);
    const text = await readFile(file, 'utf8').catch(() => '');
    if (HEADER.exec(text)?.[1] === res) owned.push({ name, file, text });
  }
  return owned;
}

/**
 * Stage, verify and commit the units of `res` (an empty list removes them all). Throws
 * GenerateError before touching the unit dir if verification fails.
 */
export async function commitResource(res: string, units: readonly RenderedUnit[], config: SystemdConfig,
  systemctl: Systemctl): Promise<CommitReport> {
  const dirOf = (u: { kind: 'unit' | 'script' }): string => (u.kind === 'script' ? config.scriptDir : config.unitDir);
  const stageDirs = { unit: stageDir(config.unitDir, res), script: stageDir(config.scriptDir, res) };
  try {
    await stage(res, units, stageDirs);
    // Committed files were verified when they were written: a run that would change
    // nothing (every trigger run) skips systemd-analyze, seconds on a slow host.
    if (!(await sameAsCommitted(res, units, config))) await verifyStaged(res, units, config, stageDirs.script);
    return await commitStaged(res, units, config, systemctl, dirOf, stageDirs);
  } finally {
    await Promise.all(Object.values(stageDirs).map((d) => rm(d, { recursive: true, force: true })));
  }
}

/** The generator's files for `res` are exactly `units`, byte for byte. */
async function sameAsCommitted(res: string, units: readonly RenderedUnit[], config: SystemdConfig): Promise<boolean> {
  const existing = [...await ownedFiles(config.unitDir, res), ...await ownedFiles(config.scriptDir, res)];
  return existing.length === units.length &&
    units.every((u) => existing.find((f) => f.name === u.name)?.text === fileText(res, u));
}

function stageDir(dir: string, res: string): string {
  return path.join(dir, `.phobos-stage-${res}-${process.pid}`);
}

async function stage(res: string, units: readonly RenderedUnit[], dirs: { unit: string; script: string }): Promise<void> {
  for (const u of units) {
    const dir = dirs[u.kind];
    await mkdir(dir, { recursive: true });
    const file = path.join(dir, u.name);
    await writeFile(file, fileText(res, u));
    if (u.kind === 'script') await chmod(file, 0o755);
  }
}

async function verifyStaged(res: string, units: readonly RenderedUnit[], config: SystemdConfig, stagedScripts: string): Promise<void> {
  const toVerify = new Map(units.filter((u) => u.kind === 'unit').map((u) => [u.name, fileText(res, u)]));
  const result = await verifyUnits(toVerify, {
    binary: config.systemdAnalyze,
    replace: new Map([[config.scriptDir + '/', stagedScripts + '/']]),
  });
  if (!result.ok) {
    const first = result.output.split('\n')[0] ?? '';
    throw new GenerateError(`resource ${res}: systemd-analyze verify rejects the generated units: ${first}` +
      `${result.output.includes('\n') ? ' (and more)' : ''}; fix the template, the previous units stay in place`);
  }
}

async function commitStaged(res: string, units: readonly RenderedUnit[], config: SystemdConfig, systemctl: Systemctl,
  dirOf: (u: { kind: 'unit' | 'script' }) => string, stageDirs: { unit: string; script: string }): Promise<CommitReport> {
  const problems: string[] = [];
  const note = (what: string, r: { code: number; stderr: string }): void => {
    if (r.code !== 0) problems.push(`${what}: systemctl exit ${r.code}: ${r.stderr.trim().split('\n')[0] ?? ''}`);
  };
  const wantedNames = new Set(units.map((u) => u.name));
  const existing = [...await ownedFiles(config.unitDir, res), ...await ownedFiles(config.scriptDir, res)];
  const gone = existing.filter((f) => !wantedNames.has(f.name));
  const changed = units.filter((u) => existing.find((f) => f.name === u.name)?.text !== fileText(res, u));

  const stopping = gone.filter((f) => !f.name.endsWith('.script') && !parseMarkers(f.text).keepRunning).map((f) => f.name);
  if (stopping.length > 0) note(`stop ${stopping.join(' ')}`, await systemctl.stop(stopping));
  const disabling = gone.filter((f) => !f.name.endsWith('.script') && /^\[Install\]/m.test(f.text)).map((f) => f.name);
  if (disabling.length > 0) note(`disable ${disabling.join(' ')}`, await systemctl.call('disable', '--runtime', ...disabling));

  for (const u of changed) await rename(path.join(stageDirs[u.kind], u.name), path.join(dirOf(u), u.name));
  for (const f of gone) await rm(f.file, { force: true });

  const reloaded = changed.length > 0 || gone.length > 0;
  if (reloaded) note('daemon-reload', await systemctl.daemonReload());
  const started = await startAlways(units, changed, systemctl, note);
  return {
    written: changed.map((u) => u.name), removed: gone.map((f) => f.name),
    unchanged: units.filter((u) => !changed.includes(u)).map((u) => u.name), reloaded, started, problems,
  };
}

/**
 * Enable (if they can be) the `# ALWAYS_START` units just written, and start them all;
 * start is a no-op when they run. An unchanged unit was enabled when it was written (its
 * runtime links live in /run like the unit itself), and `systemctl enable` reads every
 * installed unit: seconds on a slow host, at every trigger run.
 */
async function startAlways(units: readonly RenderedUnit[], written: readonly RenderedUnit[], systemctl: Systemctl,
  note: (what: string, r: { code: number; stderr: string }) => void): Promise<string[]> {
  const always = units.filter((u) => u.kind === 'unit' && u.markers.alwaysStart && !u.markers.alwaysDisabled);
  const enabling = always.filter((u) => written.includes(u) && /^\[Install\]/m.test(u.text)).map((u) => u.name);
  if (enabling.length > 0) note(`enable ${enabling.join(' ')}`, await systemctl.enableRuntime(enabling));
  const names = always.map((u) => u.name);
  if (names.length > 0) note(`start ${names.join(' ')}`, await systemctl.start(names));
  return names;
}

/** The generated units of every resource in `unitDir`/`scriptDir`, by resource. */
export async function generatedResources(config: Pick<SystemdConfig, 'unitDir' | 'scriptDir'>): Promise<string[]> {
  const found = new Set<string>();
  for (const dir of [config.unitDir, config.scriptDir]) {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name.startsWith('.')) continue;
      const text = await readFile(path.join(dir, name), 'utf8').catch(() => '');
      const res = HEADER.exec(text)?.[1];
      if (res) found.add(res);
    }
  }
  return [...found];
}
