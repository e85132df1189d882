/** The daemon: reconciles the tree's wishes on this host and reports what it reached. */
export { Daemon } from './daemon.js';
export { logName, ResourceController, seqOf } from './resource_controller.js';
export type { DaemonOptions, Desired, ResourcePhase } from './types.js';
