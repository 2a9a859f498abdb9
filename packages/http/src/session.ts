/**
 * `req.session`: the object a request handler reads and writes, shaped like express-session's.
 *
 * Session data are the object's own enumerable properties (`req.session.views = 1`); its id and
 * methods (`save`, `reload`, `destroy`, `regenerate`, `touch`) are not data. Each method takes an
 * optional node-style callback and also returns a promise.
 *
 * What a request changed is found by comparing each top-level value with what it was when the
 * session was loaded (`Snapshot`: primitives as themselves, objects by their encoding), so only
 * changed keys travel to the session actor.
 */
import { InvalidArgument, NotSerializable, encode } from '@wadi/core';

/** What the middleware does for a session's methods; one per request. */
export interface SessionControl {
  save(session: Session): Promise<void>;
  reload(session: Session): Promise<void>;
  destroy(session: Session): Promise<void>;
  regenerate(session: Session): Promise<void>;
  touch(session: Session): void;
}

/** Names that are a session's API, so they cannot be data keys. */
export const RESERVED_KEYS: ReadonlySet<string> = new Set(['id', 'save', 'reload', 'destroy', 'regenerate', 'touch', '__proto__', 'constructor']);

type Callback = (error?: unknown) => void;

export class Session {
  // Private fields, not own properties: no per-session property descriptors, and never data.
  readonly #id: string;
  readonly #control: SessionControl;
  [key: string]: unknown;

  constructor(id: string, control: SessionControl, data: ReadonlyMap<string, unknown>) {
    this.#id = id;
    this.#control = control;
    fill(this, data);
  }

  /** The session id: also the group of this client's sessions (`<id>/cart` ...). */
  get id(): string {
    return this.#id;
  }

  /** Stores the changes made so far now (they are also stored when the response ends). */
  save(callback?: Callback): Promise<void> {
    return settle(this.#control.save(this), callback);
  }

  /** Reads the stored data again, dropping unsaved changes. */
  reload(callback?: Callback): Promise<void> {
    return settle(this.#control.reload(this), callback);
  }

  /** Deletes the session and its cookie; `req.session` is undefined afterwards. */
  destroy(callback?: Callback): Promise<void> {
    return settle(this.#control.destroy(this), callback);
  }

  /** Replaces the session with a new, empty one under a new id (after a login, against fixation). */
  regenerate(callback?: Callback): Promise<void> {
    return settle(this.#control.regenerate(this), callback);
  }

  /** Counts as a change: the session's expiry moves on even if nothing else changed. */
  touch(): this {
    this.#control.touch(this);
    return this;
  }
}

function settle(promise: Promise<void>, callback: Callback | undefined): Promise<void> {
  // Not awaited (`req.session.destroy(); res.end()`, common with express-session): a failure
  // must not crash the process as an unhandled rejection; the response reports it instead.
  promise.catch(() => undefined);
  if (callback === undefined) return promise;
  // With a callback, the error goes there and the returned promise never rejects unobserved.
  return promise.then(
    () => callback(),
    (error: unknown) => callback(error),
  );
}

/** Replaces a session's data with `data`. */
export function fill(session: Session, data: ReadonlyMap<string, unknown>): void {
  for (const key of Object.keys(session)) delete session[key];
  for (const [key, value] of data) if (!RESERVED_KEYS.has(key)) session[key] = value;
}

/**
 * A session's values as loaded or last saved: each primitive as itself, anything else as its
 * encoding (an object is compared byte for byte: the handler may have changed it in place).
 * Most session values are primitives (counters, ids, flags), which so cost no encoding.
 */
export type Snapshot = Map<string, Recorded>;
type Recorded = string | number | boolean | bigint | null | undefined | Uint8Array;

export function snapshotOf(data: ReadonlyMap<string, unknown> | Session): Snapshot {
  const snapshot: Snapshot = new Map();
  const entries = data instanceof Session ? Object.entries(data) : data;
  for (const [key, value] of entries) snapshot.set(key, record(value));
  return snapshot;
}

export interface Changes {
  set: [string, unknown][];
  unset: string[];
  /** Keys whose values cannot be stored (functions, symbols, cycles): saving them fails. */
  unencodable: string[];
}

/** What differs between `session` and `snapshot`. Throws if a key is reserved. */
export function changesOf(session: Session, snapshot: Snapshot): Changes {
  const set: [string, unknown][] = [];
  const unencodable: string[] = [];
  let seen = 0;
  for (const key in session) {
    if (!Object.hasOwn(session, key)) continue;
    if (RESERVED_KEYS.has(key)) throw new InvalidArgument(`req.session.${key} is reserved (the session's own API) and cannot be session data`);
    const value = session[key];
    const now = record(value);
    if (now === EMPTY) unencodable.push(key);
    const had = snapshot.has(key);
    if (had) seen++;
    if (!had || !same(snapshot.get(key), now)) set.push([key, value]);
  }
  const unset = seen === snapshot.size ? [] : [...snapshot.keys()].filter((key) => !Object.hasOwn(session, key));
  return { set, unset, unencodable };
}

/** Throws `NotSerializable` naming the keys that cannot be stored, if any. */
export function checkStorable(changes: Changes): void {
  if (changes.unencodable.length > 0) throw new NotSerializable(`session data ${changes.unencodable.map((key) => `'${key}'`).join(', ')} cannot be stored (functions, symbols and cycles cannot)`);
}

export function hasChanges(changes: Changes): boolean {
  return changes.set.length > 0 || changes.unset.length > 0;
}

const EMPTY = new Uint8Array(0);

function isPrimitive(value: unknown): value is Exclude<Recorded, Uint8Array> {
  return value === null || (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol');
}

/** A primitive as itself; anything else its encoding, or `EMPTY` if it cannot be encoded (it then compares as changed, and `unencodable` lists it). */
function record(value: unknown): Recorded {
  if (isPrimitive(value)) return value;
  try {
    return encode(value);
  } catch {
    return EMPTY;
  }
}

function same(before: Recorded, now: Recorded): boolean {
  if (!(before instanceof Uint8Array) || !(now instanceof Uint8Array)) return Object.is(before, now);
  return before.length > 0 && before.length === now.length && Buffer.compare(before, now) === 0;
}
