/**
 * The one wire and at-rest format: msgpackr, configured so that what goes in comes out.
 *
 * - Plain objects travel as msgpackr records and Maps as msgpack maps (`mapsAsObjects: false`), so
 *   both round-trip. Records are defined inline in every message (no shared structures), so any
 *   decoder in any process reads any message alone: state at rest never depends on who wrote it.
 * - Date, Set, Uint8Array, bigint, undefined round-trip natively; errors go through our own
 *   extension that keeps name, message, code, stack and plain own fields, and rebuilds wadi's
 *   typed errors by code.
 * - Functions, symbols and cycles are refused with `NotSerializable` rather than silently dropped,
 *   and so are promises and weak collections, which would otherwise arrive as empty objects.
 * - Decoding refuses inputs over a byte budget and turns every failure (truncation, garbage,
 *   length bombs, deep nesting) into `DecodeError`; msgpackr >= 2.1.4 checks declared lengths
 *   against the input before allocating.
 */
import { C1 as NEVER_USED, Packr, addExtension } from 'msgpackr';
import { DecodeError, NotSerializable, describe, errorToShape, shapeToError, type ErrorShape } from './errors.js';

/** msgpack extension type for errors; ours replaces msgpackr's built-in one (it drops `code`). */
const ERROR_EXTENSION_TYPE = 0x57;

addExtension({
  Class: Error,
  type: ERROR_EXTENSION_TYPE,
  write: (error: Error) => errorToShape(error),
  read: (shape: ErrorShape) => shapeToError(shape),
});

/** Extension types that are never written: their classes are refused when packed. */
const REFUSED_EXTENSION_TYPES = [0x58, 0x59, 0x5a, 0x5b];
const REFUSED_CLASSES: [new (...args: never[]) => object, string][] = [
  [Promise, 'a promise (await it first)'],
  [WeakMap, 'a WeakMap'],
  [WeakSet, 'a WeakSet'],
  [WeakRef, 'a WeakRef'],
];
for (const [index, [Class, what]] of REFUSED_CLASSES.entries()) {
  addExtension({
    Class,
    type: REFUSED_EXTENSION_TYPES[index]!,
    write: () => {
      throw new NotSerializable(`cannot send or store ${what}`);
    },
    read: () => {
      throw new DecodeError(`extension type ${REFUSED_EXTENSION_TYPES[index]} is never written`);
    },
  });
}

const packr = new Packr({
  useRecords: true,
  mapsAsObjects: false,
  moreTypes: true,
  structuredClone: false,
  writeFunction: () => {
    throw new NotSerializable('a function cannot be sent or stored');
  },
});

export const DEFAULT_MAX_DECODE_BYTES = 64 * 1024 * 1024;

export function encode(value: unknown): Uint8Array {
  // pack() returns a view into a buffer msgpackr reuses: copy so the result can be kept or transferred.
  // (In Node that view is a Buffer, whose slice() is another view, not a copy: copy explicitly.)
  return new Uint8Array(encodeView(value));
}

/**
 * Encodes into msgpackr's reused buffer. The view is valid only until the next encode on this
 * thread: copy it (or write it into a batch) before doing anything else.
 */
export function encodeView(value: unknown): Uint8Array {
  try {
    return packr.pack(value);
  } catch (error) {
    throw asNotSerializable(error, value);
  }
}

export function decode(bytes: Uint8Array, maxBytes = DEFAULT_MAX_DECODE_BYTES): unknown {
  checkSize(bytes, maxBytes);
  try {
    return packr.unpack(bytes);
  } catch (error) {
    throw asDecodeError(error);
  }
}

/** Decodes a concatenation of encoded values (how envelopes are batched). */
export function decodeMany(bytes: Uint8Array, maxBytes = DEFAULT_MAX_DECODE_BYTES): unknown[] {
  checkSize(bytes, maxBytes);
  try {
    return packr.unpackMultiple(bytes) as unknown[];
  } catch (error) {
    throw asDecodeError(error);
  }
}

/**
 * `decodeMany` for bytes from outside this process (another node): also refuses the msgpack byte
 * 0xC1 ("never used"), which msgpackr decodes to an internal marker object instead of failing.
 * It walks the decoded values, so it costs about as much again as the decode; threads of one
 * process, which only exchange what this codec encoded, use `decodeMany`.
 */
export function decodeManyFromPeer(bytes: Uint8Array, maxBytes = DEFAULT_MAX_DECODE_BYTES): unknown[] {
  const values = decodeMany(bytes, maxBytes);
  rejectNeverUsed(values);
  return values;
}

function rejectNeverUsed(root: unknown): void {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value !== 'object' || value === null || ArrayBuffer.isView(value)) continue;
    if (value === NEVER_USED) throw new DecodeError('cannot decode: the input contains the reserved msgpack byte 0xC1');
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) stack.push(value[i]);
    } else if (value instanceof Map) {
      for (const [key, item] of value) stack.push(key, item);
    } else if (value instanceof Set) {
      for (const item of value) stack.push(item);
    } else if (!(value instanceof Date) && !(value instanceof Error)) {
      for (const key in value) stack.push((value as Record<string, unknown>)[key]);
    }
  }
}

function checkSize(bytes: Uint8Array, maxBytes: number): void {
  if (!(bytes instanceof Uint8Array)) throw new DecodeError(`expected bytes, got ${describe(bytes)}`);
  if (bytes.byteLength > maxBytes) {
    throw new DecodeError(`input of ${bytes.byteLength} bytes exceeds the decode budget of ${maxBytes} bytes`);
  }
}

function asNotSerializable(error: unknown, value: unknown): NotSerializable {
  if (error instanceof NotSerializable) return error;
  const reason = error instanceof RangeError ? 'it is cyclic or nested too deeply' : (error as Error)?.message;
  return new NotSerializable(`cannot encode ${describe(value)}: ${reason}`, { cause: error });
}

function asDecodeError(error: unknown): DecodeError {
  if (error instanceof DecodeError) return error;
  const reason = error instanceof RangeError ? 'nested too deeply or out of range' : (error as Error)?.message;
  return new DecodeError(`cannot decode: ${reason}`, { cause: error });
}
