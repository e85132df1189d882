import { expect } from 'chai';

import { logName } from '../../../src/replication/log_names.js';
import { versionValue } from '../../../src/replication/version_value.js';
import { actualKey, primaryKey, replayKey, todoKey, versionKey, type MarsTree } from '../../../src/tree/index.js';
import { marsadm, treeFixture, type TreeFixture } from './_cli_fixture.js';

process.env['PHOBOS_NO_SYSLOG'] = '1';

/** Publish host's version links over (seq, origin, end) steps, as its daemon does. */
async function publishChain(tree: MarsTree, res: string, steps: readonly [number, string, number][]): Promise<void> {
  let previous: string | null = null;
  for (const [seq, origin, end] of steps) {
    previous = versionValue(previous, logName(seq, origin), end);
    await tree.set(versionKey(res, seq, tree.host), previous);
  }
}

/** host is attached with every switch on; primary also publishes its log end. */
async function member(tree: MarsTree, res: string, role: { primaryAt?: [number, string, number]; replayAt?: [number, string, number] }) {
  const h = tree.host;
  for (const sw of ['attach', 'connect', 'sync', 'allow-replay']) await tree.set(todoKey(res, h, sw), '1');
  await tree.set(actualKey(res, h, 'is-attached'), '1');
  await tree.set(actualKey(res, h, 'is-primary'), role.primaryAt ? '1' : '0');
  const at = role.primaryAt ?? role.replayAt!;
  await tree.set(replayKey(res, h), `${logName(at[0], at[1])},${role.primaryAt ? 0 : at[2]},0`);
  if (role.primaryAt) await tree.set(actualKey(res, h, 'log-end'), `${logName(at[0], at[1])},${at[2]}`);
}

