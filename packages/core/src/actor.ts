/**
 * Actor definitions: `defineActor(name, { state, handlers })` and the types that make
 * `ref.method(args)` typed end to end from the handler signatures.
 *
 * A handler is `method(state, ...args)`; it mutates `state` in place and returns the reply (or a
 * promise of it). Inside a handler `this` is the actor's context (its id, refs to other actors,
 * timers), so the declared signature stays exactly `(state, ...args)`.
 */
import { InvalidArgument } from './errors.js';

export const ACTOR_DEF = Symbol.for('wadi.actorDefinition');

/** Names a ref uses for itself, so they cannot be handler names. */
export const RESERVED_HANDLER_NAMES: ReadonlySet<string> = new Set(['then', 'tell', 'toString', 'constructor', '__proto__']);
const ACTOR_NAME = /^[A-Za-z_][\w.:-]{0,127}$/;

export interface Timers {
  /** Tells this actor `method(...args)` once after `ms`. Dies with the activation. */
  after(ms: number, method: string, ...args: unknown[]): TimerId;
  /** Tells this actor `method(...args)` every `ms` until cancelled or deactivated. */
  every(ms: number, method: string, ...args: unknown[]): TimerId;
  cancel(timer: TimerId): void;
}
export type TimerId = number;

/** What `this` is inside a handler. */
export interface ActorContext {
  readonly type: string;
  readonly id: string;
  /** A ref to any actor in the system (or cluster), usable from inside a turn. */
  ref<D extends AnyActorDef>(def: D, id: string, options?: RefOptions): RefOf<D>;
  readonly timers: Timers;
  /** Asks for this activation to be deactivated (state parked) once the current turn ends. */
  deactivate(): void;
}

/**
 * Declared as a method so its parameters are checked bivariantly: a stateless type's handler
 * `(state: undefined, ...)` and a typed `(state: Cart, ...)` both fit wherever S is inferred.
 */
interface HandlerShape<S> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  handle(this: ActorContext, state: S, ...args: any[]): unknown;
}
export type Handler<S> = HandlerShape<S>['handle'];
export type Handlers<S> = Record<string, Handler<S>>;

/**
 * What happens when a call reaches a session that lives on another node than the caller's:
 * - `proxy` (default): the request travels to the session and the reply comes back;
 * - `migrate`: the session (with its whole group) moves to the caller's node, and the request runs there;
 * - `redirect`: the call fails with `Redirected`, naming the node that holds the session (for HTTP
 *   front ends that answer 307).
 */
export type RoutingPolicy = 'proxy' | 'migrate' | 'redirect';
export const ROUTING_POLICIES: readonly RoutingPolicy[] = ['proxy', 'migrate', 'redirect'];

/**
 * How a session's state reaches its replicas (the bucket's backup nodes) after a turn changed it:
 * - `sync` (default): the caller's reply waits until every replica target holds the new state, so
 *   a `kill -9` of the host loses no acknowledged change;
 * - `async`: the reply goes at once and the state follows; a crash may lose the changes
 *   acknowledged within `ASYNC_LOSS_WINDOW_MS` (from `@wadi/cluster`) before it;
 * - `none`: no replicas; the session survives a crash only through its disk tiers.
 */
export type ReplicationMode = 'sync' | 'async' | 'none';
export const REPLICATION_MODES: readonly ReplicationMode[] = ['sync', 'async', 'none'];

export interface ActorOptions<S, H extends Handlers<S>> {
  /** Fresh state for a new activation. Must return plain data the codec can carry (an object). */
  state?: () => S;
  handlers: H & ThisType<ActorContext>;
  /**
   * A stateless type has no state and no mailbox: calls run concurrently on a pool of
   * threads separate from session workers, so CPU-heavy work never blocks a session.
   */
  stateless?: boolean;
  /** Most messages waiting in one activation's mailbox; past it callers get `Overloaded`. */
  mailboxCapacity?: number;
  /** Deactivate (park state) after this long without a message. Default: never. */
  idleTimeoutMs?: number;
  /** How calls from other nodes reach a session of this type (default 'proxy'); a call may override it. */
  routing?: RoutingPolicy;
  /** How state changes reach the replicas (default 'sync'); see `ReplicationMode`. Ignored for stateless types. */
  replication?: ReplicationMode;
  /**
   * When this state stops being worth keeping: wall-clock milliseconds (`Date.now()`), or
   * undefined for never. An actor found expired when it is deactivated is dropped instead of
   * parked, and a parked one is dropped from wherever its node parked it (memory or a store
   * tier) by the node's sweep, with its replicas and directory entry; its next call starts it
   * fresh. Only the keeping is decided here: a handler that must not see expired data checks
   * the same rule when it runs (an HTTP session does). Must be quick and must not throw.
   */
  expiresAt?: (state: S) => number | undefined;
}

