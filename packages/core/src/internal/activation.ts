/**
 * One live actor: its state, its bounded mailbox and its turns.
 *
 * Turns never overlap: a message starts only after the previous handler (sync or async) finished.
 * Before each turn the state is copied; a handler that throws (or rejects) puts the copy back, so
 * the actor continues from its last committed state. The activation is also the `this` of its
 * handlers (typed as `ActorContext`), which keeps the per-actor footprint to one object.
 */
import type { ActorContext, AnyActorDef, RefOf, RefOptions, TimerId, Timers } from '../actor.js';
import { decode } from '../codec.js';
import { InvalidArgument, NotSerializable, UnknownMethod } from '../errors.js';
import type { TimerHandle } from '../scheduler.js';
import { cloneValue } from './clone.js';
import type { PendingAsk } from './pending.js';

/** What an activation needs from the system that hosts it. */
export interface ActivationHost {
  turnFinished(activation: Activation, message: Message, ok: boolean, value: unknown): void;
  scheduleTurns(activation: Activation, afterIo: boolean): void;
  refFor<D extends AnyActorDef>(def: D, id: string, options?: RefOptions): RefOf<D>;
  setTimer(ms: number, callback: () => void): TimerHandle;
  clearTimer(handle: TimerHandle): void;
  deliverTimer(activation: Activation, method: string, args: unknown[]): void;
  requestDeactivation(activation: Activation): void;
  /** A frozen activation finished its running turn: it is quiet until thawed. */
  paused(activation: Activation): void;
  /** Whether a turn may run now: undefined (yes), an error (the message fails with it), or 'wait'. */
  turnRefusal(): Error | 'wait' | undefined;
  /** The gate said 'wait': turns resume (via `scheduleTurns`) once it no longer does. */
  waitForGate(activation: Activation): void;
}

/** A reply held back until something outside the system (replication) lets it go. */
export interface TurnHold {
  /** `release()` lets the reply go; `release(error)` fails it with `error` instead. Called once. */
  wait(release: (error?: unknown) => void): void;
}

/** Where the result of a turn goes when the caller is on another node (or came through the cluster router). */
export interface ReplyTarget {
  settle(ok: boolean, value: unknown): void;
  /**
   * The turn succeeded but its reply is held (`hold`): a target that can send the reply ahead,
   * to be let go further along its way once the hold is released (a node's main thread releasing
   * a replicated turn's reply when the replicas' acknowledgements pass it), takes it and answers
   * true; it then waits on `hold` itself. False: the system waits on the hold and settles after.
   */
  settleHeld?(value: unknown, hold: TurnHold): boolean;
}

export interface Message {
  method: string;
  args: unknown[];
  /** The local caller waiting for this turn's result, if any. */
  pending: PendingAsk | undefined;
  /** For a remote ask: the requester's destination index and request id (0 for a tell). */
  from: number;
  requestId: number;
  /** For a call routed through the cluster: where its result goes. */
  reply?: ReplyTarget | undefined;
}

/** Consecutive synchronous turns before yielding to I/O, so one busy actor cannot starve a thread. */
const TURNS_PER_SLICE = 256;

export class Activation implements ActorContext {
  state: unknown;
  /** Waiting messages from `head` on; null while empty, to keep idle actors small. */
  queue: (Message | undefined)[] | null = null;
  head = 0;
  /** A turn (or a drain of the queue) is scheduled or running. */
  active = false;
  /** The state is being loaded; messages wait. */
  loading = false;
  lastUsed = 0;
  deactivateRequested = false;
  /** Being migrated: no new turn starts; messages wait in the mailbox until thawed or handed over. */
  frozen = false;
  /** The encoded state this activation was loaded from, until its first turn (its rollback point). */
  stored: Uint8Array | undefined = undefined;
  #timers: ActivationTimers | undefined;

  constructor(
    readonly host: ActivationHost,
    readonly def: AnyActorDef,
    readonly id: string,
    readonly key: string,
    readonly capacity: number,
  ) {}

  get type(): string {
    return this.def.name;
  }

  get queued(): number {
    return this.queue === null ? 0 : this.queue.length - this.head;
  }

  /** Adds a message; false when the mailbox is full (the caller reports `Overloaded`). */
  enqueue(message: Message): boolean {
    let queue = this.queue;
    if (queue === null) queue = this.queue = [];
    else if (queue.length - this.head >= this.capacity) return false;
    queue.push(message);
    if (!this.active && !this.loading && !this.frozen) {
      this.active = true;
      this.host.scheduleTurns(this, false);
    }
    return true;
  }

