/**
 * The session actors of the replication and failover benchmarks, loaded by their `wadi node`
 * processes by path (`REPLICATED_ACTORS`). They differ only in their replication mode, so a
 * figure and its baseline run the same handler.
 *
 * - `SyncCounter` / `AsyncCounter`: `add(x)` changes the state on every call (what replication
 *   must ship), `count()` reads it.
 * - `AppendLog`: records every value it applied, in order, so a failover run can tell which
 *   acknowledged writes a crash lost.
 */
import { fileURLToPath } from 'node:url';
import { defineActor } from '@wadi/core';

export const REPLICATED_ACTORS = fileURLToPath(new URL('./replicated-actors.js', import.meta.url));

const counter = {
  state: () => ({ count: 0 }),
  handlers: {
    add(state: { count: number }, x: number) {
      state.count += x;
      return state.count;
    },
    count(state: { count: number }) {
      return state.count;
    },
  },
};

export const SyncCounter = defineActor('bench.replicated.sync', { ...counter, replication: 'sync' });

export const AsyncCounter = defineActor('bench.replicated.async', { ...counter, replication: 'async' });

export const AppendLog = defineActor('bench.failover.log', {
  replication: 'sync',
  state: () => ({ values: [] as string[] }),
  handlers: {
    append(state, value: string) {
      state.values.push(value);
      return state.values.length;
    },
    values(state) {
      return state.values;
    },
  },
});
