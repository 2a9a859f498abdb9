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
 * session where it was. Promotion (disk -> memory) leaves the record on the disk as the session's
 * last durable state (a "shadow"): a crash then loses only what changed since, nothing of a session
 * only read, and promotion costs no write. The next demotion overwrites it; a session that leaves
 * the node (migrates) takes it away (`forget`). A shared copy also stays when promoted: it is the
 * archive a later cluster starts from, overwritten by the next demotion to the shared tier.
 *
 * A full disk stops demotion (`accepting()` is false, so idle sessions stay active) until a write
 * succeeds again; a corrupt record fails that session's calls with the store's typed error, and
 * the store keeps the bytes aside.
 *
 * Promotions are rate-limited (a node restarted with its disk full of sessions and a crowd calling
 * them reads them over several ticks, not in one stall), and the disk tier's own evicters move
 * sessions on to the shared tier, a batch per tick, so a session is never on both.
 */
import { ExpirySweep, activationKey, type ParkedStateStore } from '@wadi/core';
import type { Evicter, RateLimiter, SessionMeta, SessionRecord, SyncReadTier, Tier } from '@wadi/store';

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
  /** A session's state reached the disk durably: the worker tells its bucket actor. */
  onDemoted?(type: string, id: string, version: number): void;
  /** A session parked on disk was activated again: the worker tells its bucket actor it is in memory. */
  onPromoted?(type: string, id: string, version: number): void;
  /** A session left this node for the shared tier: the worker tells its bucket actor it is not here. */
  onLeft?(type: string, id: string, version: number): void;
  /** Bounds promotions from disk per second (none by default); it runs on this thread's monotonic clock. */
  promotions?: RateLimiter;
  /** Decide which sessions on disk go on to the shared tier (only with a shared tier). */
  diskEvicters?: readonly Evicter[];
  /** Bounds the moves to the shared tier per tick. */
  diskDemotions?: RateLimiter;
  log(message: string): void;
}

interface Shadow {
  type: string;
  id: string;
  version: number;
  epoch: number;
}

interface Pending {
  state: Uint8Array;
  version: number;
  epoch: number;
  expiresAt: number | undefined;
}

/** A demotion on its way to the disk. */
interface Demotion {
  key: string;
  pending: Pending;
  record: SessionRecord;
}

interface Parked {
  type: string;
  id: string;
  version: number;
  epoch: number;
  bytes: number;
  /** When its type says it is not worth keeping (wall clock); undefined: never. */
  expiresAt: number | undefined;
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
  /** Sessions moved from this disk to the shared tier by the disk's evicters. */
  toShared: number;
  /** Expired sessions this worker removed from the shared tier (`sweepShared`). */
  expiredFromShared: number;
  /** Promotions waiting for the rate limit. */
  promotionsWaiting: number;
  /** Stale copies dropped because a newer one lives elsewhere. */
  dropped: number;
  failedWrites: number;
  /** True while the disk refuses writes for lack of space. */
  full: boolean;
  /** Sessions in the shared tier, cluster-wide (counted at most every SHARED_COUNT_MS; null without a shared tier or before the first count). */
  shared: number | null;
}

/** The shared tier's count is cluster-wide and may cost a scan (PostgreSQL): refreshed at most this often, on demand. */
export const SHARED_COUNT_MS = 2_000;

