/**
 * Every marsadm verb, one file each under commands/. Add a verb here and in docs.
 */
import type { CommandSpec } from './command.js';

export const COMMANDS: readonly CommandSpec[] = [
  {
    name: 'log-check',
    synopsis: 'FILE',
    summary: 'verify a transaction log: records, bytes, compression, first bad offset and why',
    details:
      'Reads every record, checks header and payload crc32c and the sequence, and applies the\n' +
      'torn-tail rule of docs/log-format.md at the first damaged record.\n' +
      'Exit status: 0 the log is clean; 3 torn tail (valid up to the reported offset, the\n' +
      'normal result of a crash during an append); 1 corruption, or not a Phobos log.\n' +
      'Compressed records need liblz4.so.1 / libzstd.so.1 on this host.',
    options: [
      { name: 'growing', kind: 'boolean', help: 'the log may still grow: a record cut by the end of the file is not a torn tail' },
    ],
    minArgs: 1,
    maxArgs: 1,
    group: 'logs',
    load: async () => (await import('./commands/log_check.js')).run,
  },
  {
    name: 'log-cat',
    synopsis: 'FILE',
    summary: 'print one line per record of a transaction log',
    details:
      'Each line: seq, log offset, type, device range, codec, stored bytes, payload crc32c,\n' +
      'Lamport stamp and synced position. With --json, one JSON object per line.\n' +
      'Stops at the first damaged record with the same message and exit status as log-check.',
    options: [
      { name: 'from', kind: 'integer', value: 'OFFSET', help: 'start at this log offset (a record boundary)' },
    ],
    minArgs: 1,
    maxArgs: 1,
    group: 'logs',
    load: async () => (await import('./commands/log_cat.js')).run,
  },
  {
    name: 'help',
    synopsis: '[COMMAND]',
    summary: 'list the commands, or show one command\'s help',
    minArgs: 0,
    maxArgs: 1,
    group: 'help',
    load: async () => (await import('./commands/help.js')).run,
  },
];

export function findCommand(name: string | undefined): CommandSpec | undefined {
  return COMMANDS.find((c) => c.name === name);
}
