/** The README's `npm run demo` works: three hosts, three byte-identical disks. */
import { spawn } from 'node:child_process';
import path from 'node:path';

import { expect } from 'chai';

const root = new URL('../../', import.meta.url).pathname;

describe('cluster tier: npm run demo', function () {
  this.timeout(180_000);

  it('builds a 3-host cluster and ends with three identical disks', async () => {
    const child = spawn(process.execPath, [path.join(root, 'dist/src/demo/main.js'), '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '', err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number>((r) => child.once('exit', (c) => r(c ?? 1)));
    expect(code, err).to.equal(0);
    const result = JSON.parse(out.trim().split('\n').pop()!) as { hosts: number; identical: boolean };
    expect(result.hosts).to.equal(3);
    expect(result.identical).to.equal(true);
  });
});
