/** Shared fixtures of the systemd tests: temp dirs, a fake systemctl, a stub marsadm. */
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { resolveConfig, type SystemdConfig } from '../../../src/systemd/index.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

export interface Fixture {
  readonly tmp: TempDir;
  readonly config: SystemdConfig;
  readonly env: NodeJS.ProcessEnv;
  /** Calls the fake systemctl received, one argv per line. */
  calls(): string[];
  /** Make the fake systemctl exit with `code` for calls whose argv contains `word`. */
  failOn(word: string, code: number): void;
}

/**
 * A test double for the systemctl binary only: it records its argv and exits 0 (or the
 * code set by failOn). Rendering, files and systemd-analyze verify stay real.
 */
export function fixture(extraTemplates?: string): Fixture {
  const tmp = tempDir('phobos-systemd-');
  const dirs = { unit: tmp.file('unit'), script: tmp.file('scripts'), run: tmp.file('run'), bin: tmp.file('bin'), sys: tmp.file('system') };
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true });
  const log = tmp.file('systemctl.log');
  const fail = tmp.file('systemctl.fail');
  writeFileSync(fail, '');
  writeFileSync(path.join(dirs.bin, 'systemctl'),
    `#!/bin/sh\necho "$*" >> '${log}'\nwhile read -r word code; do case " $* " in *" $word "*) exit "$code";; esac; done < '${fail}'\nexit 0\n`);
  writeFileSync(path.join(dirs.bin, 'marsadm'), '#!/bin/sh\nexit 0\n');
  chmodSync(path.join(dirs.bin, 'systemctl'), 0o755);
  chmodSync(path.join(dirs.bin, 'marsadm'), 0o755);
  const templatePath = [extraTemplates, path.resolve('templates')].filter((d): d is string => d !== undefined).join(':');
  const env: NodeJS.ProcessEnv = {
    PHOBOS_UNIT_DIR: dirs.unit, PHOBOS_SCRIPT_DIR: dirs.script, PHOBOS_RUN_DIR: dirs.run,
    PHOBOS_SYSTEMCTL: path.join(dirs.bin, 'systemctl'), PHOBOS_MARSADM: path.join(dirs.bin, 'marsadm'),
    PHOBOS_TEMPLATE_PATH: templatePath, PHOBOS_SYSTEMD_UNIT_PATH: dirs.sys,
  };
  return {
    tmp, env, config: resolveConfig({}, env),
    calls: () => {
      try {
        return readFileSync(log, 'utf8').split('\n').filter((l) => l !== '');
      } catch {
        return [];
      }
    },
    failOn: (word, code) => writeFileSync(fail, `${word} ${code}\n`, { flag: 'a' }),
  };
}

/** Run fn with process.env extended by env (the CLI reads its settings from there). */
export async function withEnv<T>(env: NodeJS.ProcessEnv, fn: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(env)) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
  }
}
