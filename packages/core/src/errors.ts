/**
 * Typed errors that callers see. Every wadi error has a stable `code`, so that an error that
 * crossed a thread or a node (and was rebuilt by the codec) can still be told apart by
 * `instanceof` or by `err.code`.
 */

export type WadiErrorCode =
  | 'WADI_OVERLOADED'
  | 'WADI_TIMEOUT'
  | 'WADI_UNAVAILABLE'
  | 'WADI_STOPPED'
  | 'WADI_UNKNOWN_ACTOR_TYPE'
  | 'WADI_UNKNOWN_METHOD'
  | 'WADI_NOT_SERIALIZABLE'
  | 'WADI_DECODE'
  | 'WADI_INVALID_ARGUMENT'
  | 'WADI_WORKER_CRASHED'
  | 'WADI_NO_QUORUM'
  | 'WADI_REDIRECTED'
  | 'WADI_FENCED'
  | 'WADI_HOST_LOST'
  // Store errors: the classes live in @wadi/store, which registers them with `registerErrorClass`.
  | 'WADI_STALE_WRITE'
  | 'WADI_CORRUPT_RECORD'
  | 'WADI_STORE_FULL';

export class WadiError extends Error {
  readonly code: WadiErrorCode;
  constructor(code: WadiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A bounded queue (mailbox, outgoing link) is full; the message was not accepted. */
export class Overloaded extends WadiError {
  constructor(message: string) {
    super('WADI_OVERLOADED', message);
  }
}

/** An ask got no reply before its deadline. The message may or may not have been processed. */
export class Timeout extends WadiError {
  constructor(message: string) {
    super('WADI_TIMEOUT', message);
  }
}

/** The target cannot be reached now (its thread or node is gone); retrying later may work. */
export class Unavailable extends WadiError {
  constructor(message: string, code: 'WADI_UNAVAILABLE' | 'WADI_WORKER_CRASHED' | 'WADI_NO_QUORUM' = 'WADI_UNAVAILABLE') {
    super(code, message);
  }
}

/** The worker that hosted the target died while the message was in flight. */
export class WorkerCrashed extends Unavailable {
  constructor(message: string) {
    super(message, 'WADI_WORKER_CRASHED');
  }
}

/**
 * The node that got the call cannot reach a majority of the cluster layout's members (a minority
 * side of a partition, or a node that was paused and has not heard from a majority since): it
 * runs no session turn and routes no call until it does. The call was not run; retrying through
 * another node, or later, may work. `node` is the refusing node; `reached` of `members` is how
 * many of the layout's members (itself included) it reached when it refused.
 */
export class NoQuorum extends Unavailable {
  readonly node: string;
  readonly reached: number;
  readonly members: number;
  constructor(node: string, reached: number, members: number, detail?: string) {
    super(
      `node ${node} reaches ${reached} of the ${members} members of the cluster layout, not a majority (${Math.floor(members / 2) + 1})${detail === undefined ? '' : ` ${detail}`}: it serves no session until it does`,
      'WADI_NO_QUORUM',
    );
    this.node = node;
    this.reached = reached;
    this.members = members;
  }
}

/** The node (or actor system) is stopping or stopped and accepts no new messages. */
export class Stopped extends WadiError {
  constructor(message: string) {
    super('WADI_STOPPED', message);
  }
}

export class UnknownActorType extends WadiError {
  constructor(readonly actorType: string) {
    super('WADI_UNKNOWN_ACTOR_TYPE', `unknown actor type '${actorType}': no loaded module defines it`);
  }
}

export class UnknownMethod extends WadiError {
  constructor(readonly actorType: string, readonly method: string) {
    super('WADI_UNKNOWN_METHOD', `actor type '${actorType}' has no handler '${method}'`);
  }
}

/** A value cannot cross a thread or a node (a function, a symbol, a cycle...). */
export class NotSerializable extends WadiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WADI_NOT_SERIALIZABLE', message, options);
  }
}

/** Bytes that do not decode to a value: corrupt, truncated, hostile or too large. */
export class DecodeError extends WadiError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('WADI_DECODE', message, options);
  }
}

/** An API was called with an argument that can never work (bad name, bad option). */
export class InvalidArgument extends WadiError {
  constructor(message: string) {
    super('WADI_INVALID_ARGUMENT', message);
  }
}

/**
 * The call was not run: its routing policy is `redirect` and the session lives on another node.
 * `node` is that node's id and `url` its cluster URL; an HTTP front end answers 307 to it.
 */
export class Redirected extends WadiError {
  readonly node: string;
  readonly url: string;
  constructor(message: string, node: string, url: string) {
    super('WADI_REDIRECTED', message);
    this.node = node;
    this.url = url;
  }
}

