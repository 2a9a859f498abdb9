/**
 * The bucket actors of one worker thread. Bucket b's directory lives on worker `b % W` of the
 * bucket's owner node; this module keeps those directories, applies the updates sent to them in
 * arrival order (one thread: one turn at a time), and tells the right bucket actor, wherever it
 * is, when a session activates on this worker.
 *
 * Directory updates travel as Tell envelopes to the system type `wadi.bucket` (id = the bucket),
 * over the same batched links as actor messages; the main thread forwards the ones whose owner is
 * another node. An update that reaches a worker that no longer owns the bucket is forwarded to the
 * owner of its current layout, a bounded number of times; one that goes round more often (the
 * layouts disagree for a moment) is dropped, and its node asked to re-announce the bucket.
 */
import { Kind, activationKey, bucketOf, type Envelope, type TellEnvelope } from '@wadi/core';
import { BucketDirectory, type SessionLocation } from './directory.js';
import type { DirectoryEntry } from './messages.js';
import { CLAIM_TIMEOUT_MS, compareWrites, replicaEntryVersion, type ReplicaClaim, type WriteVersion } from './replication.js';

export const BUCKET_ACTOR = 'wadi.bucket';

/** Forwarding beyond this many hops means the layouts disagree: the update is dropped, and its node asked to re-announce. */
const MAX_HOPS = 4;

export interface DirectoryStats {
  buckets: number;
  entries: number;
  /** Live claims refused because a newer copy lived elsewhere: two activations of one session, reported (see `BucketHost.duplicates`). */
  duplicateClaims: number;
}

export interface BucketHostIO {
  /** Sends a directory update to another worker thread of this node. */
  toWorker(index: number, envelope: TellEnvelope): void;
  /** Hands a directory update to this node's main thread, which sends it to the bucket's owner node. */
  toNode(envelope: TellEnvelope): void;
  /** Every session this worker hosts, with the version of its location here (0 if it never moved). */
  hosted(): [type: string, id: string, version?: number, onDisk?: boolean][];
  /**
   * The bucket's owner found these sessions (keys) newer elsewhere: copies of them here (parked,
   * or even active: two activations) are stale and must go.
   */
  stale?(keys: readonly string[]): void;
  log(message: string): void;
}

/**
 * What the bucket actors need from the session replication of their worker (see
 * `replication.ts`): the replicas held here, and the failover of sessions a lost node hosted.
 */
export interface BucketReplication {
  /** The replicas held on this worker of `bucket`, as replica lines of a rebuild report. */
  replicaEntries(bucket: number): DirectoryEntry[];
  /** Node `node` was declared down: `claim` what this worker holds of its sessions, per bucket, to each bucket's owner in `owners`. */
  nodeDown(node: string, owners: readonly string[], claim: (bucket: number, claims: ReplicaClaim[]) => void, before?: number): void;
  /** The members that can claim (the layout's, without those declared down). */
  liveMembers(): string[];
  /** Whether the layout has replicas at all: without, a lost node's sessions have none to claim. */
  readonly replicating: boolean;
  /** Tells `node`/`worker` to adopt these replicas of `bucket` as sessions hosted there, at these location versions. */
  adopt(node: string, worker: number, bucket: number, items: [key: string, version: number][]): void;
  /** A bucket's recovery ended: the calls that waited for it go on. */
  recovered(bucket: number): void;
  /** The location version a placement in the current layout starts from (`placementFloor`). */
  placementFloor(): number;
  now(): number;
}

interface Candidate {
  node: string;
  worker: number;
  write: WriteVersion;
  /** The lost host whose session this is, when a claim said so: its old location may be replaced. */
  dead: string | undefined;
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
  #replication: BucketReplication | undefined;
  /** Owned buckets waiting for the replica claims of these members after a node went down, until `until`. */
  readonly #recovering = new Map<number, { waitingFor: Set<string>; until: number }>();
  /** Members that claimed, per bucket, as `dead NUL member`: a claim may come before its recovery starts. */
  readonly #claimedBy = new Map<number, Set<string>>();
  /** Per bucket, the freshest replica holder of each session a lost node hosted. */
  readonly #candidates = new Map<number, Map<string, Candidate>>();
  /** Nodes this worker learned were down: a claim about another one came before the news, and waits for it. */
  readonly #downSeen = new Set<string>();
  /**
   * Claims this worker's bucket actors refused because a newer copy of the session lives on
   * another node, from a node that said it holds its copy in memory: two live activations of
   * one session, which must never be (the older is told to drop its copy).
   */
  duplicates = 0;

