/**
 * The session actor of the cluster benchmarks: a counter that can also carry a payload, so a
 * session's state can be made as large as a benchmark needs (`fill`) before it is moved.
 * Nodes load it by module URL (`SESSION_MODULE`), the bench's own node and child nodes alike.
 */
import { defineActor } from '@wadi/core';

export const SESSION_MODULE = new URL('./session.js', import.meta.url);

export const Session = defineActor('bench.session', {
  state: () => ({ count: 0, payload: '' }),
  handlers: {
    add(state, x: number) {
      state.count += x;
      return state.count;
    },
    /** Sets the payload to `bytes` characters (one byte each in the codec's UTF-8). */
    fill(state, bytes: number) {
      state.payload = 'x'.repeat(bytes);
      return state.payload.length;
    },
    size(state) {
      return state.payload.length;
    },
  },
});