/**
 * A `sync` session's turn ran, but its state could not be made durable: a replica refused it
 * because the writer is fenced off (its node was declared down, or a newer activation of the
 * session exists elsewhere). The turn's effect is not acknowledged and the stale activation is
 * dropped; the session lives on where the cluster placed it. A retry reaches that copy.
 */
export class Fenced extends WadiError {
  constructor(message: string) {
    super('WADI_FENCED', message);
  }
}

/**
 * The node that hosted the session went down while this call may already have been delivered to
 * it. The call is not run again elsewhere on its own (at most once): the caller decides whether
 * to retry, knowing its effect may or may not be in the session's state.
 */
export class HostLost extends WadiError {
  constructor(message: string) {
    super('WADI_HOST_LOST', message);
  }
}

type WadiErrorClass = new (...args: never[]) => WadiError;

const errorClasses = new Map<string, WadiErrorClass>([
  ['WADI_OVERLOADED', Overloaded],
  ['WADI_TIMEOUT', Timeout],
  ['WADI_UNAVAILABLE', Unavailable],
  ['WADI_WORKER_CRASHED', WorkerCrashed],
  ['WADI_NO_QUORUM', NoQuorum],
  ['WADI_STOPPED', Stopped],
  ['WADI_UNKNOWN_ACTOR_TYPE', UnknownActorType],
  ['WADI_UNKNOWN_METHOD', UnknownMethod],
  ['WADI_NOT_SERIALIZABLE', NotSerializable],
  ['WADI_DECODE', DecodeError],
  ['WADI_INVALID_ARGUMENT', InvalidArgument],
  ['WADI_REDIRECTED', Redirected],
  ['WADI_FENCED', Fenced],
  ['WADI_HOST_LOST', HostLost],
]);

/** Classes the codec rebuilds by code, so `instanceof` works on the far side of a thread or node. */
export const errorClassesByCode: ReadonlyMap<string, WadiErrorClass> = errorClasses;

/**
 * Lets a package that defines its own `WadiError` subclasses (the store's) have them rebuilt by
 * the codec too. Registering is idempotent; a code already bound to another class is refused,
 * so two packages cannot silently fight over one code.
 */
export function registerErrorClass(code: WadiErrorCode, Class: WadiErrorClass): void {
  const known = errorClasses.get(code);
  if (known !== undefined && known !== Class) throw new InvalidArgument(`error code ${code} is already registered to ${known.name}`);
  errorClasses.set(code, Class);
}

/** The wire form of an error: what survives a thread or node boundary. */
export interface ErrorShape {
  name: string;
  message: string;
  code?: string | number;
  stack?: string;
  /** Own enumerable fields other than the above, when they are plain data. */
  data?: Record<string, unknown>;
}

const reservedErrorFields = new Set(['name', 'message', 'code', 'stack', 'cause']);

export function errorToShape(error: unknown): ErrorShape {
  if (!(error instanceof Error)) {
    return { name: 'Error', message: `non-Error value thrown: ${describe(error)}` };
  }
  const shape: ErrorShape = { name: error.name, message: error.message };
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') shape.code = code;
  if (error.stack !== undefined) shape.stack = error.stack;
  let data: Record<string, unknown> | undefined;
  for (const key of Object.keys(error)) {
    if (reservedErrorFields.has(key)) continue;
    const value = (error as unknown as Record<string, unknown>)[key];
    if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) {
      (data ??= {})[key] = value;
    }
  }
  if (data) shape.data = data;
  return shape;
}

export function shapeToError(shape: ErrorShape): Error {
  const Known = shape.code === undefined ? undefined : errorClassesByCode.get(String(shape.code));
  let error: Error;
  if (Known) {
    // Rebuild the class without running its constructor's message formatting.
    error = Object.create(Known.prototype) as Error;
    Object.defineProperty(error, 'message', { value: shape.message, writable: true, configurable: true });
  } else {
    error = new Error(shape.message);
  }
  Object.defineProperty(error, 'name', { value: shape.name, writable: true, configurable: true });
  if (shape.code !== undefined) (error as { code?: unknown }).code = shape.code;
  if (shape.data) Object.assign(error, shape.data);
  if (shape.stack !== undefined) {
    Object.defineProperty(error, 'stack', { value: shape.stack, writable: true, configurable: true });
  }
  return error;
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? value.slice(0, 60) + '…' : value);
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`;
  if (typeof value === 'symbol') return value.toString();
  if (value === null || typeof value !== 'object') return String(value);
  return `object of class ${(value as object).constructor?.name ?? 'null-prototype'}`;
}
