/**
 * The host's side of session routing, one per worker thread: every call frame that reaches this
 * worker ends here, and leaves either as a turn of a session hosted here or as a frame sent on.
 *
 * - A session hosted here (active or parked) gets the call. If the call did not come directly,
 *   its caller is told where the session is (a location notice).
 * - A session that migrated away leaves a forwarding pointer for a while; calls follow it.
 * - On the bucket's owner, the bucket actor decides: a known session's call goes to its location
 *   (hop 2); an unknown session is placed (with the rest of its group if any of it exists, else by
 *   the placement policy), registered in the directory under the current layout, and only then
 *   activated: concurrent first calls from anywhere meet here, one after another, so there is
 *   never a second activation. While the bucket's directory is still being handed over, its
 *   calls wait here and go on, in order, once it is installed.
 * - When a node bounces a call the owner sent it by its directory, the owner places the session
 *   anew; the other calls it had sent that node come back behind it, so later calls for that
 *   session wait until they did (or a timeout): a caller's calls keep their order.
 * - Anything else goes to the bucket's owner, marked as bounced if the caller thought the session
 *   was here, so the owner never points back at a place that does not have it. A call that a node
 *   with a newer layout routed here waits until this worker has that layout too: by its older one
 *   it would send the call back to where it came from, and the two would pass it to and fro.
 *
 * Migration (`SessionMigrations`) and the routing policies `migrate` and `redirect` start here too,
 * and so does the replication of the sessions hosted here (`Replication`, in `replication.ts`).
 */
import {
  DEFAULT_ASK_TIMEOUT_MS,
  HostLost,
  LOCAL,
  Redirected,
  Unavailable,
  activationKey,
  bucketOf,
  encodeView,
  errorToShape,
  groupOf,
  type ActorSystem,
  type QueuedMessage,
  type ReplyTarget,
  type RoutingPolicy,
  type TurnHold,
} from '@wadi/core';
import type { BucketHost } from './bucket-host.js';
import type { Layout } from './layout.js';
import { SessionMigrations, type MigrationOptions } from './migration.js';
import { Replication, type ReplicaFrame, type ReplicationStats } from './replication.js';
import { CallFlag, Frame, MAIN_THREAD, PENDING_REPORT_MS, reportPending, type CallFrame, type LocationNotice, type MigrationFrame, type ResultFrame, type RoutedFrame } from './routing.js';
import type { SessionRouter } from './session-router.js';

/**
 * A new placement's version is at least the layout epoch times this: a session placed again after
 * its node was lost (the owners forgot its entries) is newer than any copy that node kept on its
 * disk, whatever moves that copy made before (each move adds 1).
 */
export const PLACEMENT_VERSIONS_PER_EPOCH = 2 ** 24;

export function placementFloor(epoch: number): number {
  return epoch * PLACEMENT_VERSIONS_PER_EPOCH;
}

/** A placement its node has not confirmed in this long was never activated (its grant was lost with a connection). */
export const UNCONFIRMED_PLACEMENT_MS = 10_000;

/** A call routed by a layout this worker has not got waits this long for it (default), then fails. */
export const LAYOUT_CATCH_UP_MS = 5000;

/** How long an owner remembers how many calls it sent on to a session's node, and waits for those it sent to a node that bounced one. */
const SENT_ON_KEPT_MS = 5000;
/**
 * Asks this thread forwarded to another node are remembered as long as a caller waits by default
 * (`DEFAULT_ASK_TIMEOUT_MS`), at most this many (the oldest are forgotten first): if that node is
 * lost meanwhile, their callers hear `HostLost` from here rather than wait for their deadlines
 * (a caller tracks only the node it sent a call to, and here it went on elsewhere).
 */
const FORWARDED_ASKS_KEPT = 50_000;
const DRAIN_TIMEOUT_MS = 2000;

/** Where a new session is activated. */
export interface PlacementPolicy {
  /**
   * The node for a session nobody hosts yet. `caller` is the calling node when the call came from
   * a member (undefined for a client's call); `owner` is this bucket's owner; `members` are the
   * nodes of the current layout. The answer must be one of `members`.
   */
  place(request: { type: string; id: string; bucket: number; caller: string | undefined; owner: string; members: readonly string[] }): string;
}

/** The default: on the caller's node when the caller is a member, otherwise on the bucket's owner. */
export const callerOrOwner: PlacementPolicy = {
  place: ({ caller, owner, members }) => (caller !== undefined && members.includes(caller) ? caller : owner),
};

export interface SessionHostIO {
  /** Sends a frame to thread `thread` of node `node` (this node included). Throws when it cannot be sent. */
  send(node: string, thread: number, frame: RoutedFrame): void;
  now(): number;
  log(message: string): void;
}

export interface SessionHostOptions {
  node: string;
  incarnation: number;
  /** This worker's index. */
  thread: number;
  buckets: number;
  placement?: PlacementPolicy;
  /** How long a session that left keeps forwarding calls from here (default 60 s). */
  forwardForMs?: number;
  /** A frame forwarded this many times is refused: the layouts disagree (default 6). */
  maxHops?: number;
  /** Calls waiting for one bucket's directory (default 10,000); more fail with `Overloaded`-like `Unavailable`. */
  maxWaitingPerBucket?: number;
  /** How long a call routed by a newer layout than this worker's waits for it (default `LAYOUT_CATCH_UP_MS`). */
  layoutCatchUpMs?: number;
  migration?: MigrationOptions;
}

