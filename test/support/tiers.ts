/**
 * Test tiers that need something this machine may lack (root, a package). A tier that
 * cannot run says why; with PHOBOS_REQUIRE_ALL_TIERS=1 (set by .ci/run) that is a failure
 * instead of a skip.
 */
import { spawnSync } from 'node:child_process';

export const REQUIRE_ALL_TIERS = process.env['PHOBOS_REQUIRE_ALL_TIERS'] === '1';

/**
 * Call from a `before` hook: returns normally if the tier can run, otherwise skips the
 * suite (or fails it under PHOBOS_REQUIRE_ALL_TIERS=1) with the reason.
 */
export function requireTier(ctx: Mocha.Context, tier: string, missing: string | null): void {
  if (missing === null) return;
  const message = `tier '${tier}' cannot run: ${missing}`;
  if (REQUIRE_ALL_TIERS) throw new Error(`${message} (PHOBOS_REQUIRE_ALL_TIERS=1 turns this skip into a failure)`);
  console.log(`      SKIPPED ${message}`);
  ctx.skip();
}

/** null if the command exists on PATH, else a sentence saying how to get it. */
export function missingCommand(command: string, installHint: string): string | null {
  const found = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  return found.status === 0 ? null : `${command} not found; ${installHint}`;
}
