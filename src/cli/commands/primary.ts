/**
 * marsadm primary RES: planned handover to this host, in explicit phases with
 * compensation; marsadm primary --force RES: failover with what this host has.
 * The phases and their failure handling: docs/handover.md.
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { parseLogName, parsePositionValue, parseReplayValue } from '../../replication/log_names.js';
import { parseVersion } from '../../replication/versions.js';
import {
  actualKey, dataKey, hostActualKey, pingKey, pongKey, primaryKey, replayKey, resourceDir, resourceKey, sizeKey, todoKey,
  versionKey, type MarsTree,
} from '../../tree/index.js';
import type { CommandContext } from '../command.js';
import { CommandError } from '../errors.js';
import { ProgressBar } from '../progress.js';
import { daemonAlive, daemonRefusal, openTree, timeoutMs, waitFor } from '../tree_access.js';
import { parseStatus, readSettings, statusKey, touchTrigger, wantKey } from '../../systemd/settings.js';

const NONE = '(none)';
/** How long the check waits for the old primary to answer a ping, ms (a round trip is ~10-50 ms). */
const PING_WAIT_MS = 5000;
/**
 * How long start-stack waits before touching this host's trigger file, and then between
 * touches, ms. The path unit can miss a change that lands as its service ends (systemd
 * re-watches only after that); the trigger takes ~1 s on hardware, 13-17 s in the TCG
 * guests of the VM tier, so a touch this late seldom lands in a run still going.
 */
const NUDGE_TRIGGER_MS = 20_000;

/** What the phases need to know, read once at the start. */
interface Handover {
  readonly ctx: CommandContext;
  readonly tree: MarsTree;
  readonly res: string;
  readonly me: string;
  /** The designated primary when the command started, or (none). */
  readonly old: string;
  readonly sizeBytes: number;
  /** The resource has a service stack (set-systemd-unit): the handover moves it (docs/systemd.md). */
  readonly stack: boolean;
  /** `systemd-want` when the command started. */
  readonly wantBefore: string | undefined;
}

type PhaseName = 'check' | 'stop-stack' | 'wait-close' | 'leave' | 'catch-up' | 'become' | 'start-stack';

export async function run(ctx: CommandContext): Promise<number> {
  const res = ctx.args[0]!;
  const tree = await openTree(ctx);
  const sizeBytes = Number(await tree.getValue(sizeKey(res)) ?? NaN);
  if (!Number.isFinite(sizeBytes)) throw new CommandError(`no resource ${res}; \`marsadm view\` lists them`);
  const me = tree.host;
  if ((await tree.getValue(dataKey(res, me))) === undefined) {
    throw new CommandError(`${me} is not a member of ${res}; join it first (marsadm join-resource ${res} <disk>)`);
  }
  const settings = await readSettings(tree, res);
  const h: Handover = {
    ctx, tree, res, me, old: (await tree.getValue(primaryKey(res))) ?? NONE, sizeBytes,
    stack: settings.startUnit !== undefined, wantBefore: settings.want,
  };
  if (h.old === me && (await get(h, actualKey(res, me, 'is-primary'))) === '1') {
    // A retried `disconnect; primary --force` still ends connected, as the first try would.
    if (ctx.options['force'] && !ctx.options['dry-run'] && (await get(h, todoKey(res, me, 'connect'))) === '0') {
      await tree.set(todoKey(res, me, 'connect'), '1');
    }
    say(h, `${me} is already primary of ${res}; nothing to do`);
    return 0;
  }
  return ctx.options['force'] ? await forced(h) : await planned(h);
}

// ---------------------------------------------------------------------------------------
// Planned

