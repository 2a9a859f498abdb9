/**
 * Test helpers shared by the core test files (not a test file itself: vitest only collects
 * `*.test.ts`).
 *
 * `VirtualScheduler` implements the small `Scheduler` interface on a virtual clock so that tests of
 * timers, idle deactivation and ask deadlines never depend on wall-clock time: time moves only
 * when a test calls `advance(ms)`.
 */
import { expect } from 'vitest';
import type { Scheduler, TimerHandle } from '../src/index.js';

interface VirtualTimer {
  at: number;
  callback: () => void;
}

export class VirtualScheduler implements Scheduler {
  #now = 0;
  #nextId = 1;
  readonly #timers = new Map<number, VirtualTimer>();

  now(): number {
    return this.#now;
  }

  setTimer(ms: number, callback: () => void): TimerHandle {
    const id = this.#nextId++;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), callback });
    return id;
  }

  clearTimer(handle: TimerHandle): void {
    this.#timers.delete(handle as number);
  }

  /** A real macrotask: deferred work runs on the next `settle()`. */
  defer(callback: () => void): void {
    setImmediate(callback);
  }

  /** Timers set and not yet fired or cleared. */
  get pendingTimers(): number {
    return this.#timers.size;
  }

  /** Moves the clock forward by `ms`, firing due timers in order and letting their effects settle. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    for (;;) {
      await settle();
      let dueId: number | undefined;
      let due: VirtualTimer | undefined;
      for (const [id, timer] of this.#timers) {
        if (timer.at <= end && (due === undefined || timer.at < due.at)) {
          dueId = id;
          due = timer;
        }
      }
      if (due === undefined || dueId === undefined) break;
      this.#timers.delete(dueId);
      this.#now = Math.max(this.#now, due.at);
      due.callback();
    }
    this.#now = end;
    await settle();
  }
}

/** Lets every queued microtask and deferred (setImmediate) callback run. Not a time wait. */
export async function settle(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** A promise with its resolve/reject exposed, to block a handler until the test says so. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (error: unknown) => void } {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Awaits `promise` expecting a rejection, and returns the rejection value. */
export async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  expect.fail('expected the promise to reject, but it resolved');
}

/** Runs `fn` expecting it to throw synchronously, and returns what it threw. */
export function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  expect.fail('expected the call to throw, but it returned');
}

/**
 * Structural equality for codec values: numbers by value (NaN equals NaN; -0 equals 0, since
 * msgpack integers have no negative zero), Dates by time, any Uint8Array (Buffer included) by its
 * bytes, Maps and Sets entry by entry in insertion order, plain objects by own keys regardless of
 * prototype (Object or null), errors by name, message and code. Type must match: a bigint never
 * equals a number, a Map never equals an object.
 */
/** The encodings laid end to end, as a batch of envelopes is. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

export function sameValue(a: unknown, b: unknown): boolean {
  if (typeof a !== typeof b) return false;
  switch (typeof a) {
    case 'number':
      return a === b || (Number.isNaN(a) && Number.isNaN(b as number));
    case 'bigint':
    case 'string':
    case 'boolean':
    case 'undefined':
      return a === b;
    case 'object':
      break;
    default:
      return false;
  }
  if (a === null || b === null) return a === b;
  const x = a as object;
  const y = b as object;
  if (x instanceof Date || y instanceof Date) {
    if (!(x instanceof Date && y instanceof Date)) return false;
    const tx = x.getTime();
    const ty = y.getTime();
    return tx === ty || (Number.isNaN(tx) && Number.isNaN(ty));
  }
  if (x instanceof Uint8Array || y instanceof Uint8Array) {
    if (!(x instanceof Uint8Array && y instanceof Uint8Array) || x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  if (Array.isArray(x) || Array.isArray(y)) {
    if (!(Array.isArray(x) && Array.isArray(y)) || x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!sameValue(x[i], y[i])) return false;
    return true;
  }
  if (x instanceof Map || y instanceof Map) {
    if (!(x instanceof Map && y instanceof Map) || x.size !== y.size) return false;
    const ex = [...x];
    const ey = [...y];
    return ex.every(([k, v], i) => sameValue(k, ey[i]![0]) && sameValue(v, ey[i]![1]));
  }
  if (x instanceof Set || y instanceof Set) {
    if (!(x instanceof Set && y instanceof Set) || x.size !== y.size) return false;
    const vx = [...x];
    const vy = [...y];
    return vx.every((v, i) => sameValue(v, vy[i]));
  }
  if (x instanceof Error || y instanceof Error) {
    if (!(x instanceof Error && y instanceof Error)) return false;
    return x.name === y.name && x.message === y.message && (x as { code?: unknown }).code === (y as { code?: unknown }).code;
  }
  const px = Object.getPrototypeOf(x);
  const py = Object.getPrototypeOf(y);
  const plain = (p: unknown): boolean => p === Object.prototype || p === null;
  if (!plain(px) || !plain(py)) return false;
  const kx = Object.keys(x).sort();
  const ky = Object.keys(y).sort();
  if (kx.length !== ky.length || kx.some((k, i) => k !== ky[i])) return false;
  return kx.every((k) => sameValue((x as Record<string, unknown>)[k], (y as Record<string, unknown>)[k]));
}
