/**
 * The actor system of one thread: it hosts the activations placed on this thread, sends asks and
 * tells to actors elsewhere through a `Transport`, and matches replies to waiting callers.
 *
 * It does no I/O of its own. Where an actor lives is the `Router`'s answer (a destination index or
 * LOCAL); how envelopes reach a destination is the `Transport`'s job (MessagePorts in a node,
 * the simulated network in the testkit). Time comes from the injected `Scheduler`.
 */
import { checkRouting, checkTimeoutMs, type AnyActorDef, type RefOf, type RefOptions, type RoutingPolicy } from './actor.js';
import { Kind, type Envelope } from './envelope.js';
import {
  DecodeError,
  InvalidArgument,
  Overloaded,
  Stopped,
  Unavailable,
  UnknownActorType,
  UnknownMethod,
  errorToShape,
  shapeToError,
  type ErrorShape,
} from './errors.js';
import { validateId } from './ids.js';
import { Activation, type ActivationHost, type Message, type ReplyTarget, type TurnHold } from './internal/activation.js';
import { cloneArgs, cloneValue, inCallContext } from './internal/clone.js';
import { PendingAsks, type PendingAsk } from './internal/pending.js';
import { createRef } from './internal/ref.js';
import { Registry } from './registry.js';
import { realTimeScheduler, type Scheduler, type TimerHandle } from './scheduler.js';
import { decode, encode } from './codec.js';
import { ExpirySweep } from './expiry-sweep.js';

/** The destination index that means "this thread". */
export const LOCAL = -1;
/**
 * The destination index that means "somewhere in the cluster": the transport hands the envelope to
 * the cluster's session router, and the reply comes back as a Reply or Failure envelope.
 */
export const ROUTED = -3;

export type { Message as QueuedMessage, ReplyTarget, TurnHold } from './internal/activation.js';

export interface Router {
  /** Where actor (`def`, `id`) lives: LOCAL, ROUTED or a destination index the transport knows. `key` is its activation key. */
  route(def: AnyActorDef, id: string, key: string): number;
}

export interface Transport {
  /**
   * Queues an envelope for a destination. Throws synchronously when it cannot be accepted
   * (`NotSerializable`, `Overloaded`, `Unavailable`), so the caller's ask fails at once.
   */
  send(destination: number, envelope: Envelope): void;
}

/** Runs calls to stateless actor types (a thread pool in a node; inline by default). */
export interface StatelessExecutor {
  run(def: AnyActorDef, method: string, args: unknown[]): Promise<unknown>;
}

/**
 * Where deactivated actors' state is parked, and where activation looks first. A store backed by
 * a disk or a database may answer `load` later (a promise): the activation's messages wait for
 * it, and if it fails (a corrupt record, say) they all fail with that error and nothing else is
 * touched. `has` is only what this thread hosts parked; `load` may also look further (a shared
 * store) for an actor nobody hosts.
 */
export interface ParkedStateStore {
  load(type: string, id: string): Uint8Array | undefined | PromiseLike<Uint8Array | undefined>;
  has(type: string, id: string): boolean;
  /** Parks the state; `expiresAt` (wall-clock ms) is when `dropExpired` may drop it (its type's `expiresAt`). */
  save(type: string, id: string, state: Uint8Array, expiresAt?: number): void;
  /**
   * Drops parked states whose `expiresAt` is at or before `now`, looking at no more than `limit`
   * parked states per call (a sweep that goes on where the last call stopped, so a large store
   * costs each tick the same), and returns the (type, id) pairs it dropped.
   */
  dropExpired?(now: number, limit: number): [type: string, id: string][];
  /** False while the store cannot take more (a full disk): idle actors then stay active. */
  accepting?(): boolean;
  /** The actor left this thread for good (it migrated away): a copy kept for it must go. */
  forget?(type: string, id: string): void;
  /** The (type, id) pairs parked here. */
  keys(): Iterable<[type: string, id: string]>;
  readonly size: number;
}