async function planned(h: Handover): Promise<number> {
  if (h.ctx.options['dry-run']) {
    printPlan(h);
    return 0;
  }
  const started = Date.now();
  const moving = h.old !== NONE && h.old !== h.me;
  await phase(h, 'check', () => checkPlanned(h));
  try {
    if (moving && h.stack) await phase(h, 'stop-stack', () => stopStack(h));
    if (moving) {
      await phase(h, 'wait-close', () => waitFor(h.ctx, h.tree, `the device of ${h.res} on ${h.old} to be closed (actual-${h.old}/open-count = 0; stop what uses it there)`,
        async () => Number((await get(h, actualKey(h.res, h.old, 'open-count'))) ?? 0) === 0));
    }
  } catch (error) {
    throw await compensate(h, error as Error, { primaryChanged: false });
  }
  try {
    if (moving) await phase(h, 'leave', () => leave(h));
    await phase(h, 'catch-up', () => catchUp(h));
    await phase(h, 'become', () => become(h));
  } catch (error) {
    throw await compensate(h, error as Error, { primaryChanged: true });
  }
  if (h.stack) await phase(h, 'start-stack', () => startStack(h));
  done(h, started);
  return 0;
}

/**
 * systemd-want := this host. The old primary's path unit runs systemd-trigger-extern,
 * which stops the stack there and records how that went; wait for that record.
 */
async function stopStack(h: Handover): Promise<void> {
  if ((await get(h, wantKey(h.res))) !== h.me) await h.tree.set(wantKey(h.res), h.me);
  await waitFor(h.ctx, h.tree, `the service stack of ${h.res} on ${h.old} to stop (actual-${h.old}/systemd-status = stop,0,${h.me})`, async () => {
    const status = parseStatus(await get(h, statusKey(h.res, h.old)));
    if (!status || status.action !== 'stop' || status.want !== h.me) return false;
    if (status.code !== 0) {
      throw new CommandError(`the service stack of ${h.res} failed to stop on ${h.old} (exit ${status.code}${status.detail ? `: ${status.detail}` : ''}); ` +
        `see journalctl there, fix the unit, and retry`);
    }
    return true;
  });
}

/**
 * Wait for this host's path unit to start the stack on the exported device, touching the
 * trigger file now and then in case the path unit missed the change.
 */
async function startStack(h: Handover): Promise<void> {
  if ((await get(h, wantKey(h.res))) !== h.me) await h.tree.set(wantKey(h.res), h.me);
  let nudged = Date.now();
  await waitFor(h.ctx, h.tree, `the service stack of ${h.res} to start on ${h.me} (actual-${h.me}/systemd-status = start,0,${h.me})`, async () => {
    const status = parseStatus(await get(h, statusKey(h.res, h.me)));
    if (!status || status.action !== 'start' || status.want !== h.me) {
      if (Date.now() - nudged >= NUDGE_TRIGGER_MS) {
        nudged = Date.now();
        await touchTrigger(h.tree, h.res);
        if (h.ctx.options['json']) h.ctx.out.write(`${JSON.stringify({ phase: 'start-stack', touchedTrigger: true })}\n`);
        else h.ctx.out.write(`  start-stack: no start on ${h.me} yet after ${NUDGE_TRIGGER_MS / 1000} s; touched the trigger of ${h.res}\n`);
      }
      return false;
    }
    if (status.code !== 0) {
      throw new CommandError(`${h.me} is primary of ${h.res}, but its service stack failed to start (exit ${status.code}` +
        `${status.detail ? `: ${status.detail}` : ''}); fix it (journalctl), then marsadm systemd-trigger-extern ${h.res} starts it again`);
    }
    return true;
  });
}

function printPlan(h: Handover): void {
  const from = h.old === NONE ? 'no designated primary' : h.old;
  const lines = [
    `would hand ${h.res} over from ${from} to ${h.me}:`,
    '  check       this host replays without error; no sync runs; the primary is reachable',
    ...(h.old !== NONE && h.old !== h.me && h.stack ? [
      `  stop-stack  systemd-want := ${h.me}; until ${h.old} has stopped the service stack`,
    ] : []),
    ...(h.old !== NONE && h.old !== h.me ? [
      `  wait-close  until ${h.old}'s device is closed (open-count 0)`,
      `  leave       primary := (none); until ${h.old} stops serving and seals its log`,
    ] : []),
    `  catch-up    until ${h.me} has fetched and replayed every log, version links equal`,
    `  become      primary := ${h.me}; until ${h.me} serves the device on a new log`,
    ...(h.stack ? [`  start-stack until ${h.me} has started the service stack`] : []),
    ...(h.old !== NONE && h.old !== h.me ? [`  (a failure after check gives ${h.old} its role back)`] : []),
  ];
  h.ctx.out.write(`${lines.join('\n')}\n`);
}

