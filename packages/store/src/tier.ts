/**
 * The tier contract: what every level of the store stack (memory, local disk, shared store)
 * promises its caller, and the record shapes it stores. Implementations: `MemoryTier`,
 * `LmdbTier`, `PostgresTier`; one behavioural suite (test/tier-suite.ts) holds them all to it.
 *
 * Ordering and fencing, the same in every tier:
 * - A session's record carries the session's `version` and the `epoch` (fencing token) its
 *   writer holds for the session's bucket. A write is accepted only if
 *   `version >= stored.version`, `epoch >= stored.epoch` and `epoch >= fence(bucket)`; an equal
 *   version is accepted again, so a retried write is harmless.
 * - A remove carries the version and epoch of the copy its caller means to remove: it is refused
 *   if the stored copy is newer (a higher version or epoch) or the epoch is below the fence.
 * - `fence(bucket, epoch)` only ever raises a bucket's fence.
 * Refusals reject with `StaleWrite`; a decision is made against the latest committed state, so
 * racing writers (threads, processes, nodes) can never make a stored version go backwards.
 */

/** The role of a tier in a node's stack (a tier's `name` says what implements it). */
export type TierName = 'memory' | 'disk' | 'shared';

export interface SessionRecord {
  /** Actor type name. */
  type: string;
  /** Session id. */
  id: string;
  /** Bucket of the session's group, so a bucket's sessions can be listed (`listBucket`). */
  bucket: number;
  /** Session version: a write below the stored version is refused; an equal one is a retry. */
  version: number;
  /** Bucket epoch (fencing token) the writer holds; a write below the bucket's fence is refused. */
  epoch: number;
  /** Encoded state, opaque to the store. */
  state: Uint8Array;
  /** Wall-clock milliseconds of the write. */
  updatedAt: number;
  /**
   * Wall-clock milliseconds after which the session is not worth keeping (its type's
   * `expiresAt`); absent: never. Tiers only keep it: the node that parks a session drops it once
   * expired, with a remove fenced like any other.
   */
  expiresAt?: number;
}

/** A record without its state, plus the state's size in bytes. */
export type SessionMeta = Omit<SessionRecord, 'state'> & { bytes: number };

/** What a remove claims to remove: refused if the stored copy is newer or the epoch is fenced. */
export interface RemoveFence {
  version: number;
  epoch: number;
  /**
   * Remove only a copy that expires at or before this (wall-clock ms): an expiry sweep's remove,
   * which must leave a copy written since with a later expiry, even under the same version.
   */
  expiredBy?: number;
}

/** Bytes that failed to decode, moved aside by the tier that found them. Never deleted. */
export interface QuarantinedRecord {
  type: string;
  id: string;
  /** Why the bytes were refused (checksum mismatch, malformed, wrong key...). */
  reason: string;
  /** Size of `raw`. */
  bytes: number;
  /** Wall-clock milliseconds when the record was moved aside. */
  at: number;
  /** The bytes exactly as they were found. */
  raw: Uint8Array;
}

export interface Tier {
  /** What implements the tier: 'memory', 'lmdb', 'postgres', or a name given at open. */
  readonly name: string;
  /** One line: when a resolved write is durable. */
  readonly durability: string;
  /** The record's metadata, or undefined. Rejects `CorruptRecord` like `load`. */
  find(type: string, id: string): Promise<SessionMeta | undefined>;
  /**
   * The record, or undefined. Rejects `CorruptRecord` naming the session when its bytes do not
   * decode; the bytes are then moved to quarantine (never deleted) and the session reads as absent.
   */
  load(type: string, id: string): Promise<SessionRecord | undefined>;
  /** Resolves once the write is durable (see `durability`). Rejects `StaleWrite` or `StoreFull`. */
  store(record: SessionRecord): Promise<void>;
  /** Batched `store`: one outcome per record, in order (undefined = stored durably). */
  storeMany(records: readonly SessionRecord[]): Promise<Array<Error | undefined>>;
  /** true if removed, false if absent; rejects `StaleWrite` if the stored copy is newer or fenced. */
  remove(type: string, id: string, fence: RemoveFence): Promise<boolean>;
  /** The metadata of every session of a bucket, in pages (no long-lived read transaction). */
  listBucket(bucket: number): AsyncIterable<SessionMeta>;
  /** Raises a bucket's minimum epoch (never lowers it); durable when resolved. */
  fence(bucket: number, epoch: number): Promise<void>;
  /** Every record moved aside because it did not decode. */
  quarantined(): AsyncIterable<QuarantinedRecord>;
  /** Number of sessions stored. */
  count(): Promise<number>;
  /** Waits for writes in flight, then releases the tier's resources. */
  close(): Promise<void>;
}

/** A tier that can also read without waiting for a tick (LMDB reads are synchronous). */
export interface SyncReadTier extends Tier {
  findSync(type: string, id: string): SessionMeta | undefined;
  loadSync(type: string, id: string): SessionRecord | undefined;
}
