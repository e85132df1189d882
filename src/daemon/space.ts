/**
 * Emergency levels from the free space of the filesystem that holds /mars
 * (docs/emergency.md). Four thresholds of free space, in percent, each a step of the
 * cascade: 1 warn, 2 secondaries drop logs they have replayed, 3 secondaries stop
 * fetching (and syncing), 4 the primary stops logging and writes go straight to its disk.
 *
 * A level is entered when free space falls below its threshold and left only when free
 * space is back above the threshold plus HYSTERESIS_PERCENT, so a filesystem hovering
 * at a threshold does not flip the primary between logging and not logging.
 */
import { statfs } from 'node:fs/promises';

export type EmergencyLevel = 0 | 1 | 2 | 3 | 4;

/** Free-space thresholds in percent for levels 1..4, decreasing. */
export type Thresholds = readonly [number, number, number, number];

export const DEFAULT_THRESHOLDS: Thresholds = [10, 7, 5, 2];
export const HYSTERESIS_PERCENT = 1;

/** `10,7,5,2` -> thresholds; null if malformed (not four decreasing numbers in 0..100). */
export function parseThresholds(value: string | undefined): Thresholds | null {
  if (!value) return null;
  const parts = value.split(',').map((p) => Number(p.trim()));
  if (parts.length !== 4 || parts.some((p) => !Number.isFinite(p) || p < 0 || p > 100)) return null;
  for (let i = 1; i < 4; i++) if (parts[i]! > parts[i - 1]!) return null;
  return parts as unknown as Thresholds;
}

/** The level for `freePercent`, given the level we are at now (for the hysteresis). */
export function nextLevel(freePercent: number, current: EmergencyLevel, t: Thresholds): EmergencyLevel {
  let level: EmergencyLevel = 0;
  for (let l = 4; l >= 1; l--) {
    const threshold = t[l - 1]!;
    // Staying at (or above) a level we are in needs the margin to leave it.
    const limit = l <= current ? threshold + HYSTERESIS_PERCENT : threshold;
    if (freePercent < limit) {
      level = l as EmergencyLevel;
      break;
    }
  }
  return level;
}

/** Free space of the filesystem holding `dir`, in percent of its size (as `df` counts for non-root users). */
export async function freePercent(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.blocks > 0 ? (100 * s.bavail) / s.blocks : 100;
}

/** Tracks the level of one filesystem; the daemon samples it once per reconcile pass. */
export class SpaceMonitor {
  private current: EmergencyLevel = 0;
  private free = 100;

  constructor(private readonly dir: string, private readonly log: (line: string) => void) {}

  get level(): EmergencyLevel {
    return this.current;
  }

  get freePercent(): number {
    return this.free;
  }

  async sample(thresholds: Thresholds): Promise<EmergencyLevel> {
    this.free = await freePercent(this.dir);
    const level = nextLevel(this.free, this.current, thresholds);
    if (level !== this.current) {
      this.log(`log area ${this.dir}: ${this.free.toFixed(1)} % free: emergency level ${this.current} -> ${level}` +
        ` (thresholds ${thresholds.join(',')} %; ${DESCRIPTIONS[level]})`);
      this.current = level;
    }
    return level;
  }
}

const DESCRIPTIONS: Record<EmergencyLevel, string> = {
  0: 'normal operation',
  1: 'warning: free space in the log area',
  2: 'secondaries delete the logs they have replayed',
  3: 'secondaries stop fetching and syncing',
  4: 'primaries stop logging: writes go to the disk only; secondaries need `marsadm invalidate` afterwards',
};
