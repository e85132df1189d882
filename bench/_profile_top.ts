/**
 * Summarise .cpuprofile files (bench/_cpu_profile.cjs): the functions with the most self
 * time, as % of the busy (non-idle) samples, and the busy time itself.
 *   node --import tsx bench/_profile_top.ts <file.cpuprofile>... [--top N] [--callers 'label']...
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function label(n: ProfileNode): string {
  const f = n.callFrame;
  const file = f.url ? `${path.basename(f.url)}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'} ${file}`.trim();
}

/** Self time of the samples in `name`, by their stack of callers (3 frames up). */
function callers(p: Profile, byId: Map<number, ProfileNode>, name: string, top: number): void {
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stacks = new Map<string, number>();
  p.samples.forEach((id, i) => {
    if (label(byId.get(id)!) !== name) return;
    const chain: string[] = [];
    for (let at = parent.get(id); at !== undefined && chain.length < 3; at = parent.get(at)) chain.push(label(byId.get(at)!));
    const key = chain.join(' < ');
    stacks.set(key, (stacks.get(key) ?? 0) + (p.timeDeltas[i] ?? 0));
  });
  console.log(`  callers of ${name}:`);
  for (const [stack, us] of [...stacks].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`    ${(us / 1e3).toFixed(0).padStart(6)} ms  ${stack}`);
  }
}

function summarise(file: string, top: number, callersOf: string[]): void {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  let busy = 0, idle = 0;
  p.samples.forEach((id, i) => {
    const us = p.timeDeltas[i] ?? 0;
    const name = label(byId.get(id)!);
    if (name === '(idle)') {
      idle += us;
      return;
    }
    busy += us;
    self.set(name, (self.get(name) ?? 0) + us);
  });
  console.log(`\n${path.basename(file)}: busy ${(busy / 1e6).toFixed(2)} s of ${((busy + idle) / 1e6).toFixed(2)} s`);
  for (const [name, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`  ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${(us / 1e3).toFixed(0).padStart(6)} ms  ${name}`);
  }
  for (const name of callersOf) callers(p, byId, name, 6);
}

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 15;
const callersOf: string[] = [];
for (let at = args.indexOf('--callers'); at >= 0; at = args.indexOf('--callers')) callersOf.push(args.splice(at, 2)[1]!);
for (const f of args) summarise(f, top, callersOf);
