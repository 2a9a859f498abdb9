import fc from 'fast-check';
import { Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { DecodeError, cloneValue, decode, decodeMany, encode } from '../src/index.js';
import { concatBytes, sameValue } from './helpers.js';

// Keys: any string but '__proto__', which msgpackr deliberately renames on decode (prototype
// pollution guard), so it is not expected to round-trip.
const key = fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom('a', 'b', 'constructor', 'toString', '0', '10', 'length', ''))
  .filter((k) => k !== '__proto__');

const error = fc
  .record({
    name: fc.constantFrom('Error', 'TypeError', 'RangeError', 'PaymentDeclined'),
    message: fc.string(),
    code: fc.option(fc.oneof(fc.string({ maxLength: 8 }), fc.integer()), { nil: undefined }),
  })
  .map(({ name, message, code }) => {
    const e = new Error(message);
    e.name = name;
    if (code !== undefined) (e as Error & { code?: unknown }).code = code;
    return e;
  });

const leaf = fc.oneof(
  fc.integer(),
  fc.double(), // includes NaN, ±Infinity and -0
  fc.constantFrom(NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 53), 2 ** 64, 0.1),
  fc.maxSafeInteger(),
  fc.boolean(),
  fc.string(),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constant(null),
  fc.constant(undefined),
  fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n }),
  fc.bigInt({ min: -(2n ** 300n), max: 2n ** 300n }),
  fc.date(), // includes invalid dates
  fc.uint8Array({ maxLength: 40 }),
  error,
);

const { value: anyValue } = fc.letrec<{ value: unknown; array: unknown[]; object: Record<string, unknown>; map: Map<unknown, unknown>; set: Set<unknown> }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, tie('array'), tie('object'), tie('map'), tie('set')),
  array: fc.array(tie('value'), { maxLength: 6 }),
  object: fc.dictionary(key, tie('value'), { maxKeys: 6 }),
  map: fc.array(fc.tuple(tie('value'), tie('value')), { maxLength: 5 }).map((entries) => new Map(entries)),
  set: fc.array(tie('value'), { maxLength: 5 }).map((values) => new Set(values)),
}));

/** A fresh, independent decoder configured like the codec, to show each message stands alone. */
const freshDecoder = (): Unpackr => new Unpackr({ useRecords: true, mapsAsObjects: false, moreTypes: true });

/** The decoder's whole contract on hostile input: a value or a DecodeError, nothing else. */
function decodesOrRefuses(bytes: Uint8Array): void {
  for (const run of [() => decode(bytes), () => decodeMany(bytes)]) {
    try {
      run();
    } catch (error) {
      if (!(error instanceof DecodeError)) {
        throw new Error(`decoder threw ${String((error as Error)?.name)} instead of DecodeError: ${String((error as Error)?.message)}`);
      }
      expect(error.code).toBe('WADI_DECODE');
    }
  }
}

const sentinel = { sentinel: [1, 'two', new Map([[3, new Set([4])]]), new Date(5), 6n, new Uint8Array([7])] };

/** After hostile input, the codec must still round-trip, and still write self-contained messages. */
function decoderStillWorks(): void {
  const bytes = encode(sentinel);
  expect(sameValue(decode(bytes), sentinel)).toBe(true);
  expect(sameValue(freshDecoder().unpack(bytes), sentinel)).toBe(true);
}

