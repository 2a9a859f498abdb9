/**
 * LmdbTier: the tier contract over one LMDB environment (lmdb-js). A node's local-disk tier
 * (an environment in its data directory), and the default shared tier of nodes on one host (an
 * environment at a path they all open: LMDB is multi-process and multi-thread safe).
 *
 * Writes: every write (a `storeMany` batch, a remove, a fence) is decided inside the LMDB write
 * transaction that applies it, in an lmdb-js asynchronous transaction callback: lmdb-js takes
 * the environment's write lock on its own thread (so the caller never blocks waiting for it),
 * then runs the callback on the caller's thread, where reads see the latest committed state of
 * every thread and process plus the transaction's own writes. The acceptance rule
 * (internal/fencing.ts) is applied there against the stored record and the bucket's fence, so
 * racing writers anywhere on the host can never make a stored version or epoch go backwards, and
 * no write can slip under a fence. The records are encoded before the callback, so the lock is
 * held only for the reads and puts; lmdb-js commits on its write thread.
 *
 * Durability: lmdb-js resolves a transaction when it commits (visible to every reader) and syncs
 * to disk afterwards (`overlappingSync`); `store` resolves only after `flushed`.
 *
 * Reads are synchronous (`loadSync`, `findSync`) from a read transaction (a snapshot) that the
 * tier renews at the first read of each callback the event loop runs, so a record another thread
 * or process committed is seen at once: a thread can only learn of someone else's commit through
 * a callback (a message, a socket read, lmdb-js resolving a commit), and Node drains the
 * microtasks between two callbacks, which is when the tier lets its snapshot go. Reads of one
 * callback share one snapshot: renewing it per read cost as much as the read (lmdb-js arms a
 * timer with every renewal). Bucket listings read a page at a time, so no read transaction stays
 * open while the caller awaits (a long read transaction pins old pages and grows the file).
 *
 * Disk full: lmdb-js grows the map by itself, so the limit that bites is the file system's
 * (ENOSPC, EDQUOT, EFBIG under RLIMIT_FSIZE). The failed transaction writes nothing; the writes
 * in it reject with `StoreFull`; everything committed before stays readable and later writes
 * work again once there is room.
 */
import { mkdirSync } from 'node:fs';
import { Stopped, Unavailable, decode, encode } from '@wadi/core';
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { CorruptRecord, type StaleWrite } from './errors.js';
import { removeRefusal, writeRefusal } from './internal/fencing.js';
import { bucketBounds, indexKey, isHashed, recordKey, type IndexKey, type RecordKey } from './internal/lmdb-keys.js';
import { RecordDecodeFailure, decodeRecord, encodeRecords, metaOf } from './internal/record-codec.js';
import { storageError } from './internal/storage-errors.js';
import { checkBucket, checkEpoch, checkKey, checkRemoveFence, recordError, storeOne } from './internal/validate.js';
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
const EMPTY = Buffer.alloc(0);

/** What is stored under a key: a record, bytes that do not decode, or nothing. */
interface Current {
  record: SessionRecord | undefined;
  corrupt: { reason: string; raw: Uint8Array } | undefined;
}

