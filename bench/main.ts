/**
 * Benchmarks: `npm run bench -- <name>` (or `all`). Each prints one JSON line per figure:
 * {"bench", "value", "unit", "baseline", "ratio"}, with the baseline measured in the same
 * run on the same machine. Targets live in the issues; they are checked here, never by
 * timed tests.
 */
import { runCliLatency } from './cli_latency.js';
import { runCompress } from './compress.js';
import { runCrc32c } from './crc32c.js';
import { runFailoverSsh } from './failover_ssh.js';
import { runHandoverSsh } from './handover_ssh.js';
import { runKernelWrite } from './kernel_write.js';
import { runLogAppendAndReplay } from './log_io.js';
import { runNbdWrite } from './nbd_write.js';
import { runPropagate } from './propagate.js';
import { runPropagateSsh } from './propagate_ssh.js';
import { runShip } from './ship.js';
import { runShipSsh } from './ship_ssh.js';
import { runStackHandover } from './stack_handover.js';
import { runSync } from './sync.js';

const BENCHES: Record<string, () => Promise<void>> = {
  crc32c: runCrc32c,
  'log-append': () => runLogAppendAndReplay({ replay: false }),
  'log-replay': () => runLogAppendAndReplay({ replay: true, appendFigures: false }),
  compress: runCompress,
  'nbd-write': runNbdWrite,
  'cli-latency': runCliLatency,
  ship: runShip,
  'ship-ssh': runShipSsh,
  sync: runSync,
  propagate: runPropagate,
  'stack-handover': runStackHandover,
  'kernel-write': runKernelWrite,
  'propagate-ssh': runPropagateSsh,
  handover: runHandoverSsh,
  failover: runFailoverSsh,
};

async function main(): Promise<void> {
  const names = process.argv.slice(2);
  if (names.length === 0 || names.some((n) => n !== 'all' && !(n in BENCHES))) {
    console.error(`usage: npm run bench -- <${Object.keys(BENCHES).join('|')}|all>`);
    process.exitCode = 2;
    return;
  }
  const run = names.includes('all') ? Object.keys(BENCHES) : names;
  for (const name of run) await BENCHES[name]!();
}

await main();
