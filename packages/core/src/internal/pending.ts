/**
 * Asks waiting for their reply, with deadlines.
 *
 * One timer per ask would cost more than the ask itself, so deadlines are kept in a hashed wheel
 * of slots (`resolutionMs` wide, each an array with a live count, emptied whenever the count
 * reaches zero so settled asks are not retained), swept by a single timer that runs only while
 * asks are pending (it stops itself at a sweep that finds none, so back-to-back asks do not
 * re-arm it).
 *
 * The clock is read once per sweep, not once per ask: a new ask goes into the "fresh" slot, and
 * the next sweep gives it a deadline slot counted from that sweep's reading, which is never
 * earlier than the ask's creation. So a deadline fires at or after its time (at most about two
 * slots late, more if the event loop was blocked), never early.
 */
import { Timeout } from '../errors.js';
import type { Scheduler, TimerHandle } from '../scheduler.js';

export class PendingAsk {
  /** Set when settled or timed out; a late reply is then ignored. */
  done = false;
  slot: Slot | undefined = undefined;
  constructor(
    /** 0 for an ask answered on this thread, until `PendingAsks.index` gives it one. */
    public requestId: number,
    /** Where the ask went: a destination index, or LOCAL. */
    readonly destination: number,
    /** The target, kept apart and joined only when an error needs words (asks are hot). */
    readonly type: string,
    readonly id: string,
    readonly method: string,
    readonly resolve: (value: unknown) => void,
    readonly reject: (error: unknown) => void,
    readonly promise: Promise<unknown>,
    readonly timeoutMs: number,
  ) {}

  describe(): string {
    return `${this.type}.${this.method} on '${this.id}'`;
  }
}

interface Slot {
  /** The wheel position; -1 for the fresh slot, whose asks have no deadline slot yet. */
  readonly number: number;
  asks: PendingAsk[];
  live: number;
}

function newSlot(number: number): Slot {
  return { number, asks: [], live: 0 };
}

export class PendingAsks {
  readonly #scheduler: Scheduler;
  readonly #resolutionMs: number;
  readonly #remote = new Map<number, PendingAsk>();
  readonly #slots = new Map<number, Slot>();
  /** Asks created since the last sweep. */
  #fresh = newSlot(-1);
  #count = 0;
  #nextRequestId = 1;
  #timer: TimerHandle | undefined;

  /**
   * `firstRequestId` lets a thread that replaces a dead one number its asks apart from its
   * predecessor's, so a late reply to the dead thread can never settle a new ask.
   */
  constructor(scheduler: Scheduler, resolutionMs = 50, firstRequestId = 1) {
    this.#scheduler = scheduler;
    this.#resolutionMs = resolutionMs;
    this.#nextRequestId = firstRequestId;
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
    const ask = new PendingAsk(requestId, destination, type, id, method, resolve, reject, promise, timeoutMs);
    if (remote) this.#remote.set(requestId, ask);
    if (this.#timer === undefined) this.#arm();
    place(ask, this.#fresh);
    this.#count++;
    return ask;
  }

  /** Gives a local ask a request id, so a reply envelope can settle it (its message left this thread). */
  index(ask: PendingAsk): number {
    if (ask.requestId === 0 && !ask.done) {
      ask.requestId = this.#nextRequestId++;
      this.#remote.set(ask.requestId, ask);
    }
    return ask.requestId;
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
    for (const slot of [this.#fresh, ...this.#slots.values()]) {
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
    this.#timer = this.#scheduler.setTimer(this.#resolutionMs, this.#sweep);
  }

  readonly #sweep = (): void => {
    this.#timer = undefined;
    const now = this.#scheduler.now();
    const fresh = this.#fresh;
    this.#fresh = newSlot(-1);
    for (const ask of fresh.asks) {
      if (ask.done) continue;
      const number = Math.ceil((now + ask.timeoutMs) / this.#resolutionMs);
      let slot = this.#slots.get(number);
      if (slot === undefined) this.#slots.set(number, (slot = newSlot(number)));
      place(ask, slot);
    }
    const current = Math.floor(now / this.#resolutionMs);
    for (const [number, slot] of [...this.#slots]) {
      if (number > current) continue;
      this.#slots.delete(number);
      for (const ask of slot.asks.slice()) {
        if (!ask.done) this.settle(ask, false, new Timeout(`no reply to ${ask.describe()} before its deadline`));
      }
    }
    if (this.#count > 0 && this.#timer === undefined) this.#arm();
  };
}

function place(ask: PendingAsk, slot: Slot): void {
  slot.asks.push(ask);
  slot.live++;
  ask.slot = slot;
}
