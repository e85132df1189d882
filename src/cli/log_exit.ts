/** Exit statuses and open errors shared by the log commands. */
import type { WalkStatus } from '../dataplane/index.js';
import { CommandError, EXIT_FAILED, EXIT_OK, EXIT_TORN } from './errors.js';

export function exitForWalk(status: WalkStatus): number {
  if (status === 'end' || status === 'limit' || status === 'need-more') return EXIT_OK;
  return status === 'torn' ? EXIT_TORN : EXIT_FAILED;
}

/** Turn a failure to open or read the file into one line naming it. */
export function openFailure(command: string, file: string, error: unknown): CommandError {
  const e = error as NodeJS.ErrnoException;
  const why = e.code === 'ENOENT' ? `${file} does not exist`
    : e.code === 'EISDIR' ? `${file} is a directory; give a log file such as log-000000001-<host>`
    : e.code === 'EACCES' ? `${file}: permission denied (run as a user who can read it)`
    : e.message;
  return new CommandError(`marsadm ${command}: ${why}`, EXIT_FAILED, { cause: error });
}
