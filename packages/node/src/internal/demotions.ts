/**
 * A worker's memory evicters: on every tick they look at the activations that could be
 * deactivated now and pick the ones to demote (their state goes down the store stack), at most as
 * many per second as the rate allows, so a burst of expiries never stalls the worker's turns.
 *
 * An evicter is a policy over the evictable activations, oldest use first: idle time, a maximum
 * count (least recently used beyond it), and a heap limit are provided; `StoreOptions` picks them,
 * and an application adds its own through `StoreOptions.evicters` (a module, see `EvicterModule`).
 * The evicters look at what could go only once per tick, rather than being told of every call:
 * the call path stays free of eviction bookkeeping.
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
  /**
   * Which of `candidates` (sorted oldest use first) to demote now: a number n means the n oldest,
   * a list names them. Several evicters' answers are combined (a session goes when any says so),
   * the oldest first as far as the rate allows; the rest are offered again on a later tick.
   */
  due(candidates: readonly Candidate[], now: number): number | readonly Candidate[];
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
    const due = dueOf(evicters, candidates, at);
    const allowed = limiter.take(at, due.length);
    let demoted = 0;
    for (let i = 0; i < allowed; i++) if (system.deactivate(due[i]!.type, due[i]!.id)) demoted++;
    this.#demoted += demoted;
    return demoted;
  }
}

/** The candidates any of `evicters` wants gone, oldest use first, each once. */
function dueOf(evicters: readonly MemoryEvicter[], candidates: readonly Candidate[], now: number): Candidate[] {
  let oldest = 0;
  let named: Set<Candidate> | undefined;
  for (const evicter of evicters) {
    const answer = evicter.due(candidates, now);
    if (typeof answer === 'number') {
      oldest = Math.max(oldest, Math.min(candidates.length, Math.floor(answer)));
    } else {
      named ??= new Set();
      for (const candidate of answer) named.add(candidate);
    }
  }
  if (named === undefined) return candidates.slice(0, oldest);
  // Candidates are objects of this tick's list: whatever an evicter returned that is not one of them is ignored.
  return candidates.filter((candidate, index) => index < oldest || named.has(candidate));
}
