/**
 * Time for the real actor systems of a simulated node: core's `Scheduler` backed by the
 * simulation's virtual clock and event queue instead of real timers. A timer fires as an event
 * of the queue; `defer` (a macrotask in a real process) is an event at the current time, after
 * every event already due then, and so is `soon` (a microtask). What fires while the process is paused waits for it to resume,
 * and nothing fires once it stopped.
 */
import type { Scheduler, TimerHandle } from '@wadi/core';
import type { EventQueue } from './event-queue.js';

export interface VirtualTimeHost {
  now(): number;
  /** Runs `event` now if the process is awake, later if it is paused, never if it stopped. */
  whenAwake(event: () => void): void;
}

interface VirtualTimer {
  cancelled: boolean;
}

export class VirtualScheduler implements Scheduler {
  readonly #queue: EventQueue;
  readonly #host: VirtualTimeHost;

  constructor(queue: EventQueue, host: VirtualTimeHost) {
    this.#queue = queue;
    this.#host = host;
  }

  now(): number {
    return this.#host.now();
  }

  setTimer(ms: number, callback: () => void): TimerHandle {
    const timer: VirtualTimer = { cancelled: false };
    this.#queue.push(this.#host.now() + Math.max(0, ms), () => {
      if (!timer.cancelled) this.#host.whenAwake(() => timer.cancelled || callback());
    });
    return timer;
  }

  clearTimer(handle: TimerHandle): void {
    (handle as VirtualTimer).cancelled = true;
  }

  defer(callback: () => void): void {
    this.#queue.push(this.#host.now(), () => this.#host.whenAwake(callback));
  }

  /** Virtual time has no microtasks: as `defer`. (Given, so the code that picks it runs here too.) */
  soon(callback: () => void): void {
    this.defer(callback);
  }
}
