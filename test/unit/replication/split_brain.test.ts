import { expect } from 'chai';

import { memberHistories } from '../../../src/cli/commands/_member_histories.js';
import { logName } from '../../../src/replication/log_names.js';
import { findSplitBrain, type HostHistory } from '../../../src/replication/split_brain.js';
import { versionValue } from '../../../src/replication/version_value.js';
import { parseVersion, type VersionLink } from '../../../src/replication/versions.js';

/** A chain of version links over (seq, origin, end) steps, as hosts publish them. */
function chain(steps: readonly [number, string, number][], from: string | null = null): Map<number, VersionLink> {
  const links = new Map<number, VersionLink>();
  let previous = from;
  for (const [seq, origin, end] of steps) {
    previous = versionValue(previous, logName(seq, origin), end);
    links.set(seq, parseVersion(previous)!);
  }
  return links;
}

const history = (host: string, versions: Map<number, VersionLink>, tail: [number, string, number] | null = null): HostHistory =>
  ({ host, versions, tail: tail ? { log: logName(tail[0], tail[1]), offset: tail[2] } : null });

describe('split brain', () => {
  const common: [number, string, number][] = [[1, 'alpha', 100], [2, 'alpha', 200]];

  it('split brain - none while every history is a prefix of one (replicas behind, primary ahead)', () => {
    expect(findSplitBrain([
      history('alpha', chain(common), [3, 'alpha', 50]),
      history('beta', chain(common), [3, 'alpha', 20]),
      history('gamma', chain(common.slice(0, 1)), [2, 'alpha', 150]),
    ])).to.equal(null);
  });

  it('split brain - a forced primary that stopped short of the old primary\'s end', () => {
    // beta replayed log 3 of alpha to 40, was forced primary and writes log 4; alpha went on to 90.
    const beta = chain([...common, [3, 'alpha', 40]]);
    const alpha = chain([...common, [3, 'alpha', 90]]);
    const split = findSplitBrain([history('alpha', alpha), history('beta', beta, [4, 'beta', 500])]);
    expect(split).to.deep.equal({
      after: logName(2, 'alpha'),
      hosts: [{ host: 'alpha', bytesAfterSplit: 50 }, { host: 'beta', bytesAfterSplit: 500 }],
    });
  });

  it('split brain - seen before the old primary seals: its live log end is past the other\'s link', () => {
    const beta = chain([...common, [3, 'alpha', 40]]);
    const split = findSplitBrain([history('alpha', chain(common), [3, 'alpha', 70]), history('beta', beta, [4, 'beta', 10])]);
    expect(split?.hosts).to.deep.equal([{ host: 'alpha', bytesAfterSplit: 30 }, { host: 'beta', bytesAfterSplit: 10 }]);
  });

  it('split brain - two hosts writing logs of the same number', () => {
    const split = findSplitBrain([history('alpha', chain(common), [3, 'alpha', 7]), history('beta', chain(common), [3, 'beta', 9])]);
    expect(split?.after).to.equal(logName(2, 'alpha'));
    expect(split?.hosts.map((h) => h.bytesAfterSplit)).to.deep.equal([7, 9]);
  });

  it('split brain - a planned handover (same end, chain continued) is not one', () => {
    const sealed: [number, string, number][] = [...common, [3, 'alpha', 90]];
    expect(findSplitBrain([
      history('alpha', chain(sealed), [4, 'beta', 30]),
      history('beta', chain(sealed), [4, 'beta', 60]),
    ])).to.equal(null);
  });

  it('split brain - an old primary whose replay position is past its seal by the closing SYNC_MARK is not one', () => {
    // alpha left after log 3 (sealed at 90, then its closing 64-byte mark: replay at 154);
    // beta caught up and serves log 4, empty so far: alpha has nothing to follow yet.
    const sealed = chain([...common, [3, 'alpha', 90]]);
    const values = new Map<string, string>([
      ['resource-r1/actual-beta/is-primary', '1'],
      ['resource-r1/actual-beta/log-end', `${logName(4, 'beta')},0`],
      ['resource-r1/replay-alpha', `${logName(3, 'alpha')},154,0`],
      ['resource-r1/replay-beta', `${logName(4, 'beta')},0,0`],
    ]);
    for (const host of ['alpha', 'beta']) {
      let previous: string | null = null;
      for (const [seq, link] of sealed) {
        previous = versionValue(previous, link.log, link.offset);
        values.set(`resource-r1/version-${String(seq).padStart(9, '0')}-${host}`, previous);
      }
    }
    const tree = {
      value: (key: string) => values.get(key),
      entries: (prefix: string) => [...values].filter(([k]) => k.startsWith(prefix)),
    };
    expect(findSplitBrain(memberHistories(tree, 'r1', ['alpha', 'beta']))).to.equal(null);
    // The same position without alpha's link (it never sealed log 3) is data past beta's end.
    values.delete('resource-r1/version-000000003-alpha');
    expect(findSplitBrain(memberHistories(tree, 'r1', ['alpha', 'beta']))?.after).to.equal(logName(2, 'alpha'));
  });
});
