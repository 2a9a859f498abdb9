/**
 * The store stack as one worker thread sees it: where its actor system parks a deactivated
 * session, and where an activation finds a session's state.
 *
 * A session is in exactly one tier of a node at a time:
 * - memory: active in the actor system (not this module's business);
 * - disk: parked in the node's LMDB tier. The worker keeps an index of the sessions it has there
 *   (those of the buckets it serves), so `has` never touches the disk;
 * - shared: neither of the above on any node. Only a session nobody hosts is looked for there,
 *   after the bucket's owner placed it here and before its first turn.
 *
 * Demotion (memory -> disk) is reported only once the write is durable: until then the bytes stay
 * in `#writing`, so a call that comes meanwhile finds them, and a write that fails leaves the
 * session where it was. Promotion (disk -> memory) takes the record off the disk, so a session
 * never has two current copies on one node. A shared copy stays where it is when promoted: it is
 * the archive a later cluster starts from, overwritten by the next demotion to the shared tier.
 *
 * A full disk stops demotion (`accepting()` is false, so idle sessions stay active) until a write
 * succeeds again; a corrupt record fails that session's calls with the store's typed error, and
 * the store keeps the bytes aside.
 */
import { activationKey, type ParkedStateStore } from '@wadi/core';
import type { SessionRecord, SyncReadTier, Tier } from '@wadi/store';

/** While the disk is full, one demotion is let through this often to find out whether it has room again. */
export const FULL_RETRY_MS = 5_000;

export interface SessionStatesOptions {
  /** The node's disk tier: synchronous reads, so a parked session activates without a tick. */
  disk: SyncReadTier;
  /** The bucket of a session id. */
  bucketOf(id: string): number;
  /** Location version of a session hosted here (the fencing version of its writes). */
  versionOf(key: string): number;
  /** The bucket epoch this worker holds (the fencing epoch of its writes). */
  epoch(bucket: number): number;
  now(): number;
  /** A session's state reached the disk durably (or could not): the worker tells its bucket actor. */
  onDemoted?(type: string, id: string, version: number): void;
  log(message: string): void;
}

interface Parked {
  type: string;
  id: string;
  version: number;
  bytes: number;
}

export interface SessionStatesStats {
  /** Sessions parked on disk by this worker, durably. */
  disk: number;
  /** Demotions written but not durable yet. */
  writing: number;
  demoted: number;
  promoted: number;
  /** Sessions found in the shared store and activated here. */
  fromShared: number;
  failedWrites: number;
  /** True while the disk refuses writes for lack of space. */
  full: boolean;
}

export class SessionStates implements ParkedStateStore {
  readonly #options: SessionStatesOptions;
  readonly #parked = new Map<string, Parked>();
  readonly #writing = new Map<string, { state: Uint8Array; version: number }>();
  /** Version of a session loaded from a tier: its next write must not go below it. */
  readonly #loadedVersions = new Map<string, number>();
  readonly #inFlight = new Set<Promise<void>>();
  /** Demotions the disk refused: their bytes wait in #writing, written again once it has room. */
  readonly #unwritten = new Set<string>();
  #full = false;
  #retryAt = 0;
  #demoted = 0;
  #promoted = 0;
  #fromShared = 0;
  #failedWrites = 0;

  /** The shared tier, once connected (a database connects after the worker started). */
  #shared: Tier | undefined;

  constructor(options: SessionStatesOptions) {
    this.#options = options;
  }

  set shared(tier: Tier | undefined) {
    this.#shared = tier;
  }

  /** Indexes what the disk holds for `buckets` (at start, before any call is served). */
  async index(buckets: Iterable<number>): Promise<number> {
    let count = 0;
    for (const bucket of buckets) {
      for await (const meta of this.#options.disk.listBucket(bucket)) {
        this.#parked.set(activationKey(meta.type, meta.id), { type: meta.type, id: meta.id, version: meta.version, bytes: meta.bytes });
        count++;
      }
    }
    return count;
  }

  has(type: string, id: string): boolean {
    const key = activationKey(type, id);
    return this.#parked.has(key) || this.#writing.has(key);
  }

  /** The location version a parked session was stored with (0 if none is parked here). */
  parkedVersion(type: string, id: string): number {
    return this.#parked.get(activationKey(type, id))?.version ?? 0;
  }

  load(type: string, id: string): Uint8Array | undefined | Promise<Uint8Array | undefined> {
    const key = activationKey(type, id);
    const writing = this.#writing.get(key);
    if (writing !== undefined) {
      // Activated again before its demotion was durable: the write finishes, then is taken back.
      this.#writing.delete(key);
      this.#loadedVersions.set(key, writing.version);
      return writing.state;
    }
    const parked = this.#parked.get(key);
    if (parked !== undefined) {
      const record = this.#options.disk.loadSync(type, id);
      this.#parked.delete(key);
      this.#promoted++;
      if (record === undefined) return undefined;
      this.#loadedVersions.set(key, record.version);
      this.#forget(record);
      return record.state;
    }
    const shared = this.#shared;
    if (shared === undefined) return undefined;
    return shared.load(type, id).then((record) => {
      if (record === undefined) return undefined;
      this.#fromShared++;
      this.#loadedVersions.set(key, record.version);
      return record.state;
    });
  }

