import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';

import { flowPercent, progressBytes, remainSeconds, type FlowState } from '../../../src/cli/commands/_flows.js';
import { actualKey, primaryKey, replayKey, resourceKey, todoKey } from '../../../src/tree/index.js';
import { marsadm, treeFixture, type TreeFixture } from './_cli_fixture.js';

process.env['PHOBOS_NO_SYSLOG'] = '1';

const MiB = 1 << 20;
const LOG = 'log-000000001-beta';

describe('marsadm view progress macros', () => {
  let fx: TreeFixture;
  const syncKey = resourceKey('r1', 'syncstatus-alpha');

  before(async () => {
    // alpha is a secondary of beta: a quarter synced, 600 of beta's 1000 log bytes fetched, 150 replayed.
    fx = await treeFixture('r1', ['alpha', 'beta'], MiB);
    const beta = await fx.as('beta');
    await beta.set(primaryKey('r1'), 'beta');
    await beta.set(actualKey('r1', 'beta', 'is-primary'), '1');
    await beta.set(actualKey('r1', 'beta', 'log-end'), `${LOG},1000`);
    for (const sw of ['attach', 'connect', 'sync', 'allow-replay']) await fx.tree.set(todoKey('r1', 'alpha', sw), '1');
    await fx.tree.set(actualKey('r1', 'alpha', 'is-attached'), '1');
    await fx.tree.set(actualKey('r1', 'alpha', 'is-syncing'), '1');
    await fx.tree.set(actualKey('r1', 'alpha', 'fetch-pos'), `${LOG},600`);
    await fx.tree.set(replayKey('r1', 'alpha'), `${LOG},150,0`);
    await fx.tree.set(syncKey, String(MiB / 4));
  });
  after(() => fx.remove());

  const value = async (...argv: string[]) => {
    const r = await marsadm(...fx.args, ...argv);
    expect(r.code, r.err).to.equal(0);
    return r.out;
  };

  it('view-sync-rest and view-{sync,fetch,replay}-percent - rest bytes and done / (done + rest)', async () => {
    expect(await value('view-sync-rest', 'r1')).to.equal(`${(3 * MiB) / 4}\n`);
    expect(await value('view-sync-percent', 'r1')).to.equal('25\n');
    expect(await value('view-fetch-rest', 'r1')).to.equal('400\n');
    expect(await value('view-fetch-percent', 'r1')).to.equal('60\n');
    expect(await value('view-replay-rest', 'r1')).to.equal('450\n');
    expect(await value('view-replay-percent', 'r1')).to.equal('25\n');
    expect(JSON.parse(await value('view-sync-percent', '--json'))).to.deep.equal([{ resource: 'r1', host: 'alpha', value: 25 }]);
  });

  it('view-sync-rate and view-sync-remain - bytes/s between two samples, and rest / rate in seconds', async () => {
    const grow = async (by: number) => {
      await sleep(100);
      await fx.tree.set(syncKey, String(Number(await fx.tree.getValue(syncKey)) + by));
    };
    const [rate] = await Promise.all([value('view-sync-rate', 'r1', '--sample-ms', '500', '--json'), grow(64 * 1024)]);
    const row = JSON.parse(rate);
    expect(row).to.include({ resource: 'r1', host: 'alpha' });
    // 64 KiB over the sample: 500 ms plus one tree read, which a busy machine may stretch to seconds.
    expect(row.value).to.be.within((64 * 1024) / 3, (64 * 1024) / 0.5);
    const [remain] = await Promise.all([value('view-sync-remain', 'r1', '--sample-ms', '500'), grow(64 * 1024)]);
    const rest = MiB - MiB / 4 - 128 * 1024;
    expect(Number(remain)).to.be.within(Math.ceil(rest / ((64 * 1024) / 0.5)), Math.ceil(rest / ((64 * 1024) / 3)));
  });

  it('view-replay-remain - -1 when nothing moved during the sample; view-fetch-rate 0', async () => {
    expect(await value('view-replay-remain', 'r1', '--sample-ms', '50')).to.equal('-1\n');
    expect(await value('view-fetch-rate', '--sample-ms', '50')).to.equal('r1 0\n');
  });

  it('flows - progress across a log switch counts the old log\'s rest and the new position', () => {
    const at = (log: string | null, done: number, logBytes = 1000): FlowState => ({ done, rest: logBytes - done, log, logBytes });
    expect(progressBytes(at(LOG, 600), at(LOG, 900))).to.equal(300);
    expect(progressBytes(at(LOG, 600), at('log-000000002-beta', 50))).to.equal(450);
    expect(progressBytes(at(LOG, 600), at(LOG, 100))).to.equal(0); // went back: no progress
    expect(progressBytes(at(null, 10), at(null, 30))).to.equal(20); // the sync has no log
    expect(flowPercent(at(null, 0, 0))).to.equal(100);
    expect(remainSeconds(0, 0)).to.equal(0);
    expect(remainSeconds(1001, 100)).to.equal(11);
    expect(remainSeconds(5, 0)).to.equal(-1);
  });
});