async function checkPlanned(h: Handover): Promise<void> {
  const { res, me } = h;
  if (!(await daemonAlive(h.tree))) {
    throw new CommandError(`the daemon on ${me} is not running; start it (systemctl start phobos-daemon, or marsadm daemon) and retry`);
  }
  if ((await get(h, todoKey(res, me, 'connect'))) === '0') {
    throw new CommandError(`${me} is disconnected from its peers (marsadm disconnect): a planned handover needs them; ` +
      `marsadm connect ${res} first, or fail over with what this host has: marsadm primary --force ${res}`);
  }
  const code = (await get(h, actualKey(res, me, 'replay-code'))) ?? '0';
  // -1 is a refused start of this host's device (disk in use, ...): asking again retries it,
  // and become reports it again if the cause is still there. Replication errors block.
  if (code.startsWith('-') && !code.startsWith('-1,')) {
    throw new CommandError(`replay of ${res} on ${me} has an error (${code}); see marsadm view ${res}, and repair it (marsadm invalidate ${res}) before a handover`);
  }
  await refuseSyncs(h, !h.ctx.options['ignore-sync']);
  if (h.old !== NONE && h.old !== me && !(await daemonAlive(h.tree, h.old))) {
    const seen = await h.tree.get(hostActualKey(h.old, 'time'));
    const age = seen ? `no sign of life for ${Math.round((Date.now() - seen.stamp / 1000) / 1000)} s` : 'never heard from';
    throw new CommandError(`cannot reach the current primary ${h.old} of ${res} (${age}); if ${h.old} is really down, ` +
      `fail over: marsadm disconnect ${res} && marsadm primary --force ${res}`);
  }
  if (h.old !== NONE && h.old !== me) await pingOld(h);
}

/**
 * A fresh heartbeat in our tree does not prove the old primary hears us now: a link cut a
 * moment ago is still in reconnect backoff, and the tree is as it was. A handover acting on
 * such a tree would take the designation (and, compensating, give it back with a newer
 * stamp) from a primary that may have moved on meanwhile. So ask the old primary's daemon
 * to echo a nonce (daemon.ts answerPing) and go on only once the echo is back.
 */
async function pingOld(h: Handover): Promise<void> {
  const nonce = randomBytes(8).toString('hex');
  await h.tree.set(pingKey(h.me, h.old), nonce);
  const limit = Math.min(timeoutMs(h.ctx), PING_WAIT_MS);
  const started = Date.now();
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    if ((await h.tree.getValue(pongKey(h.old, h.me))) === nonce) return;
    if (Date.now() - started >= limit) {
      throw new CommandError(`cannot reach the current primary ${h.old} of ${h.res} now: it did not answer within ${limit / 1000} s ` +
        `(the tree here may be stale, e.g. a cut link); check the network and retry, or if ${h.old} is really down, ` +
        `fail over: marsadm disconnect ${h.res} && marsadm primary --force ${h.res}`);
    }
    await sleep(delay);
  }
}

