/** Help texts, built from the command table so they never drift from it. */
import { COMMAND_GROUPS, type CommandGroup, type CommandSpec } from './command.js';
import { COMMANDS } from './command_table.js';
import { DEFAULT_HOOK_DIR } from './hooks.js';
import { GLOBAL_OPTIONS, type OptionSpec } from './options.js';

function optionLines(specs: readonly OptionSpec[]): string[] {
  return specs.map((s) => {
    const flag = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${s.value ? ` ${s.value}` : ''}`;
    return `  ${flag.padEnd(26)} ${s.help}`;
  });
}

export function overview(): string {
  const lines = [
    'usage: marsadm [OPTIONS] COMMAND [ARGS]',
    '',
    'Phobos: asynchronous replication of block devices by transaction log shipping.',
  ];
  for (const group of Object.keys(COMMAND_GROUPS) as CommandGroup[]) {
    lines.push('', `${COMMAND_GROUPS[group]}:`);
    for (const c of COMMANDS.filter((x) => x.group === group)) {
      lines.push(`  ${`${c.name} ${c.synopsis}`.padEnd(26)} ${c.summary}`);
    }
  }
  lines.push('', 'Options (with every command):', ...optionLines(GLOBAL_OPTIONS), '',
    'Environment: PHOBOS_HOOK_DIR (hook scripts, default ' + DEFAULT_HOOK_DIR + '), PHOBOS_COMMAND_LOG (also append',
    'the command log to this file), PHOBOS_NO_SYSLOG=1 (do not log commands to syslog),',
    'PHOBOS_SYSLOG_SOCKET (syslog\'s socket, default /dev/log),',
    'PHOBOS_VIEW_CACHE=off (views list every directory of the tree instead of those that changed).', '',
    'Run `marsadm COMMAND --help` for a command\'s own options.');
  return lines.join('\n') + '\n';
}

export function commandHelp(c: CommandSpec): string {
  const lines = [`usage: marsadm ${c.name} ${c.synopsis}`.trimEnd(), '', c.summary];
  if (c.details) lines.push('', c.details);
  if (c.options?.length) lines.push('', 'Options:', ...optionLines(c.options));
  if (c.changesState) {
    lines.push('', `Hooks: hook-pre-${c.name} and hook-post-${c.name} in $PHOBOS_HOOK_DIR (default ${DEFAULT_HOOK_DIR})`,
      'run before and after it when executable; a failing pre hook stops the command.');
  }
  lines.push('', 'Global options: see `marsadm help`.');
  return lines.join('\n') + '\n';
}
