import { expect } from 'chai';
import { readFileSync, writeFileSync } from 'node:fs';

import { formatStamp, LamportClock } from '../../../src/tree/index.js';
import { tempDir, type TempDir } from '../../support/tmp.js';

describe('LamportClock', () => {
  let tmp: TempDir;
  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(() => tmp.remove());

  it('LamportClock - hands out strictly increasing stamps, never behind real time', () => {
    const clock = new LamportClock({ statePath: tmp.file('.lamport') });
    let last = 0;
    for (let i = 0; i < 2000; i++) {
      const before = Date.now() * 1000;
      const stamp = clock.now();
      expect(stamp).to.be.greaterThan(last);
      expect(stamp).to.be.at.least(before);
      expect(Number.isSafeInteger(stamp)).to.equal(true);
      last = stamp;
    }
  });

  it('LamportClock - advances past a received stamp', () => {
    const clock = new LamportClock({ statePath: tmp.file('.lamport') });
    const ahead = Date.now() * 1000 + 5_000_000;
    expect(clock.observe(ahead)).to.equal(ahead);
    expect(clock.now()).to.equal(ahead + 1);
    // An older stamp does not move it back.
    expect(clock.observe(1000)).to.equal(ahead + 1);
    expect(clock.now()).to.equal(ahead + 2);
  });

  it('LamportClock - a far-future stamp drags the clock only to real time + maxFutureMs', () => {
    let wall = 1_763_800_000_000;
    const clock = new LamportClock({ statePath: tmp.file('.lamport'), maxFutureMs: 1000, wallClockMs: () => wall });
    expect(clock.futureLimit()).to.equal((wall + 1000) * 1000);
    expect(clock.observe((wall + 3_600_000) * 1000)).to.equal((wall + 1000) * 1000);
    expect(clock.now()).to.equal((wall + 1000) * 1000 + 1);
    wall += 10_000;
    expect(clock.now()).to.equal(wall * 1000);
  });

  it('LamportClock - persists across reopen and never goes back when the wall clock does', () => {
    const wall = 1_763_800_000_000;
    const first = new LamportClock({ statePath: tmp.file('.lamport'), wallClockMs: () => wall });
    const a = first.now();
    expect(readFileSync(tmp.file('.lamport'), 'utf8')).to.equal(`${String(a).padStart(20, '0')}\n`);
    // A restart with the wall clock set back by an hour.
    const second = new LamportClock({ statePath: tmp.file('.lamport'), wallClockMs: () => wall - 3_600_000 });
    expect(second.peek()).to.equal(a);
    expect(second.now()).to.equal(a + 1);
    expect(second.now()).to.equal(a + 2);
    // A restart with a persisted value far ahead (received earlier): still continues above it.
    writeFileSync(tmp.file('.lamport'), `${(wall + 86_400_000) * 1000}\n`);
    const third = new LamportClock({ statePath: tmp.file('.lamport'), wallClockMs: () => wall });
    expect(third.now()).to.equal((wall + 86_400_000) * 1000 + 1);
  });

  it('LamportClock - two clocks on one state file never hand out the same stamp', () => {
    const a = new LamportClock({ statePath: tmp.file('.lamport'), wallClockMs: () => 1_000 });
    const b = new LamportClock({ statePath: tmp.file('.lamport'), wallClockMs: () => 1_000 });
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) {
      seen.add(a.now());
      seen.add(b.now());
    }
    expect(seen.size).to.equal(1000);
  });

  it('LamportClock - a damaged state file counts as empty', () => {
    writeFileSync(tmp.file('.lamport'), 'garbage');
    const clock = new LamportClock({ statePath: tmp.file('.lamport'), wallClockMs: () => 2_000 });
    expect(clock.now()).to.equal(2_000_000);
  });

  it('formatStamp - shows seconds and six digits of microseconds', () => {
    expect(formatStamp(1_763_800_000_000_042)).to.equal('1763800000.000042');
  });
});