export interface SessionHostStats {
  /** Calls delivered to sessions here, by node-to-node hops taken. */
  hops: Record<string, number>;
  forwarded: number;
  placed: number;
  waiting: number;
  pointers: number;
  migratedOut: number;
  migratedIn: number;
  migrationsFailed: number;
  replication: ReplicationStats;
}

/** The result of a routed call: sent back to the caller's thread, with a notice if it did not come directly. */
class RoutedReply implements ReplyTarget {
  constructor(
    readonly host: SessionHost,
    readonly frame: CallFrame,
    readonly notice: LocationNotice | null,
  ) {}
  settle(ok: boolean, value: unknown): void {
    this.host.reply(this.frame, ok, value, this.notice);
  }
  settleHeld(value: unknown, hold: TurnHold): boolean {
    return this.host.replyHeld(this.frame, value, this.notice, hold);
  }
}

export class SessionHost {
  readonly node: string;
  readonly thread: number;
  readonly incarnation: number;
  readonly buckets: number;
  readonly migrations: SessionMigrations;
  readonly replication: Replication;
  readonly #system: ActorSystem;
  readonly #directory: BucketHost;
  readonly #router: SessionRouter;
  readonly #io: SessionHostIO;
  readonly #placement: PlacementPolicy;
  /** Numbers the replies handed to the main thread to hold (`replyHeld`). */
  #heldIds = 0;
  /** Ids of the replies handed to the main thread that it has not said it let go (on an acknowledgement's `released`). */
  readonly #heldAtMain = new Set<number>();
  readonly #forwardForMs: number;
  readonly #maxHops: number;
  readonly #maxWaiting: number;
  #layout: Layout | null = null;
  #members: string[] = [];
  /** Location versions of sessions hosted here that have one (moved at least once, or placed by an owner). */
  readonly #versions = new Map<string, number>();
  /** The keys of the sessions hosted here, by group. */
  readonly #groups = new Map<string, Set<string>>();
  #hostedCount = 0;
  /** Sessions that left: key -> where they went, until when calls are forwarded there. */
  readonly #pointers = new Map<string, { node: string; version: number; until: number }>();
  /** Calls for buckets this worker owns whose directory is not installed yet, in arrival order. */
  readonly #waiting = new Map<number, CallFrame[]>();
  /** Calls routed by a newer layout than this worker's, in arrival order, with when they came. */
  #behind: { frame: CallFrame; since: number }[] = [];
  readonly #catchUpMs: number;
  /** Per session, the calls this bucket actor lately sent on to its node (at that location version). */
  readonly #sentOn = new Map<string, { node: string; version: number; count: number; at: number }>();
  /** Sessions placed anew after `node` bounced a call: `remaining` more are coming back from it; later calls wait in `queued`. */
  readonly #draining = new Map<string, { node: string; version: number; remaining: number; since: number; queued: CallFrame[] }>();
  #pendingReportedAt = -Infinity;
  readonly #hops: number[] = [];
  #forwarded = 0;
  #placed = 0;
  /** Asks forwarded to other nodes, by caller: `node\0thread\0requestId` (see `FORWARDED_ASKS_KEPT`). */
  readonly #forwardedAsks = new Map<string, { to: string; frame: CallFrame; at: number }>();