export class MemoryParkedStateStore implements ParkedStateStore {
  readonly #states = new Map<string, Uint8Array>();
  /** Expiry of the parked states that have one, swept a slice at a time. */
  readonly #expiries = new ExpirySweep<string>();
  load(type: string, id: string): Uint8Array | undefined {
    const key = activationKey(type, id);
    const state = this.#states.get(key);
    this.#states.delete(key);
    this.#expiries.delete(key);
    return state;
  }
  has(type: string, id: string): boolean {
    return this.#states.has(activationKey(type, id));
  }
  save(type: string, id: string, state: Uint8Array, expiresAt?: number): void {
    const key = activationKey(type, id);
    this.#states.set(key, state);
    this.#expiries.set(key, expiresAt);
  }
  dropExpired(now: number, limit: number): [type: string, id: string][] {
    const dropped: [string, string][] = [];
    for (const key of this.#expiries.due(now, limit)) {
      this.#states.delete(key);
      dropped.push(splitActivationKey(key));
    }
    return dropped;
  }
  *keys(): Iterable<[type: string, id: string]> {
    for (const key of this.#states.keys()) yield splitActivationKey(key);
  }
  get size(): number {
    return this.#states.size;
  }
}

export interface ActorSystemOptions {
  registry?: Registry;
  scheduler?: Scheduler;
  router?: Router;
  transport?: Transport;
  /** This thread's own destination index, written into asks so replies find their way back. */
  selfIndex?: number;
  /** Default ask deadline (ms). */
  askTimeoutMs?: number;
  /**
   * The first request id of asks sent from here (default 1). A thread replacing a dead one
   * passes a range of its own, so replies meant for its predecessor match nothing.
   */
  firstRequestId?: number;
  /** Default mailbox capacity for types that set none. */
  mailboxCapacity?: number;
  statelessExecutor?: StatelessExecutor;
  parkedStates?: ParkedStateStore;
  /** How often idle activations are looked for (ms). */
  idleSweepMs?: number;
  /** Stamp every activation's last use, not only those of types with `idleTimeoutMs` (for evicters outside the system). */
  trackLastUse?: boolean;
  /** Called when a tell's handler fails: nobody waits for it, but it must not vanish. */
  onTellFailure?: (type: string, id: string, method: string, error: unknown) => void;
  /** Called when an actor is activated here (fresh or from parked state), before its first turn. */
  onActivated?: (type: string, id: string) => void;
  /**
   * Asked before a message for a stateful actor is accepted (so before any activation) and again
   * before each of its turns. An error refuses it: the caller gets that error, nothing is
   * activated, no handler runs, no state changes. `'wait'` accepts it into the actor's mailbox
   * (activating the actor in memory, so that whoever routes calls sees it here) but runs no turn:
   * the gate is asked again every `GATE_POLL_MS` (each message's own deadline still runs). A
   * cluster node refuses while it knows it is in a minority of its layout, and holds while it is
   * finding out. Stateless types are never asked about.
   */
  turnGate?: () => TurnGateAnswer;
  /** Wall-clock milliseconds, the clock of actor types' `expiresAt` (default `Date.now`). */
  wallClock?: () => number;
  /**
   * Called when an actor is dropped because its type's `expiresAt` passed: when it was found
   * expired at deactivation, or when `dropExpired` dropped its parked state. Whoever keeps
   * records of where it lives (a directory, replicas) forgets it.
   */
  onExpired?: (type: string, id: string) => void;
}

export interface SystemStats {
  activations: number;
  parked: number;
  queued: number;
  pendingAsks: number;
  turns: number;
  failedTurns: number;
  activated: number;
  deactivated: number;
  /** Actors dropped because their type's `expiresAt` passed (at deactivation, or while parked). */
  expired: number;
}


/**
 * Sees every turn of a stateful actor that ended without error, right after it (the state is the
 * turn's result), before the reply goes. It may hold the reply: the turn's effects are kept, but
 * the caller hears of it only once the hold is released. A failed turn is never shown to it.
 */
export interface TurnObserver {
  committed(def: AnyActorDef, id: string, key: string, state: unknown): TurnHold | undefined;
}
/** What a turn gate answers: run (undefined), refuse with this error, or hold and ask again later. */
export type TurnGateAnswer = Error | 'wait' | undefined;

/** How often held messages and waiting activations ask a closed turn gate again (ms). */
export const GATE_POLL_MS = 10;

export const DEFAULT_ASK_TIMEOUT_MS = 30_000;
export const DEFAULT_MAILBOX_CAPACITY = 10_000;

export class ActorSystem implements ActivationHost {
  readonly registry: Registry;
  readonly scheduler: Scheduler;
  readonly selfIndex: number;
  readonly #router: Router | undefined;
  readonly #transport: Transport | undefined;
  readonly #askTimeoutMs: number;
  readonly #mailboxCapacity: number;
  readonly #statelessExecutor: StatelessExecutor;
  readonly #parked: ParkedStateStore;
  readonly #onTellFailure: NonNullable<ActorSystemOptions['onTellFailure']>;
  readonly #onActivated: ActorSystemOptions['onActivated'];
  readonly #turnGate: ActorSystemOptions['turnGate'];
  readonly #wallClock: () => number;
  readonly #onExpired: ActorSystemOptions['onExpired'];
  /** Activations with turns that wait for the gate. */
  readonly #gateWaiters = new Set<Activation>();
  #gateTimer: TimerHandle | undefined;
  readonly #activations = new Map<string, Activation>();
  /** Frozen activations whose running turn has not ended yet, and who waits for it. */
  readonly #pauseWaiters = new Map<Activation, () => void>();
  readonly #pending: PendingAsks;
  readonly #idleSweepMs: number;
  readonly #trackLastUse: boolean;
  #idleTimer: TimerHandle | undefined;
  #turnObserver: TurnObserver | undefined;
  #stopped = false;
  /** Set by close(): new asks and tells from this thread are refused; accepted work finishes. */
  #closedReason: string | undefined;
  #turns = 0;
  #failedTurns = 0;
  #activated = 0;
  #deactivated = 0;
  #expiredCount = 0;
  /** Activations with turns to run, drained in one microtask (no closure per schedule). */
  #ready: Activation[] = [];
  readonly #runReady = (): void => {
    const ready = this.#ready;
    this.#ready = [];
    for (let i = 0; i < ready.length; i++) ready[i]!.runTurns();
  };

