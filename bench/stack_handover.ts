/**
 * stack-handover (issue 6): wall time from `marsadm primary r1` on beta to the service
 * answering on beta, in the systemd VM tier's two qemu TCG guests
 * (scripts/systemd-vm/run-tier.sh with HANDOVER_ONLY=1), split into
 *   stop     = the primary's phases stop-stack + wait-close (alpha's trigger stops the stack,
 *              alpha's device, phobos.ko's /dev/phobos0 since issue 7, closes),
 *   handover = check + leave + catch-up + become,
 *   start    = the rest, until busybox httpd on beta answers with alpha's data.
 * Baseline: one `marsadm view-get-primary` in the same guest, same run: under TCG a Node
 * process start dominates, so the ratio reads as "marsadm starts' worth". No target yet.
 * Needs root and the VM tier's packages (scripts/kernel-vm and scripts/systemd-vm install-deps.sh).
 */
import { spawnSync } from 'node:child_process';

import { report } from './report.js';

export async function runStackHandover(): Promise<void> {
  const root = new URL('../', import.meta.url).pathname;
  const run = spawnSync('bash', ['scripts/systemd-vm/run-tier.sh'], {
    cwd: root, encoding: 'utf8', timeout: 15 * 60 * 1000, maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, HANDOVER_ONLY: '1' },
  });
  const out = `${run.stdout}${run.stderr}`;
  if (run.status !== 0) {
    console.error(out.slice(-4000));
    throw new Error(`stack-handover: scripts/systemd-vm/run-tier.sh exited ${run.status}`);
  }
  const ms = new Map<string, number>();
  for (const m of out.matchAll(/^BENCH (\S+) (\d+) ms$/gm)) ms.set(m[1]!, Number(m[2]));
  const baseline = ms.get('guest-marsadm') ?? null;
  const note = 'TCG guests; baseline: one marsadm view-get-primary in the guest';
  for (const part of ['stop', 'handover', 'start', 'total']) {
    const value = ms.get(`stack-handover-${part}`);
    if (value === undefined) throw new Error(`stack-handover: no ${part} figure in the tier's output`);
    report(`stack-handover-${part}`, value, 'ms', baseline, note);
  }
}
