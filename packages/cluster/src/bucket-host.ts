/**
 * The bucket actors of one worker thread. Bucket b's directory lives on worker `b % W` of the
 * bucket's owner node; this module keeps those directories, applies the updates sent to them in
 * arrival order (one thread: one turn at a time), and tells the right bucket actor, wherever it
 * is, when a session activates on this worker.
 *
 * Directory updates travel as Tell envelopes to the system type `wadi.bucket` (id = the bucket),
 * over the same batched links as actor messages; the main thread forwards the ones whose owner is
 * another node. An update that reaches a worker that no longer owns the bucket is forwarded to the
 * owner of its current layout, a bounded number of times.
 */
import { Kind, activationKey, bucketOf, type Envelope, type TellEnvelope } from '@wadi/core';
import { BucketDirectory } from './directory.js';
import type { DirectoryEntry } from './messages.js';

export const BUCKET_ACTOR = 'wadi.bucket';

/** Forwarding beyond this many hops means the layouts disagree: the update is dropped and logged. */
const MAX_HOPS = 4;

export interface DirectoryStats {
  buckets: number;
  entries: number;
}

export interface BucketHostIO {
  /** Sends a directory update to another worker thread of this node. */
  toWorker(index: number, envelope: TellEnvelope): void;
  /** Hands a directory update to this node's main thread, which sends it to the bucket's owner node. */
  toNode(envelope: TellEnvelope): void;
  /** Every (type, id) this worker hosts. */
  hosted(): [type: string, id: string][];
  log(message: string): void;
}

export class BucketHost {
  #self: string | undefined;
  #epoch = 0;
  /** bucket -> owner node id, in the latest layout this worker was given. */
  #owners: readonly string[] = [];
  readonly #directories = new Map<number, BucketDirectory>();
  /**
   * Directories this worker lost in a layout and has not handed off yet, with that epoch. One is
   * kept until its new owner pulls it, or rebuilds the bucket instead (its report request drops
   * it), however many layouts that takes.
   */
  readonly #lostAt = new Map<number, number>();
  dropped = 0;

  constructor(
    readonly index: number,
    readonly workers: number,
    readonly buckets: number,
    private readonly io: BucketHostIO,
  ) {}