/** A sync target has no consistent disk; a running sync elsewhere would be cut off. */
async function refuseSyncs(h: Handover, othersToo: boolean): Promise<void> {
  for (const host of await members(h)) {
    const synced = Number((await get(h, resourceKey(h.res, `syncstatus-${host}`))) ?? h.sizeBytes);
    const syncing = (await get(h, actualKey(h.res, host, 'is-syncing'))) === '1';
    if (synced >= h.sizeBytes && !syncing) continue;
    const pct = `${Math.floor((100 * synced) / h.sizeBytes)} % synced`;
    if (host === h.me) {
      throw new CommandError(`${h.me} is a sync target of ${h.res} (${pct}): its disk is not a consistent state yet; ` +
        'wait for the sync (marsadm view), or make a consistent member primary');
    }
    if (othersToo) {
      throw new CommandError(`a sync of ${h.res} runs on ${host} (${pct}); wait for it (marsadm view ${h.res}), or pass --ignore-sync`);
    }
  }
}

async function leave(h: Handover): Promise<void> {
  await h.tree.set(primaryKey(h.res), NONE);
  await waitFor(h.ctx, h.tree, `${h.old} to stop serving ${h.res} and seal its log`, async () =>
    (await get(h, actualKey(h.res, h.old, 'is-primary'))) !== '1' && (await sealedLast(h, h.old)));
}

/** The log `host` last wrote (its published log end) has its version link. */
async function sealedLast(h: Handover, host: string): Promise<boolean> {
  const end = parsePositionValue(await get(h, actualKey(h.res, host, 'log-end')));
  if (!end) return true;
  const v = parseVersion(await get(h, versionKey(h.res, parseLogName(end.log)!.seq, host)));
  return v !== null && v.log === end.log && v.offset >= end.offset;
}

/** Until our version link for the newest sealed log equals its origin's. */
async function catchUp(h: Handover): Promise<void> {
  const progress: { bar: ProgressBar | null } = { bar: null };
  let first = -1, lastRest = -1;
  await waitFor(h.ctx, h.tree, `${h.me} to fetch and replay every log of ${h.res} (marsadm view ${h.res} shows the rest)`, async () => {
    const last = await newestSealedLog(h);
    if (!last) return true;
    const theirs = parseVersion(await get(h, versionKey(h.res, last.seq, last.origin)));
    const mine = parseVersion(await get(h, versionKey(h.res, last.seq, h.me)));
    if (theirs !== null && mine !== null && mine.digest === theirs.digest) return true;
    const replay = parseReplayValue(await get(h, replayKey(h.res, h.me)));
    const rest = theirs && replay?.log === theirs.log ? Math.max(0, theirs.offset - replay.offset) : theirs?.offset ?? 0;
    if (first < 0) {
      first = Math.max(1, rest);
      if (!h.ctx.options['json']) progress.bar = new ProgressBar('catch-up', first);
    }
    progress.bar?.update(first - Math.min(first, rest));
    if (h.ctx.options['json'] && rest !== lastRest) h.ctx.out.write(`${JSON.stringify({ phase: 'catch-up', replayRestBytes: rest })}\n`);
    lastRest = rest;
    return false;
  });
  progress.bar?.done();
}

/** The highest-numbered log some origin has sealed (its own version link), if any. */
async function newestSealedLog(h: Handover): Promise<{ seq: number; origin: string } | null> {
  let best: { seq: number; origin: string } | null = null;
  for (const e of await h.tree.list(`${resourceDir(h.res)}/version-`)) {
    if (e.value === null) continue;
    const v = parseVersion(e.value);
    const name = v && parseLogName(v.log);
    if (!name || !e.key.endsWith(`-${name.origin}`)) continue;
    if (!best || name.seq > best.seq) best = { seq: name.seq, origin: name.origin };
  }
  return best;
}

async function become(h: Handover): Promise<void> {
  const asked = await h.tree.set(primaryKey(h.res), h.me);
  await waitFor(h.ctx, h.tree, `${h.me} to become primary of ${h.res} (actual-${h.me}/is-primary = 1)`,
    async () => (await get(h, actualKey(h.res, h.me, 'is-primary'))) === '1',
    daemonRefusal(h.tree, h.res, h.me, asked?.stamp ?? 0));
}

/**
 * Give the old primary its role (and its service stack) back; the error says which phase
 * failed and why.
 */
