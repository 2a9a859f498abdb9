/**
 * LmdbTier: the tier contract over one LMDB environment (lmdb-js). A node's local-disk tier
 * (an environment in its data directory), and the default shared tier of nodes on one host (an
 * environment at a path they all open: LMDB is multi-process and multi-thread safe).
 *
 * Writes: lmdb-js runs write transactions on its own thread and batches everything queued in
 * one event turn into one transaction, so the tier never writes from the caller's thread.
 * Each write is an optimistic compare-and-set decided in JavaScript and checked atomically by
 * LMDB at commit: read the stored record and the bucket's fence, apply the acceptance rule
 * (internal/fencing.ts), then queue the puts inside two nested `ifVersion` conditions: "no fence
 * changed since I read them" (one per batch: every fence change also restamps a fence generation
 * entry) and "the record entry still carries the write stamp I read" (every write gives its
 * entry a fresh random stamp as its lmdb-js version). If another thread or process committed in
 * between, the condition fails, nothing is written, and the write is decided again against what
 * is now stored. So racing writers anywhere on the host can never make a stored version or epoch
 * go backwards, and a write can never slip under a fence. (lmdb-js checks the conditions on its
 * write thread, inside the transaction, so no JavaScript runs while the write lock is held.)
 *
 * Durability: lmdb-js resolves a write when its transaction commits (visible to every reader)
 * and syncs to disk afterwards (`overlappingSync`); `store` resolves only after `flushed`.
 *
 * Reads are synchronous (`loadSync`, `findSync`) from a read transaction that lmdb-js renews
 * every event turn; the tier resets it before each read so a record another thread or process
 * committed is seen at once. Bucket listings read a page at a time, so no read transaction stays
 * open while the caller awaits (a long read transaction pins old pages and grows the file).
 *
 * Disk full: lmdb-js grows the map by itself, so the limit that bites is the file system's
 * (ENOSPC, EDQUOT, EFBIG under RLIMIT_FSIZE). The failed transaction writes nothing; the writes
 * in it reject with `StoreFull`; everything committed before stays readable and later writes
 * work again once there is room.
 */
import { mkdirSync } from 'node:fs';
import { Stopped, Unavailable, decode, encode } from '@wadi/core';
import { getLastVersion, open, type Database, type Key, type RootDatabase } from 'lmdb';
import { CorruptRecord } from './errors.js';
import { removeRefusal, writeRefusal } from './internal/fencing.js';
import { bucketBounds, indexKey, isHashed, recordKey, type IndexKey, type RecordKey } from './internal/lmdb-keys.js';
import { RecordDecodeFailure, decodeRecord, encodeRecords, metaOf } from './internal/record-codec.js';
import { storageError } from './internal/storage-errors.js';
import { checkBucket, checkEpoch, checkKey, checkRecord, checkRemoveFence, recordError } from './internal/validate.js';
import type { QuarantinedRecord, RemoveFence, SessionMeta, SessionRecord, SyncReadTier } from './tier.js';

export interface LmdbTierOptions {
  /** Directory of the environment (created if missing). */
  path: string;
  /** The tier's name in errors and stats; defaults to 'lmdb'. */
  name?: string;
  /** Initial size of the memory map in bytes; lmdb-js grows it as the data grows. */
  mapSize?: number;
}

/** Layout version of the environment, kept in its `meta` database. */
const FORMAT = 1;
/** Index entries read per page by `listBucket` (one short read transaction each). */
const LIST_PAGE = 512;
/** A write decided again this many times in a row gives up (each retry means another writer won). */
const MAX_ATTEMPTS = 1000;
const EMPTY = Buffer.alloc(0);
/** Key, in the fences database, of the entry whose version changes with every fence change. */
const FENCE_GENERATION = -1;

/** What a write saw: the stored entry's stamp and record (or the reason it did not decode). */
interface Current {
  /** lmdb-js entry version of the record, null when absent. */
  stamp: number | null;
  record: SessionRecord | undefined;
  corrupt: { reason: string; raw: Uint8Array } | undefined;
}

/** lmdb-js reads `null` as "the entry does not exist" in `ifVersion`; its typings only say number. */
const ABSENT = null as unknown as number;

