import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { NbdClient } from '../../src/nbd/index.js';
import { randomBytes } from '../support/tmp.js';
import { eventually, TestHost } from '../support/test_host.js';

const MiB = 1 << 20;

describe('cluster tier: one host', function () {
  this.timeout(60000);
  let host: TestHost;
  let disk: string;

  beforeEach(async () => {
    host = new TestHost('alpha');
    await host.ok('create-cluster');
    disk = host.tmp.file('disk.img');
    writeFileSync(disk, '');
    await host.startDaemon();
  });
  afterEach(async () => {
    await host.remove();
  });

  it('single host - create-resource serves the device over NBD; writes, FUA, flush and trim reach the log and the disk', async () => {
    await host.ok('create-resource', 'r1', disk, '64M');
    expect(await host.ok('view-role', 'r1')).to.equal('Primary\n');
    const client = await NbdClient.connect(host.socket('r1'), 'r1');
    try {
      expect(client.sizeBytes).to.equal(64 * MiB);
      const a = randomBytes(MiB, 1), b = randomBytes(4096, 2);
      await client.write(0, a);
      await client.write(MiB, b, true);
      await client.flush();
      await client.trim(4096, 8192);
      const back = await client.read(0, MiB);
      expect(back.subarray(0, 4096).equals(a.subarray(0, 4096))).to.equal(true);
      expect(back.subarray(4096, 12288).every((x) => x === 0)).to.equal(true);
      expect((await client.read(MiB, 4096)).equals(b)).to.equal(true);
      expect(await host.ok('view-device-opened', 'r1')).to.equal('1\n');
    } finally {
      await client.disconnect();
    }
    await eventually('open-count 0', async () => (await host.ok('view-device-opened', 'r1')) === '0\n');
    await host.stopDaemon('SIGTERM');
    const log = path.join(host.root, 'resource-r1', 'log-000000001-alpha');
    const cat = (await host.ok('log-cat', log)).trim().split('\n');
    expect(cat.map((l) => l.split('  ')[2])).to.deep.equal(['write', 'write', 'zero', 'sync-mark']);
    const image = readFileSync(disk);
    expect(image.subarray(MiB, MiB + 4096).equals(randomBytes(4096, 2))).to.equal(true);
    expect(image.subarray(4096, 12288).every((x) => x === 0)).to.equal(true);
  });

  it('single host - the data survives a SIGTERM and a restart, and log-rotate switches logs under load', async () => {
    await host.ok('create-resource', 'r1', disk, '16M');
    let client = await NbdClient.connect(host.socket('r1'), 'r1');
    const writes = Array.from({ length: 64 }, (_, i) => client.write(i * 65536, randomBytes(65536, 10 + i)));
    const rotated = host.ok('log-rotate', 'r1');
    await Promise.all([...writes, rotated]);
    await client.disconnect();
    expect(readdirSync(path.join(host.root, 'resource-r1')).filter((f) => f.startsWith('log-'))).to.deep.equal(['log-000000001-alpha', 'log-000000002-alpha']);
    await host.stopDaemon('SIGTERM');
    await host.startDaemon();
    await eventually('primary again', async () => (await host.ok('view-is-primary', 'r1')) === '1\n');
    client = await NbdClient.connect(host.socket('r1'), 'r1');
    for (let i = 0; i < 64; i++) expect((await client.read(i * 65536, 65536)).equals(randomBytes(65536, 10 + i)), `chunk ${i}`).to.equal(true);
    await client.disconnect();
  });

  it('single host - detach, attach, secondary and delete-resource move the resource through its phases', async () => {
    await host.ok('create-resource', 'r1', disk, '8M');
    await host.ok('detach', 'r1');
    expect(existsSync(host.socket('r1'))).to.equal(false);
    expect(await host.ok('view-role', 'r1')).to.equal('None\n');
    expect(await host.ok('view-flags', 'r1')).to.equal('SF-R\n');
    await host.ok('attach', 'r1');
    await eventually('served again', () => existsSync(host.socket('r1')));
    await host.ok('secondary', 'r1');
    expect(await host.ok('view-get-primary', 'r1')).to.equal('(none)\n');
    expect(await host.ok('view-role', 'r1')).to.equal('Secondary\n');
    expect(existsSync(host.socket('r1'))).to.equal(false);
    await host.ok('delete-resource', 'r1');
    expect(await host.ok('view')).to.equal('no resources\n');
    expect(readdirSync(path.join(host.root, 'resource-r1')).filter((f) => f.startsWith('log-'))).to.deep.equal([]);
    // Retrying a finished delete is fine.
    expect(await host.ok('delete-resource', 'r1')).to.match(/already deleted/);
  });

  it('single host - view --json and every macro agree, and commands are safe to retry', async () => {
    await host.ok('create-resource', 'r1', disk, '8M');
    expect(await host.ok('create-resource', 'r1', disk, '8M')).to.match(/already exists on alpha/);
    await host.ok('attach', 'r1');
    const view = JSON.parse(await host.ok('view', '--json')) as { resources: { hosts: Record<string, unknown>[] }[] };
    const me = view.resources[0]!.hosts[0]!;
    expect(me).to.include({ host: 'alpha', role: 'Primary', diskState: 'UpToDate', replState: 'Logging', flags: 'SFAR', consistent: true, daemonAlive: true });
    expect(JSON.parse(await host.ok('view-role', 'r1', '--json'))).to.deep.equal({ resource: 'r1', host: 'alpha', value: 'Primary' });
    expect(await host.ok('view-replay-rest', 'r1')).to.match(/^\d+\n$/);
    expect(await host.ok('view-fetch-rest')).to.equal('r1 0\n');
    expect(await host.ok('view-is-consistent', 'r1')).to.equal('1\n');
  });

  it('single host - a device the daemon cannot serve is reported at once, and asking again retries it', async () => {
    await host.ok('create-resource', 'r1', disk, '8M');
    await host.ok('detach', 'r1');
    // The disk goes away under the resource: its path is a directory now.
    const aside = `${disk}.aside`;
    renameSync(disk, aside);
    mkdirSync(disk);
    await host.ok('attach', 'r1');
    const refused = await host.marsadm('create-resource', 'r1', disk, '8M');
    expect(refused.code).to.equal(1);
    // The daemon's reason, not "timed out after 60 s"
    expect(refused.err).to.match(/^alpha could not serve r1: EISDIR: cannot open disk .*disk\.img/m);
    expect(await host.ok('view', 'r1')).to.match(/ERROR EISDIR/);
    rmdirSync(disk);
    renameSync(aside, disk);
    // The daemon retries a refused start by itself only after a minute; asking again retries now.
    await host.ok('create-resource', 'r1', disk, '8M', '--timeout', '20');
    expect(await host.ok('view-role', 'r1')).to.equal('Primary\n');
    expect(await host.ok('view-replstate', 'r1')).to.equal('Logging\n');
  });

  it('single host - qemu-io reads and writes through the export', async function () {
    if (spawnSync('sh', ['-c', 'command -v qemu-io']).status !== 0) {
      if (process.env['PHOBOS_REQUIRE_ALL_TIERS'] === '1') throw new Error('qemu-io missing: run scripts/install-test-deps.sh');
      this.skip();
    }
    await host.ok('create-resource', 'r1', disk, '8M');
    const url = `nbd+unix:///r1?socket=${host.socket('r1')}`;
    const io = spawnSync('qemu-io', ['-f', 'raw', url, '-c', 'write -P 0xab 0 64k', '-c', 'flush', '-c', 'read -P 0xab 0 64k'], { encoding: 'utf8' });
    expect(io.status, io.stderr).to.equal(0);
    expect(io.stdout).to.match(/read 65536\/65536 bytes at offset 0/);
    expect(io.stdout).to.not.match(/Pattern verification failed/);
  });
});

