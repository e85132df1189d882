/**
 * What an idle cluster still writes: a TreeWatcher on each host's root counts the changes
 * it sees by key shape (resource names as <res>). Every change costs every watcher and
 * every peer that relays it, so this is the first thing to look at when idle CPU is high.
 */
import { TreeWatcher } from '../src/tree/index.js';

export interface ChurnCount {
  /** One line per host: total changes and the five most frequent key shapes. */
  stop(): string[];
}

export async function countChurn(hosts: readonly { name: string; root: string }[]): Promise<ChurnCount> {
  const counts = hosts.map(() => new Map<string, number>());
  const watchers = await Promise.all(hosts.map((h, i) => TreeWatcher.start({
    root: h.root,
    rescanMs: 0,
    onChange: (c) => {
      const shape = c.key.replace(/^resource-[^/]+/, 'resource-<res>');
      counts[i]!.set(shape, (counts[i]!.get(shape) ?? 0) + 1);
    },
  })));
  return {
    stop: () => {
      for (const w of watchers) w.close();
      return hosts.map((h, i) => {
        const byShape = [...counts[i]!].sort((a, b) => b[1] - a[1]);
        const total = byShape.reduce((sum, [, n]) => sum + n, 0);
        const top = byShape.slice(0, 5).map(([k, n]) => `${k} x${n}`).join(', ');
        return `${h.name}: ${total} changes (${top || 'none'})`;
      });
    },
  };
}