export class LmdbTier implements SyncReadTier {
  readonly name: string;
  readonly durability = 'when store() resolves: committed and synced to disk (lmdb-js flushed); survives a process or machine crash';
  readonly path: string;
  readonly #env: RootDatabase;
  readonly #records: Database<Buffer, Key>;
  readonly #index: Database<Buffer, Key>;
  readonly #fences: Database<Buffer, Key>;
  readonly #quarantine: Database<Buffer, Key>;
  /** Operations in flight, awaited by `close` (and quarantine moves, awaited by `quarantined`). */
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed = false;
  #commitGuarded = false;
  #fenceCache: { generation: number | undefined; epochs: Map<number, number> } = { generation: undefined, epochs: new Map() };

  constructor(options: LmdbTierOptions) {
    this.name = options.name ?? 'lmdb';
    this.path = options.path;
    mkdirSync(options.path, { recursive: true });
    this.#env = open({ path: options.path, ...(options.mapSize === undefined ? {} : { mapSize: options.mapSize }), maxDbs: 8, batchStartThreshold: 1e9 } as Parameters<typeof open>[0]);
    const binary = { encoding: 'binary' as const };
    this.#records = this.#env.openDB<Buffer, Key>({ name: 'records', ...binary, useVersions: true });
    this.#index = this.#env.openDB<Buffer, Key>({ name: 'bucketIndex', ...binary });
    this.#fences = this.#env.openDB<Buffer, Key>({ name: 'fences', ...binary, useVersions: true });
    this.#quarantine = this.#env.openDB<Buffer, Key>({ name: 'quarantine', ...binary });
    this.#checkFormat();
  }

  // Reads

  findSync(type: string, id: string): SessionMeta | undefined {
    const record = this.loadSync(type, id);
    return record === undefined ? undefined : metaOf(record);
  }

  loadSync(type: string, id: string): SessionRecord | undefined {
    this.#ensureOpen();
    checkKey(type, id);
    this.#env.resetReadTxn();
    const current = this.#read(type, id, recordKey(type, id));
    if (current.corrupt !== undefined) {
      this.#track(this.#moveAside(type, id, current));
      throw new CorruptRecord(type, id, this.name, current.corrupt.reason);
    }
    return current.record;
  }

  async find(type: string, id: string): Promise<SessionMeta | undefined> {
    return this.findSync(type, id);
  }

  async load(type: string, id: string): Promise<SessionRecord | undefined> {
    return this.loadSync(type, id);
  }

  async *listBucket(bucket: number): AsyncIterable<SessionMeta> {
    this.#ensureOpen();
    checkBucket(bucket);
    const { start, end } = bucketBounds(bucket);
    let from: Key = start;
    let exclusiveStart = false;
    for (;;) {
      this.#env.resetReadTxn();
      const keys: IndexKey[] = [];
      const metas: SessionMeta[] = [];
      for (const { key, value } of this.#index.getRange({ start: from, end, exclusiveStart, limit: LIST_PAGE })) {
        const ikey = key as IndexKey;
        keys.push(ikey);
        const type = ikey[1];
        // A hashed key keeps the id in the entry's value.
        const id = ikey.length === 4 ? value.toString('utf8') : ikey[2];
        const current = this.#read(type, id, recordKey(type, id), false);
        if (current.record !== undefined) metas.push(metaOf(current.record));
        else if (current.corrupt !== undefined) this.#track(this.#moveAside(type, id, current));
        else this.#dropOrphan(ikey, recordKey(type, id));
      }
      // Copied out: the caller may take its time, no read transaction waits for it.
      yield* metas;
      if (keys.length < LIST_PAGE) return;
      from = keys[keys.length - 1]!;
      exclusiveStart = true;
    }
  }

