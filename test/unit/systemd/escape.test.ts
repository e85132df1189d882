import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

import { escapePath, execArgument, unescapePath } from '../../../src/systemd/index.js';

const SYSTEMD_ESCAPE = '/usr/bin/systemd-escape';

function realEscape(p: string): string | null {
  const r = spawnSync(SYSTEMD_ESCAPE, ['--path', '--', p], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.replace(/\n$/, '') : null;
}

function realUnescape(name: string): string | null {
  const r = spawnSync(SYSTEMD_ESCAPE, ['--unescape', '--path', '--', name], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.replace(/\n$/, '') : null;
}

function ours(fn: () => string): string | null {
  try {
    return fn();
  } catch {
    return null;
  }
}

const PATHS = [
  '/mnt/data', '/mnt/my-data', '/mnt/a b', '/mnt/.hidden', '/.hidden', '/', '/srv//x/', '/a/./b', '/mnt/ümlaut',
  '/mnt/日本', '/mars/resource-vol1', '/x/a:b_c.d', '/mnt/\\back', '/mnt/tab\there', '/mnt/new\nline', '/mnt/a%b',
  '/mnt/quote"s\'', '/-lead', '/trail-/', '/a/../b', '/..', '/mnt/x..y', '/mnt/a.', '/~user/$HOME', '/mnt/\x7f',
];

const NAMES = [
  'mnt-data', 'mnt-my\\x2ddata', '-', 'mnt-.hidden', '\\x2ehidden', 'mnt-\\xc3\\xbcmlaut', 'ü', 'a\\x2fb', 'a--b',
  '-a', 'a-', '', 'a\\xzz', 'a\\\\b', '\\x2e', 'a.b', 'a-\\x2e\\x2e-b', 'x\\x2', 'a\\X41',
];

describe('systemd escape helpers', function () {
  before(function () {
    if (!existsSync(SYSTEMD_ESCAPE)) this.skip();
  });

  for (const p of PATHS) {
    it(`escapePath - equals systemd-escape --path on ${JSON.stringify(p)}`, () => {
      expect(ours(() => escapePath(p))).to.equal(realEscape(p));
    });
  }

  for (const n of NAMES) {
    it(`unescapePath - equals systemd-escape --unescape --path on ${JSON.stringify(n)}`, () => {
      expect(ours(() => unescapePath(n))).to.equal(realUnescape(n));
    });
  }

  it('escapePath and unescapePath - round trip every accepted path to its normal form', () => {
    for (const p of PATHS) {
      const escaped = ours(() => escapePath(p));
      if (escaped === null) continue;
      expect(unescapePath(escaped), p).to.equal(realUnescape(escaped));
    }
  });

  it('execArgument - quotes, escapes backslash and quote, doubles %', () => {
    expect(execArgument('/a b/c%d"e\\f')).to.equal('"/a b/c%%d\\"e\\\\f"');
  });
});