export interface ActorDef<N extends string = string, S = unknown, H extends Handlers<S> = Handlers<S>> {
  readonly [ACTOR_DEF]: true;
  readonly name: N;
  readonly stateless: boolean;
  readonly state: () => S;
  readonly handlers: H;
  readonly mailboxCapacity: number | undefined;
  readonly idleTimeoutMs: number | undefined;
  readonly routing: RoutingPolicy;
  readonly replication: ReplicationMode;
  readonly expiresAt: ((state: S) => number | undefined) | undefined;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyActorDef = ActorDef<string, any, any>;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ArgsOf<F> = F extends (state: any, ...args: infer A) => any ? A : never;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ResultOf<F> = F extends (...args: any[]) => infer R ? Awaited<R> : never;

export interface RefOptions {
  /** Per-ask deadline in milliseconds (default: the system's, 30 s). */
  timeoutMs?: number;
  /** Overrides the type's routing policy for calls through this ref. */
  routing?: RoutingPolicy;
}

/** `ref.method(...args)` asks; `ref.tell.method(...args)` sends without waiting. */
export type Ref<H> = {
  readonly [K in keyof H]: (...args: ArgsOf<H[K]>) => Promise<ResultOf<H[K]>>;
} & {
  readonly tell: { readonly [K in keyof H]: (...args: ArgsOf<H[K]>) => void };
};

export type RefOf<D> = D extends ActorDef<string, infer _S, infer H> ? Ref<H> : never;

const ACTOR_OPTION_NAMES: Record<keyof Required<ActorOptions<unknown, Handlers<unknown>>>, true> = {
  state: true,
  handlers: true,
  stateless: true,
  mailboxCapacity: true,
  idleTimeoutMs: true,
  routing: true,
  replication: true,
  expiresAt: true,
};

export function defineActor<N extends string, S, H extends Handlers<S>>(
  name: N,
  options: ActorOptions<S, H>,
): ActorDef<N, S, H> {
  if (typeof name !== 'string' || !ACTOR_NAME.test(name)) {
    throw new InvalidArgument(`actor name must match ${ACTOR_NAME} (letters, digits, '_.:-'), got ${JSON.stringify(name)}`);
  }
  if (!options || typeof options.handlers !== 'object' || options.handlers === null) {
    throw new InvalidArgument(`actor '${name}' needs a handlers object`);
  }
  checkOptionNames(`actor '${name}'`, options, ACTOR_OPTION_NAMES);
  for (const [method, handler] of Object.entries(options.handlers)) {
    if (typeof handler !== 'function') throw new InvalidArgument(`actor '${name}': handler '${method}' is not a function`);
    if (RESERVED_HANDLER_NAMES.has(method)) {
      throw new InvalidArgument(`actor '${name}': '${method}' is reserved and cannot be a handler name`);
    }
  }
  const stateless = options.stateless === true;
  if (!stateless && typeof options.state !== 'function') {
    throw new InvalidArgument(`actor '${name}' needs a state factory: state: () => ({ ... })`);
  }
  checkPositive(name, 'mailboxCapacity', options.mailboxCapacity);
  checkPositive(name, 'idleTimeoutMs', options.idleTimeoutMs);
  checkRouting(`actor '${name}': routing`, options.routing);
  if (options.replication !== undefined && !REPLICATION_MODES.includes(options.replication)) {
    throw new InvalidArgument(`actor '${name}': replication must be one of ${REPLICATION_MODES.join(', ')}, got ${JSON.stringify(options.replication)}`);
  }
  if (options.expiresAt !== undefined && (typeof options.expiresAt !== 'function' || stateless)) {
    throw new InvalidArgument(`actor '${name}': expiresAt must be a function of the state${stateless ? ', and a stateless type has none' : ''}`);
  }
  return Object.freeze({
    [ACTOR_DEF]: true as const,
    name,
    stateless,
    state: stateless ? (() => undefined as S) : options.state!,
    handlers: Object.freeze({ ...options.handlers }) as H,
    mailboxCapacity: options.mailboxCapacity,
    idleTimeoutMs: options.idleTimeoutMs,
    routing: options.routing ?? 'proxy',
    replication: stateless ? 'none' : (options.replication ?? 'sync'),
    expiresAt: options.expiresAt,
  });
}

export function isActorDef(value: unknown): value is AnyActorDef {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[ACTOR_DEF] === true;
}

function checkPositive(name: string, option: string, value: unknown): void {
  if (value !== undefined && !(typeof value === 'number' && value > 0 && Number.isFinite(value))) {
    throw new InvalidArgument(`actor '${name}': ${option} must be a positive number, got ${String(value)}`);
  }
}

/**
 * Refuses option names `known` does not list: a misspelt option (`seed` for `seeds`) would
 * otherwise be ignored and its default used, which for some options means a different cluster.
 * `known` is typed by the caller as `Record<keyof Required<Options>, true>`, so the compiler keeps
 * it complete.
 */
export function checkOptionNames(what: string, options: unknown, known: Readonly<Record<string, true>>): void {
  if (typeof options !== 'object' || options === null) return;
  for (const name of Object.keys(options)) {
    if (Object.hasOwn(known, name)) continue;
    const close = Object.keys(known).find((candidate) => editDistance(candidate.toLowerCase(), name.toLowerCase()) <= 2);
    throw new InvalidArgument(`${what}: unknown option '${name}'${close === undefined ? '' : ` (did you mean '${close}'?)`}; known: ${Object.keys(known).join(', ')}`);
  }
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    previous = current;
  }
  return previous[b.length]!;
}

/** The longest a timer can wait (Node fires a longer one at once, with a warning). */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** Refuses a deadline that is not a number of milliseconds a timer can wait (undefined: the default). */
export function checkTimeoutMs(what: string, value: unknown): void {
  if (value !== undefined && !(typeof value === 'number' && value > 0 && value <= MAX_TIMEOUT_MS)) {
    throw new InvalidArgument(`${what} must be a number of milliseconds above 0 and at most ${MAX_TIMEOUT_MS}, got ${JSON.stringify(value) ?? String(value)}`);
  }
}

export function checkRouting(what: string, value: unknown): void {
  if (value !== undefined && !ROUTING_POLICIES.includes(value as RoutingPolicy)) {
    throw new InvalidArgument(`${what} must be one of ${ROUTING_POLICIES.join(', ')}, got ${JSON.stringify(value)}`);
  }
}
