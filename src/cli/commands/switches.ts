/**
 * The switch verbs: each sets some `todo-<host>/*` switches of a resource and, where the
 * daemon reports the effect, waits for it. Table-driven: one row per verb.
 *
 * | verb | switches | waits for |
 * |---|---|---|
 * | attach / detach | attach=1 / 0 | is-attached |
 * | up / down | attach, connect, allow-replay = 1 / 0 | is-attached |
 * | pause-sync / resume-sync | sync | - |
 * | pause-fetch / resume-fetch | connect | - (fetching arrives with peers) |
 * | pause-replay / resume-replay | allow-replay | - |
 * | disconnect / connect | connect | - |
 */
import type { MarsTree, TodoSwitch } from '../../tree/index.js';
import { actualKey, resourceDir, todoKey } from '../../tree/index.js';
import type { CommandContext, CommandRun } from '../command.js';
import { CommandError } from '../errors.js';
import { openTree, waitFor } from '../tree_access.js';

export interface SwitchVerb {
  readonly switches: readonly TodoSwitch[];
  readonly value: '0' | '1';
  /** Indicator to wait for, and the value it must reach. */
  readonly await?: { readonly indicator: 'is-attached'; readonly value: '0' | '1' };
}

export const SWITCH_VERBS: Readonly<Record<string, SwitchVerb>> = {
  attach: { switches: ['attach'], value: '1', await: { indicator: 'is-attached', value: '1' } },
  detach: { switches: ['attach'], value: '0', await: { indicator: 'is-attached', value: '0' } },
  up: { switches: ['attach', 'connect', 'allow-replay'], value: '1', await: { indicator: 'is-attached', value: '1' } },
  down: { switches: ['attach', 'connect', 'allow-replay'], value: '0', await: { indicator: 'is-attached', value: '0' } },
  'pause-sync': { switches: ['sync'], value: '0' },
  'resume-sync': { switches: ['sync'], value: '1' },
  'pause-fetch': { switches: ['connect'], value: '0' },
  'resume-fetch': { switches: ['connect'], value: '1' },
  'pause-replay': { switches: ['allow-replay'], value: '0' },
  'resume-replay': { switches: ['allow-replay'], value: '1' },
  disconnect: { switches: ['connect'], value: '0' },
  connect: { switches: ['connect'], value: '1' },
};

/** The pause-/resume- verbs also come as `-local` (the same) and `-global` (every member). */
export const SCOPED_VERBS = ['pause-sync', 'resume-sync', 'pause-fetch', 'resume-fetch', 'pause-replay', 'resume-replay'];

export function switchVerb(name: string): CommandRun {
  const scope = name.endsWith('-global') ? 'global' : 'local';
  const base = name.replace(/-(local|global)$/, '');
  const verb = SWITCH_VERBS[base]!;
  return async (ctx: CommandContext) => {
    const res = ctx.args[0]!;
    const tree = await openTree(ctx);
    if ((await tree.list(`${resourceDir(res)}/`)).every((e) => e.value === null)) {
      throw new CommandError(`marsadm ${name}: no resource ${res}; \`marsadm view\` lists them`);
    }
    if (scope === 'global') return await setEverywhere(ctx, tree, res, verb);
    const host = tree.host;
    if (ctx.options['dry-run']) {
      ctx.out.write(`would set ${verb.switches.map((s) => `todo-${host}/${s}=${verb.value}`).join(', ')} on ${res}\n`);
      return 0;
    }
    // Detaching a device that is open would pull it from under its users.
    if (verb.await?.value === '0' && !ctx.options['force']) {
      const opened = Number(await tree.getValue(actualKey(res, host, 'open-count')) ?? 0);
      if (opened > 0) throw new CommandError(`marsadm ${name} ${res}: the device is open (${opened} users); stop them first, or use --force`);
    }
    for (const sw of verb.switches) {
      const key = todoKey(res, host, sw);
      if ((await tree.getValue(key)) !== verb.value) await tree.set(key, verb.value);
    }
    if (verb.await) {
      const { indicator, value } = verb.await;
      await waitFor(ctx, tree, `${res}: actual-${host}/${indicator} = ${value}`,
        async () => ((await tree.getValue(actualKey(res, host, indicator))) ?? '0') === value);
    }
    return 0;
  };
}

/** `-global`: set the switch for every member of the resource (hosts with a data- link). */
async function setEverywhere(ctx: CommandContext, tree: MarsTree, res: string, verb: SwitchVerb): Promise<number> {
  const members = (await tree.list(`${resourceDir(res)}/`))
    .filter((e) => e.value !== null && /^resource-[^/]+\/data-/.test(e.key))
    .map((e) => e.key.slice(e.key.indexOf('/data-') + 6));
  for (const host of members) {
    for (const sw of verb.switches) {
      const key = todoKey(res, host, sw);
      if (ctx.options['dry-run']) ctx.out.write(`would set ${key}=${verb.value}\n`);
      else if ((await tree.getValue(key)) !== verb.value) await tree.set(key, verb.value);
    }
  }
  return 0;
}
