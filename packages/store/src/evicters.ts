/**
 * Evicters decide which sessions of a tier should go one tier down, and nothing else: they do
 * no I/O and keep no timers. The caller tells an evicter what it holds (`touched` on every
 * access or write, `removed` when a session leaves the tier) and asks, on its own tick, which
 * keys are `due(now, limit)`, oldest first. `due` only answers: the caller demotes what it can
 * and calls `removed` for each key that left, so a key it could not demote (busy, a failed
 * write) is simply offered again next time. Bound the demotions per tick with `RateLimiter`.
 */
import { InvalidArgument } from '@wadi/core';
import { Recency } from './internal/recency.js';

export interface Evicter {
  /** `key` was used now (activation, call, write); `bytes` is its current size. */
  touched(key: string, bytes: number, now: number): void;
  /** `key` left the tier. */
  removed(key: string): void;
  /** Up to `limit` keys that should leave the tier now, least recently touched first. */
  due(now: number, limit: number): string[];
}

/** The bookkeeping every evicter here shares: what the tier holds, in recency order. */
abstract class RecencyEvicter implements Evicter {
  protected readonly recency = new Recency();

  touched(key: string, bytes: number, now: number): void {
    this.recency.touch(key, bytes, now);
  }

  removed(key: string): void {
    this.recency.remove(key);
  }

  abstract due(now: number, limit: number): string[];
}

/** Keys untouched for `idleMs` or more. */
export class IdleEvicter extends RecencyEvicter {
  readonly #idleMs: number;

  constructor(options: { idleMs: number }) {
    super();
    this.#idleMs = nonNegative('idleMs', options.idleMs);
  }

  due(now: number, limit: number): string[] {
    // Oldest first: the first key still fresh ends the scan.
    return this.recency.takeOldest(limit, (touch) => touch.at + this.#idleMs <= now);
  }
}

/** The least recently touched keys beyond `maxCount`. */
export class LruEvicter extends RecencyEvicter {
  readonly #maxCount: number;

  constructor(options: { maxCount: number }) {
    super();
    this.#maxCount = nonNegative('maxCount', options.maxCount);
  }

  due(_now: number, limit: number): string[] {
    let excess = this.recency.size - this.#maxCount;
    return this.recency.takeOldest(limit, () => excess-- > 0);
  }
}

/** The least recently touched keys whose bytes take the total beyond `maxBytes`. */
export class MemoryEvicter extends RecencyEvicter {
  readonly #maxBytes: number;

  constructor(options: { maxBytes: number }) {
    super();
    this.#maxBytes = nonNegative('maxBytes', options.maxBytes);
  }

  override touched(key: string, bytes: number, now: number): void {
    super.touched(key, nonNegative('bytes', bytes), now);
  }

  due(_now: number, limit: number): string[] {
    let over = this.recency.bytes - this.#maxBytes;
    return this.recency.takeOldest(limit, (touch) => {
      if (over <= 0) return false;
      over -= touch.bytes;
      return true;
    });
  }
}

/**
 * Several evicters as one: a key is due when any of them says so (e.g. idle for 10 minutes OR
 * beyond 100,000 sessions OR beyond 512 MiB). Keys come least recently touched first, once each.
 */
export class AnyEvicter implements Evicter {
  readonly #evicters: readonly Evicter[];
  readonly #recency = new Recency();

  constructor(evicters: readonly Evicter[]) {
    this.#evicters = evicters;
  }

  touched(key: string, bytes: number, now: number): void {
    this.#recency.touch(key, bytes, now);
    for (const evicter of this.#evicters) evicter.touched(key, bytes, now);
  }

  removed(key: string): void {
    this.#recency.remove(key);
    for (const evicter of this.#evicters) evicter.removed(key);
  }

  due(now: number, limit: number): string[] {
    const keys = new Set<string>();
    for (const evicter of this.#evicters) for (const key of evicter.due(now, limit)) keys.add(key);
    // Each list is oldest first; merged by the time of the last touch (ties: first seen first).
    return [...keys].sort((a, b) => this.#recency.get(a)!.at - this.#recency.get(b)!.at).slice(0, Math.max(0, limit));
  }
}

/** `new AnyEvicter(evicters)`. */
export function anyOf(...evicters: Evicter[]): Evicter {
  return new AnyEvicter(evicters);
}

function nonNegative(name: string, value: number): number {
  if (typeof value !== 'number' || !(value >= 0)) throw new InvalidArgument(`${name} must be a non-negative number, got ${String(value)}`);
  return value;
}
