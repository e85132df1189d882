/**
 * `systemd-analyze verify` on rendered units, strictly: any output at all is a failure.
 * verify exits 0 on unknown keys and ordering cycles and only prints a message, so the
 * exit code alone would let those through (reference/node-ecosystem.md section 6).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { run, systemdAnalyzeBinary } from './systemctl.js';

export interface VerifyOptions {
  /** systemd-analyze (env PHOBOS_SYSTEMD_ANALYZE; default /usr/bin/systemd-analyze). */
  readonly binary?: string;
  /**
   * Text to replace in the copies verified, e.g. the final script directory by the staging
   * one, so `ExecStart=` of a script not yet committed points at a file that exists.
   */
  readonly replace?: ReadonlyMap<string, string>;
  /** More directories where units referenced by `Requires=` etc. are found. */
  readonly unitPath?: readonly string[];
}

export interface VerifyResult {
  readonly ok: boolean;
  /** Everything verify printed, stdout and stderr; empty when ok. */
  readonly output: string;
  /** False when systemd-analyze is not installed (nothing was checked). */
  readonly checked: boolean;
}

/** Verify units given as file name -> text. */
export async function verifyUnits(units: ReadonlyMap<string, string>, options: VerifyOptions = {}): Promise<VerifyResult> {
  const binary = options.binary ?? systemdAnalyzeBinary();
  if (!existsSync(binary)) return { ok: true, output: '', checked: false };
  if (units.size === 0) return { ok: true, output: '', checked: true };
  const dir = await mkdtemp(path.join(os.tmpdir(), 'phobos-verify-'));
  try {
    for (const [name, text] of units) await writeFile(path.join(dir, name), substitute(text, options.replace));
    const files = [...units.keys()].map((n) => path.join(dir, n));
    // Trailing ':' keeps systemd's own unit path after ours.
    const env = { ...process.env, SYSTEMD_UNIT_PATH: [dir, ...(options.unitPath ?? [])].join(':') + ':', SYSTEMD_LOG_COLOR: '0' };
    const r = await run(binary, ['verify', '--man=no', ...files], 60_000, env);
    const output = (r.stdout + r.stderr).split(dir + '/').join('');
    return { ok: r.code === 0 && output.trim() === '', output: output.trim(), checked: true };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function substitute(text: string, replace: ReadonlyMap<string, string> | undefined): string {
  let out = text;
  for (const [from, to] of replace ?? []) out = out.split(from).join(to);
  return out;
}
