/**
 * LMDB key layout of LmdbTier. Keys are lmdb-js ordered-binary arrays:
 *
 *   records     [type, id]          -> record bytes (record-codec); entry version = write stamp
 *   bucketIndex [bucket, type, id]  -> empty (membership; the record has the rest)
 *   fences      bucket              -> empty; entry version = the bucket's fence epoch
 *   fences      -1                  -> empty; entry version = a stamp renewed on every fence change
 *   quarantine  [at, stamp]         -> msgpack [type, id, reason, raw]
 *
 * LMDB keys are limited (lmdb-js: 1978 bytes) while an id may be up to 1024 characters of any
 * script, so an id whose key would be too long is replaced by its SHA-256 and the key gets a third
 * element: a hashed key can never equal a plain one. The bucket index then keeps the id (UTF-8)
 * in its value.
 */
import { createHash } from 'node:crypto';

/** Bytes of type + id (UTF-8) up to which the id is kept as is. */
const MAX_PLAIN_BYTES = 1000;

export type RecordKey = [string, string] | [string, string, 0];
export type IndexKey = [number, string, string] | [number, string, string, 0];

export function isHashed(type: string, id: string): boolean {
  // A UTF-16 unit is at most 3 UTF-8 bytes: skip the byte count for the usual short keys.
  if ((type.length + id.length) * 3 <= MAX_PLAIN_BYTES) return false;
  return Buffer.byteLength(type) + Buffer.byteLength(id) > MAX_PLAIN_BYTES;
}

function hashed(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

export function recordKey(type: string, id: string): RecordKey {
  return isHashed(type, id) ? [type, hashed(id), 0] : [type, id];
}

export function indexKey(bucket: number, type: string, id: string): IndexKey {
  return isHashed(type, id) ? [bucket, type, hashed(id), 0] : [bucket, type, id];
}

/** The first and past-the-last index keys of a bucket. */
export function bucketBounds(bucket: number): { start: [number]; end: [number] } {
  return { start: [bucket], end: [bucket + 1] };
}
