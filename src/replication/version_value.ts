/**
 * Making a version link's value (docs/replication.md "Version links"); reading them is
 * versions.ts. Apart because only writers need node:crypto, which costs a view ~7 ms to load.
 */
import { createHash } from 'node:crypto';

import { firstSection } from './versions.js';

/** The value of the link for `log` ending at `offset`, chained to the previous link's value. */
export function versionValue(previousValue: string | null | undefined, log: string, offset: number): string {
  const previous = previousValue ? firstSection(previousValue) : '';
  const digest = createHash('sha256').update(`${log},${offset}:${previous}`).digest('hex').slice(0, 32);
  return `${digest},${log},${offset}:${previous}`;
}
