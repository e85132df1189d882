import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';

import { parseWaitCondition } from '../../../src/cli/commands/wait.js';
import { actualKey, hostActualKey, type MarsTree } from '../../../src/tree/index.js';
import { daemonBeat, marsadm, treeFixture, type TreeFixture } from './_cli_fixture.js';

process.env['PHOBOS_NO_SYSLOG'] = '1';

describe('marsadm wait-resource and wait-umount', () => {
  let fx: TreeFixture;
  beforeEach(async () => {
    fx = await treeFixture('r1', ['alpha', 'beta']);
    await daemonBeat(fx.tree);
  });
  afterEach(() => fx.remove());

  /** Start marsadm, after delayMs run flip (the daemon's part); marsadm's result, when it ended and when flip began (ms). */
  async function whileWaiting(argv: string[], delayMs: number, flip: () => Promise<void>) {
    const started = Date.now();
    const run = marsadm(...fx.args, ...argv).then((r) => ({ ...r, endedMs: Date.now() - started }));
    await sleep(delayMs);
    const flippedAt = Date.now() - started;
    await flip();
    const r = await run;
    return { ...r, flippedAt };
  }

  it('wait-resource - conditions parse as MARS spells them; attach-on without one', () => {
    expect(parseWaitCondition(undefined)).to.deep.equal({ subject: 'attach', on: true });
    expect(parseWaitCondition('fetch-off')).to.deep.equal({ subject: 'fetch', on: false });
    expect(parseWaitCondition('replay')).to.deep.equal({ subject: 'replay', on: true });
    expect(() => parseWaitCondition('disk-on')).to.throw(/unknown condition 'disk-on'; use attach, fetch, replay or sync/);
  });

  it('wait-resource RES replay-on - returns once the daemon sets is-replaying, not before', async () => {
    const r = await whileWaiting(['wait-resource', 'r1', 'replay-on'], 300,
      () => fx.tree.set(actualKey('r1', 'alpha', 'is-replaying'), '1').then(() => undefined));
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.equal('');
    expect(r.endedMs).to.be.at.least(r.flippedAt);
  });

  it('wait-resource RES - attach-on by default; fetch-off and sync-off watch is-copying and is-syncing', async () => {
    await fx.tree.set(actualKey('r1', 'alpha', 'is-copying'), '1');
    await fx.tree.set(actualKey('r1', 'alpha', 'is-syncing'), '0');
    const attach = await whileWaiting(['wait-resource', 'r1'], 200,
      () => fx.tree.set(actualKey('r1', 'alpha', 'is-attached'), '1').then(() => undefined));
    expect(attach.code, attach.err).to.equal(0);
    const fetch = await whileWaiting(['wait-resource', 'r1', 'fetch-off', '--json'], 200,
      () => fx.tree.set(actualKey('r1', 'alpha', 'is-copying'), '0').then(() => undefined));
    expect(fetch.code, fetch.err).to.equal(0);
    expect(JSON.parse(fetch.out)).to.include({ resource: 'r1', host: 'alpha', condition: 'fetch-off' });
    expect((await marsadm(...fx.args, 'wait-resource', 'r1', 'sync-off')).code).to.equal(0); // already true
  });

  it('wait-resource - --timeout gives one line naming the condition and the indicator, exit 1', async () => {
    const r = await marsadm(...fx.args, '--timeout', '1', 'wait-resource', 'r1', 'sync-on');
    expect(r.code).to.equal(1);
    expect(r.err.trim().split('\n')).to.have.length(1);
    expect(r.err).to.match(/^timed out after 1 s waiting for sync-on of r1 \(resource-r1\/actual-alpha\/is-syncing = 1\) on alpha; /);
  });

  it('wait-resource - refuses a bad condition (usage), an unknown resource and a non-member', async () => {
    expect((await marsadm(...fx.args, 'wait-resource', 'r1', 'disk-on')).code).to.equal(2);
    const none = await marsadm(...fx.args, 'wait-resource', 'nosuch');
    expect(none.code).to.equal(1);
    expect(none.err).to.match(/no resource nosuch in /);
    const gamma = await marsadm('--root', fx.root, '--host', 'gamma', 'wait-resource', 'r1');
    expect(gamma.code).to.equal(1);
    expect(gamma.err).to.match(/gamma is not a member of r1.*marsadm join-resource r1 DISK/);
  });

  it('wait-umount RES - waits until every member\'s open-count is 0', async () => {
    const beta = await fx.as('beta');
    await fx.tree.set(actualKey('r1', 'alpha', 'open-count'), '0');
    await beta.set(actualKey('r1', 'beta', 'open-count'), '2');
    const r = await whileWaiting(['wait-umount', 'r1'], 300, async () => {
      await beta.set(actualKey('r1', 'beta', 'open-count'), '0');
    });
    expect(r.code, r.err).to.equal(0);
    expect(r.endedMs).to.be.at.least(r.flippedAt);
  });

  it('wait-umount - --timeout names what it waited for', async () => {
    await fx.tree.set(actualKey('r1', 'alpha', 'open-count'), '1');
    const r = await marsadm(...fx.args, '--timeout', '1', 'wait-umount', 'r1');
    expect(r.code).to.equal(1);
    expect(r.err).to.match(/^timed out after 1 s waiting for every member of r1 \(alpha, beta\) to close its device \(actual-<host>\/open-count = 0\) on alpha; /);
  });
});

