/**
 * A worker's memory evicters: on every tick they look at the activations that could be
 * deactivated now and pick the ones to demote (their state goes down the store stack), at most as
 * many per second as the rate allows, so a burst of expiries never stalls the worker's turns.
 *
 * An evicter is a policy over the evictable activations, oldest use first: idle time, a maximum
 * count (least recently used beyond it), and a heap limit are provided; `StoreOptions` picks them.
 */
import type { ActorSystem } from '@wadi/core';
import type { RateLimiter } from '@wadi/store';

/** An activation that could be deactivated now, and when it was last used. */
export interface Candidate {
  type: string;
  id: string;
  lastUsed: number;
}

export interface MemoryEvicter {
  /** How many of `candidates` (sorted oldest use first) to demote now, from the oldest. */
  due(candidates: readonly Candidate[], now: number): number;
}

/** Demotes what has not been used for `idleMs`. */
export function idleEvicter(idleMs: number): MemoryEvicter {
  return {
    due(candidates, now) {
      let count = 0;
      while (count < candidates.length && now - candidates[count]!.lastUsed >= idleMs) count++;
      return count;
    },
  };
}

/** Keeps at most `maxCount` idle activations; beyond it the least recently used go. */
export function lruEvicter(maxCount: number): MemoryEvicter {
  return { due: (candidates) => Math.max(0, candidates.length - maxCount) };
}

/** While the heap is over `maxBytes`, demotes a tenth of what could go, least recently used first. */
export function heapEvicter(maxBytes: number, heapUsed: () => number = () => process.memoryUsage().heapUsed): MemoryEvicter {
  return { due: (candidates) => (heapUsed() > maxBytes ? Math.ceil(candidates.length / 10) : 0) };
}

export interface DemotionsOptions {
  system: ActorSystem;
  evicters: readonly MemoryEvicter[];
  /** Bounds the demotions per second, so a burst of expiries is spread over several ticks. */
  limiter: RateLimiter;
  now(): number;
}

export class Demotions {
  readonly #options: DemotionsOptions;
  #demoted = 0;

  constructor(options: DemotionsOptions) {
    this.#options = options;
  }

  get demoted(): number {
    return this.#demoted;
  }

  tick(): number {
    const { system, evicters, limiter, now } = this.#options;
    const at = now();
    if (limiter.available(at) < 1) return 0;
    const candidates: Candidate[] = [];
    for (const [type, id, lastUsed] of system.evictable()) candidates.push({ type, id, lastUsed });
    if (candidates.length === 0) return 0;
    candidates.sort((a, b) => a.lastUsed - b.lastUsed);
    let due = 0;
    for (const evicter of evicters) due = Math.max(due, evicter.due(candidates, at));
    due = limiter.take(at, due);
    let demoted = 0;
    for (let i = 0; i < due; i++) if (system.deactivate(candidates[i]!.type, candidates[i]!.id)) demoted++;
    this.#demoted += demoted;
    return demoted;
  }
}
