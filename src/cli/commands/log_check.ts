/** marsadm log-check FILE [--growing] [--json] */
import { checkLog, describeWalkEnd, type LogCheckReport } from '../../dataplane/index.js';
import type { CommandContext } from '../command.js';
import { exitForWalk, openFailure } from '../log_exit.js';
import { formatBytes } from '../format.js';

export async function run(ctx: CommandContext): Promise<number> {
  const file = ctx.args[0]!;
  let report: LogCheckReport;
  try {
    report = await checkLog(file, { final: !ctx.options['growing'] });
  } catch (error) {
    throw openFailure('log-check', file, error);
  }
  if (ctx.options['json']) {
    ctx.out.write(JSON.stringify(report, (_k, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)) + '\n');
  } else {
    ctx.out.write(summary(report) + '\n');
  }
  const problem = describeWalkEnd(file, { ...report, position: report.validBytes, nextSeq: 0, fileSize: report.fileBytes });
  if (problem) ctx.err.write(`marsadm log-check: ${problem}\n`);
  return exitForWalk(report.status);
}

function summary(r: LogCheckReport): string {
  const verdict = { end: 'ok', torn: 'TORN TAIL', corrupt: 'CORRUPT', damaged: 'DAMAGED', 'need-more': 'incomplete (growing)', limit: 'ok' }[r.status];
  const types = `${r.recordsByType.write} write, ${r.recordsByType.zero} zero, ${r.recordsByType['sync-mark']} sync-mark`;
  return `${r.file}: ${verdict}: ${r.records} records (${types}), ` +
    `${formatBytes(r.deviceBytes)} of device data in ${formatBytes(r.storedBytes)} stored ` +
    `(compression ratio ${r.compressionRatio.toFixed(2)}), ${formatBytes(r.validBytes)} valid of ${formatBytes(r.fileBytes)}`;
}
