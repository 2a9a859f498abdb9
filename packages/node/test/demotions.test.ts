/**
 * The worker's memory evicters over a real actor system on a virtual clock: idle time, a maximum
 * count, the heap limit, an application's own evicter naming sessions, several combined, and the
 * rate that bounds how many go per tick.
 */
import { describe, expect, it } from 'vitest';
import { ActorSystem, defineActor, type Scheduler, type TimerHandle } from '@wadi/core';
import { RateLimiter } from '@wadi/store';
import { Demotions, heapEvicter, idleEvicter, lruEvicter, type MemoryEvicter } from '../src/internal/demotions.js';

const Box = defineActor('Box', {
  state: () => ({ value: 0 }),
  handlers: {
    set(state, value: number) {
      state.value = value;
      return value;
    },
  },
});

/** Time moves only when the test says; timers never fire (nothing here needs them). */
class ManualClock implements Scheduler {
  at = 0;
  now(): number {
    return this.at;
  }
  setTimer(): TimerHandle {
    return 0;
  }
  clearTimer(): void {}
  defer(callback: () => void): void {
    queueMicrotask(callback);
  }
}

async function boxes(count: number, clock: ManualClock, evicters: MemoryEvicter[], perSecond = 1000) {
  const system = new ActorSystem({ scheduler: clock, trackLastUse: true });
  system.registry.add(Box);
  for (let i = 0; i < count; i++) {
    clock.at = i;
    await system.ref(Box, `b${i}`).set(i);
  }
  const demotions = new Demotions({ system, evicters, limiter: new RateLimiter({ perSecond, burst: perSecond }), now: () => clock.now() });
  return { system, demotions };
}

describe('memory evicters', () => {
  it('demote what has been idle for the idle time, oldest first', async () => {
    const clock = new ManualClock();
    const { system, demotions } = await boxes(10, clock, [idleEvicter(100)]);
    clock.at = 104;
    expect(demotions.tick()).toBe(5); // used at 0..4
    expect([...system.evictable()].map(([, id]) => id)).toEqual(['b5', 'b6', 'b7', 'b8', 'b9']);
    expect(system.stats()).toMatchObject({ activations: 5, parked: 5 });
  });

  it('keep at most the maximum count, least recently used going first', async () => {
    const clock = new ManualClock();
    const { system, demotions } = await boxes(10, clock, [lruEvicter(3)]);
    clock.at = 20;
    await system.ref(Box, 'b0').set(100); // used last now
    expect(demotions.tick()).toBe(7);
    expect([...system.evictable()].map(([, id]) => id).sort()).toEqual(['b0', 'b8', 'b9']);
  });

  it('demote a tenth at a time while the heap is over its limit', async () => {
    const clock = new ManualClock();
    let heap = 2000;
    const { demotions } = await boxes(20, clock, [heapEvicter(1000, () => heap)]);
    expect(demotions.tick()).toBe(2);
    heap = 500;
    expect(demotions.tick()).toBe(0);
  });

  it('never demote more per second than the rate allows', async () => {
    const clock = new ManualClock();
    const { demotions } = await boxes(100, clock, [lruEvicter(0)], 10);
    expect(demotions.tick()).toBe(10);
    expect(demotions.tick()).toBe(0);
    clock.at += 500;
    expect(demotions.tick()).toBe(5);
    clock.at += 60_000;
    expect(demotions.tick()).toBe(10); // saved up for at most a second
    expect(demotions.demoted).toBe(25);
  });

  it('take an evicter that names the sessions to go, combined with one that counts from the oldest', async () => {
    const clock = new ManualClock();
    // An application's policy: even-numbered boxes go as soon as they are idle; the others after 100.
    const evens: MemoryEvicter = { due: (candidates) => candidates.filter((candidate) => Number(candidate.id.slice(1)) % 2 === 0) };
    const { system, demotions } = await boxes(10, clock, [evens, idleEvicter(100)]);
    clock.at = 102; // b0..b2 idle for 100
    expect(demotions.tick()).toBe(6); // b0, b1, b2 and the other evens b4, b6, b8
    expect([...system.evictable()].map(([, id]) => id)).toEqual(['b3', 'b5', 'b7', 'b9']);
  });

  it('demote named sessions oldest first as far as the rate allows, and ignore names of nothing it offered', async () => {
    const clock = new ManualClock();
    const stranger = { type: 'Box', id: 'b1', lastUsed: 1 };
    const { system, demotions } = await boxes(10, clock, [{ due: (candidates) => [candidates[7]!, candidates[3]!, stranger] }], 1);
    expect(demotions.tick()).toBe(1);
    expect([...system.evictable()].map(([, id]) => id)).toEqual(['b0', 'b1', 'b2', 'b4', 'b5', 'b6', 'b7', 'b8', 'b9']);
  });
});
