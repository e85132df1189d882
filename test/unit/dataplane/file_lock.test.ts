import { expect } from 'chai';
import { spawn } from 'node:child_process';

import { acquireFileLock, withFileLock } from '../../../src/dataplane/index.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

describe('file locks', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.remove());

  it('withFileLock - serialises holders in one process', async () => {
    const lock = tmp.file('.lock');
    const order: string[] = [];
    await Promise.all([1, 2, 3].map((n) => withFileLock(lock, 5000, async () => {
      order.push(`in${n}`);
      await new Promise((r) => setTimeout(r, 20));
      order.push(`out${n}`);
    })));
    for (let i = 0; i < order.length; i += 2) expect(order[i + 1]).to.equal(order[i]!.replace('in', 'out'));
  });

  it('acquireFileLock - times out naming the holder pid and what to do', async () => {
    const lock = tmp.file('.lock');
    const release = await acquireFileLock(lock, 1000);
    try {
      let error: (Error & { code?: string }) | undefined;
      // A second descriptor in the same process is a separate flock holder.
      try {
        await acquireFileLock(lock, 100);
      } catch (e) {
        error = e as Error;
      }
      expect(error?.code).to.equal('EPHOBOS_LOCKED');
      expect(error?.message).to.match(new RegExp(`locked by pid ${process.pid}; waited \\d+ ms .*retry, or raise --timeout`));
    } finally {
      release();
    }
  });

  it('acquireFileLock - a holder killed with SIGKILL leaves no stale lock', async () => {
    const lock = tmp.file('.lock');
    const holder = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
      import { acquireFileLock } from './src/dataplane/index.ts';
      await acquireFileLock(${JSON.stringify(lock)}, 1000);
      console.log('held');
      setInterval(() => {}, 1000);`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    let held = false;
    try {
      (await acquireFileLock(lock, 50))();
    } catch {
      held = true;
    }
    expect(held, 'the live holder keeps the lock').to.equal(true);
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    const release = await acquireFileLock(lock, 2000);
    release();
  });
});
