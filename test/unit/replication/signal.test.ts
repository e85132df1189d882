import { expect } from 'chai';
import { getEventListeners } from 'node:events';

import { untilAborted } from '../../../src/replication/signal.js';

describe('untilAborted', () => {
  it('untilAborted - resolves with the promise and leaves no listener on the signal', async () => {
    const stop = new AbortController();
    for (let i = 0; i < 1000; i++) expect(await untilAborted(Promise.resolve(i), stop.signal)).to.equal(i);
    await untilAborted(Promise.reject(new Error('refused')), stop.signal).catch(() => undefined);
    expect(getEventListeners(stop.signal, 'abort')).to.have.length(0);
  });

  it('untilAborted - rejects with the reason when aborted first; the late settlement goes nowhere', async () => {
    const stop = new AbortController();
    let settle!: (v: number) => void;
    const pending = untilAborted(new Promise<number>((r) => (settle = r)), stop.signal);
    stop.abort(new Error('replica stopped'));
    let error: Error | null = null;
    await pending.catch((e: Error) => (error = e));
    expect(error).to.have.property('message', 'replica stopped');
    settle(1);
    // Already aborted: rejected at once, and a rejection of the promise is not unhandled.
    const late = untilAborted(Promise.reject(new Error('link closed')), stop.signal);
    await late.then(() => expect.fail('resolved'), (e: Error) => expect(e.message).to.equal('replica stopped'));
  });
});
