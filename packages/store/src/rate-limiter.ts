/**
 * A token bucket, sans timers: `perSecond` tokens accrue continuously up to `burst`, and
 * `take(now, wanted)` grants as many whole tokens as are available. The store stack's caller
 * uses it to bound evictions and promotions per tick, so a storm (many sessions idle at once, a
 * node starting with everything on disk) is spread over time instead of done at once.
 */
import { InvalidArgument } from '@wadi/core';

export interface RateLimiterOptions {
  /** Tokens added per second. */
  perSecond: number;
  /** Most tokens held at once (and granted in one go); the bucket starts full. */
  burst: number;
}

export class RateLimiter {
  readonly perSecond: number;
  readonly burst: number;
  #tokens: number;
  #last: number | undefined;

  constructor(options: RateLimiterOptions) {
    if (!(options.perSecond >= 0) || !Number.isFinite(options.perSecond)) throw new InvalidArgument('perSecond must be a finite non-negative number');
    if (!(options.burst >= 1) || !Number.isFinite(options.burst)) throw new InvalidArgument('burst must be a finite number >= 1');
    this.perSecond = options.perSecond;
    this.burst = options.burst;
    this.#tokens = options.burst;
  }

  /** Whole tokens available at `now` (ms, a clock that does not go backwards). */
  available(now: number): number {
    this.#refill(now);
    return Math.floor(this.#tokens);
  }

  /** Grants up to `wanted` tokens at `now` and returns how many were granted. */
  take(now: number, wanted = 1): number {
    this.#refill(now);
    const granted = Math.max(0, Math.min(Math.floor(wanted), Math.floor(this.#tokens)));
    this.#tokens -= granted;
    return granted;
  }

  #refill(now: number): void {
    if (this.#last !== undefined && now > this.#last) {
      this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) * this.perSecond) / 1000);
    }
    // A clock that stepped back adds nothing, and time is measured from the latest reading.
    if (this.#last === undefined || now > this.#last) this.#last = now;
  }
}