  constructor(
    readonly index: number,
    readonly workers: number,
    readonly buckets: number,
    private readonly io: BucketHostIO,
  ) {}

  /** Connects the worker's session replication (see `BucketReplication`). */
  attachReplication(replication: BucketReplication): void {
    this.#replication = replication;
  }

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
    for (const bucket of [...this.#recovering.keys()]) {
      if (owners[bucket] !== self) this.#recovering.delete(bucket);
    }
    for (const bucket of [...this.#candidates.keys()]) {
      if (owners[bucket] !== self) this.#candidates.delete(bucket);
    }
    // Sessions activated before this node had a layout were never registered anywhere, and an
    // earlier incarnation of this node may have left entries behind that nobody will remove.
    if (first) this.resync();
  }

  /** The hook for `ActorSystem.onActivated`: tell the session's bucket actor where it lives. */
  sessionActivated(type: string, id: string, version = 0): void {
    this.#update('register', type, id, version);
  }

  /** A session here was demoted to this node's disk, or promoted back to memory: its bucket actor notes the tier. */
  sessionTier(type: string, id: string, version: number, onDisk: boolean): void {
    if (this.#self === undefined || type === BUCKET_ACTOR) return;
    const bucket = bucketOf(id, this.buckets);
    this.#route(bucket, [Kind.Tell, BUCKET_ACTOR, String(bucket), 'tier', [activationKey(type, id), this.#self, this.index, 0, version, onDisk ? 1 : 0]]);
  }

  /** A session here was destroyed, or moved away: its bucket actor forgets this location. */
  sessionRemoved(type: string, id: string, version = 0): void {
    this.#update('unregister', type, id, version);
  }

  /**
   * Re-announces what this worker hosts in `buckets` (all by default) to their owners: updates
   * that could not be sent, or were in flight on a connection that broke, may be lost, and this
   * repairs them (see `BucketDirectory.sync`).
   */
  resync(buckets?: readonly number[]): void {
    if (this.#self === undefined) return;
    const byBucket = new Map<number, ([string, number] | [string, number, 1])[]>();
    for (const bucket of buckets ?? Array.from({ length: this.buckets }, (_, index) => index)) byBucket.set(bucket, []);
    for (const [type, id, version, onDisk] of this.io.hosted()) {
      if (type !== BUCKET_ACTOR) byBucket.get(bucketOf(id, this.buckets))?.push(onDisk === true ? [activationKey(type, id), version ?? 0, 1] : [activationKey(type, id), version ?? 0]);
    }
    for (const [bucket, sessions] of byBucket) this.#route(bucket, [Kind.Tell, BUCKET_ACTOR, String(bucket), 'sync', [sessions, this.#self, this.index, 0]]);
  }

  #update(method: 'register' | 'unregister', type: string, id: string, version: number): void {
    if (this.#self === undefined || type === BUCKET_ACTOR) return;
    const bucket = bucketOf(id, this.buckets);
    this.#route(bucket, [Kind.Tell, BUCKET_ACTOR, String(bucket), method, [activationKey(type, id), this.#self, this.index, 0, version]]);
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
    if (envelope[3] === 'stale') {
      // Not an update: the owner's answer to this worker's claims.
      if (Array.isArray(args[0])) this.io.stale?.(args[0].filter((key): key is string => typeof key === 'string'));
      return true;
    }
    if (this.#self === undefined) {
      // No layout yet, so no idea who owns the bucket: the sender re-announces it later.
      this.dropped++;
      return true;
    }
    if (this.#owners[bucket] !== this.#self || this.#lostAt.has(bucket)) {
      const hops = Number(args[3] ?? 0);
      if (hops >= MAX_HOPS) {
        this.dropped++;
        this.io.log(`dropped a directory update for bucket ${bucket} after ${hops} forwards; its node re-announces the bucket`);
        this.#askResync(bucket, args[1]);
        return true;
      }
      this.#route(bucket, [Kind.Tell, BUCKET_ACTOR, envelope[2], envelope[3], [args[0], args[1], args[2], hops + 1, ...args.slice(4)]]);
      return true;
    }
    if (envelope[3] === 'claim') {
      this.#claimed(bucket, args[1] as string, args[2] as number, args[4] as string, args[0] as ReplicaClaim[]);
      return true;
    }
    const directory = this.#directory(bucket);
    const [key, node, worker, , version] = args as [unknown, string, number, number, number | undefined];
    if (envelope[3] === 'register') {
      // A claim older than a location elsewhere: that copy must not live on (nor take calls).
      if (!directory.register(key as string, node, worker, version ?? 0) && directory.lookup(key as string)?.node !== node) this.#tellStale(bucket, node, worker, [key as string]);
    } else if (envelope[3] === 'unregister') directory.unregister(key as string, node, version ?? 0);
    else if (envelope[3] === 'tier') directory.setTier(key as string, node, version ?? 0, args[5] === 1);
    else if (envelope[3] === 'sync') {
      const claims = key as ([string, number] | [string, number, 1])[];
      const stale = directory.sync(node, worker, claims);
      if (stale.length > 0) {
        const onDisk = new Set(claims.filter((claim) => claim[2] === 1).map((claim) => claim[0]));
        const live = stale.filter((claim) => !onDisk.has(claim));
        if (live.length > 0) {
          this.duplicates += live.length;
          const elsewhere = live.slice(0, 3).map((claim) => `${claim.replace('\u0000', ':')} (newer on ${directory.lookup(claim)?.node})`);
          this.io.log(`warn: ${node} claims ${live.length} session(s) active that live elsewhere in newer versions, ${elsewhere.join(', ')}: the newer wins, ${node} drops its copies`);
        }
        this.#tellStale(bucket, node, worker, stale);
      }
    }
    return true;
  }

  /** Tells `node`/`worker` which of the sessions it claimed live elsewhere, in newer versions. */
  #tellStale(bucket: number, node: string, worker: number, keys: string[]): void {
    const envelope: TellEnvelope = [Kind.Tell, BUCKET_ACTOR, String(bucket), 'stale', [keys, node, worker, 0]];
    try {
      if (node !== this.#self) this.io.toNode(envelope);
      else if (worker === this.index) this.receive(envelope);
      else this.io.toWorker(worker, envelope);
    } catch (error) {
      this.io.log(`could not tell ${node} that ${keys.length} session(s) it keeps live elsewhere: ${(error as Error).message}`);
    }
  }

  /** Installs a handed-off or rebuilt directory beneath the updates that arrived first. */
  /** `now` (this thread's clock) starts the time an unconfirmed placement among `entries` may wait for its confirmation. */
  install(bucket: number, epoch: number, entries: readonly DirectoryEntry[], now = 0): void {
    const locations: DirectoryEntry[] = [];
    for (const entry of entries) {
      const write = replicaEntryVersion(entry);
      if (write === undefined) locations.push(entry);
      else this.#candidate(bucket, entry[0], entry[1], entry[2], write);
    }
    const stale = this.#directory(bucket).install(epoch, locations, now);
    const byHolder = new Map<string, { node: string; worker: number; keys: string[] }>();
    for (const [key, node, worker] of stale) {
      const holder = `${node}/${worker}`;
      let claims = byHolder.get(holder);
      if (claims === undefined) byHolder.set(holder, (claims = { node, worker, keys: [] }));
      claims.keys.push(key);
    }
    for (const { node, worker, keys } of byHolder.values()) this.#tellStale(bucket, node, worker, keys);
    // A rebuild asked every live member, replicas included: nothing more to wait for.
    if (this.#recovering.has(bucket)) this.#endRecovery(bucket);
    else this.#placeCandidates(bucket);
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
    for (const [type, id, version, onDisk] of this.io.hosted()) {
      if (type !== BUCKET_ACTOR && bucketOf(id, this.buckets) === bucket) {
        entries.push(onDisk === true ? [activationKey(type, id), this.#self, this.index, version ?? 0, 0, 1] : [activationKey(type, id), this.#self, this.index, version ?? 0]);
      }
    }
    if (this.#replication !== undefined) entries.push(...this.#replication.replicaEntries(bucket));
    return entries;
  }

  /**
   * Node `node` was declared down (`crashed`; or it left): the locations there are dropped, the buckets this worker owns
   * wait for every live member's claims of the replicas of that node's sessions (bounded), and
   * this worker claims what it holds to each bucket's owner.
   */
  forgetNode(node: string, crashed = true): number {
    let dropped = 0;
    for (const directory of this.#directories.values()) dropped += directory.forgetNode(node);
    // A node that left moved its sessions away first: nothing of it is to be adopted.
    if (crashed) this.#recover(node);
    return dropped;
  }

  /**
   * An incarnation of `node` before `incarnation` is gone (a restart the cluster may not have
   * declared down): its locations stay (the new incarnation's re-announcement corrects them), and
   * its sessions fail over as in `forgetNode`, replacing the old locations they had.
   */
  nodeRestarted(node: string, incarnation: number): void {
    this.#recover(node, incarnation);
  }

  /** Holds this worker's buckets for the claims of `node`'s replicas, and claims what this worker holds of them. */
  #recover(node: string, before?: number): void {
    const replication = this.#replication;
    const self = this.#self;
    if (replication === undefined || self === undefined || !replication.replicating) return;
    this.#downSeen.add(node);
    const expected = replication.liveMembers().filter((member) => member !== node);
    const until = replication.now() + CLAIM_TIMEOUT_MS;
    for (let bucket = this.index; bucket < this.buckets; bucket += this.workers) {
      if (this.#owners[bucket] !== self || this.#lostAt.has(bucket)) continue;
      const claimed = this.#claimedBy.get(bucket);
      let recovery = this.#recovering.get(bucket);
      if (recovery === undefined) this.#recovering.set(bucket, (recovery = { waitingFor: new Set(), until }));
      recovery.until = Math.max(recovery.until, until);
      for (const member of expected) if (claimed?.has(`${node}\u0000${member}`) !== true) recovery.waitingFor.add(`${node}\u0000${member}`);
    }
    replication.nodeDown(node, this.#owners, (bucket, claims) => this.#route(bucket, [Kind.Tell, BUCKET_ACTOR, String(bucket), 'claim', [claims, self, this.index, 0, node]]), before);
    for (const [bucket, recovery] of [...this.#recovering]) if (recovery.waitingFor.size === 0) this.#endRecovery(bucket);
  }

  /** Ends recoveries whose claims did not all come in time (a member that cannot answer). */
  expireRecoveries(now: number): void {
    for (const [bucket, recovery] of [...this.#recovering]) {
      if (now < recovery.until) continue;
      this.io.log(`bucket ${bucket}: recovered without the replica claims of ${[...recovery.waitingFor].map((name) => name.split('\u0000')[1]).join(', ')}`);
      this.#endRecovery(bucket);
    }
  }

  /** Buckets holding their calls for replica claims. */
  get recovering(): number {
    return this.#recovering.size;
  }

  /** Node `from` (worker `worker`) holds these replicas of `bucket`'s sessions that `dead` wrote. */
  #claimed(bucket: number, from: string, worker: number, dead: string, claims: readonly ReplicaClaim[]): void {
    for (const [key, version, incarnation, seq] of claims) this.#candidate(bucket, key, from, worker, [version, incarnation, seq], dead);
    const name = `${dead}\u0000${from}`;
    let claimed = this.#claimedBy.get(bucket);
    if (claimed === undefined) this.#claimedBy.set(bucket, (claimed = new Set()));
    claimed.add(name);
    // Before this worker dropped the lost node's locations, its sessions still look hosted there.
    if (!this.#downSeen.has(dead)) return;
    const recovery = this.#recovering.get(bucket);
    if (recovery === undefined) return this.#placeCandidates(bucket);
    recovery.waitingFor.delete(name);
    if (recovery.waitingFor.size === 0) this.#endRecovery(bucket);
  }

  #candidate(bucket: number, key: string, node: string, worker: number, write: WriteVersion, dead?: string): void {
    let candidates = this.#candidates.get(bucket);
    if (candidates === undefined) this.#candidates.set(bucket, (candidates = new Map()));
    const known = candidates.get(key);
    if (known === undefined || compareWrites(write, known.write) > 0) candidates.set(key, { node, worker, write, dead });
  }

  #endRecovery(bucket: number): void {
    this.#recovering.delete(bucket);
    this.#claimedBy.delete(bucket);
    this.#placeCandidates(bucket);
    this.#replication?.recovered(bucket);
  }

  /**
   * Places each session that replicas alone hold (no live location is known) on its freshest
   * replica holder, at a location version above anything its lost host could still write.
   */
  #placeCandidates(bucket: number): void {
    const candidates = this.#candidates.get(bucket);
    const directory = this.#directories.get(bucket);
    const replication = this.#replication;
    if (candidates === undefined || directory === undefined || !directory.installed || replication === undefined || this.#recovering.has(bucket)) return;
    this.#candidates.delete(bucket);
    const now = replication.now();
    const floor = replication.placementFloor();
    const adoptions = new Map<string, { node: string; worker: number; items: [string, number][] }>();
    for (const [key, { node, worker, write, dead }] of candidates) {
      // A live location wins; one on the lost host (a restart not declared down) is that copy.
      const entry = directory.lookup(key);
      if (entry !== undefined && !(entry.node === dead && entry.version <= write[0])) continue;
      const version = Math.max(floor, write[0] + 1);
      directory.register(key, node, worker, version, false, now);
      const name = `${node}\u0000${worker}`;
      let adoption = adoptions.get(name);
      if (adoption === undefined) adoptions.set(name, (adoption = { node, worker, items: [] }));
      adoption.items.push([key, version]);
    }
    for (const { node, worker, items } of adoptions.values()) replication.adopt(node, worker, bucket, items);
  }

  /** The entries of a bucket this worker serves (undefined if it serves none for it), for inspection. */
  entries(bucket: number): DirectoryEntry[] | undefined {
    const directory = this.#directories.get(bucket);
    return directory === undefined || this.#lostAt.has(bucket) ? undefined : directory.entries();
  }

  lookup(bucket: number, key: string): { node: string; worker: number; tier: 'memory' | 'disk' } | undefined {
    const entry = this.#directories.get(bucket)?.lookup(key);
    return entry === undefined ? undefined : { node: entry.node, worker: entry.worker, tier: entry.onDisk ? 'disk' : 'memory' };
  }

  /**
   * Whether this worker answers for `bucket` now: 'serving' (it owns it and holds its directory),
   * 'awaiting' (it owns it and the directory is still being handed off or rebuilt) or 'elsewhere'.
   */
  ownership(bucket: number): 'serving' | 'awaiting' | 'elsewhere' {
    if (this.#self === undefined || this.#owners[bucket] !== this.#self || this.#lostAt.has(bucket) || bucket % this.workers !== this.index) return 'elsewhere';
    return this.#directories.get(bucket)?.installed === true && !this.#recovering.has(bucket) ? 'serving' : 'awaiting';
  }

  /** The directory entry of a session in a bucket this worker serves. */
  locate(bucket: number, key: string): SessionLocation | undefined {
    return this.#directories.get(bucket)?.lookup(key);
  }

  /** Where some session of `group` lives, in a bucket this worker serves. */
  locateGroup(bucket: number, group: string): SessionLocation | undefined {
    return this.#directories.get(bucket)?.groupLocation(group);
  }

  /**
   * The bucket actor's own placement: session `key` will live at `node`/`worker` (location
   * `version`); unconfirmed until that node registers it (`confirmed` when it is this node).
   */
  place(bucket: number, key: string, node: string, worker: number, version: number, confirmed: boolean, now: number): void {
    this.#directory(bucket).register(key, node, worker, version, confirmed, now);
  }

  /** Drops placements made before `before` that were never confirmed (see `BucketDirectory.expireUnconfirmed`). */
  expirePlacements(before: number): number {
    let expired = 0;
    for (const directory of this.#directories.values()) expired += directory.expireUnconfirmed(before);
    return expired;
  }

  /** Drops a location the bucket actor found stale (the node it names does not host the session). */
  forget(bucket: number, key: string, node: string, version: number): void {
    this.#directories.get(bucket)?.unregister(key, node, version);
  }

  get self(): string | undefined {
    return this.#self;
  }

  stats(): DirectoryStats {
    let entries = 0;
    let buckets = 0;
    for (const [bucket, directory] of this.#directories) {
      if (this.#lostAt.has(bucket)) continue;
      buckets++;
      entries += directory.size;
    }
    return { buckets, entries, duplicateClaims: this.duplicates };
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

  /** Asks node `origin` (through this node's main thread) to re-announce what it hosts in `bucket`: an update of its was lost here. */
  #askResync(bucket: number, origin: unknown): void {
    if (typeof origin !== 'string') return;
    try {
      this.io.toNode([Kind.Tell, BUCKET_ACTOR, String(bucket), 'resync', [[], origin, 0, 0]]);
    } catch (error) {
      this.io.log(`could not ask ${origin} to re-announce bucket ${bucket}: ${(error as Error).message}`);
    }
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
