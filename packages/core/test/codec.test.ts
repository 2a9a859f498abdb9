import { Unpackr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_MAX_DECODE_BYTES,
  DecodeError,
  InvalidArgument,
  Redirected,
  Fenced,
  HostLost,
  NotSerializable,
  Overloaded,
  Stopped,
  Timeout,
  Unavailable,
  UnknownActorType,
  UnknownMethod,
  WadiError,
  WorkerCrashed,
  NoQuorum,
  cloneValue,
  decode,
  decodeMany,
  decodeManyFromPeer,
  encode,
  encodeView,
  errorClassesByCode,
} from '../src/index.js';
import { concatBytes, sameValue, thrownBy } from './helpers.js';

const roundTrip = <T>(value: T): T => decode(encode(value)) as T;

function expectDecodeError(run: () => unknown): DecodeError {
  const error = thrownBy(run);
  expect(error).toBeInstanceOf(DecodeError);
  expect((error as DecodeError).code).toBe('WADI_DECODE');
  return error as DecodeError;
}

function expectNotSerializable(run: () => unknown): NotSerializable {
  const error = thrownBy(run);
  expect(error).toBeInstanceOf(NotSerializable);
  expect((error as NotSerializable).code).toBe('WADI_NOT_SERIALIZABLE');
  return error as NotSerializable;
}

describe('encode/decode round trips', () => {
  it('keeps primitives, including undefined, null, NaN, infinities and bigints', () => {
    const values = [0, 1, -1, 255, 65536, 2 ** 32, -(2 ** 31) - 1, 2 ** 53, 1.5, -1e-300, NaN, Infinity, -Infinity, true, false, null, undefined, '', 'héllo 🌍', 'x'.repeat(70_000)];
    for (const value of values) expect(sameValue(roundTrip(value), value)).toBe(true);
    for (const big of [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n, -(2n ** 200n) - 7n]) {
      const back = roundTrip(big);
      expect(typeof back).toBe('bigint');
      expect(back).toBe(big);
    }
  });

  it('keeps Dates (including extreme and invalid ones)', () => {
    for (const date of [new Date(0), new Date(1_700_000_000_123), new Date(-1), new Date(8.64e15), new Date(-8.64e15)]) {
      const back = roundTrip(date);
      expect(back).toBeInstanceOf(Date);
      expect(back.getTime()).toBe(date.getTime());
    }
    expect(Number.isNaN(roundTrip(new Date(NaN)).getTime())).toBe(true);
  });

  it('keeps Maps with non-string keys, in order', () => {
    const objectKey = { k: 1 };
    const map = new Map<unknown, unknown>([
      [1, 'one'],
      ['1', 'string one'],
      [objectKey, [2]],
      [new Date(5), null],
      [undefined, 'u'],
      [3n, new Map([[true, false]])],
    ]);
    const back = roundTrip(map);
    expect(back).toBeInstanceOf(Map);
    expect(back.size).toBe(6);
    expect(back.get(1)).toBe('one');
    expect(back.get('1')).toBe('string one');
    expect(back.get(undefined)).toBe('u');
    expect(sameValue(back, map)).toBe(true);
  });

  it('keeps Sets, Uint8Arrays and nested objects/arrays', () => {
    const value = {
      set: new Set([1, 'a', { x: [1, 2] }, undefined]),
      bytes: new Uint8Array([0, 1, 254, 255]),
      empty: new Uint8Array(0),
      nested: { a: [{ b: { c: [[], {}, [undefined, null]] } }], missing: undefined },
      list: [1, 'two', [3, [4, [5]]]],
    };
    const back = roundTrip(value);
    expect(sameValue(back, value)).toBe(true);
    expect(back.set).toBeInstanceOf(Set);
    expect(back.bytes).toBeInstanceOf(Uint8Array);
    expect(Object.hasOwn(back.nested, 'missing')).toBe(true);
  });

  it('keeps plain objects with many different shapes in one message', () => {
    // More distinct shapes than msgpackr's own-record id space (64), so record ids are reused.
    const shapes = Array.from({ length: 300 }, (_, i) => ({ [`k${i}`]: i, shared: `v${i}`, [`k${i % 7}`]: [i] }));
    expect(sameValue(roundTrip(shapes), shapes)).toBe(true);
  });

  it('an own "__proto__" key (JSON.parse makes them) never becomes a prototype, in a copy as across a thread', () => {
    const parsed = JSON.parse('{"__proto__": {"polluted": true}, "a": 1, "nested": {"__proto__": {"polluted": true}}}') as Record<string, unknown>;
    for (const back of [decode(encode(parsed)), cloneValue(parsed)] as Record<string, Record<string, unknown>>[]) {
      for (const object of [back, back.nested!]) {
        expect(Object.getPrototypeOf(object)).toBe(Object.prototype);
        expect(object.polluted).toBeUndefined();
      }
      // msgpackr renames the key so decoding cannot set a prototype; an in-thread copy does the same.
      expect(back).toEqual({ __proto_: { polluted: true }, a: 1, nested: { __proto_: { polluted: true } } });
    }
  });

  it('writes self-contained messages that a separate, fresh decoder reads alone', () => {
    // Encode other values first, so that any state a shared encoder kept would show up.
    encode({ a: 1, b: 2 });
    encode([{ a: 1, b: 2 }, { a: 3, b: 4 }]);
    const value = [{ a: 1, b: 2 }, { a: 5, b: { c: 6 } }, new Map([[1, { a: 7, b: 8 }]])];
    const fresh = new Unpackr({ useRecords: true, mapsAsObjects: false, moreTypes: true });
    expect(sameValue(fresh.unpack(encode(value)), value)).toBe(true);
  });
});

