import { expect } from 'chai';

import { checkKeyPath, checkName, isValidName, resolveTreeLocation, TreeError } from '../../../src/tree/index.js';

function errorOf(fn: () => unknown): TreeError {
  try {
    fn();
  } catch (e) {
    return e as TreeError;
  }
  throw new Error('expected an error');
}

describe('tree names', () => {
  it('checkName - accepts 1-32 characters a-z, 0-9 and -, starting with a letter', () => {
    for (const name of ['a', 'r1', 'host-a', 'db-01', 'x'.repeat(32), 'a-b-c-9']) {
      expect(checkName('resource', name)).to.equal(name);
      expect(isValidName(name)).to.equal(true);
    }
  });

  it('checkName - bad names each give a one-line error naming the name and the fix', () => {
    const rule = "use 1-32 characters a-z, 0-9 and '-', starting with a letter";
    const cases: Array<[string, string]> = [
      ['My Res', `invalid resource name 'My Res': ${rule}`],
      ['', `invalid resource name '': ${rule}`],
      ['a/b', `invalid resource name 'a/b': ${rule}`],
      ['..', `invalid resource name '..': ${rule}`],
      ['1abc', `invalid resource name '1abc': ${rule}`],
      ['-a', `invalid resource name '-a': ${rule}`],
      ['a_b', `invalid resource name 'a_b': ${rule}`],
      ['a.b', `invalid resource name 'a.b': ${rule}`],
      ['x'.repeat(33), `invalid resource name '${'x'.repeat(33)}': ${rule}`],
      ['a\nb', `invalid resource name 'a?b': ${rule}`],
      ['all', "invalid resource name 'all': 'all' is reserved; choose another name"],
      ['none', "invalid resource name 'none': 'none' is reserved; choose another name"],
      ['global', "invalid resource name 'global': 'global' is reserved; choose another name"],
      ['resource-x', "invalid resource name 'resource-x': names starting with 'resource-' collide with tree keys; choose another name"],
      ['todo-a', "invalid resource name 'todo-a': names starting with 'todo-' collide with tree keys; choose another name"],
      ['actual-b', "invalid resource name 'actual-b': names starting with 'actual-' collide with tree keys; choose another name"],
    ];
    for (const [name, message] of cases) {
      const error = errorOf(() => checkName('resource', name));
      expect(error).to.be.instanceOf(TreeError);
      expect(error.code).to.equal('EPHOBOS_NAME');
      expect(error.message).to.equal(message);
      expect(error.message).not.to.include('\n');
    }
    expect(errorOf(() => checkName('host', 'Alpha')).message).to.equal(`invalid host name 'Alpha': ${rule}`);
  });

  it('checkKeyPath - refuses absolute paths, .., empty and hidden segments', () => {
    const cases: Array<[string, RegExp]> = [
      ['', /the key is empty/],
      ['/etc/passwd', /relative to the root/],
      ['resource-a/../../etc', /cannot contain '\.\.'/],
      ['resource-a//size', /no empty path segments/],
      ['resource-a/./size', /cannot contain '\.'/],
      ['resource-a/.tmp.1.size', /cannot start with '\.'/],
      ['a\0b', /NUL/],
      ['a/'.repeat(600), /at most 1024 bytes/],
    ];
    for (const [key, re] of cases) {
      const error = errorOf(() => checkKeyPath(key));
      expect(error.code, key).to.equal('EPHOBOS_KEY');
      expect(error.message).to.match(re);
    }
  });

  it('resolveTreeLocation - option, then environment, then default', () => {
    expect(resolveTreeLocation({ root: '/r', host: 'h1' }, {})).to.deep.equal({ root: '/r', host: 'h1' });
    expect(resolveTreeLocation({}, { MARS_ROOT: '/e', MARS_HOST: 'h2' })).to.deep.equal({ root: '/e', host: 'h2' });
    expect(resolveTreeLocation({ host: 'h3' }, {}).root).to.equal('/mars');
    expect(() => resolveTreeLocation({ host: 'Bad Host' }, {})).to.throw(/invalid host name 'Bad Host'/);
  });
});