describe('marsadm wait-cluster', () => {
  let fx: TreeFixture;
  beforeEach(async () => {
    fx = await treeFixture('r1', ['alpha', 'beta']);
    await fx.tree.set('ips/ip-alpha', '10.0.0.1');
    await fx.tree.set('ips/ip-beta', '10.0.0.2');
    await daemonBeat(fx.tree);
  });
  afterEach(() => fx.remove());

  /** beta's daemon: echo alpha's ping (stamped after `after`) the moment it is there (daemon.ts answerPing). */
  async function echoPing(beta: MarsTree, after = 0): Promise<string> {
    for (const until = Date.now() + 5000; Date.now() < until;) {
      const ping = await fx.tree.get(hostActualKey('alpha', 'ping-beta'));
      if (ping?.value && ping.stamp > after) {
        await beta.set(hostActualKey('beta', 'pong-alpha'), ping.value);
        return ping.value;
      }
      await sleep(20);
    }
    throw new Error('wait-cluster wrote no ping within 5 s');
  }

  it('wait-cluster - returns once the peer echoes its ping, without waiting for a heartbeat', async () => {
    const beta = await fx.as('beta');
    const [r, nonce] = await Promise.all([marsadm(...fx.args, 'wait-cluster', '--timeout', '5'), echoPing(beta)]);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.equal('every peer answered\n');
    expect(nonce).to.match(/^[0-9a-f]{16}$/);
  });

  it('wait-cluster - an old echo does not count; --timeout names the silent peer', async () => {
    const beta = await fx.as('beta');
    await fx.tree.set(hostActualKey('alpha', 'ping-beta'), 'feedfacefeedface');
    await beta.set(hostActualKey('beta', 'pong-alpha'), 'feedfacefeedface');
    const r = await marsadm(...fx.args, 'wait-cluster', '--timeout', '1');
    expect(r.code, r.err).to.equal(1);
    expect(r.err).to.match(/^no answer from beta within 1 s; check that their daemons run/);
    const ping = await fx.tree.getValue(hostActualKey('alpha', 'ping-beta'));
    expect(ping, 'a fresh nonce once the last one was echoed').to.match(/^[0-9a-f]{16}$/).and.not.equal('feedfacefeedface');
  });

  it('wait-cluster - keeps the nonce a handover still waits for, and is answered by its echo', async () => {
    const beta = await fx.as('beta');
    const handover = await fx.tree.set(hostActualKey('alpha', 'ping-beta'), 'c0ffeec0ffeec0ff');
    const [r] = await Promise.all([marsadm(...fx.args, 'wait-cluster', '--timeout', '5'), echoPing(beta, handover!.stamp)]);
    expect(r.code, r.err).to.equal(0);
    const ping = (await fx.tree.get(hostActualKey('alpha', 'ping-beta')))!;
    expect(ping.value).to.equal('c0ffeec0ffeec0ff');
    expect(ping.stamp).to.be.greaterThan(handover!.stamp);
  });
});
