/**
 * Session ids, groups and buckets: the placement rule every process must compute identically.
 *
 * Group rule: the group of an id is the text before its first '/', or the whole id when it has
 * none. `alice/cart` and `alice/profile` share group `alice`, so they share a bucket and a node
 * (WADI's ApplicationSession); `alice` alone is group `alice` too.
 *
 * Hash: MurmurHash3 x86 32-bit, seed 0, over the UTF-8 bytes of the group. It is fixed by this
 * module, not by the JavaScript engine, so it is stable across processes, machines and versions;
 * changing it would move every session, so it is part of the wire protocol.
 */
import { InvalidArgument } from './errors.js';

export const DEFAULT_BUCKETS = 1024;
export const MAX_ID_LENGTH = 1024;
export const GROUP_SEPARATOR = '/';

const utf8 = new TextEncoder();

export function groupOf(id: string): string {
  const separator = id.indexOf(GROUP_SEPARATOR);
  return separator === -1 ? id : id.slice(0, separator);
}

export function bucketOf(id: string, buckets: number): number {
  const separator = id.indexOf(GROUP_SEPARATOR);
  const end = separator === -1 ? id.length : separator;
  if (end > MAX_SCRATCH_UNITS) return murmur3(utf8.encode(id.slice(0, end))) % buckets;
  return murmur3(scratch, 0, utf8Into(id, end)) % buckets;
}

/**
 * Every call to a session computes its bucket, on the caller's thread and again where it lands,
 * and encoding the group into a new array costs several times the hash: the bytes go into this
 * buffer instead. Groups of ids up to MAX_ID_LENGTH fit (3 bytes per UTF-16 unit at most);
 * longer ones (only from a malformed frame) are encoded the ordinary way.
 */
const MAX_SCRATCH_UNITS = MAX_ID_LENGTH;
const scratch = new Uint8Array(3 * MAX_SCRATCH_UNITS);

/** Writes the UTF-8 bytes of `text.slice(0, end)` into `scratch`; returns their count. */
function utf8Into(text: string, end: number): number {
  for (let i = 0; i < end; i++) {
    const code = text.charCodeAt(i);
    // Not ASCII: let the platform's encoder do it (surrogate pairs, lone surrogates as U+FFFD).
    if (code >= 0x80) return utf8.encodeInto(text.slice(0, end), scratch).written;
    scratch[i] = code;
  }
  return end;
}

export function validateId(id: unknown): string {
  if (typeof id !== 'string' || id.length === 0) {
    throw new InvalidArgument(`an actor id must be a non-empty string, got ${typeof id === 'string' ? 'an empty string' : typeof id}`);
  }
  if (id.length > MAX_ID_LENGTH) {
    throw new InvalidArgument(`an actor id must be at most ${MAX_ID_LENGTH} characters, got ${id.length}`);
  }
  if (id.startsWith(GROUP_SEPARATOR)) {
    throw new InvalidArgument(`actor id '${id}' has an empty group: it must not start with '${GROUP_SEPARATOR}'`);
  }
  // A lone surrogate becomes U+FFFD in UTF-8 (the codec, the stores): two such ids would be one actor.
  if (LONE_SURROGATE.test(id)) {
    throw new InvalidArgument(`actor id ${JSON.stringify(id)} is not well-formed Unicode: it has a lone surrogate at ${id.search(LONE_SURROGATE)}`);
  }
  return id;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function validateBucketCount(buckets: unknown): number {
  if (!Number.isInteger(buckets) || (buckets as number) < 1 || (buckets as number) > 1 << 20) {
    throw new InvalidArgument(`the bucket count must be an integer from 1 to ${1 << 20}, got ${String(buckets)}`);
  }
  return buckets as number;
}

/**
 * MurmurHash3, x86 32-bit variant, as published by Austin Appleby (public domain algorithm), of
 * the first `length` bytes.
 */
export function murmur3(bytes: Uint8Array, seed = 0, length = bytes.length): number {
  const c1 = 0xcc9e2d51;
  const c2 = 0x1b873593;
  let h = seed >>> 0;
  const blocks = length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) >>> 0;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
  }
  const tail = length & 3;
  if (tail > 0) {
    let k = 0;
    if (tail === 3) k ^= bytes[blocks + 2]! << 16;
    if (tail >= 2) k ^= bytes[blocks + 1]! << 8;
    k ^= bytes[blocks]!;
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
  }
  h ^= length;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