  /** Runs waiting turns until the mailbox is empty, a handler goes async, or the slice ends. */
  runTurns(): void {
    let budget = TURNS_PER_SLICE;
    const handlers = this.def.handlers as Record<string, (this: ActorContext, state: unknown, ...args: unknown[]) => unknown>;
    while (this.queue !== null && this.head < this.queue.length) {
      if (this.frozen) {
        this.active = false;
        this.host.paused(this);
        return;
      }
      if (budget-- === 0) {
        this.host.scheduleTurns(this, true);
        return;
      }
      // Accepted while the gate was open, but it closed since: the message waits, or fails with
      // the gate's reason; the state stays what the last turn committed.
      const gate = this.host.turnRefusal();
      if (gate === 'wait') {
        this.active = false;
        this.host.waitForGate(this);
        return;
      }
      const message = this.queue[this.head]!;
      this.queue[this.head++] = undefined;
      if (gate !== undefined) {
        this.host.turnFinished(this, message, false, gate);
        continue;
      }
      const handler = Object.hasOwn(handlers, message.method) ? handlers[message.method] : undefined;
      if (handler === undefined) {
        this.host.turnFinished(this, message, false, new UnknownMethod(this.def.name, message.method));
        continue;
      }
      let committed: unknown;
      try {
        // The first turn after a load need not copy: what was loaded can be decoded again.
        const stored = this.stored;
        this.stored = undefined;
        committed = stored === undefined ? cloneValue(this.state) : new StoredState(stored);
      } catch (error) {
        // The state can no longer be copied (a handler stored a function or a cycle in it): refuse
        // the turn here rather than throw out of the drain and stall every actor scheduled with us.
        const reason = error instanceof Error ? error.message : String(error);
        this.host.turnFinished(this, message, false, new NotSerializable(`the state of ${this.def.name} '${this.id}' can no longer be copied, so no turn can run: an earlier turn stored something that cannot be stored in it (${reason})`));
        continue;
      }
      let result: unknown;
      try {
        result = invoke(handler, this, this.state, message.args);
      } catch (error) {
        this.state = restore(committed);
        this.host.turnFinished(this, message, false, error);
        continue;
      }
      if (isThenable(result)) {
        result.then(
          (value) => this.#asyncTurnEnded(message, true, value, committed),
          (error) => this.#asyncTurnEnded(message, false, error, committed),
        );
        return;
      }
      this.host.turnFinished(this, message, true, result);
    }
    this.#idle();
  }

  #asyncTurnEnded(message: Message, ok: boolean, value: unknown, committed: unknown): void {
    if (!ok) this.state = restore(committed);
    this.host.turnFinished(this, message, ok, value);
    this.runTurns();
  }

  /** Removes and returns the waiting messages (a frozen activation handing its mailbox over). */
  takeQueued(): Message[] {
    const taken = this.queue === null ? [] : (this.queue.slice(this.head) as Message[]);
    this.queue = null;
    this.head = 0;
    return taken;
  }

  /** Resumes turns, running `first` (in order) before what waits already. */
  thaw(first: readonly Message[] = []): void {
    this.frozen = false;
    if (first.length > 0) {
      const waiting = this.takeQueued();
      this.queue = [...first, ...waiting];
    }
    if (!this.active && !this.loading && this.queued > 0) {
      this.active = true;
      this.host.scheduleTurns(this, false);
    }
  }

  #idle(): void {
    this.active = false;
    if (this.frozen) {
      this.host.paused(this);
      return;
    }
    this.queue = null;
    this.head = 0;
    if (this.deactivateRequested) this.host.requestDeactivation(this);
  }

  // ActorContext

  ref<D extends AnyActorDef>(def: D, id: string, options?: RefOptions): RefOf<D> {
    return this.host.refFor(def, id, options);
  }

  get timers(): Timers {
    return (this.#timers ??= new ActivationTimers(this));
  }

  deactivate(): void {
    this.deactivateRequested = true;
  }

  /** Cancels every timer; called when the activation goes away. */
  stopTimers(): void {
    this.#timers?.cancelAll();
  }
}

class ActivationTimers implements Timers {
  readonly #activation: Activation;
  readonly #handles = new Map<TimerId, TimerHandle>();
  #next = 1;

  constructor(activation: Activation) {
    this.#activation = activation;
  }

  after(ms: number, method: string, ...args: unknown[]): TimerId {
    return this.#start(ms, method, args, false);
  }

  every(ms: number, method: string, ...args: unknown[]): TimerId {
    return this.#start(ms, method, args, true);
  }

  cancel(timer: TimerId): void {
    const handle = this.#handles.get(timer);
    if (handle === undefined) return;
    this.#activation.host.clearTimer(handle);
    this.#handles.delete(timer);
  }

  cancelAll(): void {
    for (const handle of this.#handles.values()) this.#activation.host.clearTimer(handle);
    this.#handles.clear();
  }

  #start(ms: number, method: string, args: unknown[], repeat: boolean): TimerId {
    if (!(ms >= 0 && Number.isFinite(ms))) throw new InvalidArgument(`a timer needs a finite delay >= 0 ms, got ${ms}`);
    if (!Object.hasOwn(this.#activation.def.handlers, method)) throw new UnknownMethod(this.#activation.type, method);
    // Copied now, like any message's arguments: a value that cannot be sent is refused here, in the
    // turn that set the timer, not thrown from the timer callback; and later changes do not leak in.
    const sent = cloneValue(args);
    const id = this.#next++;
    const fire = (): void => {
      if (repeat) this.#handles.set(id, this.#activation.host.setTimer(ms, fire));
      else this.#handles.delete(id);
      this.#activation.host.deliverTimer(this.#activation, method, cloneValue(sent));
    };
    this.#handles.set(id, this.#activation.host.setTimer(ms, fire));
    return id;
  }
}

function invoke(
  handler: (this: ActorContext, state: unknown, ...args: unknown[]) => unknown,
  context: ActorContext,
  state: unknown,
  args: unknown[],
): unknown {
  switch (args.length) {
    case 0:
      return handler.call(context, state);
    case 1:
      return handler.call(context, state, args[0]);
    case 2:
      return handler.call(context, state, args[0], args[1]);
    default:
      return handler.call(context, state, ...args);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && typeof value === 'object' && typeof (value as { then?: unknown }).then === 'function';
}

/** A rollback point kept as the bytes the state was decoded from. */
class StoredState {
  constructor(readonly bytes: Uint8Array) {}
}

/** The state to roll a failed turn back to. */
function restore(committed: unknown): unknown {
  return committed instanceof StoredState ? decode(committed.bytes) : committed;
}
