import { expect } from 'chai';
import { readFileSync } from 'node:fs';

import {
  actualKey, checkValue, dataKey, hostActualKey, ipKey, KEY_SHAPES, logKey, mayWrite, ownerOf, parseKey, pingKey,
  pongKey, primaryKey, replayKey, sizeKey, todoKey, userspaceKey, versionKey, type TreeError,
} from '../../../src/tree/index.js';

describe('tree keys', () => {
  it('key builders - produce the paths of the key table', () => {
    expect(todoKey('r1', 'alpha', 'attach')).to.equal('resource-r1/todo-alpha/attach');
    expect(actualKey('r1', 'alpha', 'open-count')).to.equal('resource-r1/actual-alpha/open-count');
    expect(hostActualKey('alpha', 'alive')).to.equal('actual-alpha/alive');
    expect(ipKey('alpha')).to.equal('ips/ip-alpha');
    expect(pingKey('alpha', 'beta')).to.equal('actual-alpha/ping-beta');
    expect(pongKey('beta', 'alpha')).to.equal('actual-beta/pong-alpha');
    expect(() => pingKey('alpha', '../x')).to.throw(/invalid host name/);
    expect(dataKey('r1', 'alpha')).to.equal('resource-r1/data-alpha');
    expect(replayKey('r1', 'alpha')).to.equal('resource-r1/replay-alpha');
    expect(logKey('r1', 7, 'alpha')).to.equal('resource-r1/log-000000007-alpha');
    expect(versionKey('r1', 7, 'beta')).to.equal('resource-r1/version-000000007-beta');
    expect(sizeKey('r1')).to.equal('resource-r1/size');
    expect(primaryKey('r1')).to.equal('resource-r1/primary');
    expect(userspaceKey('note')).to.equal('userspace/note');
    expect(userspaceKey('note', 'r1')).to.equal('resource-r1/userspace/note');
    expect(() => todoKey('R1', 'alpha', 'attach')).to.throw(/invalid resource name 'R1'/);
    expect(() => logKey('r1', 1e9, 'alpha')).to.throw(/invalid log sequence number/);
  });

  it('ownerOf - host-suffixed keys belong to that host, the rest are shared', () => {
    const owned: Array<[string, string]> = [
      ['ips/ip-alpha', 'alpha'],
      ['actual-beta/alive', 'beta'],
      ['actual-beta/time', 'beta'],
      ['resource-r1/data-host-2', 'host-2'],
      ['resource-r1/device-alpha', 'alpha'],
      ['resource-r1/replay-alpha', 'alpha'],
      ['resource-r1/log-000000001-a-b', 'a-b'],
      ['resource-r1/version-000000001-alpha', 'alpha'],
      ['resource-r1/todo-alpha/attach', 'alpha'],
      ['resource-r1/actual-alpha/is-primary', 'alpha'],
      ['resource-r1/actual-alpha/msg-anything', 'alpha'],
      ['defaults-alpha/sync-limit', 'alpha'],
    ];
    for (const [key, host] of owned) {
      expect(ownerOf(key), key).to.deep.equal({ kind: 'host', host });
      expect(mayWrite(key, host)).to.equal(true);
      expect(mayWrite(key, 'other')).to.equal(false);
    }
    for (const key of ['uuid', 'resource-r1/primary', 'resource-r1/size', 'resource-r1/systemd-want',
      'defaults/sync-limit', 'todo-global/deleted-alpha', 'userspace/x', 'resource-r1/userspace/last-primary']) {
      expect(ownerOf(key), key).to.deep.equal({ kind: 'shared' });
      expect(mayWrite(key, 'anyone')).to.equal(true);
    }
  });

  it('parseKey - refuses unknown shapes and reserved names inside keys', () => {
    for (const key of ['foo', 'resource-r1', 'resource-r1/nonsense', 'resource-R1/size', 'resource-all/size',
      'todo-alpha/attach', 'resource-r1/log-1-alpha', 'resource-r1/todo-none/attach', '../x', '/mars/uuid']) {
      let error: TreeError | undefined;
      try {
        parseKey(key);
      } catch (e) {
        error = e as TreeError;
      }
      expect(error?.code, key).to.equal('EPHOBOS_KEY');
      expect(error?.message).to.match(/^invalid key '/);
    }
  });

  it('checkValue - values must fit the format of their key', () => {
    const ok: Array<[string, string]> = [
      ['resource-r1/todo-a/attach', '1'],
      ['resource-r1/size', '1073741824'],
      ['resource-r1/primary', '(none)'],
      ['resource-r1/primary', 'alpha'],
      ['resource-r1/replay-a', 'log-000000003-alpha,4096,512'],
      ['resource-r1/data-a', '/dev/lv/r1'],
      ['resource-r1/actual-a/replay-code', '-5,detail'],
      ['uuid', '0b8e5f7a-1c2d-4e3f-8a9b-0c1d2e3f4a5b'],
      ['ips/ip-a', '10.0.0.1'],
      ['ips/ip-a', '-'],
      ['actual-a/time', '1763800000.123456'],
    ];
    for (const [key, value] of ok) checkValue(parseKey(key), value);
    const bad: Array<[string, string, RegExp]> = [
      ['resource-r1/todo-a/attach', 'yes', /expected '0' or '1'/],
      ['resource-r1/size', '-1', /expected a decimal number/],
      ['resource-r1/primary', 'Alpha', /expected a host name or '\(none\)'/],
      ['resource-r1/data-a', 'relative/path', /expected an absolute path/],
      ['resource-r1/replay-a', 'log-3-alpha,1,2', /expected 'log-<seq>-<origin>,<pos>,<len>'/],
      ['userspace/x', '', /cannot be empty/],
      ['userspace/x', '.deleted', /is the tombstone; use delete/],
      ['userspace/x', 'a\0b', /NUL/],
      ['userspace/x', 'x'.repeat(4096), /at most 4095 bytes/],
    ];
    for (const [key, value, re] of bad) {
      expect(() => checkValue(parseKey(key), value), `${key}=${value}`).to.throw(re);
    }
    checkValue(parseKey('resource-r1/size'), null); // tombstone fits every link key
    expect(() => checkValue(parseKey('resource-r1/log-000000001-a'), 'x')).to.throw(/regular file/);
  });

  it('KEY_SHAPES - matches the key table of docs/tree.md row for row', () => {
    const doc = readFileSync(new URL('../../../docs/tree.md', import.meta.url), 'utf8');
    const table = doc.slice(doc.indexOf('## Key table'));
    const rows = [...table.matchAll(/^\| `([^`]+)` \| (host|shared) \|/gm)].map((m) => ({ pattern: m[1], owner: m[2] }));
    expect(rows).to.deep.equal(KEY_SHAPES.map((s) => ({ pattern: s.pattern, owner: s.owner })));
    for (const shape of KEY_SHAPES) {
      if (shape.owner === 'host') expect(shape.pattern, shape.pattern).to.include('<host>');
    }
  });
});