  save(type: string, id: string, state: Uint8Array): void {
    const key = activationKey(type, id);
    const { disk, bucketOf, versionOf, epoch, now } = this.#options;
    const bucket = bucketOf(id);
    const version = Math.max(versionOf(key), this.#loadedVersions.get(key) ?? 0);
    this.#loadedVersions.delete(key);
    const pending = { state, version };
    this.#writing.set(key, pending);
    const record: SessionRecord = { type, id, bucket, version, epoch: epoch(bucket), state, updatedAt: now() };
    const write = disk.store(record).then(
      () => {
        if (this.#full) {
          this.#full = false;
          this.#retryUnwritten();
        }
        if (this.#writing.get(key) !== pending) {
          // Promoted again while the write was in flight: memory has the current state.
          this.#forget(record);
          return;
        }
        this.#writing.delete(key);
        this.#parked.set(key, { type, id, version, bytes: state.byteLength });
        this.#demoted++;
        this.#options.onDemoted?.(type, id, version);
      },
      (error: unknown) => {
        this.#failedWrites++;
        if (this.#writing.get(key) === pending) this.#unwritten.add(key);
        if ((error as { code?: unknown }).code === 'WADI_STORE_FULL' && !this.#full) {
          this.#full = true;
          this.#retryAt = now() + FULL_RETRY_MS;
        }
        this.#options.log(`could not park ${type} '${id}' on disk, it stays in memory: ${(error as Error).message}`);
        // The bytes stay in #writing: the session is still here, and its next activation takes them.
      },
    );
    this.#inFlight.add(write);
    void write.finally(() => this.#inFlight.delete(write));
  }

  /** Resolves once every demotion started so far is durable (or failed). */
  async flush(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
  }

  /**
   * Moves every session parked on disk here to the shared tier, in batches: each is removed from
   * the disk only once the shared tier holds it durably. What the shared tier refuses stays on
   * disk. The last node of a cluster leaves this way, so a later cluster starts from the shared tier.
   */
  async moveAllToShared(batchSize = 256): Promise<{ moved: number; kept: number }> {
    const shared = this.#shared;
    if (shared === undefined) return { moved: 0, kept: this.#parked.size };
    await this.flush();
    let moved = 0;
    let kept = 0;
    const keys = [...this.#parked.keys()];
    for (let start = 0; start < keys.length; start += batchSize) {
      const records: SessionRecord[] = [];
      for (const key of keys.slice(start, start + batchSize)) {
        const parked = this.#parked.get(key)!;
        try {
          const record = this.#options.disk.loadSync(parked.type, parked.id);
          if (record !== undefined) records.push(record);
        } catch (error) {
          kept++;
          this.#options.log(`${parked.type} '${parked.id}' stays on disk: ${(error as Error).message}`);
        }
      }
      const outcomes = await shared.storeMany(records);
      await Promise.all(
        records.map(async (record, i) => {
          const error = outcomes[i];
          if (error !== undefined) {
            kept++;
            this.#options.log(`${record.type} '${record.id}' stays on disk, the shared tier refused it: ${error.message}`);
            return;
          }
          this.#parked.delete(activationKey(record.type, record.id));
          moved++;
          await this.#options.disk.remove(record.type, record.id, { version: record.version, epoch: record.epoch }).catch(() => undefined);
        }),
      );
    }
    return { moved, kept };
  }

  /** Waits for writes in flight and releases both tiers. */
  async close(): Promise<void> {
    await this.flush();
    await Promise.allSettled([this.#options.disk.close(), this.#shared?.close()]);
  }

  /** Refuses demotions while the disk is full, but lets one through every `FULL_RETRY_MS` to find out whether it has room again. */
  accepting(): boolean {
    if (!this.#full) return true;
    const now = this.#options.now();
    if (now < this.#retryAt) return false;
    this.#retryAt = now + FULL_RETRY_MS;
    return true;
  }

  /** The disk has room again: the demotions it refused are written now. */
  #retryUnwritten(): void {
    const keys = [...this.#unwritten];
    this.#unwritten.clear();
    for (const key of keys) {
      const pending = this.#writing.get(key);
      if (pending === undefined) continue;
      this.#writing.delete(key);
      const split = key.indexOf('\u0000');
      this.#loadedVersions.set(key, pending.version);
      this.save(key.slice(0, split), key.slice(split + 1), pending.state);
    }
  }

  /** The disk no longer holds this session's record (it is active here, or it moved away). */
  #forget(record: SessionRecord): void {
    this.#options.disk.remove(record.type, record.id, { version: record.version, epoch: record.epoch }).catch((error: unknown) => {
      this.#options.log(`could not take ${record.type} '${record.id}' off the disk: ${(error as Error).message}`);
    });
  }

  *keys(): Iterable<[type: string, id: string]> {
    for (const { type, id } of this.#parked.values()) yield [type, id];
    for (const key of this.#writing.keys()) {
      const split = key.indexOf('\u0000');
      yield [key.slice(0, split), key.slice(split + 1)];
    }
  }

  get size(): number {
    return this.#parked.size + this.#writing.size;
  }

  stats(): SessionStatesStats {
    return {
      disk: this.#parked.size,
      writing: this.#writing.size,
      demoted: this.#demoted,
      promoted: this.#promoted,
      fromShared: this.#fromShared,
      failedWrites: this.#failedWrites,
      full: this.#full,
    };
  }
}