describe('errors through the codec', () => {
  it('keep name, message, code and plain data fields', () => {
    class PaymentDeclined extends Error {
      override name = 'PaymentDeclined';
      code = 'E_DECLINED';
      amount = 42;
      retry = false;
      nothing = null;
      ignored = { nested: true };
    }
    const back = roundTrip(new PaymentDeclined('card refused'));
    expect(back).toBeInstanceOf(Error);
    expect(back.name).toBe('PaymentDeclined');
    expect(back.message).toBe('card refused');
    expect((back as unknown as { code: string }).code).toBe('E_DECLINED');
    expect((back as unknown as { amount: number }).amount).toBe(42);
    expect((back as unknown as { retry: boolean }).retry).toBe(false);
    expect((back as unknown as { nothing: null }).nothing).toBe(null);
    expect(typeof back.stack).toBe('string');
  });

  it('keep numeric codes and built-in error names', () => {
    const error = Object.assign(new TypeError('bad type'), { code: 7 });
    const back = roundTrip(error);
    expect(back.name).toBe('TypeError');
    expect(back.message).toBe('bad type');
    expect((back as unknown as { code: number }).code).toBe(7);
  });

  it('rebuild every wadi error class by code, so instanceof works after the trip', () => {
    const samples: WadiError[] = [
      new Overloaded('full'),
      new Timeout('late'),
      new Unavailable('gone'),
      new WorkerCrashed('crashed'),
      new NoQuorum('n1', 1, 3),
      new Stopped('stopped'),
      new UnknownActorType('Nope'),
      new UnknownMethod('Cart', 'nope'),
      new NotSerializable('fn'),
      new DecodeError('garbage'),
      new InvalidArgument('bad'),
      new Redirected('elsewhere', 'n2', 'ws://127.0.0.1:7102'),
      new Fenced('refused by a replica'),
      new HostLost('its host went down'),
    ];
    expect(new Set(samples.map((e) => e.code))).toEqual(new Set(errorClassesByCode.keys()));
    for (const error of samples) {
      const back = roundTrip(error);
      expect(back).toBeInstanceOf(errorClassesByCode.get(error.code)!);
      expect(back).toBeInstanceOf(WadiError);
      expect(back.code).toBe(error.code);
      expect(back.name).toBe(error.name);
      expect(back.message).toBe(error.message);
    }
    const redirected = roundTrip(new Redirected('elsewhere', 'n2', 'ws://127.0.0.1:7102')) as Redirected;
    expect([redirected.node, redirected.url]).toEqual(['n2', 'ws://127.0.0.1:7102']);
    const crashed = roundTrip(new WorkerCrashed('w'));
    expect(crashed).toBeInstanceOf(Unavailable);
    const refused = roundTrip(new NoQuorum('n1', 1, 3)) as NoQuorum;
    expect(refused).toBeInstanceOf(Unavailable);
    expect([refused.node, refused.reached, refused.members]).toEqual(['n1', 1, 3]);
  });

  it('keep errors nested inside other values', () => {
    const value = { failures: [new RangeError('r'), Object.assign(new Error('e'), { code: 'E1' })] };
    expect(sameValue(roundTrip(value), value)).toBe(true);
  });
});

