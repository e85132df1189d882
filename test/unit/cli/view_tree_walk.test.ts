import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { actualKey, dataKey, MarsTree, sizeKey, UUID_KEY } from '../../../src/tree/index.js';
import { VIEW_CACHE } from '../../../src/tree/tree_values.js';
import { tempDir, type TempDir } from '../../support/tmp.js';
import { marsadm } from './_cli_fixture.js';

process.env['PHOBOS_NO_SYSLOG'] = '1';

// main() starts a view's tree walk as soon as the command line is parsed (ctx.treeValues);
// each run must still see the tree as it is then, and report a bad root as before.
describe('marsadm view: the tree walk started with the command', () => {
  let tmp: TempDir;
  let root: string;
  before(() => {
    tmp = tempDir('phobos-cli-');
    root = tmp.file('mars');
    mkdirSync(root);
  });
  after(() => tmp.remove());

  const view = (...argv: string[]) => marsadm('--root', root, '--host', 'alpha', ...argv);

  it('view - a root that is no cluster is refused; once it is one, the next view shows it as it is then', async () => {
    const refused = await view('view', '--json');
    expect(refused.code).to.equal(1);
    expect(refused.err).to.match(/is not a Phobos cluster tree; create one with `marsadm create-cluster`/);

    const tree = await MarsTree.open({ root, host: 'alpha', requireCluster: false });
    await tree.set(UUID_KEY, '01234567-89ab-cdef-0123-456789abcdef');
    await tree.set(sizeKey('r1'), String(1 << 20));
    await tree.set(dataKey('r1', 'alpha'), '/dev/disk-alpha');
    const first = JSON.parse((await view('view', '--json')).out);
    expect(first.resources.map((r: { resource: string }) => r.resource)).to.deep.equal(['r1']);
    expect(first.resources[0].hosts[0].role).to.equal('None');

    await tree.set(actualKey('r1', 'alpha', 'is-attached'), '1');
    expect((await view('view-role', 'r1')).out).to.equal('Secondary\n');
  });

  it('view - the view cache changes nothing a view shows: settled, just changed, and with PHOBOS_VIEW_CACHE=off', async function () {
    this.timeout(20_000);
    const tree = await MarsTree.open({ root, host: 'alpha', requireCluster: false });
    await tree.set(UUID_KEY, '01234567-89ab-cdef-0123-456789abcdef');
    for (const res of ['r2', 'r3', 'r4']) {
      await tree.set(sizeKey(res), String(1 << 20));
      await tree.set(dataKey(res, 'alpha'), `/dev/disk-${res}`);
      await tree.set(dataKey(res, 'beta'), `/dev/disk-${res}`);
    }
    const both = async () => {
      const cached = (await view('view', '--json')).out;
      process.env['PHOBOS_VIEW_CACHE'] = 'off';
      try {
        return { cached, uncached: (await view('view', '--json')).out };
      } finally {
        delete process.env['PHOBOS_VIEW_CACHE'];
      }
    };
    const fresh = await both();
    expect(fresh.cached).to.equal(fresh.uncached);
    expect(existsSync(path.join(root, VIEW_CACHE)), 'the view wrote its cache').to.equal(true);
    await new Promise((resolve) => setTimeout(resolve, 2100)); // every directory now settled: the cache is used
    expect((await both()).cached).to.equal(fresh.cached);
    await tree.set(actualKey('r3', 'beta', 'is-attached'), '1');
    await tree.delete(dataKey('r4', 'beta'));
    const changed = await both();
    expect(changed.cached).to.equal(changed.uncached);
    expect(changed.cached).to.not.equal(fresh.cached);
  });

  it('view - a missing root is named in the error, as without the early walk', async () => {
    const r = await marsadm('--root', tmp.file('nope'), '--host', 'alpha', 'view');
    expect(r.code).to.equal(1);
    expect(r.err).to.equal(`${tmp.file('nope')} is not a Phobos cluster tree; create one with \`marsadm create-cluster\` ` +
      '(or pass --root / set MARS_ROOT)\n');
  });
});

describe('marsadm view: the process', () => {
  let tmp: TempDir;
  before(() => {
    tmp = tempDir('phobos-cli-');
  });
  after(() => tmp.remove());

  /** marsadm as its own process (main.ts run directly), stdout and stderr pipes. */
  const spawnMarsadm = (root: string, argv: string[]) => {
    const main = fileURLToPath(new URL('../../../src/cli/main.ts', import.meta.url));
    return spawn(process.execPath, ['--import', 'tsx', main, '--root', root, '--host', 'alpha', ...argv],
      { env: { ...process.env, PHOBOS_NO_SYSLOG: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  };

  it('view --json - all of a long output reaches a slow reader before the process exits', async function () {
    this.timeout(120_000);
    const root = tmp.file('mars');
    const tree = await MarsTree.open({ root, host: 'alpha', create: true, requireCluster: false });
    await tree.set(UUID_KEY, '01234567-89ab-cdef-0123-456789abcdef');
    const RESOURCES = 1000; // ~450 KB of JSON: far more than the pipe and the reader take in while it waits
    for (let i = 0; i < RESOURCES; i++) {
      await tree.set(sizeKey(`r${i}`), String(1 << 20));
      await tree.set(dataKey(`r${i}`, 'alpha'), `/dev/disk-r${i}`);
    }
    const child = spawnMarsadm(root, ['view', '--json']);
    child.stderr.pipe(process.stderr);
    const chunks: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => chunks.push(d));
    child.stdout.pause();
    setTimeout(() => child.stdout.resume(), 1000);
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).to.equal(0);
    expect(JSON.parse(Buffer.concat(chunks).toString()).resources).to.have.length(RESOURCES);
  });

  it('view - a reader that closes the pipe at once (| head -0) ends the view quietly, exit 0', async function () {
    this.timeout(60_000);
    const root = tmp.file('mars-closed');
    const tree = await MarsTree.open({ root, host: 'alpha', create: true, requireCluster: false });
    await tree.set(UUID_KEY, '01234567-89ab-cdef-0123-456789abcdef');
    await tree.set(sizeKey('r1'), String(1 << 20));
    await tree.set(dataKey('r1', 'alpha'), '/dev/disk-r1');
    for (const argv of [['view', '--json'], ['view']]) {
      const child = spawnMarsadm(root, argv);
      child.stdout.destroy(); // our end of the pipe closes before marsadm writes a byte
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(err, argv.join(' ')).to.equal('');
      expect(code, argv.join(' ')).to.equal(0);
    }
  });
});
