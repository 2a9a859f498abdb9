/**
 * ask.inThread: sequential awaited asks to an actor on the same thread, against the raw floor of
 * an awaited async function call doing the same work. Issue #2 target: ratio >= 0.15.
 */
import { ActorSystem } from '@wadi/core';
import { RAW_AWAITED_CALL, awaitedAsyncCalls } from '../baselines.js';
import { measureAll, result, type Benchmark, type Op } from '../harness.js';
import { Counter } from './counter.js';

export const askInThread: Benchmark = {
  title: 'ask in thread',
  names: ['ask.inThread'],
  async run() {
    const system = new ActorSystem();
    system.registry.add(Counter);
    const counter = system.ref(Counter, 'c1');
    const asks: Op = async (n) => {
      let last = 0;
      for (let i = 0; i < n; i++) last = await counter.add(1);
      lastSeen = last;
    };
    try {
      const timing = await measureAll({ asks, calls: awaitedAsyncCalls }, { warmupMs: 500, roundMs: 200, rounds: 7 });
      return [
        result({
          name: 'ask.inThread',
          value: timing.asks.opsPerSec,
          unit: 'calls/s',
          better: 'higher',
          baseline: { name: RAW_AWAITED_CALL, value: timing.calls.opsPerSec },
          target: { on: 'ratio', op: '>=', threshold: 0.15 },
          samples: timing.asks.samples,
        }),
      ];
    } finally {
      system.stop();
    }
  },
};

/** Keeps the asks' results observable so they cannot be optimised away. */
export let lastSeen = 0;
