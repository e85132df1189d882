/**
 * Unit templates: where they are found, how they are loaded and kept fresh, and how one
 * is rendered for a resource. Language and examples: docs/systemd.md.
 *
 * A template is a file whose *name* is a handlebars template too. Its name may hold the
 * match operator `^{var}`, which matches any text of a requested unit name (like a shell
 * `*`) and binds it to `var` for the body:
 *
 * @example
 * // template file: ^{mntname}-{{esc res}}.mount   requested: vol-r1.mount
 * // -> mntname = 'vol', and the body may say Where={{unesc mntname}}/{{res}}
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { watch as chokidarWatch } from 'chokidar';
import Handlebars from 'handlebars';

import { escapePath, escapeSpecifiers, execArgument, unescapePath } from './escape.js';
import { parseMarkers, type UnitMarkers } from './markers.js';

/** Suffixes a template may have: systemd's unit types, plus `.script` (an idempotent script). */
export const UNIT_SUFFIXES = ['service', 'socket', 'device', 'mount', 'automount', 'swap', 'target', 'path', 'timer',
  'slice', 'scope', 'script'] as const;

/** Variables every template sees. Match operators add their own. */
export interface TemplateVars {
  /** The resource name, as in the tree (`my-data`). */
  readonly res: string;
  /** This host. */
  readonly host: string;
  /** The tree root (`/mars`). */
  readonly root: string;
  /** `<root>/resource-<res>`. */
  readonly resdir: string;
  /** The block device of the resource on its primary (`/dev/mars/<res>`). */
  readonly device: string;
  /** Absolute path of marsadm, for `ExecStart=`. */
  readonly marsadm: string;
  /** Where `.script` units are written (a directory that allows exec). */
  readonly scriptDir: string;
  /** Where the trigger service keeps what it last acted on (`/run/phobos`). */
  readonly runDir: string;
  readonly [name: string]: string;
}

export interface Template {
  /** The template file's name, e.g. `^{mntname}-{{esc res}}.mount`. */
  readonly fileName: string;
  /** Full path of the file, for messages and generated headers. */
  readonly file: string;
  readonly body: string;
}

export interface RenderedUnit {
  /** The unit's file name, e.g. `vol-r1.mount`. */
  readonly name: string;
  readonly template: Template;
  readonly text: string;
  readonly markers: UnitMarkers;
  /** `script` units are executables run as `<script> start|stop`, never given to systemctl. */
  readonly kind: 'unit' | 'script';
}

export class TemplateError extends Error {
  override readonly name = 'TemplateError';
}

/** The templates shipped with the package: `<package>/templates`, from src/ or dist/src/. */
export function packageTemplateDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = [path.resolve(here, '../../templates'), path.resolve(here, '../../../templates')];
  return candidates.find((d) => existsSync(d)) ?? candidates[0]!;
}

/**
 * Where templates are looked up, first hit (by file name) wins: `PHOBOS_TEMPLATE_PATH`
 * (colon-separated) if set, else `./systemd-templates`, `/etc/phobos/systemd-templates`,
 * and the package's `templates/`.
 */
export function templateSearchPath(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string[] {
  const fromEnv = env['PHOBOS_TEMPLATE_PATH'];
  if (fromEnv) return fromEnv.split(':').filter((d) => d !== '');
  return [path.join(cwd, 'systemd-templates'), '/etc/phobos/systemd-templates', packageTemplateDir()];
}

function isTemplateFileName(name: string): boolean {
  return !name.startsWith('.') && UNIT_SUFFIXES.some((s) => name.endsWith(`.${s}`));
}

async function readTemplateDir(dir: string): Promise<Template[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new TemplateError(`cannot read template directory ${dir}: ${(e as Error).message}`);
  }
  const templates: Template[] = [];
  for (const fileName of names.filter(isTemplateFileName).sort()) {
    const file = path.join(dir, fileName);
    if (!(await stat(file)).isFile()) continue;
    templates.push({ fileName, file, body: await readFile(file, 'utf8') });
  }
  return templates;
}

