import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_BUCKETS,
  InvalidArgument,
  MAX_ID_LENGTH,
  bucketOf,
  groupOf,
  murmur3,
  validateBucketCount,
  validateId,
} from '../src/index.js';
import { thrownBy } from './helpers.js';

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/**
 * A second, independent MurmurHash3 x86_32: written from the algorithm description with BigInt
 * arithmetic modulo 2^32 and a little-endian DataView, sharing no code (and no Math.imul) with
 * the implementation under test.
 */
function referenceMurmur3(bytes: Uint8Array, seed = 0): number {
  const M = 1n << 32n;
  const mul = (a: bigint, b: bigint): bigint => (a * b) % M;
  const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (32n - r))) % M;
  const c1 = 0xcc9e2d51n;
  const c2 = 0x1b873593n;
  let h = BigInt(seed >>> 0);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const nblocks = Math.floor(bytes.length / 4);
  for (let i = 0; i < nblocks; i++) {
    let k = BigInt(view.getUint32(i * 4, true));
    k = mul(rotl(mul(k, c1), 15n), c2);
    h ^= k;
    h = (mul(rotl(h, 13n), 5n) + 0xe6546b64n) % M;
  }
  // Tail: the remaining 1..3 bytes, little-endian, mixed like a block but without the h update.
  const tail = nblocks * 4;
  if (tail < bytes.length) {
    let k = 0n;
    for (let i = bytes.length - 1; i >= tail; i--) k = (k << 8n) | BigInt(bytes[i]!);
    h ^= mul(rotl(mul(k, c1), 15n), c2);
  }
  h ^= BigInt(bytes.length);
  h ^= h >> 16n;
  h = mul(h, 0x85ebca6bn);
  h ^= h >> 13n;
  h = mul(h, 0xc2b2ae35n);
  h ^= h >> 16n;
  return Number(h);
}

// Published MurmurHash3_x86_32 vectors (Appleby's SMHasher verification set as commonly quoted,
// and the values returned by the reference mmh3 library for 'hello' and the pangram).
const vectors: Array<[input: string | number[], seed: number, expected: number]> = [
  ['', 0, 0],
  ['', 1, 0x514e28b7],
  ['', 0xffffffff, 0x81f16f39],
  [[0, 0, 0, 0], 0, 0x2362f9de],
  [[0xff, 0xff, 0xff, 0xff], 0, 0x76293b50],
  [[0x21, 0x43, 0x65, 0x87], 0, 0xf55b516b],
  [[0x21, 0x43, 0x65, 0x87], 0x5082edee, 0x2362f9de],
  [[0x21, 0x43, 0x65], 0, 0x7e4a8634],
  [[0x21, 0x43], 0, 0xa0f7b07a],
  [[0x21], 0, 0x72661cf4],
  ['aaaa', 0x9747b28c, 0x5a97808a],
  ['aaa', 0x9747b28c, 0x283e0130],
  ['aa', 0x9747b28c, 0x5d211726],
  ['a', 0x9747b28c, 0x7fa09ea6],
  ['abcd', 0x9747b28c, 0xf0478627],
  ['abc', 0x9747b28c, 0xc84a62dd],
  ['ab', 0x9747b28c, 0x74875592],
  ['Hello, world!', 0x9747b28c, 0x24884cba],
  ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
  ['hello', 0, 0x248bfa47],
  ['Hello, world!', 1234, 0xfaf6cdb3],
  ['The quick brown fox jumps over the lazy dog', 0, 0x2e4ff723],
];

describe('murmur3', () => {
  it.each(vectors)('matches the published vector for %j (seed %d)', (input, seed, expected) => {
    const bytes = typeof input === 'string' ? utf8(input) : new Uint8Array(input);
    // The vector table itself is checked against the independent implementation first.
    expect(referenceMurmur3(bytes, seed)).toBe(expected);
    expect(murmur3(bytes, seed)).toBe(expected);
  });

  it('defaults to seed 0', () => {
    expect(murmur3(utf8('hello'))).toBe(0x248bfa47);
    expect(murmur3(new Uint8Array(0))).toBe(0);
  });

  it('agrees with an independent implementation on random bytes and seeds', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 67 }), fc.nat({ max: 0xffffffff }), (bytes, seed) => {
        expect(murmur3(bytes, seed)).toBe(referenceMurmur3(bytes, seed));
      }),
      { numRuns: 500 },
    );
  });

  it('reads only the view it is given (byteOffset is respected)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.nat(), fc.nat(), (bytes, a, b) => {
        const start = a % bytes.length;
        const end = start + (b % (bytes.length - start + 1));
        const view = bytes.subarray(start, end);
        expect(murmur3(view)).toBe(murmur3(bytes.slice(start, end)));
      }),
      { numRuns: 200 },
    );
  });

  it('hashes the first `length` bytes when given a length', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.nat(), fc.nat({ max: 0xffffffff }), (bytes, a, seed) => {
        const length = a % (bytes.length + 1);
        expect(murmur3(bytes, seed, length)).toBe(referenceMurmur3(bytes.slice(0, length), seed));
      }),
      { numRuns: 200 },
    );
  });

  it('always returns an unsigned 32-bit integer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 33 }), fc.integer(), (bytes, seed) => {
        const h = murmur3(bytes, seed);
        expect(Number.isInteger(h) && h >= 0 && h <= 0xffffffff).toBe(true);
      }),
    );
  });
});

