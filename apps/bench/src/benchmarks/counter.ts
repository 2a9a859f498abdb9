/** The actor the benchmarks use: a counter with a small state. */
import { defineActor } from '@wadi/core';

export const Counter = defineActor('bench.counter', {
  state: () => ({ count: 0 }),
  handlers: {
    add(state, x: number) {
      state.count += x;
      return state.count;
    },
  },
});