export class SessionStates implements ParkedStateStore {
  readonly #options: SessionStatesOptions;
  readonly #parked = new Map<string, Parked>();
  /** When the parked sessions that can expire do (a session no longer parked is skipped when its time comes). */
  readonly #expiries = new ExpirySweep<string>();
  /** Sessions active here whose last durable state is still on the disk, with the fence to remove it. */
  readonly #shadows = new Map<string, Shadow>();
  readonly #writing = new Map<string, Pending>();
  /** Version of a session loaded from the shared tier: its next write must not go below it. */
  readonly #loadedVersions = new Map<string, number>();
  readonly #inFlight = new Set<Promise<void>>();
  /** Demotions of this turn of the event loop, written together. */
  #batch: Demotion[] = [];
  /** Demotions the disk refused: their bytes wait in #writing, written again once it has room. */
  readonly #unwritten = new Set<string>();
  #full = false;
  #retryAt = 0;
  #demoted = 0;
  #promoted = 0;
  #fromShared = 0;
  #toShared = 0;
  #expiredFromShared = 0;
  #dropped = 0;
  #failedWrites = 0;
  /** Promotions over the rate, in arrival order. */
  readonly #promotionQueue: Array<() => void> = [];
  /** The parked sessions whose promotion waits in the queue: their activations exist already. */
  readonly #promoting = new Set<string>();
  #promotionTimer: ReturnType<typeof setTimeout> | undefined;
  #movingToShared = false;
  #sharedCount: number | null = null;
  #sharedCountedAt = -Infinity;

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
        const key = activationKey(meta.type, meta.id);
        this.#setParked(key, { type: meta.type, id: meta.id, version: meta.version, epoch: meta.epoch, bytes: meta.bytes, expiresAt: meta.expiresAt });
        for (const evicter of this.#options.diskEvicters ?? []) evicter.touched(key, meta.bytes, meta.updatedAt);
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
      // Activated again before its demotion was durable: the write finishes and stays as its shadow.
      this.#writing.delete(key);
      this.#shadows.set(key, { type, id, version: writing.version, epoch: writing.epoch });
      return writing.state;
    }
    if (this.#parked.has(key)) {
      const limiter = this.#options.promotions;
      if (limiter === undefined || (this.#promotionQueue.length === 0 && limiter.take(performance.now(), 1) === 1)) return this.#promote(key, type, id);
      this.#promoting.add(key);
      return new Promise<Uint8Array | undefined>((resolve, reject) => {
        this.#promotionQueue.push(() => {
          this.#promoting.delete(key);
          try {
            resolve(this.#promote(key, type, id));
          } catch (error) {
            reject(error);
          }
        });
        this.#schedulePromotions();
      });
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

  /** A parked session's state for its activation; its record stays as the shadow (throws `CorruptRecord`). */
  #promote(key: string, type: string, id: string): Uint8Array | undefined {
    const record = this.#options.disk.loadSync(type, id);
    this.#unpark(key);
    this.#promoted++;
    if (record === undefined) return undefined;
    // The shadow's version is also the floor of the session's next write.
    this.#shadows.set(key, { type, id, version: record.version, epoch: record.epoch });
    this.#options.onPromoted?.(type, id, record.version);
    return record.state;
  }

  /**
   * The session's bucket actor knows a newer copy elsewhere (it was created again while this node
   * was down, or moved on): the copy parked here is dropped. False when it is not parked here (an
   * active session is left alone: its calls reach it only through this node's own threads).
   */
  dropStale(type: string, id: string): boolean {
    const key = activationKey(type, id);
    const parked = this.#parked.get(key);
    if (parked === undefined) return false;
    this.#unpark(key);
    this.#dropped++;
    this.#remove(parked);
    return true;
  }

  /**
   * Drops the sessions parked on this disk whose `expiresAt` is at or before `now`, looking at
   * no more than `limit` per call (`ParkedStateStore.dropExpired`): each record is removed with
   * the version and epoch it was parked with, so a newer copy written meanwhile stays.
   */
  dropExpired(now: number, limit: number): [type: string, id: string][] {
    const dropped: [string, string][] = [];
    for (const key of this.#expiries.due(now, limit)) {
      const parked = this.#parked.get(key);
      // Promoted or moved on since: not parked here any more (a later parking set a new expiry).
      if (parked === undefined || parked.expiresAt === undefined || parked.expiresAt > now) continue;
      // Its activation is waiting for the promotion rate: it is in use, not dropped. (It comes
      // up expired, and its own handlers treat it so; its next parking sets a new expiry.)
      if (this.#promoting.has(key)) continue;
      this.#unpark(key);
      this.#remove(parked, now);
      dropped.push([parked.type, parked.id]);
    }
    return dropped;
  }

  /**
   * Removes from the shared tier the sessions of `bucket` whose `expiresAt` is at or before
   * `now`, at most `limit` of them: nobody hosts them, so the tier is the only place they are
   * kept. Each remove carries the listed version and epoch and requires the stored copy to be
   * expired by `now` (`expiredBy`), so a copy written since stays, even under the same version.
   * One node sweeps a bucket (its owner), a bucket per tick. Resolves with how many went.
   */
  async sweepShared(bucket: number, now: number, limit: number): Promise<number> {
    const shared = this.#shared;
    if (shared === undefined) return 0;
    const expired: SessionMeta[] = [];
    for await (const meta of shared.listBucket(bucket)) {
      if (meta.expiresAt !== undefined && meta.expiresAt <= now) expired.push(meta);
      if (expired.length >= limit) break;
    }
    let removed = 0;
    for (const meta of expired) {
      try {
        if (await shared.remove(meta.type, meta.id, { version: meta.version, epoch: meta.epoch, expiredBy: now })) removed++;
      } catch {
        // Written again meanwhile (used, renewed; maybe under the same version): it stays.
      }
    }
    this.#expiredFromShared += removed;
    return removed;
  }

  #setParked(key: string, parked: Parked): void {
    this.#parked.set(key, parked);
    this.#expiries.set(key, parked.expiresAt);
  }

  #unpark(key: string): void {
    this.#parked.delete(key);
    this.#expiries.delete(key);
    for (const evicter of this.#options.diskEvicters ?? []) evicter.removed(key);
  }

  /** The session left this node (it migrated): its shadow on the disk goes too. */
  forget(type: string, id: string): void {
    const key = activationKey(type, id);
    const shadow = this.#shadows.get(key);
    this.#loadedVersions.delete(key);
    if (shadow === undefined) return;
    this.#shadows.delete(key);
    this.#remove(shadow);
  }

  #schedulePromotions(): void {
    if (this.#promotionTimer !== undefined) return;
    const limiter = this.#options.promotions!;
    const waitMs = Math.max(1, Math.ceil(1000 / limiter.perSecond));
    this.#promotionTimer = setTimeout(() => {
      this.#promotionTimer = undefined;
      let granted = limiter.take(performance.now(), this.#promotionQueue.length);
      while (granted-- > 0) this.#promotionQueue.shift()!();
      if (this.#promotionQueue.length > 0) this.#schedulePromotions();
    }, waitMs);
  }

  /**
   * Moves the sessions the disk's evicters say are due on to the shared tier (one batch at a
   * time; the next tick picks up where this one stopped).
   */
  async tick(): Promise<void> {
    const { diskEvicters, diskDemotions, now } = this.#options;
    if (this.#shared === undefined || diskEvicters === undefined || diskEvicters.length === 0 || this.#movingToShared) return;
    const at = now();
    const limit = diskDemotions?.available(at) ?? 256;
    if (limit < 1) return;
    const due = new Set<string>();
    for (const evicter of diskEvicters) for (const key of evicter.due(at, limit)) if (this.#parked.has(key) && due.size < limit) due.add(key);
    if (due.size === 0) return;
    diskDemotions?.take(at, due.size);
    this.#movingToShared = true;
    try {
      const { moved } = await this.#moveToShared([...due]);
      this.#toShared += moved;
    } finally {
      this.#movingToShared = false;
    }
  }

  save(type: string, id: string, state: Uint8Array, expiresAt?: number): void {
    const key = activationKey(type, id);
    const { bucketOf, versionOf, epoch, now } = this.#options;
    const bucket = bucketOf(id);
    const version = Math.max(versionOf(key), this.#shadows.get(key)?.version ?? 0, this.#loadedVersions.get(key) ?? 0);
    this.#loadedVersions.delete(key);
    const pending: Pending = { state, version, epoch: epoch(bucket), expiresAt };
    this.#writing.set(key, pending);
    const record: SessionRecord = { type, id, bucket, version, epoch: pending.epoch, state, updatedAt: now() };
    if (expiresAt !== undefined) record.expiresAt = expiresAt;
    // Demotions of one turn of the event loop (an evicter's tick, a stop) go to the disk as one batch.
    this.#batch.push({ key, pending, record });
    if (this.#batch.length === 1) queueMicrotask(this.#writeBatch);
  }

  readonly #writeBatch = (): void => {
    const batch = this.#batch;
    if (batch.length === 0) return; // flush() wrote it already
    this.#batch = [];
    const write = this.#options.disk.storeMany(batch.map((demotion) => demotion.record)).then(
      (outcomes) => {
        for (let i = 0; i < batch.length; i++) {
          const error = outcomes[i];
          if (error === undefined) this.#written(batch[i]!);
          else this.#notWritten(batch[i]!, error);
        }
      },
      (error: unknown) => {
        for (const demotion of batch) this.#notWritten(demotion, error);
      },
    );
    this.#inFlight.add(write);
    void write.finally(() => this.#inFlight.delete(write));
  };

  #written({ key, pending, record }: Demotion): void {
    if (this.#full) {
      this.#full = false;
      this.#retryUnwritten();
    }
    if (this.#writing.get(key) !== pending) {
      // Promoted again while the write was in flight: the record is its shadow now, unless the
      // session already left the node, which took its shadow away.
      if (!this.#shadows.has(key)) this.#remove(record);
      return;
    }
    this.#writing.delete(key);
    this.#shadows.delete(key);
    this.#setParked(key, { type: record.type, id: record.id, version: record.version, epoch: record.epoch, bytes: record.state.byteLength, expiresAt: record.expiresAt });
    const evicters = this.#options.diskEvicters;
    if (evicters !== undefined) for (const evicter of evicters) evicter.touched(key, record.state.byteLength, record.updatedAt);
    this.#demoted++;
    this.#options.onDemoted?.(record.type, record.id, record.version);
  }

  #notWritten({ key, pending, record }: Demotion, error: unknown): void {
    this.#failedWrites++;
    if (this.#writing.get(key) === pending) this.#unwritten.add(key);
    if ((error as { code?: unknown }).code === 'WADI_STORE_FULL' && !this.#full) {
      this.#full = true;
      this.#retryAt = this.#options.now() + FULL_RETRY_MS;
    }
    this.#options.log(`could not park ${record.type} '${record.id}' on disk, it stays in memory: ${(error as Error).message}`);
    // The bytes stay in #writing: the session is still here, and its next activation takes them.
  }

  /** Resolves once every demotion started so far is durable (or failed). */
  async flush(): Promise<void> {
    if (this.#batch.length > 0) this.#writeBatch();
    await Promise.allSettled([...this.#inFlight]);
  }

  /**
   * Moves every session parked on disk here to the shared tier, in batches: each is removed from
   * the disk only once the shared tier holds it durably. What the shared tier refuses stays on
   * disk. The last node of a cluster leaves this way, so a later cluster starts from the shared tier.
   */
  async moveAllToShared(batchSize = 256): Promise<{ moved: number; kept: number }> {
    if (this.#shared === undefined) return { moved: 0, kept: this.#parked.size };
    await this.flush();
    let moved = 0;
    let kept = 0;
    const keys = [...this.#parked.keys()];
    for (let start = 0; start < keys.length; start += batchSize) {
      const outcome = await this.#moveToShared(keys.slice(start, start + batchSize));
      moved += outcome.moved;
      kept += outcome.kept;
    }
    return { moved, kept };
  }

  /** One batch to the shared tier: each session leaves the disk only once the shared tier holds it durably. */
  async #moveToShared(keys: readonly string[]): Promise<{ moved: number; kept: number }> {
    const shared = this.#shared!;
    let moved = 0;
    let kept = 0;
    const records: SessionRecord[] = [];
    const taken = new Map<string, Parked>();
    for (const key of keys) {
      const parked = this.#parked.get(key);
      if (parked === undefined) continue;
      try {
        const record = this.#options.disk.loadSync(parked.type, parked.id);
        if (record === undefined) continue;
        records.push(record);
        taken.set(key, parked);
      } catch (error) {
        kept++;
        this.#options.log(`${parked.type} '${parked.id}' stays on disk: ${(error as Error).message}`);
      }
    }
    const outcomes = await shared.storeMany(records);
    await Promise.all(
      records.map(async (record, i) => {
        const error = outcomes[i];
        const key = activationKey(record.type, record.id);
        if (error !== undefined) {
          kept++;
          this.#options.log(`${record.type} '${record.id}' stays on disk, the shared tier refused it: ${error.message}`);
          return;
        }
        // Promoted while the batch was on its way (and maybe parked again since, newer): what is
        // in memory or on disk now is the current state; the shared copy is only the archive.
        if (this.#parked.get(key) !== taken.get(key)) return;
        this.#unpark(key);
        moved++;
        this.#shadows.delete(key);
        this.#options.onLeft?.(record.type, record.id, record.version);
        await this.#options.disk.remove(record.type, record.id, { version: record.version, epoch: record.epoch }).catch(() => undefined);
      }),
    );
    return { moved, kept };
  }

  /** Waits for writes in flight and releases both tiers. */
  async close(): Promise<void> {
    clearTimeout(this.#promotionTimer);
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
      this.save(key.slice(0, split), key.slice(split + 1), pending.state, pending.expiresAt);
    }
  }

  /** Takes a session's record off the disk (it moved away, or expired by `expiredBy`); refused if the disk holds a newer one. */
  #remove(record: { type: string; id: string; version: number; epoch: number }, expiredBy?: number): void {
    const fence = expiredBy === undefined ? { version: record.version, epoch: record.epoch } : { version: record.version, epoch: record.epoch, expiredBy };
    this.#options.disk.remove(record.type, record.id, fence).catch((error: unknown) => {
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
      toShared: this.#toShared,
      expiredFromShared: this.#expiredFromShared,
      promotionsWaiting: this.#promotionQueue.length,
      dropped: this.#dropped,
      failedWrites: this.#failedWrites,
      full: this.#full,
      shared: this.#countShared(),
    };
  }

  /** The last count of the shared tier; starts a new count in the background when that one is old. */
  #countShared(): number | null {
    const shared = this.#shared;
    if (shared === undefined) return null;
    const now = performance.now();
    if (now - this.#sharedCountedAt >= SHARED_COUNT_MS) {
      this.#sharedCountedAt = now;
      shared.count().then(
        (count) => (this.#sharedCount = count),
        (error: unknown) => this.#options.log(`counting the shared tier failed: ${(error as Error).message}`),
      );
    }
    return this.#sharedCount;
  }
}
