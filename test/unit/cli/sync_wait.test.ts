import { expect } from 'chai';

import { actualKey, primaryKey, resourceKey, todoKey } from '../../../src/tree/index.js';
import { daemonBeat, marsadm, treeFixture, type TreeFixture } from './_cli_fixture.js';

process.env['PHOBOS_NO_SYSLOG'] = '1';

/**
 * join-resource and invalidate wait for the daemon's sync; when it does not move for
 * --timeout, the one-line error says what the indicators show, not only that it waited.
 */
describe('marsadm: a sync that makes no progress', () => {
  let fx: TreeFixture;
  beforeEach(async () => {
    fx = await treeFixture('r1', ['alpha', 'beta']);
    await daemonBeat(fx.tree);
    await fx.tree.set(primaryKey('r1'), 'beta');
    await fx.tree.set(actualKey('r1', 'alpha', 'is-attached'), '1');
    await fx.tree.set(todoKey('r1', 'alpha', 'sync'), '1');
    await fx.tree.set(resourceKey('r1', 'syncstatus-alpha'), '4096');
  });
  afterEach(() => fx.remove());

  /** An existing member's join-resource only waits for the sync, here for 1 s. */
  async function waitForSync(): Promise<string> {
    const r = await marsadm(...fx.args, '--timeout', '1', 'join-resource', 'r1', '/dev/disk-alpha');
    expect(r.code).to.equal(1);
    const lines = r.err.trim().split('\n');
    expect(lines).to.have.length(1);
    expect(lines[0]).to.match(/^sync of r1 made no progress for 1 s \(4096 of 1048576 bytes\); /);
    expect(lines[0]).to.match(/, then rerun this command to keep waiting$/);
    return lines[0]!;
  }

  it('sync wait - the error names the cause the indicators show, and its fix', async () => {
    expect(await waitForSync()).to.include('nothing heard from the primary beta for ever: check the link to it (marsadm view)');

    await daemonBeat(await fx.as('beta'));
    expect(await waitForSync()).to.include('the primary beta is reachable and the daemon on alpha says it is not syncing');

    await fx.tree.set(actualKey('r1', 'alpha', 'replay-code'), '-4,Orphan: log-000000003-beta is gone');
    expect(await waitForSync()).to.include('the replica on alpha stopped: Orphan: log-000000003-beta is gone');

    await fx.tree.set(todoKey('r1', 'alpha', 'sync'), '0');
    expect(await waitForSync()).to.include('sync is paused on alpha: marsadm resume-sync r1');

    await fx.tree.set(actualKey('r1', 'alpha', 'is-attached'), '0');
    expect(await waitForSync()).to.include('r1 is not attached on alpha: marsadm attach r1');
  });
});
