/**
 * Deadlines of waiting asks: never early, even when the event loop was blocked (the clock jumps
 * and no timer fired meanwhile), and late by a bounded amount otherwise.
 */
import { describe, expect, it } from 'vitest';
import { Timeout, type Scheduler, type TimerHandle } from '../src/index.js';
import { PendingAsks } from '../src/internal/pending.js';

/** A clock that moves only when told, with timers that fire only when told: a blocked loop is a jump. */
class CrankedScheduler implements Scheduler {
  time = 0;
  #timers = new Map<number, { at: number; callback: () => void }>();
  #next = 1;
  now(): number {
    return this.time;
  }
  setTimer(ms: number, callback: () => void): TimerHandle {
    const id = this.#next++;
    this.#timers.set(id, { at: this.time + ms, callback });
    return id;
  }
  clearTimer(handle: TimerHandle): void {
    this.#timers.delete(handle as number);
  }
  defer(callback: () => void): void {
    setImmediate(callback);
  }
  /** Fires every timer due at the current time, including ones set while firing. */
  fireDue(): void {
    for (let rounds = 0; rounds < 1000; rounds++) {
      const due = [...this.#timers].find(([, timer]) => timer.at <= this.time);
      if (due === undefined) return;
      this.#timers.delete(due[0]);
      due[1].callback();
    }
  }
  /** Moves the clock forward in small steps, firing timers as a live loop would. */
  run(ms: number, step = 5): void {
    for (let t = 0; t < ms; t += step) {
      this.time += step;
      this.fireDue();
    }
  }
}

function outcome(promise: Promise<unknown>): { settled: boolean; error?: unknown } {
  const state: { settled: boolean; error?: unknown } = { settled: false };
  promise.then(
    () => (state.settled = true),
    (error) => {
      state.settled = true;
      state.error = error;
    },
  );
  return state;
}

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('ask deadlines', () => {
  it('an ask sent after the event loop was blocked does not time out early', async () => {
    const scheduler = new CrankedScheduler();
    const pending = new PendingAsks(scheduler, 50);
    const before = outcome(pending.create(0, true, 't', 'a', 'm', 100).promise);
    scheduler.time = 300; // blocked for 300 ms: no timer fired
    const after = outcome(pending.create(0, true, 't', 'b', 'm', 100).promise);
    scheduler.fireDue();
    await flush();
    // Sent at 300 with 100 ms: nothing may fire before 400. (The first ask fires late by the
    // blocked time: its creation time was never read, which is what keeps asks cheap.)
    expect(after.settled).toBe(false);
    scheduler.run(95);
    await flush();
    expect(after.settled).toBe(false);
    scheduler.run(200);
    await flush();
    expect(after.error).toBeInstanceOf(Timeout);
    expect(before.error).toBeInstanceOf(Timeout);
  });

  it('fires at or after the deadline and within a bounded lateness, for asks sent at any moment', async () => {
    for (const sentAt of [0, 1, 24, 49, 50, 51, 99, 137]) {
      const scheduler = new CrankedScheduler();
      const pending = new PendingAsks(scheduler, 50);
      // Another ask keeps the sweep running, so `sentAt` falls anywhere in a sweep period.
      outcome(pending.create(0, true, 't', 'keep', 'm', 10_000).promise);
      scheduler.run(sentAt, 1);
      const ask = outcome(pending.create(0, true, 't', 'x', 'm', 200).promise);
      let firedAfter: number | undefined;
      for (let elapsed = 0; elapsed <= 400 && firedAfter === undefined; elapsed++) {
        scheduler.run(1, 1);
        await flush();
        if (ask.settled) firedAfter = elapsed + 1;
      }
      expect(ask.error, `sent at ${sentAt}`).toBeInstanceOf(Timeout);
      expect(firedAfter!, `sent at ${sentAt}`).toBeGreaterThanOrEqual(200);
      expect(firedAfter!, `sent at ${sentAt}`).toBeLessThanOrEqual(200 + 2 * 50);
    }
  });

  it('a settled ask is not retained or fired, and the sweep stops when nothing waits', async () => {
    const scheduler = new CrankedScheduler();
    const pending = new PendingAsks(scheduler, 50);
    const ask = pending.create(0, false, 't', 'a', 'm', 100);
    const seen = outcome(ask.promise);
    pending.settle(ask, true, 42);
    expect(pending.size).toBe(0);
    scheduler.run(500);
    await flush();
    expect(seen).toEqual({ settled: true });
    expect(pending.size).toBe(0);
  });
});
