/** marsadm log-cat FILE [--from OFFSET] [--json] */
import { describeWalkEnd, scanLog, type LogRecord } from '../../dataplane/index.js';
import type { CommandContext } from '../command.js';
import { exitForWalk, openFailure } from '../log_exit.js';

export async function run(ctx: CommandContext): Promise<number> {
  const file = ctx.args[0]!;
  const json = Boolean(ctx.options['json']);
  const walk = scanLog(file, { from: Number(ctx.options['from'] ?? 0) });
  let step;
  try {
    step = await walk.next();
    while (!step.done) {
      ctx.out.write((json ? asJson(step.value) : asText(step.value)) + '\n');
      step = await walk.next();
    }
  } catch (error) {
    throw openFailure('log-cat', file, error);
  }
  const problem = describeWalkEnd(file, step.value);
  if (problem) ctx.err.write(`marsadm log-cat: ${problem}\n`);
  return exitForWalk(step.value.status);
}

function asText(r: LogRecord): string {
  return [
    `seq ${r.seq}`,
    `offset ${r.offset}`,
    r.type,
    `dev ${r.deviceOffset}+${r.length}`,
    `codec ${r.codec}`,
    `stored ${r.storedLength}`,
    `crc ${r.payloadCrc.toString(16).padStart(8, '0')}`,
    `stamp ${r.stampNs}`,
    `synced ${r.syncedPosition}`,
  ].join('  ');
}

function asJson(r: LogRecord): string {
  return JSON.stringify({ ...r, stampNs: r.stampNs.toString() });
}