describe('marsadm view: split brain and role states', () => {
  const common: [number, string, number][] = [[1, 'alpha', 100], [2, 'alpha', 200]];
  let fx: TreeFixture;

  describe('diverging version chains', () => {
    before(async () => {
      // beta replayed alpha's log 3 up to 40, was forced primary and writes log 4; alpha,
      // cut off, still serves and went on to 90 in log 3.
      fx = await treeFixture('r1', ['alpha', 'beta']);
      const beta = await fx.as('beta');
      await publishChain(fx.tree, 'r1', common);
      await publishChain(beta, 'r1', [...common, [3, 'alpha', 40]]);
      await member(fx.tree, 'r1', { primaryAt: [3, 'alpha', 90] });
      await member(beta, 'r1', { primaryAt: [4, 'beta', 500] });
      await beta.set(primaryKey('r1'), 'beta');
    });
    after(() => fx.remove());

    it('view - prints SPLIT BRAIN after the last common log, with each host\'s bytes after it', async () => {
      const r = await marsadm(...fx.args, 'view', 'r1');
      expect(r.code, r.err).to.equal(0);
      const lines = r.out.split('\n');
      expect(lines[1]).to.equal(`SPLIT BRAIN after ${logName(2, 'alpha')}: alpha 50 B, beta 500 B only on that side; ` +
        'on each host whose version is to go: marsadm invalidate r1');
    });

    it('view --json - splitBrain has the split point and bytesAfterSplit per host', async () => {
      const r = await marsadm(...fx.args, 'view', '--json');
      const [res] = JSON.parse(r.out).resources;
      expect(res.splitBrain).to.deep.equal({
        after: logName(2, 'alpha'),
        hosts: [{ host: 'alpha', bytesAfterSplit: 50 }, { host: 'beta', bytesAfterSplit: 500 }],
      });
    });

    it('view-is-split-brain - 1, as text and --json', async () => {
      expect((await marsadm(...fx.args, 'view-is-split-brain', 'r1')).out).to.equal('1\n');
      expect(JSON.parse((await marsadm(...fx.args, 'view-is-split-brain', 'r1', '--json')).out))
        .to.deep.equal({ resource: 'r1', host: 'alpha', value: 1 });
    });
  });

  describe('one history', () => {
    before(async () => {
      // alpha primary in log 3; beta replayed all of log 2 and part of log 3: no split brain.
      fx = await treeFixture('r1', ['alpha', 'beta']);
      const beta = await fx.as('beta');
      await publishChain(fx.tree, 'r1', common);
      await publishChain(beta, 'r1', common);
      await member(fx.tree, 'r1', { primaryAt: [3, 'alpha', 90] });
      await member(beta, 'r1', { replayAt: [3, 'alpha', 60] });
      await fx.tree.set(primaryKey('r1'), 'alpha');
    });
    after(() => fx.remove());

    it('view - no SPLIT BRAIN line, splitBrain null, view-is-split-brain 0', async () => {
      const text = (await marsadm(...fx.args, 'view', 'r1')).out;
      expect(text).to.not.include('SPLIT BRAIN');
      expect(JSON.parse((await marsadm(...fx.args, 'view', '--json')).out).resources[0].splitBrain).to.equal(null);
      expect((await marsadm(...fx.args, 'view-is-split-brain')).out).to.equal('r1 0\n');
    });
  });

  describe('replication states of stopped members', () => {
    before(async () => {
      fx = await treeFixture('r1', ['alpha', 'beta', 'gamma', 'delta']);
      await member(fx.tree, 'r1', { primaryAt: [3, 'alpha', 90] });
      for (const h of ['beta', 'gamma', 'delta']) await member(await fx.as(h), 'r1', { replayAt: [3, 'alpha', 10] });
      await (await fx.as('beta')).set(actualKey('r1', 'beta', 'replay-code'), '-3,SplitBrain: log 4 exists with origins alpha and beta');
      await (await fx.as('gamma')).set(actualKey('r1', 'gamma', 'replay-code'), '-4,Orphan: log 3 of alpha is gone from every peer');
      await (await fx.as('delta')).set(actualKey('r1', 'delta', 'emergency'), '1');
      await fx.tree.set(primaryKey('r1'), 'alpha');
    });
    after(() => fx.remove());

    it('view --json - SplitBrain from replay-code -3, Orphan (disk Outdated) from -4, Emergency from actual-<host>/emergency', async () => {
      const hosts = JSON.parse((await marsadm(...fx.args, 'view', '--json')).out).resources[0].hosts;
      const states = Object.fromEntries(hosts.map((h: { host: string; diskState: string; replState: string }) => [h.host, `${h.diskState}/${h.replState}`]));
      expect(states).to.deep.equal({
        alpha: 'UpToDate/Logging', beta: 'Failed/SplitBrain', gamma: 'Outdated/Orphan', delta: 'UpToDate/Emergency',
      });
    });

    it('view-replstate and view-is-consistent - as each host sees itself', async () => {
      const as = (h: string) => ['--root', fx.root, '--host', h];
      expect((await marsadm(...as('gamma'), 'view-replstate', 'r1')).out).to.equal('Orphan\n');
      expect((await marsadm(...as('gamma'), 'view-is-consistent', 'r1')).out).to.equal('1\n');
      expect((await marsadm(...as('beta'), 'view-is-consistent', 'r1')).out).to.equal('0\n');
      expect((await marsadm(...as('delta'), 'view-state', 'r1')).out).to.equal('UpToDate/Emergency\n');
    });

    it('view - a primary\'s negative replay-code is a DefectiveLog, whatever its reason word', async () => {
      await fx.tree.set(actualKey('r1', 'alpha', 'replay-code'), '-3,SplitBrain: impossible on a primary');
      expect((await marsadm(...fx.args, 'view-replstate', 'r1')).out).to.equal('DefectiveLog\n');
      await fx.tree.set(actualKey('r1', 'alpha', 'replay-code'), '0');
    });

    it('view - a refused start (replay-code -1) is StartFailed with the disk as it was, and the reason after ERROR', async () => {
      await fx.tree.set(actualKey('r1', 'alpha', 'is-primary'), '0');
      await fx.tree.set(actualKey('r1', 'alpha', 'replay-code'), '-1,EBUSY: cannot open disk /dev/vdb: busy (the disk is in use)');
      expect((await marsadm(...fx.args, 'view-state', 'r1')).out).to.equal('UpToDate/StartFailed\n');
      expect((await marsadm(...fx.args, 'view-is-consistent', 'r1')).out).to.equal('1\n');
      expect((await marsadm(...fx.args, 'view', 'r1')).out).to.match(/alpha  Secondary  UpToDate  StartFailed .* ERROR EBUSY: cannot open disk/);
      await fx.tree.set(actualKey('r1', 'alpha', 'replay-code'), '0');
      await fx.tree.set(actualKey('r1', 'alpha', 'is-primary'), '1');
    });
  });
});