const NOTHING: Current = { record: undefined, corrupt: undefined };

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
  /** True from a renewal of the read snapshot until the microtasks of that callback have run. */
  #snapshotCurrent = false;
  readonly #snapshotDone = (): void => {
    this.#snapshotCurrent = false;
  };

  constructor(options: LmdbTierOptions) {
    this.name = options.name ?? 'lmdb';
    this.path = options.path;
    mkdirSync(options.path, { recursive: true });
    this.#env = open({ path: options.path, ...(options.mapSize === undefined ? {} : { mapSize: options.mapSize }), maxDbs: 8 });
    const binary = { encoding: 'binary' as const };
    this.#records = this.#env.openDB<Buffer, Key>({ name: 'records', ...binary });
    this.#index = this.#env.openDB<Buffer, Key>({ name: 'bucketIndex', ...binary });
    this.#fences = this.#env.openDB<Buffer, Key>({ name: 'fences', ...binary });
    this.#quarantine = this.#env.openDB<Buffer, Key>({ name: 'quarantine', ...binary });
    this.#checkFormat();
  }

  // Reads

  findSync(type: string, id: string): SessionMeta | undefined {
    return metaOf(this.loadSync(type, id));
  }

  loadSync(type: string, id: string): SessionRecord | undefined {
    this.#ensureOpen();
    checkKey(type, id);
    this.#currentSnapshot();
    const current = this.#read(type, id, recordKey(type, id), true);
    if (current.corrupt !== undefined) {
      this.#moveAside(type, id, current.corrupt);
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
        if (current.record?.bucket === bucket) metas.push(metaOf(current.record));
        else if (current.corrupt !== undefined) this.#moveAside(type, id, current.corrupt);
        else this.#dropOrphan(ikey, type, id);
      }
      // Copied out: the caller may take its time, no read transaction waits for it.
      yield* metas;
      if (keys.length < LIST_PAGE) return;
      from = keys[keys.length - 1]!;
      exclusiveStart = true;
    }
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

  store(record: SessionRecord): Promise<void> {
    return storeOne(this, record);
  }

  async storeMany(records: readonly SessionRecord[]): Promise<Array<Error | undefined>> {
    this.#ensureOpen();
    const outcomes: Array<Error | undefined> = records.map((record) => recordError(record));
    const batch: Array<{ index: number; record: SessionRecord; key: RecordKey }> = [];
    this.#env.resetReadTxn();
    for (let index = 0; index < records.length; index++) {
      if (outcomes[index] !== undefined) continue;
      const record = records[index]!;
      const key = recordKey(record.type, record.id);
      // Bucket membership of a session not yet listed is queued as a plain write: lmdb-js
      // applies those on its write thread, in the same transaction and ahead of the transaction
      // callback (which checks it is there). An entry for a write that is then refused is
      // harmless: listings skip and drop entries without a record.
      if (this.#read(record.type, record.id, key, false).record?.bucket !== record.bucket) {
        quiet(this.#index.put(indexKey(record.bucket, record.type, record.id), indexValue(record.type, record.id)));
      }
      batch.push({ index, record, key });
    }
    if (batch.length === 0) return outcomes;
    // Encoded before the transaction, so the write lock is held only for reads and puts.
    const values = encodeRecords(batch.map((entry) => entry.record));
    const written: number[] = [];
    const applied = this.#transaction(() => {
      const fences = new Map<number, number>();
      batch.forEach(({ index, record, key }, k) => {
        // lmdb-js keeps what a callback wrote before it threw: an unexpected failure must stay
        // with its record, not fail (or leave half-applied) the others.
        try {
          const refusal = this.#apply(record, key, values[k]!, fences);
          if (refusal === undefined) written.push(index);
          else outcomes[index] = refusal;
        } catch (error) {
          outcomes[index] = error instanceof Error ? error : new Error(String(error));
        }
      });
    });
    try {
      await applied;
      await this.#env.flushed;
    } catch (error) {
      // Nothing of the transaction was written (or it is not known to be on disk).
      const failure = await storageError(error, this.name);
      for (const i of written) outcomes[i] = failure;
    }
    return outcomes;
  }

  async remove(type: string, id: string, fence: RemoveFence): Promise<boolean> {
    this.#ensureOpen();
    checkKey(type, id);
    checkRemoveFence(fence);
    const key = recordKey(type, id);
    const result: { outcome: boolean | StaleWrite } = { outcome: false };
    await this.#commit(
      this.#transaction(() => {
        const current = this.#read(type, id, key, false);
        if (current.corrupt !== undefined) {
          // Nothing readable to remove: the bytes go to quarantine, the session reads as absent.
          this.#quarantineInTxn(type, id, key, current.corrupt);
          return;
        }
        const stored = current.record;
        if (stored === undefined) return;
        const refusal = removeRefusal(type, id, fence, stored, this.#fenceOf(stored.bucket));
        if (refusal !== undefined) {
          result.outcome = refusal;
          return;
        }
        this.#records.removeSync(key);
        this.#index.removeSync(indexKey(stored.bucket, type, id));
        result.outcome = true;
      }),
    );
    if (result.outcome instanceof Error) throw result.outcome;
    return result.outcome;
  }

  async fence(bucket: number, epoch: number): Promise<void> {
    this.#ensureOpen();
    checkBucket(bucket);
    checkEpoch(epoch);
    const value = Buffer.alloc(8);
    value.writeDoubleBE(epoch);
    await this.#commit(
      this.#transaction(() => {
        // Only ever raised: a lower epoch leaves the fence where it is.
        if (this.#fenceOf(bucket) < epoch) this.#fences.putSync(bucket, value);
      }),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
    await this.#env.close();
  }

  /**
   * Inside the write transaction: stores `record` (encoded as `value`) if the acceptance rule
   * allows it, else returns the refusal. Unreadable bytes under the key are moved to quarantine
   * and count as nothing stored. `fences` caches the batch's fence reads.
   *
   * Invariant: a stored record is listed in its bucket's index, in the same transaction.
   */
  #apply(record: SessionRecord, key: RecordKey, value: Buffer, fences: Map<number, number>): StaleWrite | undefined {
    const current = this.#read(record.type, record.id, key, false);
    let fence = fences.get(record.bucket);
    if (fence === undefined) fences.set(record.bucket, (fence = this.#fenceOf(record.bucket)));
    const refusal = writeRefusal(record.type, record.id, record, current.record, fence);
    if (refusal !== undefined) return refusal;
    if (current.corrupt !== undefined) this.#putQuarantine(record.type, record.id, current.corrupt);
    const old = current.record;
    const moved = old?.bucket !== record.bucket;
    if (moved) {
      // Usually written just before by the queued plain write; not if the session was listed
      // when the batch was read and removed since.
      const ikey = indexKey(record.bucket, record.type, record.id);
      if (!this.#index.doesExist(ikey)) this.#index.putSync(ikey, indexValue(record.type, record.id));
    }
    this.#records.putSync(key, value);
    // Last, so that a failure above leaves the old listing (the old record is still there).
    if (moved && old !== undefined) this.#index.removeSync(indexKey(old.bucket, old.type, old.id));
    return undefined;
  }

  /**
   * Runs `body` inside the next write transaction (an lmdb-js asynchronous transaction: the
   * write lock is taken on lmdb-js's thread, then `body` runs here with every read seeing the
   * latest committed state). Resolves when the transaction committed.
   */
  #transaction(body: () => void): Promise<unknown> {
    const committed = this.#track(this.#env.transaction(body));
    this.#guardCommit();
    return committed;
  }

  /** Renews this thread's read snapshot unless this callback already did (see the header). */
  #currentSnapshot(): void {
    if (this.#snapshotCurrent) return;
    this.#env.resetReadTxn();
    this.#snapshotCurrent = true;
    queueMicrotask(this.#snapshotDone);
  }

  /** Waits for a transaction to commit and reach the disk; storage failures become store errors. */
  async #commit(committed: Promise<unknown>): Promise<void> {
    try {
      await committed;
      await this.#env.flushed;
    } catch (error) {
      throw await storageError(error, this.name);
    }
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

  /** Moves corrupt bytes found by a read aside, if they are still what is stored. */
  #moveAside(type: string, id: string, corrupt: { reason: string; raw: Uint8Array }): void {
    const key = recordKey(type, id);
    const moved = this.#transaction(() => {
      const current = this.#read(type, id, key, false);
      if (current.corrupt !== undefined && Buffer.compare(current.corrupt.raw, corrupt.raw) === 0) {
        this.#quarantineInTxn(type, id, key, current.corrupt);
      }
    });
    quiet(moved.then(() => this.#env.flushed));
  }

  /** Inside the write transaction: moves the record's bytes to quarantine. */
  #quarantineInTxn(type: string, id: string, key: RecordKey, corrupt: { reason: string; raw: Uint8Array }): void {
    this.#putQuarantine(type, id, corrupt);
    this.#records.removeSync(key);
  }

  #putQuarantine(type: string, id: string, corrupt: { reason: string; raw: Uint8Array }): void {
    this.#quarantine.putSync([Date.now(), Math.random()], Buffer.from(encode([type, id, corrupt.reason, corrupt.raw])));
  }

  /**
   * Removes an index entry whose record is gone or lives in another bucket (left behind when a
   * record was quarantined by a read, whose bucket was unknown, or when a write was refused or
   * failed), unless that changed meanwhile.
   */
  #dropOrphan(ikey: IndexKey, type: string, id: string): void {
    quiet(
      this.#transaction(() => {
        if (this.#read(type, id, recordKey(type, id), false).record?.bucket !== ikey[0]) this.#index.removeSync(ikey);
      }),
    );
  }

  /**
   * The record stored under `key`: in the write transaction inside a transaction callback, else
   * in this thread's read transaction. Its state is copied only if `withState` (deciding a write
   * or listing needs only the rest, and `getBinaryFast`'s buffer is reused by the next read).
   */
  #read(type: string, id: string, key: RecordKey, withState: boolean): Current {
    const raw = this.#records.getBinaryFast(key);
    if (raw === undefined) return NOTHING;
    try {
      return { record: decodeRecord(raw, type, id, withState), corrupt: undefined };
    } catch (error) {
      if (!(error instanceof RecordDecodeFailure)) throw error;
      // Keep a copy of the evidence. (The buffer's `length` is the entry's size; the typed array
      // behind it is larger: copy by `length`.)
      return { record: undefined, corrupt: { reason: error.reason, raw: Uint8Array.from(raw.subarray(0, raw.length)) } };
    }
  }

  /** The bucket's fence epoch (0 when never raised). */
  #fenceOf(bucket: number): number {
    const value = this.#fences.getBinaryFast(bucket);
    return value === undefined ? 0 : value.readDoubleBE(0);
  }

  #checkFormat(): void {
    const meta = this.#env.openDB<unknown, Key>({ name: 'meta' });
    const format = meta.get('format');
    if (format === undefined) meta.putSync('format', FORMAT);
    else if (format !== FORMAT) {
      throw new Unavailable(`tier ${this.name} at ${this.path} has layout format ${String(format)}; this version reads format ${FORMAT}`);
    }
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

/** The bucket index entry's value: empty, or the id when the key holds its hash. */
function indexValue(type: string, id: string): Buffer {
  return isHashed(type, id) ? Buffer.from(id, 'utf8') : EMPTY;
}

/**
 * lmdb-js write promises that nobody awaits must not become unhandled rejections (a failed
 * commit rejects every promise of its transaction, and its `commitError` too).
 */
function quiet<T>(promise: T): T {
  const then = (promise as { then?: unknown } | null | undefined)?.then;
  if (typeof then === 'function') {
    (then as (onFulfilled: undefined, onRejected: (error: unknown) => void) => unknown).call(promise, undefined, (error: unknown) => {
      const commitError = (error as { commitError?: { catch?: unknown } } | undefined)?.commitError;
      if (typeof commitError?.catch === 'function') (commitError as Promise<unknown>).catch(() => undefined);
    });
  }
  return promise;
}