  constructor(options: ActorSystemOptions = {}) {
    this.registry = options.registry ?? new Registry();
    this.scheduler = options.scheduler ?? realTimeScheduler;
    this.selfIndex = options.selfIndex ?? LOCAL;
    this.#router = options.router;
    this.#transport = options.transport;
    this.#askTimeoutMs = options.askTimeoutMs ?? DEFAULT_ASK_TIMEOUT_MS;
    this.#mailboxCapacity = options.mailboxCapacity ?? DEFAULT_MAILBOX_CAPACITY;
    this.#statelessExecutor = options.statelessExecutor ?? inlineStatelessExecutor;
    this.#parked = options.parkedStates ?? new MemoryParkedStateStore();
    this.#idleSweepMs = options.idleSweepMs ?? 1000;
    this.#trackLastUse = options.trackLastUse ?? false;
    this.#onTellFailure = options.onTellFailure ?? defaultTellFailure;
    this.#onActivated = options.onActivated;
    this.#turnGate = options.turnGate;
    this.#wallClock = options.wallClock ?? Date.now;
    this.#onExpired = options.onExpired;
    this.#pending = new PendingAsks(this.scheduler, undefined, options.firstRequestId ?? 1);
  }

  /** A typed ref: `ref.method(...args)` asks, `ref.tell.method(...args)` tells. */
  ref<D extends AnyActorDef>(def: D, id: string, options?: RefOptions): RefOf<D> {
    return this.refFor(def, id, options);
  }

