import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';

import { MarsTree } from '../../src/tree/index.js';
import { MARSADM, TestHost } from '../support/test_host.js';

/** Run marsadm as its own process; resolves with the exit code and stderr. */
function marsadmProcess(host: TestHost, ...argv: string[]): Promise<{ code: number; err: string }> {
  const child = spawn(process.execPath, [MARSADM, ...argv, '--root', host.root, '--host', host.name], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code: code ?? 1, err })));
}

/**
 * Keys each of the 20 processes writes (each write its own marsadm process, so 20 run at
 * any time): 2 x (own key + shared key) = 80 processes, ~15 s on a 2-core machine.
 */
const KEYS = 2;

describe('cluster tier: concurrent marsadm processes', function () {
  this.timeout(120000);
  let host: TestHost;
  before(async () => {
    host = new TestHost('alpha');
    await host.ok('create-cluster');
  });
  after(async () => {
    await host.remove();
  });

  it('concurrent set-link - 20 processes writing 2 keys each and one shared key lose nothing', async () => {
    const runs: Promise<{ code: number; err: string }>[] = [];
    for (let p = 0; p < 20; p++) {
      runs.push((async () => {
        for (let k = 0; k < KEYS; k++) {
          const own = await marsadmProcess(host, 'set-link', `userspace/p${p}-k${k}`, `v${p}.${k}`);
          if (own.code !== 0) return own;
          const shared = await marsadmProcess(host, 'set-link', 'userspace/shared', `p${p}k${k}`);
          if (shared.code !== 0) return shared;
        }
        return { code: 0, err: '' };
      })());
    }
    for (const r of await Promise.all(runs)) expect(r.code, r.err).to.equal(0);
    // Read back in this process: 100 more marsadm processes would cost ~12 s of CPU and
    // test get-link, which other tests cover, not the concurrent writes.
    const tree = await MarsTree.open({ root: host.root, host: host.name });
    for (let p = 0; p < 20; p++) {
      for (let k = 0; k < KEYS; k++) expect(await tree.getValue(`userspace/p${p}-k${k}`)).to.equal(`v${p}.${k}`);
    }
    const shared = JSON.parse(await host.ok('get-link', 'userspace/shared', '--json')) as { value: string; stamp: number };
    expect(shared.value).to.match(new RegExp(`^p\\d+k${KEYS - 1}$`));   // some process's last write: the newest stamp
    expect(readdirSync(`${host.root}/userspace`).filter((f) => f.startsWith('.tmp'))).to.deep.equal([]);
  });
});
