/**
 * Time, injected. Core never touches real timers: the node passes one backed by setTimeout and
 * setImmediate, the simulator one backed by a virtual clock, and the same logic runs on both.
 */
export type TimerHandle = unknown;

export interface Scheduler {
  /** Milliseconds on a monotonic clock. */
  now(): number;
  setTimer(ms: number, callback: () => void): TimerHandle;
  clearTimer(handle: TimerHandle): void;
  /** Runs `callback` soon, after pending I/O has had a chance (a macrotask, not a microtask). */
  defer(callback: () => void): void;
  /**
   * Runs `callback` as soon as the current job is done, before any I/O (a microtask). Without
   * it, `defer`.
   */
  soon?(callback: () => void): void;
}

/** A resolved promise's then() is a bare microtask; queueMicrotask adds async-context bookkeeping. */
const resolved = Promise.resolve();

/** The real-time scheduler for a Node process. Timers are unref'd: they never keep a process alive. */
export const realTimeScheduler: Scheduler = {
  now: () => performance.now(),
  setTimer(ms, callback) {
    const handle = setTimeout(callback, ms);
    (handle as { unref?: () => void }).unref?.();
    return handle;
  },
  clearTimer: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
  defer: (callback) => void setImmediate(callback),
  soon: (callback) => void resolved.then(callback),
};
