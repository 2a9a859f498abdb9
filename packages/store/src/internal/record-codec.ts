/**
 * How a session record is laid out at rest in the byte-oriented tiers (memory, LMDB):
 *
 *   u32 header length | msgpack [FORMAT, type, id, bucket, version, epoch, updatedAt, expiresAt?] | state | u32 crc32
 *
 * (big-endian). The header is msgpackr (core's codec: any process decodes it alone); the state
 * is already encoded bytes, opaque to the store, so it is appended as is instead of being
 * wrapped again (msgpack framing of a 1 KiB state cost more than all the rest of a write). The
 * CRC-32 covers everything before it.
 *
 * The record names its own type and id, so bytes found under the wrong key (a misdirected
 * write, a hand copy) are refused like any other corruption. Decoding never trusts the bytes: a
 * checksum mismatch, a malformed header, an unknown format or a wrong key each throw
 * `RecordDecodeFailure` with the reason, which the tier turns into `CorruptRecord` + quarantine.
 */
import { DecodeError, decode, encodeView } from '@wadi/core';
import type { SessionMeta, SessionRecord } from '../tier.js';
import { crc32 } from './checksum.js';

const FORMAT = 1;
const LENGTH_BYTES = 4;
const CHECKSUM_BYTES = 4;

/** Bytes that are not a valid record for the key they were found under. */
export class RecordDecodeFailure extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

/** Encodes one record into a buffer of its own. */
export function encodeRecord(record: SessionRecord): Buffer {
  return encodeRecords([record])[0]!;
}

/**
 * Encodes records into views of one buffer allocated for the batch: a write of a thousand
 * sessions makes one allocation, not a thousand (each of them pressure on the garbage collector).
 */
export function encodeRecords(records: readonly SessionRecord[]): Buffer[] {
  // encodeView returns msgpackr's reused buffer: each header is copied before the next encode.
  const headers = records.map((r) =>
    Buffer.from(encodeView(r.expiresAt === undefined ? [FORMAT, r.type, r.id, r.bucket, r.version, r.epoch, r.updatedAt] : [FORMAT, r.type, r.id, r.bucket, r.version, r.epoch, r.updatedAt, r.expiresAt])),
  );
  let total = 0;
  for (let i = 0; i < records.length; i++) total += LENGTH_BYTES + headers[i]!.length + records[i]!.state.length + CHECKSUM_BYTES;
  const pool = Buffer.allocUnsafe(total);
  const out: Buffer[] = [];
  let at = 0;
  for (let i = 0; i < records.length; i++) {
    const header = headers[i]!;
    const state = records[i]!.state;
    const stateAt = at + LENGTH_BYTES + header.length;
    const crcAt = stateAt + state.length;
    pool.writeUInt32BE(header.length, at);
    pool.set(header, at + LENGTH_BYTES);
    pool.set(state, stateAt);
    pool.writeUInt32BE(crc32(pool.subarray(at, crcAt)), crcAt);
    out.push(pool.subarray(at, crcAt + CHECKSUM_BYTES));
    at = crcAt + CHECKSUM_BYTES;
  }
  return out;
}

/**
 * Decodes bytes found under key (type, id). The returned state is a copy (`bytes` may be a
 * buffer the caller reuses, like LMDB's `getBinaryFast`), unless `copyState` is false: then it
 * is a view into `bytes`, for callers that only look at the metadata before the next read.
 */
export function decodeRecord(bytes: Uint8Array, type: string, id: string, copyState = true): SessionRecord {
  if (bytes.length < LENGTH_BYTES + CHECKSUM_BYTES + 1) throw new RecordDecodeFailure(`${bytes.length} bytes is too short for a record`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const crcAt = bytes.length - CHECKSUM_BYTES;
  const expected = view.getUint32(crcAt);
  const actual = crc32(bytes.subarray(0, crcAt));
  if (actual !== expected) throw new RecordDecodeFailure(`checksum mismatch (stored ${hex(expected)}, computed ${hex(actual)})`);
  const headerLength = view.getUint32(0);
  const stateAt = LENGTH_BYTES + headerLength;
  if (stateAt > crcAt) throw new RecordDecodeFailure(`header of ${headerLength} bytes overruns the record`);
  let header: unknown;
  try {
    header = decode(bytes.subarray(LENGTH_BYTES, stateAt));
  } catch (error) {
    throw new RecordDecodeFailure(error instanceof DecodeError ? error.message : String(error));
  }
  // Records written before sessions could expire have no eighth field.
  if (!Array.isArray(header) || (header.length !== 7 && header.length !== 8)) throw new RecordDecodeFailure('not a record header');
  const [format, storedType, storedId, bucket, version, epoch, updatedAt, expiresAt] = header as unknown[];
  if (format !== FORMAT) throw new RecordDecodeFailure(`unknown record format ${String(format)}`);
  if (storedType !== type || storedId !== id) {
    throw new RecordDecodeFailure(`record of ${String(storedType)}/${String(storedId)} found under the key of ${type}/${id}`);
  }
  if (!isCount(bucket) || !isCount(version) || !isCount(epoch) || typeof updatedAt !== 'number' || (expiresAt !== undefined && typeof expiresAt !== 'number')) {
    throw new RecordDecodeFailure('record fields have the wrong types');
  }
  const state = bytes.subarray(stateAt, crcAt);
  const record: SessionRecord = { type, id, bucket, version, epoch, updatedAt, state: copyState ? pooledCopy(state) : state };
  if (expiresAt !== undefined) record.expiresAt = expiresAt;
  return record;
}

/**
 * A copy of `bytes` as a plain Uint8Array. Buffer.from carves a copy under 4 KiB out of Node's
 * shared buffer pool, where a fresh Uint8Array costs an allocation of its own outside the heap:
 * that allocation was a tenth of a promotion from disk.
 */
function pooledCopy(bytes: Uint8Array): Uint8Array {
  const copy = Buffer.from(bytes);
  return new Uint8Array(copy.buffer, copy.byteOffset, copy.byteLength);
}

/** The record's metadata (undefined for no record). */
export function metaOf(record: SessionRecord): SessionMeta;
export function metaOf(record: SessionRecord | undefined): SessionMeta | undefined;
export function metaOf(record: SessionRecord | undefined): SessionMeta | undefined {
  if (record === undefined) return undefined;
  const meta: SessionMeta = {
    type: record.type,
    id: record.id,
    bucket: record.bucket,
    version: record.version,
    epoch: record.epoch,
    updatedAt: record.updatedAt,
    bytes: record.state.byteLength,
  };
  if (record.expiresAt !== undefined) meta.expiresAt = record.expiresAt;
  return meta;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