  /**
   * Removes an index entry whose record is gone (left when a record was quarantined by a read:
   * its bucket was unknown), unless the record was stored again meanwhile.
   */
  #dropOrphan(ikey: IndexKey, rkey: RecordKey): void {
    this.#track(quiet(this.#records.ifVersion(rkey, ABSENT, () => void quiet(this.#index.remove(ikey)))));
    this.#guardCommit();
  }

  async *quarantined(): AsyncIterable<QuarantinedRecord> {
    this.#ensureOpen();
    await Promise.allSettled([...this.#inFlight]);
    this.#env.resetReadTxn();
    const entries: QuarantinedRecord[] = [];
    for (const { key, value } of this.#quarantine.getRange({})) {
      const [type, id, reason, raw] = decode(Buffer.from(value)) as [string, string, string, Uint8Array];
      entries.push({ type, id, reason, bytes: raw.byteLength, at: (key as [number, number])[0], raw });
    }
    yield* entries;
  }

  async count(): Promise<number> {
    this.#ensureOpen();
    this.#env.resetReadTxn();
    return (this.#records.getStats() as { entryCount: number }).entryCount;
  }

  // Writes

  async store(record: SessionRecord): Promise<void> {
    checkRecord(record);
    const [outcome] = await this.storeMany([record]);
    if (outcome !== undefined) throw outcome;
  }

  async storeMany(records: readonly SessionRecord[]): Promise<Array<Error | undefined>> {
    this.#ensureOpen();
    return this.#track(this.#storeMany(records));
  }

  async remove(type: string, id: string, fence: RemoveFence): Promise<boolean> {
    this.#ensureOpen();
    checkKey(type, id);
    checkRemoveFence(fence);
    return this.#track(this.#remove(type, id, fence));
  }

  async fence(bucket: number, epoch: number): Promise<void> {
    this.#ensureOpen();
    checkBucket(bucket);
    checkEpoch(epoch);
    await this.#track(this.#raiseFence(bucket, epoch));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
    await this.#env.close();
  }

  async #storeMany(records: readonly SessionRecord[]): Promise<Array<Error | undefined>> {
    const outcomes: Array<Error | undefined> = records.map((record) => recordError(record));
    let pending = records.map((_, i) => i).filter((i) => outcomes[i] === undefined);
    let wrote = false;
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt >= MAX_ATTEMPTS) {
        for (const i of pending) outcomes[i] = contention(records[i]!);
        break;
      }
      // See what other threads and processes committed since this thread's snapshot.
      this.#env.resetReadTxn();
      const generation = this.#fenceGeneration();
      // Decide and encode everything first, then queue the conditional writes in one tight
      // loop: lmdb-js's write thread may start on a batch while it is still being queued.
      const accepted: Array<{ index: number; key: RecordKey; current: Current }> = [];
      for (const index of pending) {
        const record = records[index]!;
        const key = recordKey(record.type, record.id);
        const current = this.#read(record.type, record.id, key, false);
        const refusal = writeRefusal(record.type, record.id, record, current.record, this.#fenceOf(record.bucket, generation));
        if (refusal === undefined) accepted.push({ index, key, current });
        else outcomes[index] = refusal;
      }
      const values = encodeRecords(accepted.map((a) => records[a.index]!));
      const attempts = accepted.map(({ index, key, current }, k) => {
        const record = records[index]!;
        const committed = this.#conditionally(key, current.stamp, generation, () => {
          quiet(this.#records.put(key, values[k]!, newStamp()));
          // Bucket membership: the same for every version of the record.
          quiet(this.#index.put(indexKey(record.bucket, record.type, record.id), indexValue(record.type, record.id)));
          if (current.corrupt !== undefined) this.#putQuarantine(record.type, record.id, current.corrupt);
        });
        return { index, committed };
      });
      // Conditions that failed are decided again; commit failures are final for their records.
      const settled = await Promise.allSettled(attempts.map((a) => a.committed));
      pending = [];
      for (let k = 0; k < attempts.length; k++) {
        const { index } = attempts[k]!;
        const result = settled[k]!;
        if (result.status === 'rejected') outcomes[index] = await storageError(result.reason, this.name);
        else if (result.value) wrote = true;
        else pending.push(index);
      }
    }
    if (wrote) await this.#flushed(outcomes);
    return outcomes;
  }

  async #remove(type: string, id: string, claim: RemoveFence): Promise<boolean> {
    const key = recordKey(type, id);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      this.#env.resetReadTxn();
      const current = this.#read(type, id, key, false);
      if (current.stamp === null) return false;
      if (current.corrupt !== undefined) {
        // Nothing readable to remove: the bytes go to quarantine, the session reads as absent.
        await this.#moveAside(type, id, current);
        return false;
      }
      const stored = current.record!;
      const generation = this.#fenceGeneration();
      const refusal = removeRefusal(type, id, claim, stored, this.#fenceOf(stored.bucket, generation));
      if (refusal !== undefined) throw refusal;
      const committed = this.#conditionally(key, current.stamp, generation, () => {
        quiet(this.#records.remove(key));
        quiet(this.#index.remove(indexKey(stored.bucket, type, id)));
      });
      if (await this.#settle(committed)) {
        await this.#flushedOrThrow();
        return true;
      }
    }
    throw contention({ type, id });
  }

  async #raiseFence(bucket: number, epoch: number): Promise<void> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      this.#env.resetReadTxn();
      const generation = this.#fenceGeneration();
      if (this.#fenceOf(bucket, generation) >= epoch) return;
      // A new generation stamp makes every write decided against the old fences try again.
      const committed = this.#fences.ifVersion(FENCE_GENERATION, generation, () => {
        quiet(this.#fences.put(bucket, EMPTY, epoch));
        quiet(this.#fences.put(FENCE_GENERATION, EMPTY, newStamp()));
      });
      this.#guardCommit();
      if (await this.#settle(committed)) {
        await this.#flushedOrThrow();
        return;
      }
    }
    throw new Unavailable(`fence of bucket ${bucket} in tier ${this.name}: too much contention`);
  }

  /**
   * Queues `writes` to run in the next write transaction only if the record entry still carries
   * the stamp that was read (`stamp`; null = absent) and no fence changed since the fences were
   * read (every fence change renews the fence generation's stamp, so one entry covers every
   * bucket). Resolves true if both held and the writes committed, false if not (nothing written).
   *
   * The record's condition is the outer one on purpose: in lmdb-js 3.5 an "absent" condition
   * (IF_NO_EXISTS) nested inside another block overrides that block's failure for what follows
   * it, so such a condition only ever appears at the top level here.
   */
  #conditionally(key: RecordKey, stamp: number | null, generation: number, writes: () => void): Promise<boolean> {
    let fencesHeld: Promise<boolean> | undefined;
    const recordHeld = this.#records.ifVersion(key, stamp ?? ABSENT, () => {
      fencesHeld = this.#fences.ifVersion(FENCE_GENERATION, generation, writes);
    });
    this.#guardCommit();
    // A nested block reports only its own condition: both must hold.
    return Promise.all([recordHeld, fencesHeld!]).then(([a, b]) => a && b);
  }

  /** The fence generation's stamp in this thread's read transaction (the entry exists from open on). */
  #fenceGeneration(): number {
    if (this.#fences.getBinaryFast(FENCE_GENERATION) === undefined) throw new Unavailable(`tier ${this.name}: fence generation entry missing`);
    return getLastVersion();
  }

  /**
   * lmdb-js starts each event turn's transaction with a write of its own whose promise
   * (`committed`) nobody holds; when the commit fails (disk full) it would be an unhandled
   * rejection. lmdb-js creates it in a setImmediate queued by the turn's first write, so a
   * setImmediate queued after ours runs after it and can take hold of it.
   */
  #guardCommit(): void {
    if (this.#commitGuarded) return;
    this.#commitGuarded = true;
    setImmediate(() => {
      this.#commitGuarded = false;
      quiet(this.#records.committed);
    });
  }

  /** Moves the corrupt bytes of `current` aside, if they are still what is stored. */
  async #moveAside(type: string, id: string, current: Current): Promise<void> {
    const key = recordKey(type, id);
    const committed = this.#records.ifVersion(key, current.stamp!, () => {
      this.#putQuarantine(type, id, current.corrupt!);
      quiet(this.#records.remove(key));
    });
    this.#guardCommit();
    if (await this.#settle(committed)) await this.#flushedOrThrow();
  }

  #putQuarantine(type: string, id: string, corrupt: { reason: string; raw: Uint8Array }): void {
    const entry = encode([type, id, corrupt.reason, corrupt.raw]);
    quiet(this.#quarantine.put([Date.now(), newStamp()], asBuffer(entry)));
  }

  /**
   * The record stored under `key`, read in this thread's read transaction; without its state
   * unless `withState` (deciding a write or listing needs only the rest).
   */
  #read(type: string, id: string, key: RecordKey, withState = true): Current {
    const raw = this.#records.getBinaryFast(key);
    if (raw === undefined) return { stamp: null, record: undefined, corrupt: undefined };
    // The stamp of the entry just read; must be taken before any other read.
    const stamp = getLastVersion();
    try {
      return { stamp, record: decodeRecord(raw, type, id, withState), corrupt: undefined };
    } catch (error) {
      if (!(error instanceof RecordDecodeFailure)) throw error;
      // getBinaryFast's buffer is reused by the next read: keep a copy of the evidence.
      // (Its `length` is the entry's size; the typed array behind it is larger: copy by `length`.)
      return { stamp, record: undefined, corrupt: { reason: error.reason, raw: Uint8Array.from(raw.subarray(0, raw.length)) } };
    }
  }

  /**
   * The bucket's fence epoch (0 when never raised) as of fence generation `generation`. Fences
   * read under one generation stay valid until it changes, so they are cached per generation:
   * a write reads one entry (the generation) instead of one per bucket.
   */
  #fenceOf(bucket: number, generation: number): number {
    if (this.#fenceCache.generation !== generation) this.#fenceCache = { generation, epochs: new Map() };
    let epoch = this.#fenceCache.epochs.get(bucket);
    if (epoch === undefined) {
      epoch = this.#fences.getBinaryFast(bucket) === undefined ? 0 : getLastVersion();
      this.#fenceCache.epochs.set(bucket, epoch);
    }
    return epoch;
  }

  /** A commit's outcome, with storage failures turned into the store's errors. */
  async #settle(committed: Promise<boolean>): Promise<boolean> {
    try {
      return await committed;
    } catch (error) {
      throw await storageError(error, this.name);
    }
  }

  async #flushedOrThrow(): Promise<void> {
    try {
      await this.#env.flushed;
    } catch (error) {
      throw await storageError(error, this.name);
    }
  }

  /** Waits until what committed is on disk; if syncing failed, every write of the batch failed. */
  async #flushed(outcomes: Array<Error | undefined>): Promise<void> {
    try {
      await this.#env.flushed;
    } catch (error) {
      const failure = await storageError(error, this.name);
      for (let i = 0; i < outcomes.length; i++) outcomes[i] ??= failure;
    }
  }

  #checkFormat(): void {
    const meta = this.#env.openDB<unknown, Key>({ name: 'meta' });
    const format = meta.get('format');
    if (format === undefined) meta.putSync('format', FORMAT);
    else if (format !== FORMAT) {
      throw new Unavailable(`tier ${this.name} at ${this.path} has layout format ${String(format)}; this version reads format ${FORMAT}`);
    }
    // Writes condition on the fence generation's stamp, so the entry must always exist (another
    // process opening at the same time may create it too: either stamp will do).
    if (this.#fences.get(FENCE_GENERATION) === undefined) this.#fences.putSync(FENCE_GENERATION, EMPTY, newStamp());
  }

  #track<T>(operation: Promise<T>): Promise<T> {
    this.#inFlight.add(operation);
    const forget = (): void => void this.#inFlight.delete(operation);
    operation.then(forget, forget);
    return operation;
  }

  #ensureOpen(): void {
    if (this.#closed) throw new Stopped(`tier ${this.name} is closed`);
  }
}

