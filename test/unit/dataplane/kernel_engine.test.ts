/**
 * The kernel engine's host side, where phobos.ko cannot be loaded: choosing the engine,
 * the addon's ioctl bridge refusing what is not the control device, and the engine's
 * refusals being clear. The engine against the real module runs in the systemd VM tier
 * (scripts/systemd-vm/run-tier.sh: alpha serves r1 through phobos.ko).
 */
import { expect } from 'chai';

import { chooseEngine, KernelEngine, kernelModuleMissing } from '../../../src/dataplane/index.js';
import { native } from '../../../src/dataplane/native.js';
import { marsadm, treeFixture } from '../cli/_cli_fixture.js';
import { tempDir } from '../../support/tmp.js';

const NO_CTL = '/nonexistent/phobos-ctl';

describe('kernel engine (host side)', () => {
  it('auto picks the userspace engine when the control device is missing, and says why', async () => {
    const choice = await chooseEngine('auto', NO_CTL);
    expect(choice.kind).to.equal('user');
    expect(choice.why).to.contain('modprobe phobos');
  });

  it('--engine kernel without the module is refused with the fix', async () => {
    const error = await chooseEngine('kernel', NO_CTL).then(() => null, (e: Error) => e);
    expect(error?.message).to.match(/--engine kernel: .*does not exist.*modprobe phobos.*--engine user/);
  });

  it('--engine user never asks the module', async () => {
    expect(await chooseEngine('user', NO_CTL)).to.deep.equal({ kind: 'user', why: '--engine user' });
  });

  it('a device that is not phobos-ctl answers the ioctls with ENOTTY, named', async () => {
    expect(await kernelModuleMissing('/dev/null')).to.match(/PHOBOS_IOC_VERSION: Inappropriate ioctl/);
    const error = await native.kernelQuery('/dev/null', 'r1').then(() => null, (e: NodeJS.ErrnoException) => e);
    expect(error?.code).to.equal('ENOTTY');
    expect(error?.message).to.equal('PHOBOS_IOC_QUERY r1: Inappropriate ioctl for device');
  });

  it('the bridge checks names and paths before any ioctl', () => {
    expect(() => native.kernelQuery('/dev/null', 'x'.repeat(64))).to.throw(/1 to 63 characters/);
    expect(() => native.kernelCreate('/dev/null', 'r1', {
      backingPath: `/${'d'.repeat(300)}`, logPath: '/mars/log-000000001-a', logSeq: 1, replayFrom: 0,
      sizeBytes: 0, stampFloorNs: 0n, completion: 0, codec: 0,
    })).to.throw(/shorter than 256 bytes/);
  });

  it('open() without the module fails with an EngineError naming the control device', async () => {
    const tmp = tempDir('phobos-kengine-');
    try {
      const error = await KernelEngine.open({
        resource: 'r1', ctlPath: NO_CTL, diskPath: tmp.file('disk'), sizeBytes: 1 << 20,
        logPath: tmp.file('log-000000001-a'), checkpoint: null, saveCheckpoint: async () => undefined,
        stamp: () => 1n, linkDir: tmp.file('dev-mars'),
      }).then(() => null, (e: Error & { code?: string }) => e);
      expect(error?.name).to.equal('EngineError');
      expect(error?.message).to.contain(NO_CTL);
    } finally {
      tmp.remove();
    }
  });

  it('marsadm daemon --engine with an unknown engine is a one-line usage error', async () => {
    const fx = await treeFixture('r1', ['a']);
    try {
      const r = await marsadm('daemon', ...fx.args, '--engine', 'turbo');
      expect(r.code).to.not.equal(0);
      expect(r.err.trim().split('\n')).to.have.length(1);
      expect(r.err).to.match(/--engine turbo: unknown engine; use one of auto, kernel, user/);
    } finally {
      fx.remove();
    }
  });
});