async function compensate(h: Handover, error: Error, how: { primaryChanged: boolean }): Promise<CommandError> {
  const why = error.message;
  if (h.old === NONE || h.old === h.me) return new CommandError(`handover of ${h.res} to ${h.me} failed: ${why}`);
  if (h.stack && h.wantBefore !== undefined && (await get(h, wantKey(h.res))) !== h.wantBefore) {
    await h.tree.set(wantKey(h.res), h.wantBefore);
  }
  if (!how.primaryChanged) {
    return new CommandError(`handover of ${h.res} to ${h.me} failed: ${why}; ${h.old} stays primary` +
      (h.stack ? ' and gets its service stack back' : ''));
  }
  await h.tree.set(primaryKey(h.res), h.old);
  const back = await waitFor({ ...h.ctx, options: { ...h.ctx.options, timeout: 30 } }, h.tree, `${h.old} to serve ${h.res} again`,
    async () => (await get(h, actualKey(h.res, h.old, 'is-primary'))) === '1').then(() => true, () => false);
  return new CommandError(`handover of ${h.res} to ${h.me} failed: ${why}; ` +
    (back ? `${h.old} is primary again, nothing was lost` : `${h.old} is designated primary again (not serving yet: check marsadm view ${h.res})`));
}

// ---------------------------------------------------------------------------------------
// Forced

async function forced(h: Handover): Promise<number> {
  const { res, me } = h;
  if ((await get(h, todoKey(res, me, 'connect'))) !== '0') {
    throw new CommandError(`primary --force needs ${me} disconnected from its peers first: marsadm disconnect ${res} && marsadm primary --force ${res}`);
  }
  await refuseSyncs(h, false);
  if (h.ctx.options['dry-run']) {
    h.ctx.out.write(`would make ${me} primary of ${res} with the data it has (designated now: ${h.old}); ` +
      'the old primary stops serving when it hears of it; any writes it took after our position are a split brain\n');
    return 0;
  }
  const started = Date.now();
  // The old side stops its stack when it hears of this; ours starts once we serve.
  if (h.stack && (await get(h, wantKey(res))) !== me) await h.tree.set(wantKey(res), me);
  await phase(h, 'become', () => become(h));
  // MARS's implicit `up`: fetching is on again (a primary fetches nothing; a later handover does).
  await h.tree.set(todoKey(res, me, 'connect'), '1');
  if (h.stack) await phase(h, 'start-stack', () => startStack(h));
  done(h, started);
  return 0;
}

// ---------------------------------------------------------------------------------------

async function phase(h: Handover, name: PhaseName, body: () => Promise<void>): Promise<void> {
  const started = Date.now();
  try {
    await body();
  } catch (error) {
    const e = error as Error;
    throw new CommandError(`phase ${name}: ${e.message}`, 1, { cause: error });
  }
  const ms = Date.now() - started;
  if (h.ctx.options['json']) h.ctx.out.write(`${JSON.stringify({ phase: name, ms })}\n`);
  else if (h.ctx.options['verbose']) h.ctx.out.write(`  ${name} done (${ms} ms)\n`);
}

function done(h: Handover, started: number): void {
  const ms = Date.now() - started;
  if (h.ctx.options['json']) h.ctx.out.write(`${JSON.stringify({ resource: h.res, primary: h.me, previous: h.old, ms })}\n`);
  else h.ctx.out.write(`${h.me} is primary of ${h.res} (was ${h.old}; ${ms} ms)\n`);
}

function say(h: Handover, line: string): void {
  if (h.ctx.options['json']) h.ctx.out.write(`${JSON.stringify({ resource: h.res, primary: h.me, unchanged: true })}\n`);
  else h.ctx.out.write(`${line}\n`);
}

async function members(h: Handover): Promise<string[]> {
  const prefix = `${resourceDir(h.res)}/data-`;
  return (await h.tree.list(prefix)).filter((e) => e.value !== null).map((e) => e.key.slice(prefix.length));
}

function get(h: Handover, key: string): Promise<string | undefined> {
  return h.tree.getValue(key);
}
