/**
 * Deep copies of message values and actor state without a trip through bytes.
 *
 * Actors share nothing: an argument, a reply or a state snapshot is a copy, whether it crosses a
 * thread or not, so code behaves the same wherever an actor is placed. The codec would give that
 * too, but costs ~250 ns for a tiny object; this walks plain data directly and falls back to the
 * codec for anything else (errors, class instances), so the result is always exactly what a trip
 * across a thread would produce, and the same values are refused (functions, symbols, cycles).
 */
import { decode, encode } from '../codec.js';
import { NotSerializable, describe } from '../errors.js';

const MAX_DEPTH = 512;
const PROTO_KEY_RENAMED = '__proto_';

export function cloneValue<T>(value: T): T {
  return copy(value, 0) as T;
}

/** Copies an argument list, with a fast path for the common all-primitive case. */
export function cloneArgs(args: readonly unknown[]): unknown[] {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg !== null && (typeof arg === 'object' || typeof arg === 'function' || typeof arg === 'symbol')) {
      return copy(args, 0) as unknown[];
    }
  }
  return args as unknown[];
}

/**
 * `error`, thrown while sending `type.method(...args)` to `id`, as the caller should read it: a
 * `NotSerializable` names the call and the first argument that cannot be sent, the same words
 * whether the message was to cross a thread (encoded) or not (cloned). Anything else is returned
 * as it is; so is a `NotSerializable` no single argument explains.
 */
export function inCallContext(error: unknown, type: string, id: string, method: string, args: readonly unknown[]): unknown {
  if (!(error instanceof NotSerializable)) return error;
  for (let i = 0; i < args.length; i++) {
    try {
      copy(args[i], 0);
    } catch (argumentError) {
      if (!(argumentError instanceof NotSerializable)) break;
      return new NotSerializable(`${type}.${method} on '${id}', argument ${i + 1}: ${argumentError.message}`, { cause: error });
    }
  }
  return error;
}

function copy(value: unknown, depth: number): unknown {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
    case 'bigint':
    case 'undefined':
      return value;
    case 'function':
    case 'symbol':
      throw new NotSerializable(`cannot send or store ${describe(value)}`);
  }
  if (value === null) return null;
  if (depth > MAX_DEPTH) throw new NotSerializable('value is cyclic or nested too deeply to send or store');
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    const source = value as Record<string, unknown>;
    const result: Record<string, unknown> = {};
    for (const key in source) {
      // An own "__proto__" key (JSON.parse makes them) assigned as is would set the copy's
      // prototype; msgpackr decodes it as "__proto_", and so does a copy.
      if (key === '__proto__') result[PROTO_KEY_RENAMED] = copy(source[key], depth + 1);
      else result[key] = copy(source[key], depth + 1);
    }
    return result;
  }
  if (Array.isArray(value)) {
    const result = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) result[i] = copy(value[i], depth + 1);
    return result;
  }
  if (value instanceof Map) {
    const result = new Map();
    for (const [k, v] of value) result.set(copy(k, depth + 1), copy(v, depth + 1));
    return result;
  }
  if (value instanceof Set) {
    const result = new Set();
    for (const v of value) result.add(copy(v, depth + 1));
    return result;
  }
  if (value instanceof Date) return new Date(value.getTime());
  if (value instanceof Uint8Array && proto === Uint8Array.prototype) return value.slice();
  // Anything else takes the exact path it would take across a thread.
  return decode(encode(value));
}