describe('NotSerializable', () => {
  it('refuses functions, at the top level or nested', () => {
    expectNotSerializable(() => encode(() => 1));
    expectNotSerializable(() => encode({ a: { handler() {} } }));
    expectNotSerializable(() => encode([1, 2, function named() {}]));
    expectNotSerializable(() => encode(new Map([['f', () => 0]])));
  });

  it('refuses promises and weak collections, which would arrive as empty objects', () => {
    expect(expectNotSerializable(() => encode(Promise.resolve(1))).message).toMatch(/a promise \(await it first\)/);
    expect(expectNotSerializable(() => encode({ cache: new WeakMap() })).message).toMatch(/WeakMap/);
    expectNotSerializable(() => encode([new WeakSet()]));
    expectNotSerializable(() => encode(new Map([['ref', new WeakRef({})]])));
    expect(expectNotSerializable(() => cloneValue({ pending: Promise.resolve(1) })).message).toMatch(/promise/);
  });

  it('refuses symbols', () => {
    expectNotSerializable(() => encode(Symbol('s')));
    expectNotSerializable(() => encode([Symbol.iterator]));
    expectNotSerializable(() => encode({ s: Symbol.for('x') }));
  });

  it('refuses cycles', () => {
    const object: Record<string, unknown> = { a: 1 };
    object.self = object;
    const array: unknown[] = [1];
    array.push(array);
    const map = new Map<string, unknown>();
    map.set('me', map);
    for (const value of [object, array, map, { deeper: [{ x: object }] }]) expectNotSerializable(() => encode(value));
  });

  it('is also what cloneValue throws for the same values', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.c = cyclic;
    for (const value of [() => 1, Symbol('s'), { f() {} }, cyclic]) {
      expectNotSerializable(() => cloneValue(value));
    }
  });
});

