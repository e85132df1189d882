import { expect } from 'chai';

import { UsageError } from '../../../src/cli/errors.js';
import { parseCommandLine, type OptionSpec } from '../../../src/cli/options.js';

const SPECS: Record<string, readonly OptionSpec[]> = {
  daemon: [{ name: 'ssh-dir', kind: 'string', value: 'DIR', help: '' }],
  view: [],
};
const specsFor = (command: string | undefined): readonly OptionSpec[] => (command ? SPECS[command] ?? [] : []);

describe('cli options', () => {
  it('cli - a command option may come before the command word, with its value', () => {
    const line = parseCommandLine(['--root', '/r', '--ssh-dir', '/k', 'daemon', 'x'], specsFor);
    expect(line).to.deep.equal({ command: 'daemon', args: ['x'], options: { root: '/r', 'ssh-dir': '/k' } });
    expect(parseCommandLine(['--ssh-dir=/k', 'daemon'], specsFor).options).to.deep.equal({ 'ssh-dir': '/k' });
  });

  it('cli - an option no later command has is still an error naming it', () => {
    expect(() => parseCommandLine(['--ssh-dir', '/k', 'view'], specsFor)).to.throw(UsageError, /marsadm: unknown option --ssh-dir/);
    expect(() => parseCommandLine(['view', '--ssh-dir', '/k'], specsFor)).to.throw(UsageError, /marsadm view: unknown option --ssh-dir/);
  });
});