describe('codec round trip (property)', () => {
  it('decode(encode(v)) equals v for random values', () => {
    fc.assert(
      fc.property(anyValue, (value) => {
        const back = decode(encode(value));
        expect(sameValue(back, value)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('every encoding stands alone: a fresh decoder reads it, whatever was encoded before', () => {
    fc.assert(
      fc.property(fc.array(anyValue, { minLength: 1, maxLength: 5 }), (values) => {
        const encoded = values.map((v) => encode(v));
        encoded.forEach((bytes, i) => {
          expect(sameValue(freshDecoder().unpack(bytes), values[i])).toBe(true);
          expect(sameValue(decode(bytes), values[i])).toBe(true);
        });
      }),
      { numRuns: 300 },
    );
  });

  it('decodeMany of concatenated encodings gives the values back, in order', () => {
    fc.assert(
      fc.property(fc.array(anyValue, { minLength: 1, maxLength: 6 }), (values) => {
        const parts = values.map((v) => encode(v));
        expect(sameValue(decodeMany(concatBytes(parts)), values)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('cloneValue gives what a trip through the codec gives', () => {
    fc.assert(
      fc.property(anyValue, (value) => {
        expect(sameValue(cloneValue(value), decode(encode(value)))).toBe(true);
        expect(sameValue(cloneValue(value), value)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

// Length bombs: a header that declares far more than the input holds.
const bombHeaders: number[][] = [
  [0xdd, 0xff, 0xff, 0xff, 0xff],
  [0xdc, 0xff, 0xff],
  [0xdf, 0xff, 0xff, 0xff, 0xff],
  [0xde, 0xff, 0xff],
  [0xc6, 0xff, 0xff, 0xff, 0xff],
  [0xc5, 0xff, 0xff],
  [0xc4, 0xff],
  [0xdb, 0xff, 0xff, 0xff, 0xff],
  [0xda, 0xff, 0xff],
  [0xd9, 0xff],
  [0xc9, 0xff, 0xff, 0xff, 0xff, 0x72],
  [0xc9, 0xff, 0xff, 0xff, 0xff, 0x57],
  [0xc8, 0xff, 0xff, 0x65],
  [0xc7, 0xff, 0x73],
];

/** Ways to damage a valid encoding. */
type Mutation =
  | { kind: 'set'; at: number; byte: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'bomb'; at: number; header: number[] };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('bomb' as const), at: fc.nat(), header: fc.constantFrom(...bombHeaders) }),
);

function mutate(bytes: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out = [...bytes];
  for (const m of mutations) {
    const at = out.length === 0 ? 0 : m.at % (out.length + 1);
    switch (m.kind) {
      case 'set':
        if (out.length > 0) out[at % out.length] = m.byte;
        break;
      case 'truncate':
        out = out.slice(0, at);
        break;
      case 'insert':
        out.splice(at, 0, ...m.bytes);
        break;
      case 'delete':
        out.splice(at, m.count);
        break;
      case 'bomb':
        out.splice(at, 0, ...m.header);
        break;
    }
  }
  return new Uint8Array(out);
}

describe('decoder on hostile input (property)', () => {
  it('random garbage yields a value or DecodeError, and leaves the codec working', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 96 }), (bytes) => {
        decodesOrRefuses(bytes);
        decoderStillWorks();
      }),
      { numRuns: 3000 },
    );
  });

  it('garbage made of msgpack type bytes (headers, records, extensions) yields a value or DecodeError', () => {
    const interesting = fc.constantFrom(
      0x90, 0x91, 0x9f, 0x80, 0x81, 0x8f, 0xa0, 0xa3, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb,
      0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0x40, 0x41,
      0x5f, 0x60, 0x7f, 0x72, 0x73, 0x57, 0x65, 0x74, 0x42, 0x62, 0x78, 0x00, 0x01, 0xff, 0xe0,
    );
    fc.assert(
      fc.property(fc.array(interesting, { maxLength: 64 }), (list) => {
        decodesOrRefuses(new Uint8Array(list));
        decoderStillWorks();
      }),
      { numRuns: 3000 },
    );
  });

  it('mutated and truncated valid encodings yield a value or DecodeError', () => {
    fc.assert(
      fc.property(anyValue, fc.array(mutation, { minLength: 1, maxLength: 4 }), (value, mutations) => {
        decodesOrRefuses(mutate(encode(value), mutations));
        decoderStillWorks();
      }),
      { numRuns: 2000 },
    );
  });

  it('length bombs anywhere in a message yield DecodeError (they can never be satisfied)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(0x91, 0x92), { maxLength: 5 }),
        fc.constantFrom(...bombHeaders.filter((h) => h.length >= 5 || h[0] === 0xdc || h[0] === 0xde || h[0] === 0xc5 || h[0] === 0xda || h[0] === 0xc8)),
        fc.uint8Array({ maxLength: 32 }),
        (prefix, header, tail) => {
          // The declared length (>= 65535) always exceeds what follows (<= 32 bytes).
          const bytes = new Uint8Array([...prefix, ...header, ...tail]);
          for (const run of [() => decode(bytes), () => decodeMany(bytes)]) {
            expect(run).toThrow(DecodeError);
          }
          decoderStillWorks();
        },
      ),
      { numRuns: 500 },
    );
  });

  it('deep nesting of any container kind yields DecodeError', () => {
    fc.assert(
      fc.property(
        fc.constantFrom([0x91], [0x81, 0xc0], [0x81, 0x01], [0xdc, 0x00, 0x01], [0xdd, 0x00, 0x00, 0x00, 0x01], [0x92, 0x01]),
        fc.integer({ min: 100_000, max: 200_000 }),
        (unit, depth) => {
          const bytes = new Uint8Array(unit.length * depth);
          for (let i = 0; i < bytes.length; i += unit.length) bytes.set(unit, i);
          decodesOrRefuses(bytes);
          decoderStillWorks();
        },
      ),
      { numRuns: 12 },
    );
  });
});