  /** A new committed layout: from now on updates route by it. */
  setLayout(self: string, epoch: number, owners: readonly string[]): void {
    const first = this.#self === undefined;
    this.#self = self;
    this.#epoch = epoch;
    this.#owners = owners;
    for (const bucket of this.#lostAt.keys()) {
      // Owned again before anyone pulled it: the owner in between may have taken updates, so
      // this copy is stale; the handoff tracker fetches the current one.
      if (owners[bucket] === self) {
        this.#directories.delete(bucket);
        this.#lostAt.delete(bucket);
      }
    }
    for (const bucket of this.#directories.keys()) {
      if (owners[bucket] !== self && !this.#lostAt.has(bucket)) this.#lostAt.set(bucket, epoch);
    }
    // Sessions activated before this node had a layout were never registered anywhere.
    if (first) for (const [type, id] of this.io.hosted()) this.sessionActivated(type, id);
  }

  /** The hook for `ActorSystem.onActivated`: tell the session's bucket actor where it lives. */
  sessionActivated(type: string, id: string): void {
    if (this.#self === undefined || type === BUCKET_ACTOR) return;
    const bucket = bucketOf(id, this.buckets);
    this.#route(bucket, [Kind.Tell, BUCKET_ACTOR, String(bucket), 'register', [activationKey(type, id), this.#self, this.index, 0]]);
  }

  /** A session here was destroyed, or moved away: its bucket actor forgets this location. */
  sessionRemoved(type: string, id: string): void {
    if (this.#self === undefined || type === BUCKET_ACTOR) return;
    const bucket = bucketOf(id, this.buckets);
    this.#route(bucket, [Kind.Tell, BUCKET_ACTOR, String(bucket), 'unregister', [activationKey(type, id), this.#self, this.index, 0]]);
  }

  /** Handles a directory update; false when the envelope is not for a bucket actor. */
  receive(envelope: Envelope): boolean {
    if (envelope[0] !== Kind.Tell || envelope[1] !== BUCKET_ACTOR) return false;
    const bucket = Number(envelope[2]);
    const args = envelope[4];
    if (!Number.isInteger(bucket) || bucket < 0 || bucket >= this.buckets || !Array.isArray(args)) {
      this.io.log(`dropped a malformed directory update for bucket ${envelope[2]}`);
      return true;
    }
    if (this.#owners[bucket] !== this.#self || this.#lostAt.has(bucket)) {
      const hops = Number(args[3] ?? 0);
      if (hops >= MAX_HOPS) {
        this.dropped++;
        this.io.log(`dropped a directory update for bucket ${bucket} after ${hops} forwards`);
        return true;
      }
      this.#route(bucket, [Kind.Tell, BUCKET_ACTOR, envelope[2], envelope[3], [args[0], args[1], args[2], hops + 1]]);
      return true;
    }
    const directory = this.#directory(bucket);
    const [key, node, worker] = args as [string, string, number];
    if (envelope[3] === 'register') directory.register(key, node, worker);
    else if (envelope[3] === 'unregister') directory.unregister(key, node);
    return true;
  }

  /** Installs a handed-off or rebuilt directory beneath the updates that arrived first. */
  install(bucket: number, epoch: number, entries: readonly DirectoryEntry[]): void {
    this.#directory(bucket).install(epoch, entries);
  }

  /**
   * Hands a lost bucket's directory off: its entries, after which it is gone from here. Null when
   * this worker holds no installed directory for it (the caller refuses, and the new owner
   * rebuilds from the members instead).
   */
  export(bucket: number): DirectoryEntry[] | null {
    const directory = this.#directories.get(bucket);
    if (directory === undefined || !directory.installed) return null;
    this.#directories.delete(bucket);
    this.#lostAt.delete(bucket);
    return directory.entries();
  }

  /** What this worker hosts in `bucket`: its part of a rebuild. */
  report(bucket: number): DirectoryEntry[] {
    // The bucket is being rebuilt elsewhere: a copy lost here will never be pulled.
    if (this.#lostAt.has(bucket)) {
      this.#directories.delete(bucket);
      this.#lostAt.delete(bucket);
    }
    const entries: DirectoryEntry[] = [];
    if (this.#self === undefined) return entries;
    for (const [type, id] of this.io.hosted()) {
      if (type !== BUCKET_ACTOR && bucketOf(id, this.buckets) === bucket) entries.push([activationKey(type, id), this.#self, this.index]);
    }
    return entries;
  }

  forgetNode(node: string): number {
    let dropped = 0;
    for (const directory of this.#directories.values()) dropped += directory.forgetNode(node);
    return dropped;
  }

  /** The entries of a bucket this worker serves (undefined if it serves none for it), for inspection. */
  entries(bucket: number): DirectoryEntry[] | undefined {
    const directory = this.#directories.get(bucket);
    return directory === undefined || this.#lostAt.has(bucket) ? undefined : directory.entries();
  }

  lookup(bucket: number, key: string): { node: string; worker: number } | undefined {
    return this.#directories.get(bucket)?.lookup(key);
  }

  stats(): DirectoryStats {
    let entries = 0;
    let buckets = 0;
    for (const [bucket, directory] of this.#directories) {
      if (this.#lostAt.has(bucket)) continue;
      buckets++;
      entries += directory.size;
    }
    return { buckets, entries };
  }

  get epoch(): number {
    return this.#epoch;
  }

  #directory(bucket: number): BucketDirectory {
    let directory = this.#directories.get(bucket);
    if (directory === undefined) {
      directory = new BucketDirectory(bucket);
      this.#directories.set(bucket, directory);
    }
    return directory;
  }

  #route(bucket: number, envelope: TellEnvelope): void {
    const owner = this.#owners[bucket];
    if (owner === undefined) return;
    const worker = bucket % this.workers;
    try {
      if (owner !== this.#self) this.io.toNode(envelope);
      else if (worker === this.index) this.receive(envelope);
      else this.io.toWorker(worker, envelope);
    } catch (error) {
      // A link that is down or full must not fail the activation that caused the update; a
      // rebuild of the bucket (which asks every member what it hosts) repairs the directory.
      this.dropped++;
      this.io.log(`could not send a directory update for bucket ${bucket}: ${(error as Error).message}`);
    }
  }
}
