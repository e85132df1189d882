/**
 * Where the tree is and which host we are: option, then environment, then default.
 *
 * @example
 * resolveTreeLocation({ root: undefined, host: 'alpha' });  // { root: '/mars', host: 'alpha' }
 */
import os from 'node:os';

import { checkName } from './names.js';
import type { TreeLocation } from './types.js';

export const DEFAULT_ROOT = '/mars';

/** The short host name: up to the first '.', lower-cased. */
export function shortHostName(): string {
  return (os.hostname().split('.')[0] ?? '').toLowerCase();
}

/**
 * `--root` / `MARS_ROOT` / `/mars` and `--host` / `MARS_HOST` / short host name. The host
 * is checked; a system host name that is not a valid name asks for `--host`.
 */
export function resolveTreeLocation(
  options: { readonly root?: string | undefined; readonly host?: string | undefined },
  env: NodeJS.ProcessEnv = process.env,
): TreeLocation {
  const root = options.root || env['MARS_ROOT'] || DEFAULT_ROOT;
  const given = options.host || env['MARS_HOST'];
  if (given) return { root, host: checkName('host', given) };
  const host = shortHostName();
  try {
    checkName('host', host);
  } catch (e) {
    throw new Error(`${(e as Error).message} (from the system host name); pass --host or set MARS_HOST`, { cause: e });
  }
  return { root, host };
}