/** A handlebars instance with the unit helpers; templates compile with noEscape and strict. */
function makeHandlebars(): typeof Handlebars {
  const hb = Handlebars.create();
  hb.registerHelper('esc', (text: unknown) => escapePath(String(text)));
  hb.registerHelper('unesc', (text: unknown) => unescapePath(String(text)));
  hb.registerHelper('arg', (text: unknown) => execArgument(String(text)));
  hb.registerHelper('pct', (text: unknown) => escapeSpecifiers(String(text)));
  hb.registerHelper('shq', (text: unknown) => `'${String(text).replace(/'/g, `'\\''`)}'`);
  // The last argument of a helper is handlebars' options object, not a value.
  hb.registerHelper('concat', (...parts: unknown[]) => parts.slice(0, -1).map(String).join(''));
  hb.registerHelper('eq', (a: unknown, b: unknown) => a === b);
  return hb;
}

/** `^{var}` in a rendered template name. */
const MATCH_OPERATOR = /\^\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * All templates of a search path, by file name (first directory wins), with rendering
 * and name matching. `watch()` keeps it fresh when templates change on disk.
 */
export class TemplateLibrary {
  private readonly hb = makeHandlebars();
  private readonly compiled = new Map<string, HandlebarsTemplateDelegate>();

  private constructor(readonly searchPath: readonly string[], private list: Template[]) {}

  static async load(searchPath: readonly string[] = templateSearchPath()): Promise<TemplateLibrary> {
    return new TemplateLibrary(searchPath, await TemplateLibrary.readAll(searchPath));
  }

  private static async readAll(searchPath: readonly string[]): Promise<Template[]> {
    const byName = new Map<string, Template>();
    for (const dir of searchPath) {
      for (const t of await readTemplateDir(dir)) if (!byName.has(t.fileName)) byName.set(t.fileName, t);
    }
    return [...byName.values()];
  }

  get templates(): readonly Template[] {
    return this.list;
  }

  /** Read the search path again (drops compiled templates). */
  async reload(): Promise<void> {
    this.list = await TemplateLibrary.readAll(this.searchPath);
    this.compiled.clear();
  }

  /**
   * Reload whenever a template is added, changed or removed (chokidar: templates are
   * regular files, which it watches reliably). Returns a function that stops watching.
   */
  watch(onReload: (error?: Error) => void = () => undefined): () => Promise<void> {
    const watcher = chokidarWatch([...this.searchPath], { ignoreInitial: true, depth: 0 });
    let pending: NodeJS.Timeout | undefined;
    const schedule = (): void => {
      // An editor's save is several events; reload once they settle.
      clearTimeout(pending);
      pending = setTimeout(() => void this.reload().then(() => onReload(), (e: Error) => onReload(e)), 50);
    };
    for (const event of ['add', 'change', 'unlink', 'addDir', 'unlinkDir'] as const) watcher.on(event, schedule);
    return async () => {
      clearTimeout(pending);
      await watcher.close();
    };
  }

  /** The unit name a template has for these variables; may still hold `^{var}`. */
  renderName(template: Template, vars: TemplateVars): string {
    return this.renderText(template, template.fileName, `name of template ${template.file}`, vars);
  }

  /**
   * The template serving `unitName`, with the variables its match operators bound.
   * Templates without `^{}` are tried first, then those with; first hit wins.
   */
  find(unitName: string, vars: TemplateVars): { template: Template; vars: TemplateVars } | undefined {
    const named = this.list.map((t) => ({ t, name: this.renderName(t, vars) }));
    const exact = named.find(({ name }) => !name.includes('^{') && name === unitName);
    if (exact) return { template: exact.t, vars };
    for (const { t, name } of named) {
      if (!name.includes('^{')) continue;
      const bound = matchName(name, unitName);
      if (bound) return { template: t, vars: { ...vars, ...bound } };
    }
    return undefined;
  }

  /** Render `template` as unit `unitName`. */
  render(template: Template, unitName: string, vars: TemplateVars): RenderedUnit {
    const text = this.renderText(template, template.body, `template ${template.file}`, { ...vars, unit: unitName });
    return { name: unitName, template, text, markers: parseMarkers(text), kind: unitName.endsWith('.script') ? 'script' : 'unit' };
  }

  private renderText(template: Template, source: string, what: string, vars: TemplateVars): string {
    const key = `${template.file}\0${source === template.body ? 'body' : 'name'}`;
    try {
      let fn = this.compiled.get(key);
      if (!fn) {
        fn = this.hb.compile(source, { noEscape: true, strict: true });
        this.compiled.set(key, fn);
      }
      return fn(vars);
    } catch (e) {
      throw new TemplateError(`${what} does not render: ${firstLine((e as Error).message)}; ` +
        `fix the template (variables: ${Object.keys(vars).sort().join(', ')})`);
    }
  }
}

/**
 * Match a rendered template name holding `^{var}` against a unit name. Each `^{var}`
 * matches one or more characters; returns the bound variables, or undefined.
 */
export function matchName(pattern: string, unitName: string): Record<string, string> | undefined {
  const vars: string[] = [];
  let source = '', last = 0;
  for (const m of pattern.matchAll(MATCH_OPERATOR)) {
    source += escapeRegex(pattern.slice(last, m.index));
    if (vars.includes(m[1]!)) throw new TemplateError(`template name ${pattern} binds ^{${m[1]}} twice; use another name`);
    vars.push(m[1]!);
    source += `(?<${m[1]}>.+)`;
    last = m.index + m[0].length;
  }
  source += escapeRegex(pattern.slice(last));
  const found = new RegExp(`^${source}$`).exec(unitName);
  return found ? Object.fromEntries(vars.map((v) => [v, found.groups![v]!])) : undefined;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function firstLine(s: string): string {
  return s.split('\n').map((l) => l.trim()).filter((l) => l !== '')[0] ?? s;
}