describe('groupOf', () => {
  it('is the text before the first slash, or the whole id', () => {
    expect(groupOf('alice/cart')).toBe('alice');
    expect(groupOf('alice/profile')).toBe('alice');
    expect(groupOf('alice')).toBe('alice');
    expect(groupOf('alice/cart/items')).toBe('alice');
    expect(groupOf('alice/')).toBe('alice');
    expect(groupOf('/x')).toBe('');
    expect(groupOf('')).toBe('');
  });

  it('is the prefix before the first separator for any id', () => {
    fc.assert(
      fc.property(fc.string(), fc.option(fc.string(), { nil: undefined }), (group, rest) => {
        const head = group.replaceAll('/', '');
        const id = rest === undefined ? head : `${head}/${rest}`;
        expect(groupOf(id)).toBe(head);
      }),
    );
  });
});

describe('bucketOf', () => {
  it('places ids of one group in one bucket', () => {
    for (const buckets of [1, 7, DEFAULT_BUCKETS, 1 << 20]) {
      const b = bucketOf('alice', buckets);
      expect(bucketOf('alice/cart', buckets)).toBe(b);
      expect(bucketOf('alice/profile', buckets)).toBe(b);
      expect(bucketOf('alice/a/b/c', buckets)).toBe(b);
    }
  });

  it('is murmur3 (seed 0) of the UTF-8 group modulo the bucket count', () => {
    expect(bucketOf('hello/world', DEFAULT_BUCKETS)).toBe(0x248bfa47 % DEFAULT_BUCKETS);
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), fc.string(), fc.integer({ min: 1, max: 1 << 20 }), (group, rest, buckets) => {
        const g = group.replaceAll('/', '');
        const id = `${g}/${rest}`;
        const bucket = bucketOf(id, buckets);
        expect(bucket).toBe(referenceMurmur3(utf8(g), 0) % buckets);
        expect(Number.isInteger(bucket) && bucket >= 0 && bucket < buckets).toBe(true);
      }),
    );
  });

  it('hashes non-ASCII groups by their UTF-8 bytes', () => {
    expect(bucketOf('café/x', 1 << 20)).toBe(referenceMurmur3(utf8('café')) % (1 << 20));
    expect(bucketOf('日本/x', 1 << 20)).toBe(referenceMurmur3(utf8('日本')) % (1 << 20));
    // A lone surrogate is encoded as U+FFFD, as TextEncoder does.
    expect(bucketOf('a\ud800b/x', 1 << 20)).toBe(referenceMurmur3(utf8('a\ud800b')) % (1 << 20));
  });

  it('gives the same buckets to groups of any length, ASCII or not, one after another', () => {
    const groups = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.string({ unit: 'grapheme-ascii', minLength: 1000, maxLength: 3500 }),
      fc.string({ unit: 'binary', minLength: 1000, maxLength: 1100 }),
    );
    fc.assert(
      fc.property(fc.array(groups, { minLength: 1, maxLength: 4 }), (list) => {
        for (const group of list) {
          const g = group.replaceAll('/', '');
          expect(bucketOf(`${g}/x`, 1 << 20)).toBe(referenceMurmur3(utf8(g)) % (1 << 20));
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe('validateId', () => {
  it('accepts ordinary ids and returns them', () => {
    expect(validateId('alice')).toBe('alice');
    expect(validateId('alice/cart')).toBe('alice/cart');
    expect(validateId('x'.repeat(MAX_ID_LENGTH))).toBe('x'.repeat(MAX_ID_LENGTH));
    // Any script, emoji (surrogate pairs) and the replacement character itself are fine.
    expect(validateId('ünïcødé/カート/😀/\ufffd')).toBe('ünïcødé/カート/😀/\ufffd');
  });

  it.each([
    ['an empty string', ''],
    ['a number', 42],
    ['undefined', undefined],
    ['null', null],
    ['an object', { id: 'a' }],
    ['a too long id', 'x'.repeat(MAX_ID_LENGTH + 1)],
    ['an id with an empty group', '/cart'],
    ['a lone high surrogate', 'a\ud800'],
    ['a lone low surrogate', '\udc00b'],
    ['swapped surrogates', '\ude00\ud83d'],
  ])('rejects %s with InvalidArgument', (_label, id) => {
    const error = thrownBy(() => validateId(id));
    expect(error).toBeInstanceOf(InvalidArgument);
    expect((error as InvalidArgument).code).toBe('WADI_INVALID_ARGUMENT');
  });
});

describe('validateBucketCount', () => {
  it('accepts integers from 1 to 2^20', () => {
    expect(validateBucketCount(1)).toBe(1);
    expect(validateBucketCount(DEFAULT_BUCKETS)).toBe(DEFAULT_BUCKETS);
    expect(validateBucketCount(1 << 20)).toBe(1 << 20);
  });

  it.each([0, -1, 1.5, (1 << 20) + 1, Number.NaN, Infinity, '8', null, undefined])('rejects %s', (value) => {
    expect(thrownBy(() => validateBucketCount(value))).toBeInstanceOf(InvalidArgument);
  });
});