/** A random stamp below 2^52: two writes of one key never share one in practice. */
function newStamp(): number {
  return Math.floor(Math.random() * 2 ** 52) + 1;
}

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** The bucket index entry's value: empty, or the id when the key holds its hash. */
function indexValue(type: string, id: string): Buffer {
  return isHashed(type, id) ? Buffer.from(id, 'utf8') : EMPTY;
}

function contention(record: { type: string; id: string }): Unavailable {
  return new Unavailable(`write of ${record.type}/${record.id}: decided ${MAX_ATTEMPTS} times, another writer won each time`);
}

/**
 * lmdb-js write promises that nobody awaits must not become unhandled rejections (a failed
 * commit rejects every promise of its transaction, and its `commitError` too).
 */
function quiet<T>(promise: T): T {
  // lmdb-js returns its own promise-likes from writes inside a conditional block.
  const then = (promise as { then?: unknown } | null | undefined)?.then;
  if (typeof then === 'function') {
    (then as (onFulfilled: undefined, onRejected: (error: unknown) => void) => unknown).call(promise, undefined, (error: unknown) => {
      const commitError = (error as { commitError?: { catch?: unknown } } | undefined)?.commitError;
      if (typeof commitError?.catch === 'function') (commitError as Promise<unknown>).catch(() => undefined);
    });
  }
  return promise;
}
