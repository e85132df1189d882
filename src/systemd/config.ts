/**
 * Where generation reads and writes, from options and environment, with the defaults a
 * production host uses. Tests point every directory and binary into a temp dir.
 */
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

import { systemctlBinary, systemdAnalyzeBinary } from './systemctl.js';
import { templateSearchPath, type TemplateVars } from './templates.js';

export interface SystemdConfig {
  /** Generated units (option --unit-dir, env PHOBOS_UNIT_DIR; default /run/systemd/system). */
  readonly unitDir: string;
  /**
   * Generated `.script` units (option --script-dir, env PHOBOS_SCRIPT_DIR; default
   * /var/lib/phobos/systemd-scripts): /run is often mounted noexec.
   */
  readonly scriptDir: string;
  /** The trigger services' small state files (env PHOBOS_RUN_DIR; default /run/phobos). */
  readonly runDir: string;
  readonly templatePath: readonly string[];
  /** Installed units, to accept a start/stop unit that no template serves (env PHOBOS_SYSTEMD_UNIT_PATH). */
  readonly unitSearchPath: readonly string[];
  /** Absolute marsadm for ExecStart= (env PHOBOS_MARSADM; default the first marsadm on PATH, else /usr/bin/marsadm). */
  readonly marsadm: string;
  readonly systemctl: string;
  readonly systemdAnalyze: string;
}

export const DEFAULT_UNIT_DIR = '/run/systemd/system';
export const DEFAULT_SCRIPT_DIR = '/var/lib/phobos/systemd-scripts';
const DEFAULT_UNIT_SEARCH_PATH = ['/etc/systemd/system', '/run/systemd/system', '/usr/local/lib/systemd/system',
  '/usr/lib/systemd/system', '/lib/systemd/system'];

export function resolveConfig(options: { unitDir?: string; scriptDir?: string } = {},
  env: NodeJS.ProcessEnv = process.env): SystemdConfig {
  const list = (v: string | undefined): string[] | undefined => (v ? v.split(':').filter((d) => d !== '') : undefined);
  return {
    unitDir: options.unitDir ?? env['PHOBOS_UNIT_DIR'] ?? DEFAULT_UNIT_DIR,
    scriptDir: options.scriptDir ?? env['PHOBOS_SCRIPT_DIR'] ?? DEFAULT_SCRIPT_DIR,
    runDir: env['PHOBOS_RUN_DIR'] ?? '/run/phobos',
    templatePath: templateSearchPath(env),
    unitSearchPath: list(env['PHOBOS_SYSTEMD_UNIT_PATH']) ?? DEFAULT_UNIT_SEARCH_PATH,
    marsadm: env['PHOBOS_MARSADM'] ?? findOnPath('marsadm', env['PATH']) ?? '/usr/bin/marsadm',
    systemctl: systemctlBinary(env),
    systemdAnalyze: systemdAnalyzeBinary(env),
  };
}

function findOnPath(name: string, searchPath: string | undefined): string | undefined {
  for (const dir of (searchPath ?? '').split(':')) {
    if (!path.isAbsolute(dir)) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The variables a resource's templates see (templates.ts TemplateVars). */
export function resourceVars(config: SystemdConfig, root: string, host: string, res: string): TemplateVars {
  return {
    res, host, root, resdir: path.join(root, `resource-${res}`), device: `/dev/mars/${res}`,
    marsadm: config.marsadm, scriptDir: config.scriptDir, runDir: config.runDir,
  };
}