describe('DecodeError', () => {
  it('for garbage', () => {
    expectDecodeError(() => decode(new Uint8Array([0x92, 0x01])));
    expectDecodeError(() => decode(new Uint8Array([0x01, 0x02])));
    expectDecodeError(() => decode(new Uint8Array(0)));
  });

  it('for every truncation of a valid encoding', () => {
    const bytes = encode({ name: 'alice', tags: new Set(['a']), at: new Date(1), blob: new Uint8Array(20), n: 2n ** 70n, m: new Map([[1, 2]]) });
    for (let end = 0; end < bytes.length; end++) {
      expectDecodeError(() => decode(bytes.subarray(0, end)));
    }
  });

  it('for input over the byte budget', () => {
    const bytes = encode('x'.repeat(100));
    expect(decode(bytes, bytes.length)).toBe('x'.repeat(100));
    expect(expectDecodeError(() => decode(bytes, bytes.length - 1)).message).toMatch(/budget/);
    expectDecodeError(() => decodeMany(bytes, 10));
    expect(DEFAULT_MAX_DECODE_BYTES).toBe(64 * 1024 * 1024);
  });

  it('for something that is not bytes', () => {
    for (const notBytes of ['abc', null, undefined, 42, [0x90], new ArrayBuffer(1), { length: 1 }]) {
      expectDecodeError(() => decode(notBytes as unknown as Uint8Array));
      expectDecodeError(() => decodeMany(notBytes as unknown as Uint8Array));
    }
  });

  it('for msgpack length bombs, without allocating what they declare', () => {
    const bombs = [
      [0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of 4G elements
      [0xdc, 0xff, 0xff], // array16
      [0xdf, 0xff, 0xff, 0xff, 0xff], // map32
      [0xde, 0xff, 0xff], // map16
      [0xc6, 0xff, 0xff, 0xff, 0xff], // bin32
      [0xc5, 0xff, 0xff], // bin16
      [0xdb, 0xff, 0xff, 0xff, 0xff], // str32
      [0xda, 0xff, 0xff], // str16
      [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01], // ext32
      [0xc8, 0xff, 0xff, 0x01], // ext16
      [0x91, 0x91, 0xdd, 0xff, 0xff, 0xff, 0xff], // nested inside arrays
      [0x81, 0xa1, 0x61, 0xc6, 0xff, 0xff, 0xff, 0xff], // as a map value
    ];
    for (const bomb of bombs) {
      expectDecodeError(() => decode(new Uint8Array(bomb)));
      expectDecodeError(() => decodeMany(new Uint8Array(bomb)));
      expectDecodeError(() => decode(new Uint8Array([...bomb, 0, 0, 0, 0, 0, 0, 0, 0])));
    }
  });

  it('for very deep nesting, and the decoder still works afterwards', () => {
    for (const unit of [[0x91], [0x81, 0x00], [0xdc, 0x00, 0x01]]) {
      const deep = new Uint8Array(200_000 * unit.length);
      for (let i = 0; i < deep.length; i += unit.length) deep.set(unit, i);
      expectDecodeError(() => decode(deep));
      expectDecodeError(() => decodeMany(deep));
    }
    expect(sameValue(roundTrip({ after: [1, { deep: true }] }), { after: [1, { deep: true }] })).toBe(true);
  });

  it('keeps the failure as its cause', () => {
    const error = expectDecodeError(() => decode(new Uint8Array([0x92])));
    expect(error.cause).toBeDefined();
  });
});

describe('decodeMany', () => {
  it('decodes a concatenation of encodings, in order', () => {
    const values = [1, { a: 1 }, 'x', [new Date(3)], new Map([[1, 1]]), undefined, null, 5n];
    const parts = values.map(encode);
    expect(sameValue(decodeMany(concatBytes(parts)), values)).toBe(true);
  });

  it('fails with DecodeError when the last value is truncated', () => {
    const joined = new Uint8Array([...encode({ a: 1 }), ...encode('hello').subarray(0, 3)]);
    expectDecodeError(() => decodeMany(joined));
  });
});

describe('encoded bytes', () => {
  it('stay valid after later encodes', () => {
    const values = Array.from({ length: 2000 }, (_, i) => ({ i, text: `value ${i}`, list: [i, i + 1] }));
    const encoded = values.map(encode);
    encoded.forEach((bytes, i) => expect(sameValue(decode(bytes), values[i])).toBe(true));
  });

  it('are an independent copy that can be transferred without disturbing other encodings', () => {
    const a = encode({ first: 'a' });
    const b = encode({ second: 'b' });
    // Transferring detaches a's ArrayBuffer: it must not be memory that b (or the encoder) uses.
    structuredClone(a, { transfer: [a.buffer as ArrayBuffer] });
    expect(a.byteLength).toBe(0);
    expect(decode(b)).toEqual({ second: 'b' });
    expect(decode(encode({ third: 'c' }))).toEqual({ third: 'c' });
  });

  it('are not changed by mutating another encoding', () => {
    const a = encode([1, 2, 3]);
    const b = encode([1, 2, 3]);
    b.fill(0xc1);
    expect(decode(a)).toEqual([1, 2, 3]);
  });

  it('encodeView gives the same bytes as encode', () => {
    const value = { view: true, n: [1, 2, 3] };
    const copy = encode(value);
    const view = encodeView(value);
    expect([...view]).toEqual([...copy]);
  });
});

describe('bytes from another node', () => {
  it('refuses the reserved byte 0xC1 anywhere in a batch, and passes everything else', () => {
    expect(() => decodeManyFromPeer(new Uint8Array([0xc1]))).toThrow(DecodeError);
    expect(() => decodeManyFromPeer(new Uint8Array([0x92, 0xc1, 0x01]))).toThrow(/0xC1/);
    expect(() => decodeManyFromPeer(concatBytes([encode({ a: 1 }), new Uint8Array([0x81, 0xa1, 0x62, 0xc1])]))).toThrow(DecodeError);
    const values = [[0, 1, -2, 'Counter', 'a/b', 'add', [1, { deep: [new Map([['k', new Set([1])]])] }]], new Uint8Array([0xc1]), 'x'];
    const decoded = decodeManyFromPeer(concatBytes(values.map((value) => encode(value))));
    expect(decoded).toEqual(values);
  });
});