describe('cluster tier: bad input leaves the tree unchanged', function () {
  this.timeout(30000);
  let host: TestHost;
  before(async () => {
    host = new TestHost('alpha');
    await host.ok('create-cluster');
  });
  after(async () => {
    await host.remove();
  });

  const snapshot = () => spawnSync('sh', ['-c', `cd ${host.root} && find . -printf '%p %l %T@\\n' | sort`], { encoding: 'utf8' }).stdout;

  for (const [what, argv, message] of [
    ['an invalid resource name', ['create-resource', 'My/Res', '/tmp/x', '1M'], /invalid resource name/],
    ['a reserved resource name', ['create-resource', 'all', '/tmp/x', '1M'], /resource name/],
    ['a missing disk', ['create-resource', 'r9', '/nonexistent/disk.img', '1M'], /disk \/nonexistent\/disk\.img does not exist/],
    ['an empty file without a size', ['create-resource', 'r9', '__EMPTY__'], /empty file; give a SIZE/],
    ['a directory as disk', ['create-resource', 'r9', '/tmp'], /neither a block device nor a regular file/],
    ['an unknown resource', ['attach', 'nope'], /no resource nope/],
    ['a bad size', ['create-resource', 'r9', '__EMPTY__', '12Q'], /--size: '12Q' is not a non-negative integer/],
  ] as const) {
    it(`single host - ${what}: one line naming it, non-zero exit, tree unchanged`, async () => {
      const empty = host.tmp.file('empty.img');
      writeFileSync(empty, '');
      const before = snapshot();
      const r = await host.marsadm(...argv.map((a) => (a === '__EMPTY__' ? empty : a)));
      expect(r.code).to.not.equal(0);
      expect(r.err.trim().split('\n'), r.err).to.have.length(1);
      expect(r.err).to.match(message);
      expect(snapshot()).to.equal(before);
    });
  }

  it('single host - a root that is not a cluster is refused with the fix', async () => {
    const bare = new TestHost('alpha');
    const r = await bare.marsadm('view');
    await bare.remove();
    expect(r.code).to.equal(1);
    expect(r.err).to.match(/is not a Phobos cluster tree; create one with `marsadm create-cluster`/);
  });

  it('single host - a disk used by another resource is refused', async () => {
    const disk = host.tmp.file('shared.img');
    writeFileSync(disk, Buffer.alloc(MiB));
    await host.ok('set-link', 'resource-r1/data-alpha', disk);
    await host.ok('set-link', 'resource-r1/size', String(MiB));
    const before = snapshot();
    const r = await host.marsadm('create-resource', 'r2', disk);
    expect([r.code, r.err]).to.deep.equal([1, `disk ${disk} is already used by resource r1; give another disk\n`]);
    expect(snapshot()).to.equal(before);
  });
});