  constructor(options: SessionHostOptions, system: ActorSystem, directory: BucketHost, router: SessionRouter, io: SessionHostIO) {
    this.node = options.node;
    this.thread = options.thread;
    this.incarnation = options.incarnation;
    this.buckets = options.buckets;
    this.#system = system;
    this.#directory = directory;
    this.#router = router;
    this.#io = io;
    this.#placement = options.placement ?? callerOrOwner;
    this.#forwardForMs = options.forwardForMs ?? 60_000;
    this.#maxHops = options.maxHops ?? 6;
    this.#maxWaiting = options.maxWaitingPerBucket ?? 10_000;
    this.#catchUpMs = options.layoutCatchUpMs ?? LAYOUT_CATCH_UP_MS;
    this.migrations = new SessionMigrations(options.migration ?? {}, this, system, router, io);
    this.replication = new Replication(
      { node: options.node, incarnation: options.incarnation, thread: options.thread, buckets: options.buckets },
      {
        send: (node, thread, frame) => io.send(node, thread, frame),
        now: io.now,
        // Routed calls' turns run in separate macrotasks: a flush per turn would cost the batching.
        defer: (callback) => system.scheduler.defer(callback),
        ...(system.scheduler.soon === undefined ? {} : { soon: (callback: () => void) => system.scheduler.soon!(callback) }),
        log: io.log,
        threadFor: (node, bucket) => router.threadFor(node, bucket),
        versionOf: (key) => this.versionOf(key),
        adopt: (type, id, state, version) => this.#adopt(type, id, state, version),
        stale: (key) => this.#dropStale(key),
      },
    );
    system.setTurnObserver(this.replication);
    const replication = this.replication;
    directory.attachReplication({
      replicaEntries: (bucket) => this.replication.replicaEntries(bucket),
      nodeDown: (node, owners, claim, before) => this.replication.nodeDown(node, owners, claim, before),
      liveMembers: () => this.replication.liveMembers(),
      get replicating() {
        return replication.replicating;
      },
      adopt: (node, worker, _bucket, items) => this.replication.sendAdopt(node, worker, items),
      recovered: (bucket) => this.bucketInstalled(bucket),
      placementFloor: () => placementFloor(this.#epoch),
      now: io.now,
    });
  }

  get layout(): Layout | null {
    return this.#layout;
  }

  /** The nodes sessions may be placed on or moved to now. */
  get members(): readonly string[] {
    return this.#members;
  }

  /** A committed layout (after the bucket actors and the router got it). */
  setLayout(layout: Layout): void {
    this.#layout = layout;
    this.#members = layout.members.map((member) => member.id);
    this.replication.setLayout(layout);
    // Calls waiting for a bucket this worker no longer owns go on to its new owner.
    for (const [bucket, frames] of this.#waiting) {
      if (this.#directory.ownership(bucket) !== 'elsewhere') continue;
      this.#waiting.delete(bucket);
      for (const frame of frames) this.receiveCall(frame);
    }
    // Calls that waited for this layout (or an older one) go on by it, in order.
    if (this.#behind.some(({ frame }) => frame[15] <= layout.epoch)) {
      const ready = this.#behind.filter(({ frame }) => frame[15] <= layout.epoch);
      this.#behind = this.#behind.filter(({ frame }) => frame[15] > layout.epoch);
      for (const { frame } of ready) this.receiveCall(frame);
    }
  }

  /** The bucket's directory is installed here: the calls that waited for it go on, in order. */
  bucketInstalled(bucket: number): void {
    const frames = this.#waiting.get(bucket);
    if (frames === undefined || this.#directory.ownership(bucket) !== 'serving') return;
    this.#waiting.delete(bucket);
    for (const frame of frames) this.receiveCall(frame);
  }

  /** The hook for `ActorSystem.onActivated`: a session activated here (fresh, or from its parked state). */
  activated(type: string, id: string): void {
    const key = activationKey(type, id);
    this.#indexGroup(key, id, true);
    this.replication.hosting(key);
  }

  /** A frame for this thread: calls, and the migration protocol. */
  receive(frame: CallFrame | MigrationFrame | ReplicaFrame): void {
    if (frame[0] === Frame.Call) return this.receiveCall(frame);
    if (frame[0] === Frame.Replica) {
      const message = (frame as ReplicaFrame)[5];
      // Before the acknowledgements release anything here: what the main thread let go already needs no word from here.
      if (message.t === 'ack' && message.released !== undefined) for (const id of message.released) this.#heldAtMain.delete(id);
      return this.replication.receive(frame as ReplicaFrame, (type) => this.#system.registry.find(type)?.replication);
    }
    const migration = frame as MigrationFrame;
    this.migrations.receive(migration[2], migration[3], migration[4]);
  }

  receiveCall(frame: CallFrame): void {
    const key = activationKey(frame[5], frame[6]);
    const draining = this.#draining.get(key);
    if (draining === undefined) return this.#receiveCall(frame, key);
    // The session was placed anew after `draining.node` bounced a call; the other calls sent there
    // come back behind it (in order), and anything else waits until they did.
    const returning = (frame[11] & CallFlag.Bounced) !== 0 && frame[14] === draining.node && frame[12] === draining.version;
    if (!returning) {
      draining.queued.push(frame);
      reportPending([frame], (node, thread, pending) => this.#io.send(node, thread, pending));
      return;
    }
    this.#receiveCall(frame, key);
    if (--draining.remaining <= 0) this.#endDrain(key);
  }

  #endDrain(key: string): void {
    const draining = this.#draining.get(key);
    if (draining === undefined) return;
    this.#draining.delete(key);
    for (const frame of draining.queued) this.receiveCall(frame);
  }

  #receiveCall(frame: CallFrame, key: string): void {
    const type = frame[5];
    const id = frame[6];
    const bucket = bucketOf(id, this.buckets);
    if (this.#system.hosts(key, type, id)) {
      // A grant for a session already here (an earlier grant arrived first): confirm the newer
      // placement, or the owner would eventually drop it as never confirmed.
      if ((frame[11] & CallFlag.Grant) !== 0 && frame[12] > this.versionOf(key)) this.register(type, id, frame[12]);
      return this.#deliver(frame, key);
    }
    // Routed (or placed here) by a layout this worker has not got: by its own it might send it
    // back where it came from, or take a session this node is no longer meant to have.
    if (frame[15] > this.#epoch) return this.#awaitLayout(frame);
    if ((frame[11] & CallFlag.Grant) !== 0) {
      if (!this.#members.includes(this.node)) {
        // Placed by an owner that did not know yet that this node left the layout: its sessions
        // are moving away (or have), so this one must not start here; the owner places it again.
        return this.#bounce(frame, bucket);
      }
      // A node that may not activate sessions now (the quorum gate) confirms no placement either.
      const refusal = this.#gateRefusal();
      if (refusal !== undefined) return this.#refuse(frame, refusal);
      // The bucket's owner placed the session here and registered it: activate it now, and confirm.
      this.#pointers.delete(key);
      this.#fromReplica(type, id, key, frame[12]);
      this.#indexGroup(key, id, true);
      this.register(type, id, frame[12]);
      return this.#deliver(frame, key);
    }
    const pointer = this.#pointers.get(key);
    const ownership = this.#directory.ownership(bucket);
    // The bucket's owner knows where a session that left went on to (its directory is at least as
    // new as its own pointer, unless it lost the entry): a pointer alone may lead to a node that left.
    if (pointer !== undefined && (ownership !== 'serving' || (this.#directory.locate(bucket, key)?.version ?? -1) < pointer.version)) {
      return this.#forward(frame, pointer.node, bucket, pointer.version);
    }
    switch (ownership) {
      case 'serving':
        return this.#resolve(frame, key, bucket);
      case 'awaiting':
        return this.#wait(frame, bucket);
      case 'elsewhere': {
        // Calls this node sent on to the session while it owned the bucket may still be on their
        // way there: a later one follows them on the same link, rather than going by the new
        // owner, whose path may be shorter and let it overtake them. (Not back to a node that
        // bounced it: that one does not have the session.)
        const sent = this.#sentOn.get(key);
        const bouncedBy = (frame[11] & CallFlag.Bounced) !== 0 ? frame[14] : undefined;
        if (sent !== undefined && sent.node !== this.node && sent.node !== bouncedBy) return this.#forward(frame, sent.node, bucket, sent.version);
        return this.#bounce(frame, bucket);
      }
    }
  }

  /** Sends the result of a routed ask back to its caller's thread. */
  reply(frame: CallFrame, ok: boolean, value: unknown, notice: LocationNotice | null): void {
    const send = (success: boolean, result: unknown): void => {
      this.#io.send(frame[2], frame[4], [Frame.Result, frame[4], frame[3], frame[1], success, success ? result : errorToShape(result), notice]);
    };
    try {
      send(ok, value);
    } catch (error) {
      // The result itself cannot be sent (not serializable, or too large): say why instead.
      try {
        if (ok) send(false, error);
      } catch {
        // The caller's node is gone: its ask fails there on its own.
      }
    }
  }

  /**
   * A `sync` turn's result for a caller on another node, held until the replicas acknowledged
   * the write. It goes with the write's shipment, so that each replica target that takes the
   * write delivers it to the caller (the caller takes it once all did); and to this node's main
   * thread, which sends it itself when the acknowledgements pass it (held-replies.ts), unless
   * every target delivered it, and says so on the acknowledgement it forwards here; when the hold
   * is released here otherwise, this worker's own word follows. False (the system holds it here)
   * for a caller on this node, or a result that cannot be encoded.
   */
  replyHeld(frame: CallFrame, value: unknown, notice: LocationNotice | null, hold: TurnHold): boolean {
    const write = this.replication.heldWrite(hold);
    if (write === undefined || frame[2] === this.node || frame[1] === 0) return false;
    try {
      encodeView(value);
    } catch {
      return false; // the usual way says why
    }
    const id = ++this.#heldIds;
    const targets = [...write.targets];
    const result: ResultFrame = [Frame.Result, frame[4], frame[3], frame[1], true, value, notice];
    this.#heldAtMain.add(id);
    // After the write's shipment: the result's way through a replica is the longer one.
    this.replication.notifyOnAck(hold, [frame[2], frame[3], frame[4], frame[1], value, notice, write.epoch, targets], () => {
      try {
        this.#io.send(this.node, MAIN_THREAD, [Frame.Held, this.thread, id, write.key, write.version, write.seq, targets, frame[2], result, write.epoch]);
      } catch {
        // Only when this node is going away: its callers' asks fail on their own.
        this.#heldAtMain.delete(id);
      }
    });
    hold.wait((error) => {
      // Let go there on the same acknowledgements that released it here: nothing to say.
      if (!this.#heldAtMain.delete(id)) return;
      try {
        this.#io.send(this.node, MAIN_THREAD, [Frame.HeldOutcome, this.thread, id, error === undefined ? null : errorToShape(error)]);
      } catch {
        // The main thread is this process's: it is only gone when the node is.
      }
    });
    return true;
  }

  /** Location version of a session hosted here (0 if it never moved). */
  versionOf(key: string): number {
    return this.#versions.get(key) ?? 0;
  }

  /** Sessions hosted here, with location versions: what resyncs and rebuild reports claim. */
  hosted(): [type: string, id: string, version: number][] {
    return this.#system.hostedIds().map(([type, id]) => [type, id, this.#versions.get(activationKey(type, id)) ?? 0]);
  }

  /** The keys hosted here in `id`'s group. */
  groupKeys(id: string): string[] {
    return [...(this.#groups.get(groupOf(id)) ?? [])];
  }

  /** Every group hosted here. */
  groups(): IterableIterator<[group: string, keys: Set<string>]> {
    return this.#groups.entries();
  }

  get hostedCount(): number {
    return this.#hostedCount;
  }

  /**
   * A node left or went down (`lost`: it crashed): migrations to and from it cannot finish.
   * Forwarding pointers to it stay: a node that left still passes calls on for a moment, and one
   * that cannot be reached any more sends them to the owner (see `FrameRelay`), so no later call
   * overtakes them. The asks this thread forwarded to a lost node fail with `HostLost`.
   */
  nodeGone(node: string, lost = false): void {
    this.migrations.nodeGone(node);
    if (lost) this.#failForwardedTo(node);
  }

  /**
   * Incarnations of `node` before `incarnation` are gone: forwarding pointers to it lead nowhere,
   * its migrations cannot finish, and the sessions they hosted fail over to their replicas.
   */
  nodeRestarted(node: string, incarnation = Infinity): void {
    this.#failForwardedTo(node);
    for (const [key, pointer] of this.#pointers) if (pointer.node === node) this.#pointers.delete(key);
    this.migrations.nodeGone(node);
    this.replication.targetRestarted(node);
    if (incarnation !== Infinity) this.#directory.nodeRestarted(node, incarnation);
  }

  /** Drops forwarding pointers whose time is up. */
  tick(): void {
    const now = this.#io.now();
    this.#directory.expireRecoveries(now);
    this.replication.tick();
    for (const [key, pointer] of this.#pointers) if (pointer.until <= now) this.#pointers.delete(key);
    const expired = this.#directory.expirePlacements(now - UNCONFIRMED_PLACEMENT_MS);
    if (expired > 0) this.#io.log(`dropped ${expired} placement(s) never confirmed by their node: the grant was lost`);
    while (this.#behind.length > 0 && now - this.#behind[0]!.since >= this.#catchUpMs) {
      const { frame } = this.#behind.shift()!;
      this.#refuse(frame, new Unavailable(`${frame[5]} '${frame[6]}' was routed by layout epoch ${frame[15]}, which node ${this.node} did not get within ${this.#catchUpMs} ms`));
    }
    for (const [key, sent] of this.#sentOn) if (now - sent.at >= SENT_ON_KEPT_MS) this.#sentOn.delete(key);
    // In the order they were forwarded: the oldest first.
    for (const [key, forwarded] of this.#forwardedAsks) {
      if (now - forwarded.at < DEFAULT_ASK_TIMEOUT_MS) break;
      this.#forwardedAsks.delete(key);
    }
    // Calls sent to a node that bounced one may have been delivered there after all (it took the
    // session meanwhile), or lost: do not wait for them for ever.
    for (const [key, draining] of [...this.#draining]) if (now - draining.since >= DRAIN_TIMEOUT_MS) this.#endDrain(key);
    if (now - this.#pendingReportedAt >= PENDING_REPORT_MS) {
      this.#pendingReportedAt = now;
      const waiting: CallFrame[] = this.#behind.map(({ frame }) => frame);
      for (const frames of this.#waiting.values()) waiting.push(...frames);
      for (const draining of this.#draining.values()) waiting.push(...draining.queued);
      reportPending(waiting, (node, thread, frame) => this.#io.send(node, thread, frame));
    }
    this.migrations.tick();
  }

  stats(): SessionHostStats {
    const hops: Record<string, number> = {};
    this.#hops.forEach((count, index) => {
      if (count > 0) hops[String(index)] = count;
    });
    let waiting = this.#behind.length;
    for (const draining of this.#draining.values()) waiting += draining.queued.length;
    for (const frames of this.#waiting.values()) waiting += frames.length;
    return {
      hops,
      forwarded: this.#forwarded,
      placed: this.#placed,
      waiting,
      pointers: this.#pointers.size,
      ...this.migrations.counts(),
      replication: this.replication.stats(),
    };
  }

  // used by the migrations

  /** A session moved out to `node`: calls that still arrive here follow it. */
  movedOut(key: string, id: string, node: string, version: number): void {
    this.replication.left(key, node);
    this.#versions.delete(key);
    this.#indexGroup(key, id, false);
    this.#pointers.set(key, { node, version, until: this.#io.now() + this.#forwardForMs });
  }

  /** A session moved in (frozen until its handover) with location `version`, and its encoded `state` when it came by a migration. */
  movedIn(key: string, id: string, version: number, state?: Uint8Array): void {
    this.#pointers.delete(key);
    this.#versions.set(key, version);
    this.#indexGroup(key, id, true);
    const mode = state === undefined ? undefined : this.#system.registry.find(key.slice(0, key.indexOf('\u0000')))?.replication;
    if (state === undefined || mode === undefined) this.replication.hosting(key);
    else this.replication.arrived(key, id, mode, version, state);
  }

  /**
   * A replica refused this activation's write: a newer activation exists, or this node was
   * declared down. It is taken out, and the calls waiting for it (and later ones) go to its
   * bucket's owner, which knows where the session lives now.
   */
  #dropStale(key: string): void {
    const split = key.indexOf('\u0000');
    const type = key.slice(0, split);
    const id = key.slice(split + 1);
    this.#io.log(`${type} '${id}' is stale here (a replica holds a newer write, or this node was declared down): its activation is dropped`);
    const drop = (): void => {
      const waiting = this.#system.removeFrozen(type, id).map((message) => this.toFrame(type, id, message));
      this.#versions.delete(key);
      this.#indexGroup(key, id, false);
      // Calls that had not run here yet go on toward the live copy, through the bucket's owner.
      for (const frame of waiting) this.receiveCall(frame);
    };
    if (!this.#system.freeze(type, id, drop)) {
      this.#versions.delete(key);
      this.#indexGroup(key, id, false);
    }
  }

  /** A replica held here is adopted as a session parked here, at location `version` (failover). */
  #adopt(type: string, id: string, state: Uint8Array, version: number): boolean {
    if (!this.#system.adoptParked(type, id, state)) return false;
    const key = activationKey(type, id);
    this.#pointers.delete(key);
    this.#versions.set(key, version);
    this.#indexGroup(key, id, true);
    this.register(type, id, version);
    return true;
  }

  /**
   * A session placed here anew by its bucket's owner, of which a replica is held here: it starts
   * from that replica rather than from a fresh state (its host was lost and the owner did not
   * learn of the replica in time).
   */
  #fromReplica(type: string, id: string, key: string, version: number): void {
    const replica = this.replication.replicaOf(key);
    if (replica === undefined || this.#system.hosts(key, type, id)) return;
    if (!this.#system.adoptParked(type, id, replica.state)) return;
    this.#io.log(`${type} '${id}' placed here anew starts from the replica held here (version ${replica.version.join('.')})`);
    const mode = this.#system.registry.find(type)?.replication ?? 'sync';
    this.replication.arrived(key, id, mode, version, replica.state);
  }

  /**
   * Whether this worker's bucket actor sends calls for session `key` to a location of version
   * `version` or newer now (or no longer answers for its bucket): the owner's side of a fence.
   */
  routesPast(key: string, version: number): boolean {
    const bucket = bucketOf(key.slice(key.indexOf('\u0000') + 1), this.buckets);
    switch (this.#directory.ownership(bucket)) {
      case 'serving':
        return (this.#directory.locate(bucket, key)?.version ?? -1) >= version;
      case 'awaiting':
        return false;
      case 'elsewhere':
        return true;
    }
  }

  /** Tells the session's bucket actor that it lives here now, at `version`. */
  register(type: string, id: string, version: number): void {
    this.#versions.set(activationKey(type, id), version);
    this.#directory.sessionActivated(type, id, version);
  }

  /** Tells the session's bucket actor that it no longer lives here (at `version`). */
  unregister(type: string, id: string, version: number): void {
    this.#directory.sessionRemoved(type, id, version);
  }

  /**
   * The bucket's owner knows a newer copy of this session on another node, yet it is active here:
   * two activations (after a partition healed, say). The newer wins: this one is dropped, its
   * state discarded, and the calls that waited for it go on to the owner, which sends them to the
   * newer copy. False when it is not active here, or is moving (its move settles it).
   */
  dropStale(type: string, id: string): boolean {
    const key = activationKey(type, id);
    if (!this.#system.hosts(key, type, id) || this.migrations.isMigrating(key)) return false;
    return this.#system.freeze(type, id, () => {
      const waiting = this.#system.removeFrozen(type, id);
      this.moveAborted(key, id);
      this.redeliver(waiting.map((message) => this.toFrame(type, id, message)));
    });
  }

  /** An incoming move was aborted, or the session left otherwise (expired, went to the shared tier): it is not here any more. */
  moveAborted(key: string, id: string): void {
    this.migrations.forget(key);
    this.replication.abandon(key);
    this.#versions.delete(key);
    this.#indexGroup(key, id, false);
  }

  /** A waiting message of a session leaving this thread, as a call frame addressed as before. */
  toFrame(type: string, id: string, message: QueuedMessage): CallFrame {
    if (message.reply instanceof RoutedReply) {
      const frame = message.reply.frame;
      frame[11] &= ~(CallFlag.Direct | CallFlag.Grant);
      return frame;
    }
    // A caller on this node (this thread, or another one by a plain ask): its reply comes back here.
    const requestId = this.#system.remoteRequestId(message);
    const thread = message.pending !== undefined || message.from === LOCAL ? this.thread : message.from;
    return [Frame.Call, requestId, this.node, this.incarnation, thread, type, id, message.method, message.args, 0, 0, 0, 0, '', '', this.#epoch];
  }

  /** Call frames handed over by a migration's source, as messages for the session's mailbox here. */
  toMessages(frames: readonly CallFrame[], key: string): QueuedMessage[] {
    return frames.map((frame) => {
      const notice = this.#noticeFor(frame, key);
      if (frame[1] === 0 && notice !== null) this.#sendNotice(frame, notice);
      const reply = frame[1] === 0 ? undefined : new RoutedReply(this, frame, notice);
      return { method: frame[7], args: frame[8], pending: undefined, from: LOCAL, requestId: 0, reply };
    });
  }

  /** Sends frames on, as if they had just arrived (calls that waited for an aborted move). */
  redeliver(frames: readonly CallFrame[]): void {
    for (const frame of frames) this.receiveCall(frame);
  }

  send(node: string, thread: number, frame: RoutedFrame): void {
    this.#io.send(node, thread, frame);
  }

  // internals

  #deliver(frame: CallFrame, key: string): void {
    const hops = frame[9];
    this.#hops[hops] = (this.#hops[hops] ?? 0) + 1;
    const type = frame[5];
    const caller = frame[2];
    if (caller !== this.node) {
      const policy = frame[13] === '' ? this.#typePolicy(type) : frame[13];
      if (policy === 'redirect' && !this.migrations.isMigrating(key)) {
        const url = this.#layout?.members.find((member) => member.id === this.node)?.url ?? '';
        return this.#refuse(frame, new Redirected(`${type} '${frame[6]}' lives on node ${this.node}`, this.node, url), this.#noticeFor(frame, key));
      }
      if (policy === 'migrate' && this.#members.includes(caller)) this.migrations.migrateGroup(frame[6], caller);
    }
    const notice = this.#noticeFor(frame, key);
    const reply = frame[1] === 0 ? undefined : new RoutedReply(this, frame, notice);
    try {
      this.#system.deliverRouted(type, frame[6], frame[7], frame[8], reply);
    } catch (error) {
      return this.#refuse(frame, error, notice);
    }
    // A call from this very thread: its router learns at once that it arrived (a direct one gets no notice).
    if (caller === this.node && frame[3] === this.incarnation && frame[4] === this.thread && frame[10] > 0) this.#router.delivered(key, frame[10], notice);
    if (frame[1] === 0 && notice !== null) this.#sendNotice(frame, notice);
  }

  /** The bucket actor's decision for a call that is not for a session hosted on this worker. */
  #resolve(frame: CallFrame, key: string, bucket: number): void {
    const id = frame[6];
    const entry = this.#directory.locate(bucket, key);
    // The sessions of this bucket on this node live on this very worker, so an entry naming this
    // node is stale; so is one naming the node that bounced the call, unless that node registered
    // a newer location since (it took the session after it bounced the call).
    const bounced = (frame[11] & CallFlag.Bounced) !== 0 && entry?.node === frame[14] && entry.version <= frame[12];
    const stale = entry !== undefined && (entry.node === this.node || bounced);
    if (entry !== undefined && !stale) {
      this.#sendingOn(key, entry.node, entry.version);
      return this.#forward(frame, entry.node, bucket, entry.version);
    }
    // Nobody hosts it (or the entry names a place that does not have it): place it now, unless
    // this node may not activate sessions now (the quorum gate): then it decides nothing.
    const refusal = this.#gateRefusal();
    if (refusal !== undefined) return this.#refuse(frame, refusal);
    if (entry !== undefined) {
      if (bounced) this.#drain(key, entry.node, entry.version);
      this.#directory.forget(bucket, key, entry.node, entry.version);
    }
    const version = Math.max(entry === undefined ? 1 : entry.version + 1, placementFloor(this.#layout?.epoch ?? 0));
    const group = this.#directory.locateGroup(bucket, groupOf(id));
    const caller = this.#members.includes(frame[2]) ? frame[2] : undefined;
    // A group stays together; if its node is leaving, the newcomer goes where the group is evacuated to: here.
    let node = group === undefined ? undefined : this.#members.includes(group.node) ? group.node : this.node;
    node ??= this.#placement.place({ type: frame[5], id, bucket, caller, owner: this.node, members: this.#members });
    if (!this.#members.includes(node)) node = this.node;
    // Refused before it is registered: a placement whose grant never leaves would name a session nobody starts.
    if (node !== this.node && frame[9] >= this.#maxHops) return this.#refuse(frame, this.#tooManyHops(frame));
    this.#placed++;
    this.#directory.place(bucket, key, node, this.#router.threadFor(node, bucket), version, node === this.node, this.#io.now());
    frame[11] = (frame[11] | CallFlag.Grant) & ~CallFlag.Bounced;
    frame[12] = version;
    if (node === this.node) {
      this.#fromReplica(frame[5], id, key, version);
      this.#versions.set(key, version);
      this.#indexGroup(key, id, true);
      return this.#deliver(frame, key);
    }
    this.#sendingOn(key, node, version);
    this.#forward(frame, node, bucket, version);
  }

  /** Counts a call sent on to where the session is (or was just placed). */
  #sendingOn(key: string, node: string, version: number): void {
    const now = this.#io.now();
    let sent = this.#sentOn.get(key);
    if (sent === undefined || sent.node !== node || sent.version !== version) this.#sentOn.set(key, (sent = { node, version, count: 0, at: now }));
    sent.count++;
    sent.at = now;
  }

  /** `node` bounced a call sent there at `version`: the others sent there come back before anything else goes on. */
  #drain(key: string, node: string, version: number): void {
    const sent = this.#sentOn.get(key);
    this.#sentOn.delete(key);
    if (sent === undefined || sent.node !== node || sent.version !== version || sent.count <= 1 || this.#draining.has(key)) return;
    this.#draining.set(key, { node, version, remaining: sent.count - 1, since: this.#io.now(), queued: [] });
  }

  #wait(frame: CallFrame, bucket: number): void {
    let frames = this.#waiting.get(bucket);
    if (frames === undefined) this.#waiting.set(bucket, (frames = []));
    if (frames.length >= this.#maxWaiting) return this.#refuse(frame, new Unavailable(`bucket ${bucket} is being handed over and ${frames.length} calls already wait for it`));
    frames.push(frame);
    reportPending([frame], (node, thread, pending) => this.#io.send(node, thread, pending));
  }

  /** A call for a session not here, in a bucket another worker or node owns: to that owner. */
  #bounce(frame: CallFrame, bucket: number): void {
    const owner = this.#router.ownerOf(bucket);
    if (owner === undefined) return this.#refuse(frame, new Unavailable(`no layout yet to route ${frame[5]} '${frame[6]}'`));
    if (owner === this.node) {
      // Another worker of this node owns it (a frame meant for a worker that is not this one).
      return this.#send(owner, this.#router.threadFor(owner, bucket), frame);
    }
    if ((frame[11] & (CallFlag.Located | CallFlag.Grant)) !== 0) {
      // Whoever sent it here (a caller's cache, a pointer, the owner's directory or its grant)
      // thought the session was here: the owner must not send it back.
      frame[11] = (frame[11] | CallFlag.Bounced) & ~CallFlag.Grant;
      frame[14] = this.node;
    }
    this.#forward(frame, owner, bucket);
  }

  #awaitLayout(frame: CallFrame): void {
    if (this.#behind.length >= this.#maxWaiting) return this.#refuse(frame, new Unavailable(`${this.#behind.length} calls already wait for a newer layout on node ${this.node}`));
    this.#behind.push({ frame, since: this.#io.now() });
    reportPending([frame], (node, thread, pending) => this.#io.send(node, thread, pending));
  }

  /** The actor system's turn gate, when it refuses (a node in a minority); 'wait' is no refusal. */
  #gateRefusal(): Error | undefined {
    const answer = this.#system.turnRefusal();
    return answer instanceof Error ? answer : undefined;
  }

  get #epoch(): number {
    return this.#layout?.epoch ?? 0;
  }

  #tooManyHops(frame: CallFrame): Unavailable {
    return new Unavailable(`${frame[5]} '${frame[6]}' was forwarded ${frame[9]} times: the nodes disagree on where it is`);
  }

  /** Sends a call on to `node`: where the session is at location version `location`, or (without one) to the bucket's owner. */
  #forward(frame: CallFrame, node: string, bucket: number, location?: number): void {
    if (frame[9] >= this.#maxHops) return this.#refuse(frame, this.#tooManyHops(frame));
    frame[11] &= ~CallFlag.Direct;
    if (location === undefined) frame[11] &= ~CallFlag.Located;
    else {
      // Where it is now: an earlier bounce (decided on already) says nothing about it.
      frame[11] = (frame[11] | CallFlag.Located) & ~CallFlag.Bounced;
      frame[12] = location;
    }
    frame[15] = Math.max(frame[15], this.#epoch);
    this.#forwarded++;
    this.#send(node, this.#router.threadFor(node, bucket), frame);
    if (frame[1] !== 0 && node !== this.node) this.#rememberForwarded(frame, node);
  }

  #rememberForwarded(frame: CallFrame, to: string): void {
    const key = `${frame[2]}\u0000${frame[4]}\u0000${frame[1]}`;
    this.#forwardedAsks.delete(key); // forwarded again: it counts from now
    // Without its arguments: all a failure needs is who called what.
    const slim: CallFrame = [Frame.Call, frame[1], frame[2], frame[3], frame[4], frame[5], frame[6], frame[7], [], frame[9], frame[10], frame[11], frame[12], frame[13], frame[14], frame[15]];
    this.#forwardedAsks.set(key, { to, frame: slim, at: this.#io.now() });
    if (this.#forwardedAsks.size > FORWARDED_ASKS_KEPT) this.#forwardedAsks.delete(this.#forwardedAsks.keys().next().value!);
  }

  /**
   * Node `node` was lost (or restarted): the asks this thread forwarded there may or may not have
   * run, and will not be answered. Their callers hear so now (at most once: nothing is sent
   * again); one that was answered already ignores it.
   */
  #failForwardedTo(node: string): void {
    for (const [key, { to, frame }] of this.#forwardedAsks) {
      if (to !== node) continue;
      this.#forwardedAsks.delete(key);
      this.#refuse(frame, new HostLost(`node ${node} went down after ${frame[5]} '${frame[6]}'.${frame[7]} was forwarded to it: it may or may not have run, and it was not sent again`));
    }
  }

  #send(node: string, thread: number, frame: CallFrame): void {
    try {
      this.#io.send(node, thread, frame);
    } catch (error) {
      this.#refuse(frame, new Unavailable(`${frame[5]} '${frame[6]}' could not be routed to node ${node}: ${(error as Error).message}`));
    }
  }

  /** Fails a call; its caller still gets an acknowledgement of `seq` so it holds nothing for it. */
  #refuse(frame: CallFrame, error: unknown, notice: LocationNotice | null = null): void {
    const acknowledged = notice ?? ((frame[11] & CallFlag.Direct) === 0 ? [activationKey(frame[5], frame[6]), '', 0, frame[10]] : null);
    if (frame[1] !== 0) {
      try {
        this.#io.send(frame[2], frame[4], [Frame.Result, frame[4], frame[3], frame[1], false, errorToShape(error), acknowledged]);
      } catch {
        // The caller is gone.
      }
      return;
    }
    if (acknowledged !== null) this.#sendNotice(frame, acknowledged);
    this.#io.log(`a tell ${frame[5]}.${frame[7]} to '${frame[6]}' failed: ${(error as Error).message}`);
  }

  #noticeFor(frame: CallFrame, key: string): LocationNotice | null {
    return (frame[11] & CallFlag.Direct) !== 0 ? null : [key, this.node, this.versionOf(key), frame[10]];
  }

  #sendNotice(frame: CallFrame, notice: LocationNotice): void {
    try {
      this.#io.send(frame[2], frame[4], [Frame.Notice, frame[4], frame[3], notice]);
    } catch {
      // The caller is gone.
    }
  }

  #typePolicy(type: string): RoutingPolicy {
    return this.#system.registry.find(type)?.routing ?? 'proxy';
  }

  #indexGroup(key: string, id: string, hosted: boolean): void {
    const group = groupOf(id);
    let keys = this.#groups.get(group);
    if (hosted) {
      if (keys === undefined) this.#groups.set(group, (keys = new Set()));
      if (!keys.has(key)) this.#hostedCount++;
      keys.add(key);
    } else if (keys !== undefined && keys.delete(key)) {
      this.#hostedCount--;
      if (keys.size === 0) this.#groups.delete(group);
    }
  }
}

