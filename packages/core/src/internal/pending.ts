/**
 * Asks waiting for their reply, with deadlines.
 *
 * One timer per ask would cost more than the ask itself, so deadlines are kept in a hashed wheel
 * of slots (`resolutionMs` wide, each an array with a live count, emptied whenever the count
 * reaches zero so settled asks are not retained) swept by a single timer that runs only while asks are pending
 * (it stops itself at a sweep that finds none, so back-to-back asks do not re-arm it). Slots are
 * computed from a clock read at each sweep, not per ask; one spare slot covers that staleness, so
 * a deadline fires between its time and two slots later, never early.
 */
import { Timeout } from '../errors.js';
import type { Scheduler, TimerHandle } from '../scheduler.js';

export class PendingAsk {
  /** Set when settled or timed out; a late reply is then ignored. */
  done = false;
  slot: Slot | undefined = undefined;
  constructor(
    readonly requestId: number,
    /** Where the ask went: a destination index, or LOCAL. */
    readonly destination: number,
    /** The target, kept apart and joined only when an error needs words (asks are hot). */
    readonly type: string,
    readonly id: string,
    readonly method: string,
    readonly resolve: (value: unknown) => void,
    readonly reject: (error: unknown) => void,
    readonly promise: Promise<unknown>,
  ) {}

  describe(): string {
    return `${this.type}.${this.method} on '${this.id}'`;
  }
}

interface Slot {
  readonly number: number;
  asks: PendingAsk[];
  live: number;
}

export class PendingAsks {
  readonly #scheduler: Scheduler;
  readonly #resolutionMs: number;
  readonly #remote = new Map<number, PendingAsk>();
  readonly #slots = new Map<number, Slot>();
  /** The slot most recently added to: consecutive asks nearly always share it. */
  #lastSlot: Slot | undefined;
  #count = 0;
  #nextRequestId = 1;
  #timer: TimerHandle | undefined;
  /** The scheduler's time at the last sweep or arm: read once per sweep, not once per ask. */
  #coarseNow = 0;

  constructor(scheduler: Scheduler, resolutionMs = 50) {
    this.#scheduler = scheduler;
    this.#resolutionMs = resolutionMs;
  }

  get size(): number {
    return this.#count;
  }

  /** Registers an ask. Remote asks (those that will get a reply envelope) are indexed by id. */
  create(destination: number, remote: boolean, type: string, id: string, method: string, timeoutMs: number): PendingAsk {
    let resolve!: (value: unknown) => void;
    let reject!: (error: unknown) => void;
    const promise = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const requestId = remote ? this.#nextRequestId++ : 0;
    const ask = new PendingAsk(requestId, destination, type, id, method, resolve, reject, promise);
    if (remote) this.#remote.set(requestId, ask);
    if (this.#timer === undefined) this.#arm();
    const number = Math.ceil((this.#coarseNow + timeoutMs) / this.#resolutionMs) + 1;
    let slot = this.#lastSlot;
    if (slot === undefined || slot.number !== number) {
      slot = this.#slots.get(number);
      if (slot === undefined) this.#slots.set(number, (slot = { number, asks: [], live: 0 }));
      this.#lastSlot = slot;
    }
    slot.asks.push(ask);
    slot.live++;
    ask.slot = slot;
    this.#count++;
    return ask;
  }

  /** Settles the ask a reply envelope answers, if it is still waiting. */
  settleRemote(requestId: number, ok: boolean, value: unknown): void {
    const ask = this.#remote.get(requestId);
    if (ask !== undefined) this.settle(ask, ok, value);
  }

  settle(ask: PendingAsk, ok: boolean, value: unknown): void {
    if (ask.done) return;
    this.#forget(ask);
    if (ok) ask.resolve(value);
    else ask.reject(value);
  }

  /** Rejects every waiting ask that `matches` (e.g. all sent to a thread that died). */
  failWhere(matches: (ask: PendingAsk) => boolean, error: () => Error): number {
    let failed = 0;
    for (const slot of [...this.#slots.values()]) {
      for (const ask of [...slot.asks]) {
        if (!ask.done && matches(ask)) {
          this.settle(ask, false, error());
          failed++;
        }
      }
    }
    return failed;
  }

  /** Stops the sweep timer (when the owner stops for good). */
  close(): void {
    if (this.#timer !== undefined) this.#scheduler.clearTimer(this.#timer);
    this.#timer = undefined;
  }

  #forget(ask: PendingAsk): void {
    ask.done = true;
    if (ask.requestId !== 0) this.#remote.delete(ask.requestId);
    const slot = ask.slot!;
    ask.slot = undefined;
    if (--slot.live === 0) slot.asks = [];
    this.#count--;
  }

  #arm(): void {
    this.#coarseNow = this.#scheduler.now();
    this.#timer = this.#scheduler.setTimer(this.#resolutionMs, this.#sweep);
  }

  readonly #sweep = (): void => {
    this.#timer = undefined;
    this.#coarseNow = this.#scheduler.now();
    const current = Math.floor(this.#coarseNow / this.#resolutionMs);
    for (const [number, slot] of [...this.#slots]) {
      if (number > current) continue;
      this.#slots.delete(number);
      if (this.#lastSlot === slot) this.#lastSlot = undefined;
      for (const ask of slot.asks.slice()) {
        if (!ask.done) this.settle(ask, false, new Timeout(`no reply to ${ask.describe()} before its deadline`));
      }
    }
    if (this.#count > 0 && this.#timer === undefined) this.#arm();
  };
}