  refFor<D extends AnyActorDef>(def: D, id: string, options?: RefOptions): RefOf<D> {
    validateId(id);
    checkTimeoutMs('timeoutMs', options?.timeoutMs);
    checkRouting('routing', options?.routing);
    return createRef(this, def, id, options?.timeoutMs ?? this.#askTimeoutMs, options?.routing) as RefOf<D>;
  }

  /** Sends `method(...args)` to (`def`, `id`) and resolves with the handler's result. */
  ask(def: AnyActorDef, id: string, method: string, args: unknown[], timeoutMs: number, key?: string, routing?: RoutingPolicy): Promise<unknown> {
    if (this.#closedReason !== undefined) return Promise.reject(new Stopped(`${this.#closedReason}: ${def.name}.${method} was not sent`));
    if (!Object.hasOwn(def.handlers, method)) return Promise.reject(new UnknownMethod(def.name, method));
    const destination = this.#router === undefined ? LOCAL : this.#router.route(def, id, key ?? activationKey(def.name, id));
    const remote = destination !== LOCAL;
    const ask = this.#pending.create(destination, remote, def.name, id, method, timeoutMs);
    try {
      if (remote) {
        const envelope: Envelope = [Kind.Ask, ask.requestId, this.selfIndex, def.name, id, method, args];
        if (routing !== undefined) envelope.push(routing);
        this.#transportFor(destination).send(destination, envelope);
      } else {
        this.#deliverLocal(def.name, id, method, cloneArgs(args), ask, LOCAL, 0, key);
      }
    } catch (error) {
      this.#pending.settle(ask, false, inCallContext(error, def.name, id, method, args));
    }
    return ask.promise;
  }

  /** Fire-and-forget. Throws only when the message cannot be accepted at all. */
  tell(def: AnyActorDef, id: string, method: string, args: unknown[], routing?: RoutingPolicy): void {
    if (this.#closedReason !== undefined) throw new Stopped(`${this.#closedReason}: ${def.name}.${method} was not sent`);
    if (!Object.hasOwn(def.handlers, method)) throw new UnknownMethod(def.name, method);
    const destination = this.#router === undefined ? LOCAL : this.#router.route(def, id, activationKey(def.name, id));
    try {
      if (destination !== LOCAL) {
        const envelope: Envelope = [Kind.Tell, def.name, id, method, args];
        if (routing !== undefined) envelope.push(routing);
        this.#transportFor(destination).send(destination, envelope);
      } else {
        this.#deliverLocal(def.name, id, method, cloneArgs(args), undefined, LOCAL, 0);
      }
    } catch (error) {
      throw inCallContext(error, def.name, id, method, args);
    }
  }

  /** Handles one envelope that arrived from another thread or node. */
  receive(envelope: Envelope): void {
    switch (envelope[0]) {
      case Kind.Ask: {
        const [, requestId, from, type, id, method, args] = envelope;
        try {
          this.#deliverLocal(type, id, method, args, undefined, from, requestId);
        } catch (error) {
          this.#replyRemote(from, requestId, false, error);
        }
        return;
      }
      case Kind.Tell: {
        const [, type, id, method, args] = envelope;
        try {
          this.#deliverLocal(type, id, method, args, undefined, LOCAL, 0);
        } catch (error) {
          this.#onTellFailure(type, id, method, error);
        }
        return;
      }
      case Kind.Reply:
      case Kind.Failure: {
        // An ask that timed out or failed already is gone: its late reply is dropped.
        if (envelope[0] === Kind.Reply) this.#pending.settleRemote(envelope[1], true, envelope[2]);
        else this.#pending.settleRemote(envelope[1], false, asError(envelope[2]));
        return;
      }
    }
  }

  /** Rejects every ask waiting on `destination` (its thread or node is gone). */
  failPendingTo(destination: number, error: () => Error): number {
    return this.#pending.failWhere((ask) => ask.destination === destination, error);
  }

  /**
   * Delivers a call that the cluster routed here; its result goes to `reply` (undefined for a
   * tell). Activates the actor if it is not active: the caller decided it may live here. Throws
   * (unknown type or method, full mailbox) without enqueuing anything.
   */
  deliverRouted(type: string, id: string, method: string, args: unknown[], reply: ReplyTarget | undefined): void {
    this.#deliverLocal(type, id, method, args, undefined, LOCAL, 0, activationKey(type, id), reply);
  }

  /** Installs (or removes) the observer of committed turns (the cluster's replication). */
  setTurnObserver(observer: TurnObserver | undefined): void {
    this.#turnObserver = observer;
  }

  /**
   * Takes (`type`, `id`) in as a parked actor with this encoded state (a replica adopted after its
   * host was lost): it activates from it on its first message. False if it is hosted here already
   * or the type is unknown.
   */
  adoptParked(type: string, id: string, state: Uint8Array): boolean {
    const def = this.registry.find(type);
    if (def === undefined || def.stateless || this.hosts(activationKey(type, id), type, id)) return false;
    let expiresAt: number | undefined;
    try {
      expiresAt = def.expiresAt === undefined ? undefined : expiryOf(def, decode(state));
    } catch {
      // Bytes that do not decode fail the session's first call, where someone hears of it.
    }
    this.#parked.save(type, id, state, expiresAt);
    return true;
  }

  /**
   * Drops parked actors whose type's `expiresAt` has passed, looking at no more than `limit`
   * of them (see `ParkedStateStore.dropExpired`); `onExpired` hears of each. A host calls it on
   * its tick. Returns how many were dropped.
   */
  dropExpired(limit: number): number {
    const dropped = this.#parked.dropExpired?.(this.#wallClock(), limit) ?? [];
    for (const [type, id] of dropped) this.#expired(type, id);
    return dropped.length;
  }

  /** Whether (`type`, `id`) is active or parked on this thread. */
  hosts(key: string, type: string, id: string): boolean {
    return this.#activations.has(key) || this.#parked.has(type, id);
  }

  /**
   * Freezes (`type`, `id`) for a migration: no new turn starts; messages that arrive wait in its
   * mailbox. `paused` runs once no turn is running (at once if none is). False if it is not hosted here.
   */
  freeze(type: string, id: string, paused: () => void): boolean {
    const key = activationKey(type, id);
    let activation = this.#activations.get(key);
    if (activation === undefined) {
      const def = this.registry.find(type);
      if (def === undefined || !this.#parked.has(type, id)) return false;
      activation = this.#activate(def, id, key, false);
    }
    activation.frozen = true;
    if (activation.active || activation.loading) this.#pauseWaiters.set(activation, paused);
    else paused();
    return true;
  }

  /** The encoded state of a frozen, paused actor (throws `NotSerializable` if it cannot be encoded). */
  frozenState(type: string, id: string): Uint8Array {
    const activation = this.#activations.get(activationKey(type, id));
    if (activation === undefined || !activation.frozen || activation.active || activation.loading) throw new InvalidArgument(`${type} '${id}' is not frozen and paused here`);
    return encode(activation.state);
  }

  /** Installs a migrating actor, frozen, from its encoded state: messages for it wait until `thaw`. */
  importFrozen(type: string, id: string, state: Uint8Array): void {
    const def = this.registry.find(type);
    if (def === undefined) throw new UnknownActorType(type);
    const key = activationKey(type, id);
    if (this.#activations.has(key) || this.#parked.has(type, id)) throw new InvalidArgument(`${type} '${id}' is already hosted here`);
    const activation = new Activation(this, def, id, key, def.mailboxCapacity ?? this.#mailboxCapacity);
    activation.state = decode(state);
    activation.lastUsed = this.scheduler.now();
    activation.frozen = true;
    this.#activations.set(key, activation);
    this.#activated++;
    if (def.idleTimeoutMs !== undefined) this.#armIdleSweep();
  }

  /** Resumes a frozen actor; `first` run before the messages that waited here. */
  thaw(type: string, id: string, first: readonly Message[] = []): boolean {
    const activation = this.#activations.get(activationKey(type, id));
    if (activation === undefined) return false;
    this.#pauseWaiters.delete(activation);
    activation.thaw(first);
    return true;
  }

  /**
   * Takes a frozen actor out of this thread (it moved elsewhere, or an incoming move was aborted):
   * its timers stop, and the messages that waited for it are returned in order.
   */
  removeFrozen(type: string, id: string): Message[] {
    const activation = this.#activations.get(activationKey(type, id));
    if (activation === undefined || !activation.frozen) return [];
    activation.stopTimers();
    this.#activations.delete(activation.key);
    this.#pauseWaiters.delete(activation);
    this.#deactivated++;
    this.#parked.forget?.(type, id);
    return activation.takeQueued();
  }

  /**
   * Gives a local caller's waiting ask a request id, so that its reply can come back as a Reply
   * envelope (its message is being handed to another thread or node).
   */
  remoteRequestId(message: Message): number {
    if (message.pending === undefined) return message.requestId;
    return this.#pending.index(message.pending);
  }

  stats(): SystemStats {
    let queued = 0;
    for (const activation of this.#activations.values()) queued += activation.queued;
    return {
      activations: this.#activations.size,
      parked: this.#parked.size,
      queued,
      pendingAsks: this.#pending.size,
      turns: this.#turns,
      failedTurns: this.#failedTurns,
      activated: this.#activated,
      deactivated: this.#deactivated,
      expired: this.#expiredCount,
    };
  }

  /**
   * The activations an evicter may deactivate now (no turn running or queued, not loading, not
   * migrating), with when each was last used (`trackLastUse`, or a type with `idleTimeoutMs`).
   */
  *evictable(): IterableIterator<[type: string, id: string, lastUsed: number]> {
    for (const activation of this.#activations.values()) {
      if (activation.active || activation.loading || activation.frozen || activation.queued > 0 || activation.def.stateless) continue;
      yield [activation.type, activation.id, activation.lastUsed];
    }
  }

  /** Every (type, id) this thread hosts: active, or parked after deactivation. */
  hostedIds(): [type: string, id: string][] {
    const ids: [string, string][] = [];
    for (const activation of this.#activations.values()) ids.push([activation.type, activation.id]);
    for (const key of this.#parked.keys()) ids.push(key);
    return ids;
  }

  /** True when no turn is queued or running here and no ask from here awaits a reply. */
  isQuiet(): boolean {
    if (this.#pending.size > 0) return false;
    for (const activation of this.#activations.values()) if (activation.active || activation.queued > 0) return false;
    return true;
  }

  /** Waits (bounded) until this thread is quiet: every accepted message has been processed. */
  async drain(timeoutMs = 10_000, pollMs = 5): Promise<boolean> {
    const deadline = this.scheduler.now() + timeoutMs;
    while (!this.isQuiet()) {
      if (this.scheduler.now() >= deadline) return false;
      await new Promise<void>((resolve) => this.scheduler.setTimer(pollMs, resolve));
    }
    return true;
  }

  /**
   * Refuses new asks and tells sent from this thread (with `Stopped`), while messages already
   * accepted, and replies to asks already sent, are still processed: the first step of a drain.
   */
  close(reason = 'the actor system is closing'): void {
    this.#closedReason ??= reason;
  }

  /** Refuses new messages, fails waiting asks, and stops every timer. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.close('the actor system is stopped');
    this.#pending.close();
    if (this.#idleTimer !== undefined) this.scheduler.clearTimer(this.#idleTimer);
    if (this.#gateTimer !== undefined) this.scheduler.clearTimer(this.#gateTimer);
    for (const activation of this.#activations.values()) activation.stopTimers();
    this.#pending.failWhere(() => true, () => new Stopped('the actor system stopped before the reply arrived'));
  }

  /** Deactivates one actor now if it is idle: its state is parked, its timers stop. */
  deactivate(type: string, id: string): boolean {
    const activation = this.#activations.get(activationKey(type, id));
    if (activation === undefined || activation.active || activation.loading || activation.frozen || activation.queued > 0) return false;
    return this.#deactivate(activation);
  }

  // ActivationHost

  turnFinished(activation: Activation, message: Message, ok: boolean, value: unknown): void {
    this.#turns++;
    if (this.#trackLastUse || activation.def.idleTimeoutMs !== undefined) activation.lastUsed = this.scheduler.now();
    if (!ok) this.#failedTurns++;
    else if (this.#turnObserver !== undefined) {
      const hold = this.#turnObserver.committed(activation.def, activation.id, activation.key, activation.state);
      if (hold !== undefined) {
        if (message.reply?.settleHeld?.(value, hold) === true) return;
        hold.wait((error) => (error === undefined ? this.#settle(activation, message, true, value) : this.#settle(activation, message, false, error)));
        return;
      }
    }
    this.#settle(activation, message, ok, value);
  }

  #settle(activation: Activation, message: Message, ok: boolean, value: unknown): void {
    if (message.reply !== undefined) {
      message.reply.settle(ok, value);
    } else if (message.pending !== undefined) {
      let result = value;
      try {
        result = cloneValue(value);
      } catch (error) {
        ok = false;
        result = error;
      }
      this.#pending.settle(message.pending, ok, result);
    } else if (message.requestId !== 0) {
      this.#replyRemote(message.from, message.requestId, ok, value);
    } else if (!ok) {
      this.#onTellFailure(activation.type, activation.id, message.method, value);
    }
  }

  scheduleTurns(activation: Activation, afterIo: boolean): void {
    if (afterIo) this.scheduler.defer(() => activation.runTurns());
    // A resolved promise's then() is a bare microtask; queueMicrotask adds async-context bookkeeping.
    else if (this.#ready.push(activation) === 1) void resolved.then(this.#runReady);
  }

  setTimer(ms: number, callback: () => void): TimerHandle {
    return this.scheduler.setTimer(ms, callback);
  }

  clearTimer(handle: TimerHandle): void {
    this.scheduler.clearTimer(handle);
  }

  deliverTimer(activation: Activation, method: string, args: unknown[]): void {
    if (this.#stopped || this.#activations.get(activation.key) !== activation) return;
    const message: Message = { method, args, pending: undefined, from: LOCAL, requestId: 0 };
    if (!activation.enqueue(message)) {
      this.#onTellFailure(activation.type, activation.id, method, new Overloaded(`mailbox of ${activation.type} '${activation.id}' is full; timer message dropped`));
    }
  }

  turnRefusal(): TurnGateAnswer {
    return this.#turnGate?.();
  }

  waitForGate(activation: Activation): void {
    this.#gateWaiters.add(activation);
    this.#armGate();
  }

  #armGate(): void {
    if (this.#gateTimer !== undefined || this.#stopped) return;
    this.#gateTimer = this.scheduler.setTimer(GATE_POLL_MS, () => {
      this.#gateTimer = undefined;
      if (this.#turnGate?.() === 'wait') return this.#armGate();
      // Open, or refusing: the turns that waited go on and meet the gate's answer.
      const waiters = [...this.#gateWaiters];
      this.#gateWaiters.clear();
      for (const activation of waiters) {
        if (this.#activations.get(activation.key) !== activation || activation.active || activation.loading || activation.frozen || activation.queued === 0) continue;
        activation.active = true;
        this.scheduleTurns(activation, false);
      }
    });
  }

  paused(activation: Activation): void {
    const waiter = this.#pauseWaiters.get(activation);
    this.#pauseWaiters.delete(activation);
    waiter?.();
  }

  requestDeactivation(activation: Activation): void {
    // After the current microtask, so a reply being resolved is not held up by encoding.
    this.scheduler.defer(() => {
      if (this.#activations.get(activation.key) === activation && !activation.active && !activation.loading && !activation.frozen && activation.queued === 0) {
        this.#deactivate(activation);
      }
    });
  }

  // internals

  #transportFor(destination: number): Transport {
    if (this.#transport === undefined) throw new Unavailable(`no transport to reach destination ${destination}`);
    return this.#transport;
  }

  #deliverLocal(
    type: string,
    id: string,
    method: string,
    args: unknown[],
    pending: PendingAsk | undefined,
    from: number,
    requestId: number,
    key = activationKey(type, id),
    reply?: ReplyTarget,
  ): void {
    const def = this.registry.find(type);
    if (def === undefined) throw new UnknownActorType(type);
    if (!Object.hasOwn(def.handlers, method)) throw new UnknownMethod(type, method);
    if (!Array.isArray(args)) throw new InvalidArgument(`arguments to ${type}.${method} must be an array`);
    if (def.stateless) {
      this.#runStateless(def, method, args, pending, from, requestId, reply);
      return;
    }
    // 'wait' accepts the message (its turn waits for the gate, see `runTurns`); an error refuses it.
    const gate = this.#turnGate?.();
    if (gate !== undefined && gate !== 'wait') throw gate;
    const activation = this.#activations.get(key) ?? this.#activate(def, id, key);
    const message: Message = { method, args, pending, from, requestId, reply };
    if (!activation.enqueue(message)) {
      throw new Overloaded(`mailbox of ${type} '${id}' is full (${activation.capacity} messages waiting)`);
    }
  }

  #runStateless(def: AnyActorDef, method: string, args: unknown[], pending: PendingAsk | undefined, from: number, requestId: number, reply?: ReplyTarget): void {
    this.#statelessExecutor.run(def, method, args).then(
      (value) => this.#statelessDone(def, method, pending, from, requestId, true, value, reply),
      (error) => this.#statelessDone(def, method, pending, from, requestId, false, error, reply),
    );
  }

  #statelessDone(
    def: AnyActorDef,
    method: string,
    pending: PendingAsk | undefined,
    from: number,
    requestId: number,
    ok: boolean,
    value: unknown,
    reply: ReplyTarget | undefined,
  ): void {
    this.#turns++;
    if (reply !== undefined) reply.settle(ok, value);
    else if (pending !== undefined) this.#pending.settle(pending, ok, value);
    else if (requestId !== 0) this.#replyRemote(from, requestId, ok, value);
    else if (!ok) this.#onTellFailure(def.name, '', method, value);
  }

  #activate(def: AnyActorDef, id: string, key: string, notify = true): Activation {
    validateId(id);
    const activation = new Activation(this, def, id, key, def.mailboxCapacity ?? this.#mailboxCapacity);
    let parked: ReturnType<ParkedStateStore['load']>;
    try {
      parked = this.#parked.load(def.name, id);
    } catch (error) {
      parked = Promise.reject(error);
    }
    if (parked === undefined || parked instanceof Uint8Array) {
      activation.state = restoreState(def, id, parked);
      activation.stored = parked;
    } else {
      activation.loading = true;
      parked.then(
        (state) => this.#loaded(activation, state),
        (error: unknown) => this.#loadFailed(activation, error),
      );
    }
    activation.lastUsed = this.scheduler.now();
    this.#activations.set(key, activation);
    this.#activated++;
    if (def.idleTimeoutMs !== undefined) this.#armIdleSweep();
    if (notify) this.#onActivated?.(def.name, id);
    return activation;
  }

  #loaded(activation: Activation, state: Uint8Array | undefined): void {
    if (this.#activations.get(activation.key) !== activation) return;
    try {
      activation.state = restoreState(activation.def, activation.id, state);
      activation.stored = state;
    } catch (error) {
      return this.#loadFailed(activation, error);
    }
    activation.loading = false;
    // Frozen meanwhile (a migration): it may leave now, with its state; the mailbox waits for the thaw.
    if (activation.frozen) return this.paused(activation);
    activation.thaw();
  }

  /** The state could not be loaded: the actor is not activated and every message that waited fails with why. */
  #loadFailed(activation: Activation, error: unknown): void {
    if (this.#activations.get(activation.key) !== activation) return;
    this.#activations.delete(activation.key);
    this.#pauseWaiters.delete(activation);
    activation.stopTimers();
    for (const message of activation.takeQueued()) this.turnFinished(activation, message, false, error);
  }

  /** False when the state cannot be encoded: the actor then stays active, its state intact. */
  #deactivate(activation: Activation): boolean {
    const expiresAt = expiryOf(activation.def, activation.state);
    if (expiresAt !== undefined && expiresAt <= this.#wallClock()) {
      // Not worth parking: dropped, with any copy a store kept of it.
      activation.stopTimers();
      this.#activations.delete(activation.key);
      this.#parked.forget?.(activation.type, activation.id);
      this.#deactivated++;
      this.#expired(activation.type, activation.id);
      return true;
    }
    if (this.#parked.accepting?.() === false) return false;
    let parked: Uint8Array;
    try {
      parked = encode(activation.state);
    } catch {
      return false;
    }
    activation.stopTimers();
    this.#activations.delete(activation.key);
    this.#parked.save(activation.type, activation.id, parked, expiresAt);
    this.#deactivated++;
    return true;
  }

  #expired(type: string, id: string): void {
    this.#expiredCount++;
    this.#onExpired?.(type, id);
  }

  #armIdleSweep(): void {
    if (this.#idleTimer !== undefined || this.#stopped) return;
    this.#idleTimer = this.scheduler.setTimer(this.#idleSweepMs, () => {
      this.#idleTimer = undefined;
      const now = this.scheduler.now();
      let watching = false;
      for (const activation of [...this.#activations.values()]) {
        const idleMs = activation.def.idleTimeoutMs;
        if (idleMs === undefined) continue;
        // Not with messages waiting (for a closed turn gate, say): they would go with it.
        const idle = !activation.active && !activation.loading && !activation.frozen && activation.queued === 0 && now - activation.lastUsed >= idleMs;
        if (!idle || !this.#deactivate(activation)) watching = true;
      }
      if (watching) this.#armIdleSweep();
    });
  }

  #replyRemote(from: number, requestId: number, ok: boolean, value: unknown): void {
    const transport = this.#transportFor(from);
    try {
      transport.send(from, ok ? [Kind.Reply, requestId, value] : [Kind.Failure, requestId, errorToShape(value)]);
    } catch (error) {
      // The reply itself could not be sent (e.g. not serializable): tell the caller why instead.
      try {
        transport.send(from, [Kind.Failure, requestId, errorToShape(error)]);
      } catch {
        // The destination is gone; its pending asks are failed by whoever noticed it went.
      }
    }
  }
}

const resolved = Promise.resolve();

function asError(failure: Error | ErrorShape): Error {
  return failure instanceof Error ? failure : shapeToError(failure);
}

export function activationKey(type: string, id: string): string {
  return `${type}\u0000${id}`;
}

/** When `def` says `state` expires; a hook that throws or answers nonsense counts as never. */
function expiryOf(def: AnyActorDef, state: unknown): number | undefined {
  if (def.expiresAt === undefined) return undefined;
  try {
    const at = def.expiresAt(state);
    // Infinity means never; -Infinity, already (stores keep finite times only).
    if (typeof at !== 'number' || Number.isNaN(at) || at === Infinity) return undefined;
    return at === -Infinity ? 0 : at;
  } catch {
    return undefined;
  }
}

/** The (type, id) an `activationKey` was made of. */
export function splitActivationKey(key: string): [type: string, id: string] {
  const split = key.indexOf('\u0000');
  return [key.slice(0, split), key.slice(split + 1)];
}

const inlineStatelessExecutor: StatelessExecutor = {
  async run(def, method, args) {
    const handler = def.handlers[method] as (state: undefined, ...args: unknown[]) => unknown;
    return cloneValue(await handler.call(undefined as never, undefined, ...cloneArgs(args)));
  },
};

function defaultTellFailure(type: string, id: string, method: string, error: unknown): void {
  console.warn(`wadi: tell ${type}.${method} to '${id}' failed:`, error);
}

/** An actor's state from its parked bytes, or a fresh one. */
function restoreState(def: AnyActorDef, id: string, parked: Uint8Array | undefined): unknown {
  if (parked === undefined) return def.state();
  try {
    return decode(parked);
  } catch (error) {
    throw new DecodeError(`the stored state of ${def.name} '${id}' cannot be decoded: ${(error as Error).message}`, { cause: error });
  }
}
