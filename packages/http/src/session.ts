/**
 * `req.session`: the object a request handler reads and writes, shaped like express-session's.
 *
 * Session data are the object's own enumerable properties (`req.session.views = 1`); its id and
 * methods (`save`, `reload`, `destroy`, `regenerate`, `touch`) are not data. Each method takes an
 * optional node-style callback and also returns a promise.
 *
 * What a request changed is found by comparing each top-level value's encoding with its encoding
 * when the session was loaded (`Snapshot`), so only changed keys travel to the session actor.
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

const CONTROL = Symbol('wadi.http.sessionControl');

type Callback = (error?: unknown) => void;

export class Session {
  /** The session id: also the group of this client's sessions (`<id>/cart` ...). */
  declare readonly id: string;
  declare readonly [CONTROL]: SessionControl;
  [key: string]: unknown;

  constructor(id: string, control: SessionControl, data: ReadonlyMap<string, unknown>) {
    Object.defineProperty(this, 'id', { value: id, enumerable: false });
    Object.defineProperty(this, CONTROL, { value: control, enumerable: false });
    fill(this, data);
  }

  /** Stores the changes made so far now (they are also stored when the response ends). */
  save(callback?: Callback): Promise<void> {
    return settle(this[CONTROL].save(this), callback);
  }

  /** Reads the stored data again, dropping unsaved changes. */
  reload(callback?: Callback): Promise<void> {
    return settle(this[CONTROL].reload(this), callback);
  }

  /** Deletes the session and its cookie; `req.session` is undefined afterwards. */
  destroy(callback?: Callback): Promise<void> {
    return settle(this[CONTROL].destroy(this), callback);
  }

  /** Replaces the session with a new, empty one under a new id (after a login, against fixation). */
  regenerate(callback?: Callback): Promise<void> {
    return settle(this[CONTROL].regenerate(this), callback);
  }

  /** Counts as a change: the session's expiry moves on even if nothing else changed. */
  touch(): this {
    this[CONTROL].touch(this);
    return this;
  }
}

// Methods are the API, not data: keep them off enumeration like the id.
for (const name of ['save', 'reload', 'destroy', 'regenerate', 'touch'] as const) {
  Object.defineProperty(Session.prototype, name, { enumerable: false });
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

/** The encodings of a session's values, as loaded or last saved. */
export type Snapshot = Map<string, Uint8Array>;

export function snapshotOf(data: ReadonlyMap<string, unknown> | Session): Snapshot {
  const snapshot: Snapshot = new Map();
  const entries = data instanceof Session ? Object.entries(data) : data;
  for (const [key, value] of entries) snapshot.set(key, encodeOrEmpty(value));
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
  const seen = new Set<string>();
  for (const [key, value] of Object.entries(session)) {
    if (RESERVED_KEYS.has(key)) throw new InvalidArgument(`req.session.${key} is reserved (the session's own API) and cannot be session data`);
    seen.add(key);
    const now = encodeOrEmpty(value);
    if (now.length === 0) unencodable.push(key);
    const before = snapshot.get(key);
    if (before === undefined || !sameBytes(before, now)) set.push([key, value]);
  }
  const unset = [...snapshot.keys()].filter((key) => !seen.has(key));
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

/** An unencodable value encodes as nothing: it compares as changed, and `unencodable` lists it. */
function encodeOrEmpty(value: unknown): Uint8Array {
  try {
    return encode(value);
  } catch {
    return EMPTY;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length > 0 && a.length === b.length && Buffer.compare(a, b) === 0;
}
