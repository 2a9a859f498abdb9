/**
 * How a session record is laid out at rest in the byte-oriented tiers (memory, LMDB): one
 * msgpackr value (core's codec: any process decodes it alone) followed by the CRC-32 of that
 * value, big-endian.
 *
 *   msgpack [FORMAT, type, id, bucket, version, epoch, updatedAt, state] ++ crc32
 *
 * The record names its own type and id, so bytes found under the wrong key (a misdirected
 * write, a hand copy) are refused like any other corruption. Decoding never trusts the bytes: a
 * checksum mismatch, a malformed value, an unknown format or a wrong key each throw
 * `RecordDecodeFailure` with the reason, which the tier turns into `CorruptRecord` + quarantine.
 */
import { DecodeError, decode, encodeView } from '@wadi/core';
import type { SessionMeta, SessionRecord } from '../tier.js';
import { crc32 } from './checksum.js';

const FORMAT = 1;
const CHECKSUM_BYTES = 4;

/** Bytes that are not a valid record for the key they were found under. */
export class RecordDecodeFailure extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}

export function encodeRecord(record: SessionRecord): Uint8Array {
  const body = encodeView([FORMAT, record.type, record.id, record.bucket, record.version, record.epoch, record.updatedAt, record.state]);
  // encodeView is msgpackr's reused buffer: copy it once, into the final value.
  const out = new Uint8Array(body.length + CHECKSUM_BYTES);
  out.set(body, 0);
  new DataView(out.buffer, out.byteOffset, out.byteLength).setUint32(body.length, crc32(body));
  return out;
}

/**
 * Decodes bytes found under key (type, id). The returned state is a copy: `bytes` may be a
 * buffer the caller reuses (LMDB's `getBinaryFast`).
 */
export function decodeRecord(bytes: Uint8Array, type: string, id: string): SessionRecord {
  if (bytes.length <= CHECKSUM_BYTES) throw new RecordDecodeFailure(`${bytes.length} bytes is too short for a record`);
  const bodyLength = bytes.length - CHECKSUM_BYTES;
  const body = bytes.subarray(0, bodyLength);
  const expected = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(bodyLength);
  const actual = crc32(body);
  if (actual !== expected) throw new RecordDecodeFailure(`checksum mismatch (stored ${hex(expected)}, computed ${hex(actual)})`);
  let value: unknown;
  try {
    value = decode(body);
  } catch (error) {
    throw new RecordDecodeFailure(error instanceof DecodeError ? error.message : String(error));
  }
  if (!Array.isArray(value) || value.length !== 8) throw new RecordDecodeFailure('not a record tuple');
  const [format, storedType, storedId, bucket, version, epoch, updatedAt, state] = value as unknown[];
  if (format !== FORMAT) throw new RecordDecodeFailure(`unknown record format ${String(format)}`);
  if (storedType !== type || storedId !== id) {
    throw new RecordDecodeFailure(`record of ${String(storedType)}/${String(storedId)} found under the key of ${type}/${id}`);
  }
  if (!isCount(bucket) || !isCount(version) || !isCount(epoch) || typeof updatedAt !== 'number' || !(state instanceof Uint8Array)) {
    throw new RecordDecodeFailure('record fields have the wrong types');
  }
  return { type, id, bucket, version, epoch, updatedAt, state };
}

export function metaOf(record: SessionRecord): SessionMeta {
  return {
    type: record.type,
    id: record.id,
    bucket: record.bucket,
    version: record.version,
    epoch: record.epoch,
    updatedAt: record.updatedAt,
    bytes: record.state.byteLength,
  };
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}
