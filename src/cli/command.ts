/**
 * What a marsadm verb is: its help text, its own options, and how to run it. The run
 * function is loaded only when the verb runs, so `marsadm help` stays fast.
 */
import type { OptionSpec, OptionValues } from './options.js';

export interface CommandContext {
  /** Positional arguments after the verb. */
  readonly args: readonly string[];
  /** Global and command options, by long name. */
  readonly options: OptionValues;
  /** Where normal output goes (stdout). */
  readonly out: NodeJS.WritableStream;
  /** Where the one-line errors go (stderr). */
  readonly err: NodeJS.WritableStream;
  /**
   * For a verb that reads the whole tree: the values of every link (MarsTree.values('')),
   * being read since the command line was parsed. Unset when the root could not be
   * resolved; the verb's own openTree() then says why.
   */
  readonly treeValues?: Promise<ReadonlyMap<string, string | null>>;
}

/** Sections of `marsadm help`, in order. */
export const COMMAND_GROUPS = {
  cluster: 'Cluster',
  resource: 'Resources and roles',
  views: 'Views (all take --json)',
  logs: 'Transaction logs',
  expert: 'Expert',
  help: 'Help',
} as const;
export type CommandGroup = keyof typeof COMMAND_GROUPS;

export type CommandRun = (ctx: CommandContext) => Promise<number>;

export interface CommandSpec {
  readonly name: string;
  /** Argument synopsis, e.g. `FILE`. */
  readonly synopsis: string;
  /** One line for the command list. */
  readonly summary: string;
  /** Paragraphs for `marsadm <cmd> --help`. */
  readonly details?: string;
  readonly options?: readonly OptionSpec[];
  readonly minArgs: number;
  readonly maxArgs: number;
  /** Section in the command list. */
  readonly group: CommandGroup;
  /**
   * The verb changes the tree, a disk or a role: hooks run around it (hooks.ts). Views,
   * waits and log readers leave it unset.
   */
  readonly changesState?: boolean;
  readonly load: () => Promise<CommandRun>;
}

/**
 * The verb reads every link of the tree once and exits: the views. main() starts that walk
 * before loading the verb and hands it over as ctx.treeValues, and the process skips V8's
 * optimizing compiler (main.ts says why).
 */
export function readsWholeTree(spec: CommandSpec): boolean {
  return spec.group === 'views';
}
