import { expect } from 'chai';
import { execFile, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

import { randomBytes } from '../../support/tmp.js';
import { startServer, stopServer, until, type Fixture } from './_fixture.js';

const run = promisify(execFile);
const has = (tool: string): boolean => spawnSync(tool, ['--version'], { stdio: 'ignore' }).status === 0;

describe('NbdServer with qemu tools', function () {
  let f: Fixture | undefined;
  const uri = (): string => `nbd+unix:///r1?socket=${f!.socketPath}`;
  before(function () {
    if (!has('qemu-io')) {
      console.log('    skipped: qemu-io is not installed (Debian package qemu-utils; scripts/install-test-deps.sh installs it)');
      this.skip();
    }
  });
  beforeEach(async () => {
    f = await startServer(4 << 20);
  });
  afterEach(async () => {
    await stopServer(f);
    f = undefined;
  });

  it('qemu-io - writes, reads back, flushes and zeroes through the export', async () => {
    // -t none: writeback cache, so only `write -f` asks for FUA (the default, writethrough,
    // sets FUA on every write).
    const { stdout } = await run('qemu-io', ['-f', 'raw', '-t', 'none', uri(),
      '-c', 'write -P 0xab 0 64k',
      '-c', 'read -P 0xab 0 64k',
      '-c', 'write -f -P 0xcd 1m 4k', // -f: FUA
      '-c', 'flush',
      '-c', 'write -z 8k 4k',
      '-c', 'read -P 0 8k 4k',
      '-c', 'discard 16k 4k',
    ]);
    expect(stdout).to.not.match(/Pattern verification failed|error/i);
    const dev = f!.device;
    expect(dev.data.subarray(0, 8192).every((b) => b === 0xab)).to.equal(true);
    expect(dev.data.subarray(8192, 12288).every((b) => b === 0)).to.equal(true);
    expect(dev.data.subarray(12288, 16384).every((b) => b === 0xab)).to.equal(true);
    expect(dev.data.subarray(16384, 20480).every((b) => b === 0)).to.equal(true);
    expect(dev.data.subarray(20480, 65536).every((b) => b === 0xab)).to.equal(true);
    expect(dev.calls.find((c) => c.op === 'write' && c.offset === 0)?.fua).to.equal(false);
    expect(dev.calls.find((c) => c.op === 'write' && c.offset === 1 << 20)?.fua).to.equal(true);
    expect(dev.calls.filter((c) => c.op === 'zero').map((c) => [c.offset, c.length])).to.deep.equal([[8192, 4096], [16384, 4096]]);
    expect(dev.calls.some((c) => c.op === 'flush')).to.equal(true);
    expect(dev.durable.equals(dev.data)).to.equal(true); // qemu-io flushes before it exits
    await until(() => f!.server.openCount === 0); // the close may arrive after qemu-io exits
  });

  it('qemu-img - reports the size and copies an image onto the export', async () => {
    const { stdout } = await run('qemu-img', ['info', '--output=json', '-f', 'raw', uri()]);
    expect(JSON.parse(stdout)['virtual-size']).to.equal(4 << 20);
    const image = randomBytes(4 << 20, 3);
    const file = f!.tmp.file('image.raw');
    writeFileSync(file, image);
    await run('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', file, uri()]);
    expect(f!.device.data.equals(image)).to.equal(true);
    await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', file, uri()]);
  });
});
