/**
 * Session replication, one per worker thread (beside its `SessionHost`), both sides of it:
 *
 * - **Host side.** After a turn that changed a session hosted here (its encoded state differs
 *   from the last one shipped; an unchanged turn ships and waits for nothing, a failed turn is
 *   never seen), the new state is shipped with the session's version to its replica targets,
 *   batched: one frame per target thread per event-loop turn. A `sync` session's reply is held
 *   until every current target acknowledged that version; an `async` one's goes at once, unless
 *   its targets fell more than half of `ASYNC_LOSS_WINDOW_MS` behind. A target that changes (a
 *   layout moved the bucket's backups, the session moved) gets the whole current state.
 * - **Replica side.** Replicas of sessions of the buckets this worker serves on this node
 *   (`bucket % workers`, like bucket directories, so an adoption is local to the thread that then
 *   hosts the session): key -> version and bytes. A write not newer than what is held, or from a
 *   writer the cluster declared down, is refused, and the writer's sync caller gets `Fenced`.
 *   A shipment from another node is judged and acknowledged by the holder's main thread
 *   (`ReplicaFences`, with the same rule: `judgeShipment`), which hands the states it took to the
 *   worker (`store`); a `sync` reply for another node is let go by the host's main thread when the
 *   acknowledgements pass it (held-replies.ts). Each saves two thread wake-ups per write.
 * - **Failover.** When a node is declared down, every replica holder tells each bucket's owner
 *   which replicas it holds of sessions that node wrote (a claim, empty if none), and the owners
 *   hold the calls of their buckets until every live member claimed (bounded). A bucket rebuilt
 *   after its owner died gets the same from the members' reports. The owner then places each
 *   session it has no live location for on its freshest replica holder, which adopts the replica
 *   as a parked session (it activates on its first call, so there is no activation storm) at a
 *   version above anything the dead host could still write, and re-replicates it at a bounded rate.
 *
 * Versions: a write is `[location version, writer incarnation, sequence]`, compared in that order.
 * The location version grows with every move and placement (`placementFloor`), so an adopted
 * session's writes beat the lost host's; the incarnation orders a restarted host's writes (its
 * sequence starts again) after its earlier ones.
 *
 * Targets of a session hosted on node H in bucket b (see `replicaTargets`): the bucket's copy
 * nodes in the order backups, retiring members, owner, without H, the first R of them plus one
 * per retiring member (a retiring copy keeps receiving changes until its successor has them). A
 * session hosted on one of its bucket's copy nodes therefore still has R copies elsewhere.
 */
import { Fenced, InvalidArgument, bucketOf, encode, type AnyActorDef, type ReplicationMode, type TurnHold, type TurnObserver } from '@wadi/core';
import { backupsOf, replicasOf, type Layout } from './layout.js';
import type { DirectoryEntry } from './messages.js';

/**
 * Bounds how long before a crash of its host an acknowledged write of an `async` session may be
 * lost. An `async` turn's state is shipped on the worker's next tick (at most 250 ms later), so
 * in practice the window is a tick and a network round trip; when the replicas fall behind (the
 * oldest change they have not acknowledged is older than half this window), later `async` replies
 * wait for the replicas like `sync` ones until they catch up, so the window holds under load too.
 */
export const ASYNC_LOSS_WINDOW_MS = 1000;

/**
 * `async` changes are shipped on the worker's tick (every 250 ms), not at the end of each
 * event-loop turn: a session changed many times in between is shipped once, in one frame per
 * target thread with every other, so `async` replication costs little even for sessions that
 * change on every call (an HTTP session changes twice per request). More than this many waiting
 * go at once. The loss window stays bounded: a tick, a round trip, and the hold below.
 */
export const ASYNC_BATCH_MAX = 5000;

/**
 * A write's shipment goes promptly, with its callers' results, while at most this many writes of
 * the worker (itself included) wait for acknowledgements. Not just itself: a caller making one
 * call at a time gets its result from the replica, and its next call often reaches the host before
 * the replica's acknowledgement of the previous write does (both pass the host's main thread, from
 * two sockets). Counting that one as load sent a third of such writes the long way (the result
 * back through the host: a hop more). Under real load hundreds wait.
 */
export const PROMPT_FLUSH_MAX_UNACKED = 4;

/** Unacknowledged shipments are sent again after this long (a frame lost with a connection). */
export const RESHIP_AFTER_MS = 500;

/**
 * Sessions whose whole state is shipped per tick because their targets changed or they were
 * adopted: a bounded rate, so a failover or a leave never floods a worker or a link, but one that
 * re-replicates 100,000 small sessions within a few seconds (a graceful leave waits for it).
 */
export const CATCH_UP_PER_TICK = 10_000;

/** And at most this many bytes of state per tick, whatever the count: large sessions go slower. */
export const CATCH_UP_BYTES_PER_TICK = 4 * 1024 * 1024;

/** How long a bucket's owner waits for every live member's claims after a node went down. */
export const CLAIM_TIMEOUT_MS = 3000;

/** `[location version, writer incarnation, sequence]` of one write of a session's state. */
export type WriteVersion = [version: number, incarnation: number, seq: number];

/**
 * The caller of a remote ask whose `sync` result waits for a write to be replicated, with that
 * result (value and location notice), the targets the write went to and the layout epoch they
 * were chosen by: each holder that takes the write delivers the result (routing.ts,
 * `ReplicatedResultFrame`).
 */
export type WaitingCaller = [
  node: string,
  incarnation: number,
  thread: number,
  requestId: number,
  value: unknown,
  notice: [key: string, node: string, version: number, seq: number] | null,
  writeEpoch: number,
  targets: string[],
];

/**
 * One shipped state: session key, its write version and its encoded state; with the callers whose
 * results wait for this write (or an earlier one it includes), on its first shipment.
 */
export type ShippedState = [key: string, version: number, incarnation: number, seq: number, state: Uint8Array, callers?: WaitingCaller[]];
/** One write a replica holder took (or refused, with why). */
export type AckedWrite = [key: string, version: number, incarnation: number, seq: number];
/** `fenced`: the writer was declared down; `older`: a newer write of the session is held. */
export type RefusedWrite = [key: string, version: number, incarnation: number, seq: number, reason: string, why: 'fenced' | 'older'];

export type ReplicaMessage =
  /** New states of sessions hosted at the sender, for the receiver to hold. */
  | { t: 'ship'; items: ShippedState[] }
  /**
   * From the receiver's own main thread (never from the network): states of a `ship` that the
   * main thread took and acknowledged already (`ReplicaFences`), to hold without acknowledging.
   */
  | { t: 'store'; items: ShippedState[] }
  /** What the receiver of a `ship` holds now, and what it refused. */
  | {
      t: 'ack';
      items: AckedWrite[];
      refused: RefusedWrite[];
      /**
       * The callers of these writes (`WaitingCaller`: node, thread, request id) that the receiver
       * told directly, in layout `epoch`: their host need not send them its word.
       */
      told?: [node: string, thread: number, requestId: number][];
      epoch?: number;
      /**
       * Set by the receiving node's main thread only (whatever came from the network is replaced):
       * the held replies (`HeldFrame` ids) of the receiving worker that this acknowledgement let go
       * there, so the worker sends no word of its own for them (held-replies.ts).
       */
      released?: number[];
    }
  /** The receiver is no longer a target of these sessions: drop replicas not newer than this version. */
  | { t: 'drop'; items: [key: string, version: number, incarnation: number][] }
  /** From a bucket's owner: host these replicas from now on, at these location versions. */
  | { t: 'adopt'; items: [key: string, version: number][] };

/** A replication message between the worker threads of two nodes (or of one). */
export type ReplicaFrame = [kind: 23, toThread: number, fromNode: string, fromIncarnation: number, fromThread: number, message: ReplicaMessage];
export const REPLICA_FRAME = 23;

/** A replica a holder claims to the bucket's owner: `[key, version, incarnation, seq]`. */
export type ReplicaClaim = [key: string, version: number, incarnation: number, seq: number];

export function compareWrites(a: WriteVersion, b: WriteVersion): number {
  return a[0] - b[0] || a[1] - b[1] || a[2] - b[2];
}

/** What a replica holder answers to a shipment: the writes it takes (`taken`: newer than what it holds) and acknowledges, and those it refuses. */
export interface ShipmentVerdict {
  acked: AckedWrite[];
  refused: RefusedWrite[];
  taken: ShippedState[];
}

/**
 * Judges a shipment from incarnation `fromIncarnation` of node `from`: a writer below `fence`
 * (declared down) is refused, a write older than the newest held of its session too; a write
 * newer than it is taken; one equal to it is acknowledged again. One rule for a worker's
 * `Replication` and its node's main thread (`ReplicaFences`).
 */
export function judgeShipment(
  from: string,
  fromIncarnation: number,
  fence: number | undefined,
  items: readonly ShippedState[],
  newest: (key: string) => WriteVersion | undefined,
): ShipmentVerdict {
  const verdict: ShipmentVerdict = { acked: [], refused: [], taken: [] };
  for (const item of items) {
    const [key, version, incarnation, seq] = item;
    if (fence !== undefined && fromIncarnation < fence) {
      verdict.refused.push([key, version, incarnation, seq, `${from} (incarnation ${fromIncarnation}) was declared down`, 'fenced']);
      continue;
    }
    const held = newest(key);
    const order = held === undefined ? 1 : compareWrites([version, incarnation, seq], held);
    if (order < 0) {
      verdict.refused.push([key, version, incarnation, seq, `a newer write (version ${held![0]}, write ${held![2]}) is held`, 'older']);
      continue;
    }
    if (order > 0) verdict.taken.push(item);
    verdict.acked.push([key, version, incarnation, seq]);
  }
  return verdict;
}

/**
 * The replica holder's fencing on a node's main thread (docs/cluster.md, "Replication", "Where a
 * write is acknowledged"): the newest write version taken per session key of the replicas this
 * node's workers hold, and the writers declared down. Every shipment from another node passes the
 * main thread, so it judges it here (`judgeShipment`, the workers' own rule) and acknowledges at
 * once; the states it took go on to the holding worker (`store`), which keeps them without
 * acknowledging again. A refused write is refused here, before anything is acknowledged.
 *
 * It forgets what the workers forget when told from outside (a host's `drop`, passing here too;
 * buckets this node no longer copies, on a layout change, which reaches this thread before its
 * workers). A replica a worker drops on its own (the session is hosted here now) stays known here:
 * a write older than it still comes from a stale activation.
 */
export class ReplicaFences {
  readonly #node: string;
  readonly #buckets: number;
  #layout: Layout | null = null;
  readonly #newest = new Map<string, { bucket: number; write: WriteVersion }>();
  /** node -> the lowest incarnation of it whose writes are taken (earlier ones were declared down). */
  readonly #fencedBelow = new Map<string, number>();
  /** Writes refused here. */
  refused = 0;

  constructor(node: string, buckets: number) {
    this.#node = node;
    this.#buckets = buckets;
  }

  get size(): number {
    return this.#newest.size;
  }

  /** A `ship` from another node: what to acknowledge, refuse, and hand to the holding worker. */
  ship(from: string, fromIncarnation: number, items: readonly ShippedState[]): ShipmentVerdict {
    const verdict = judgeShipment(from, fromIncarnation, this.#fencedBelow.get(from), items, (key) => this.#newest.get(key)?.write);
    for (const [key, version, incarnation, seq] of verdict.taken) {
      this.#newest.set(key, { bucket: bucketOf(key.slice(key.indexOf('\u0000') + 1), this.#buckets), write: [version, incarnation, seq] });
    }
    this.refused += verdict.refused.length;
    return verdict;
  }

  /** A host's `drop` on its way to a worker: the worker drops what is not newer, and so does this. */
  drop(items: readonly [key: string, version: number, incarnation: number][]): void {
    for (const [key, version, incarnation] of items) {
      const held = this.#newest.get(key);
      if (held !== undefined && compareWrites([held.write[0], held.write[1], 0], [version, incarnation, 0]) <= 0) this.#newest.delete(key);
    }
  }

  /** The epoch of the layout this node judges by (0 before the first). */
  get epoch(): number {
    return this.#layout?.epoch ?? 0;
  }

  /** As `Replication.setLayout`: fences of members back in the layout lift, replicas of buckets this node no longer copies go. */
  setLayout(layout: Layout): void {
    this.#layout = layout;
    for (const member of layout.members) {
      const fence = this.#fencedBelow.get(member.id);
      if (fence !== undefined && member.incarnation >= fence) this.#fencedBelow.delete(member.id);
    }
    for (const [key, held] of this.#newest) if (!isCopyNode(layout, held.bucket, this.#node)) this.#newest.delete(key);
  }

  /** As `Replication.nodeDown`: node `node` was declared down (or restarted as incarnation `before`): its earlier writes are refused. */
  nodeDown(node: string, before?: number): void {
    const incarnation = before ?? (this.#layout?.members.find((member) => member.id === node)?.incarnation ?? -1) + 1;
    if (incarnation > 0) this.#fencedBelow.set(node, Math.max(this.#fencedBelow.get(node) ?? 0, incarnation));
  }
}

/**
 * The replica targets of a session of bucket `bucket` hosted on node `host` (see the module
 * comment): node ids, in order of preference.
 */
export function replicaTargets(layout: Layout, bucket: number, host: string): string[] {
  const replicas = replicasOf(layout);
  if (replicas === 0) return [];
  const order: string[] = [];
  const add = (index: number): void => {
    const id = layout.members[index]?.id;
    if (id !== undefined && id !== host && !order.includes(id)) order.push(id);
  };
  for (const member of backupsOf(layout, bucket)) add(member);
  let retiring = 0;
  for (const [b, , member] of layout.incoming ?? []) {
    if (b === bucket && member >= 0) {
      add(member);
      retiring++;
    }
  }
  add(layout.owners[bucket]!);
  return order.slice(0, replicas + retiring);
}

/** Whether node `node` holds (or is receiving) a copy of bucket `bucket` in `layout`. */
export function isCopyNode(layout: Layout, bucket: number, node: string): boolean {
  const index = layout.members.findIndex((member) => member.id === node);
  if (index < 0) return false;
  if (layout.owners[bucket] === index || backupsOf(layout, bucket).includes(index)) return true;
  return (layout.incoming ?? []).some(([b, , retiring]) => b === bucket && retiring === index);
}

export interface ReplicationIO {
  /** Sends a frame to thread `thread` of node `node` (this node included); throws when it cannot. */
  send(node: string, thread: number, frame: ReplicaFrame): void;
  now(): number;
  /** Runs `callback` once the current event-loop turn's work is done (a macrotask). */
  defer(callback: () => void): void;
  /** Runs `callback` as soon as the current job is done (a microtask; none: always `defer`). */
  soon?(callback: () => void): void;
  log(message: string): void;
  /** The thread of node `node` that serves bucket `bucket`. */
  threadFor(node: string, bucket: number): number;
  /** The location version of a session hosted here. */
  versionOf(key: string): number;
  /** A session hosted here is stale (a replica refused its write as fenced or older): drop this activation. */
  stale(key: string): void;
  /** Takes a replica in as a session hosted here (parked), at location `version`; false if it cannot. */
  adopt(type: string, id: string, state: Uint8Array, version: number): boolean;
}

/** What a node (or worker) has not caught up yet of the incoming backups of layout `epoch`. */
export interface ReplicaLag {
  epoch: number;
  pairs: [bucket: number, member: string][];
}

/** Merges the lags of a node's workers: the oldest epoch (their layouts may differ for a moment), every pair. */
export function mergeLags(lags: readonly ReplicaLag[]): ReplicaLag {
  if (lags.length === 0) return { epoch: -1, pairs: [] };
  return { epoch: Math.min(...lags.map((lag) => lag.epoch)), pairs: lags.flatMap((lag) => lag.pairs) };
}

export interface ReplicationOptions {
  node: string;
  incarnation: number;
  thread: number;
  buckets: number;
}

export interface ReplicationStats {
  /** States shipped to replica targets (each target counted). */
  shipped: number;
  /** Of those, acknowledged by their target. */
  acked: number;
  /** Writes this worker refused as a replica holder, plus writes of its own that were refused. */
  refused: number;
  /** Replicas held here for sessions hosted elsewhere, and their bytes. */
  replicasHeld: number;
  bytesHeld: number;
  /** Replicas this worker took over as their session's host after a failure. */
  adopted: number;
  /** Replies of sync turns waiting for their acknowledgements. */
  pendingSyncAcks: number;
  /** Sessions waiting to be shipped whole (new targets, adoption). */
  catchingUp: number;
}

interface Waiter {
  seq: number;
  release: (error?: unknown) => void;
}

/** A session hosted here whose state is replicated. */
interface Hosted {
  key: string;
  bucket: number;
  mode: ReplicationMode;
  version: number;
  seq: number;
  /** The last committed state shipped (or to be shipped): what a new target gets. */
  bytes: Uint8Array;
  targets: string[];
  /** target -> highest seq it acknowledged at `version`. */
  acked: Map<string, number>;
  waiters: Waiter[];
  /** Callers of remote asks whose results wait for the write about to be shipped, with those results: the targets deliver them. */
  callers: WaitingCaller[];
  /** When the oldest change not acknowledged by every target was made (Infinity: none). */
  unackedSince: number;
  /** When the oldest change not shipped yet was made (Infinity: none). */
  dirtySince: number;
  /**
   * The shipments that carried new changes and are not acknowledged by every target yet, oldest
   * first: the write they shipped, and when the oldest change they were the first to carry was
   * made. An acknowledgement of a write moves `unackedSince` on to the first change after it, so
   * a session changed without pause is not taken for one whose replicas fell behind.
   */
  unackedShipments: [seq: number, since: number][];
  lastShippedAt: number;
  /** Left this worker (moved, removed): kept only until its waiting replies are released. */
  gone: boolean;
}

interface Replica {
  bucket: number;
  version: number;
  incarnation: number;
  seq: number;
  writer: string;
  state: Uint8Array;
}

/** A hold on a sync reply: released by acknowledgements. */
class AckHold implements TurnHold {
  constructor(
    readonly entry: Hosted,
    readonly seq: number,
  ) {}
  wait(release: (error?: unknown) => void): void {
    this.entry.waiters.push({ seq: this.seq, release });
  }
}

/** The write a `sync` reply's hold waits for, as `Replication.heldWrite` describes it. */
export interface HeldWrite {
  key: string;
  version: number;
  seq: number;
  targets: readonly string[];
  /** The layout the targets were chosen by. */
  epoch: number;
}

class FailedHold implements TurnHold {
  constructor(readonly error: unknown) {}
  wait(release: (error?: unknown) => void): void {
    release(this.error);
  }
}

export class Replication implements TurnObserver {
  readonly node: string;
  readonly incarnation: number;
  readonly thread: number;
  readonly #buckets: number;
  readonly #io: ReplicationIO;
  #layout: Layout | null = null;
  /** The targets of sessions hosted here, per bucket, in the current layout. */
  #targets = new Map<number, string[]>();
  readonly #hosted = new Map<string, Hosted>();
  /** Hosted sessions with shipments some target has not acknowledged. */
  readonly #unacked = new Set<Hosted>();
  /** Hosted sessions changed in this event-loop turn, to ship at its end. */
  readonly #dirty = new Set<Hosted>();
  /** `async` sessions changed since the last tick, to ship on the next one (coalesced). */
  readonly #asyncDirty = new Set<Hosted>();
  #flushScheduled = false;
  /**
   * The scheduled flush is a prompt one (`soon`): few other writes of this worker waited for an
   * acknowledgement when it was scheduled (`PROMPT_FLUSH_MAX_UNACKED`), so a caller is likely
   * waiting on this write alone, and its shipment goes at once with the callers' results in it.
   * Under load (many writes unacked) shipments wait for the end of the event-loop turn and carry
   * no results: batching then saves more than the hop (measured: pipelined sync asks about 25%
   * slower with prompt flushes and results through the replicas).
   */
  #flushSoon = false;
  /** What waits for this turn's shipments to be sent first (the results that wait for them: the longer path goes first). */
  #afterShipment: (() => void)[] = [];
  /** Hosted sessions to ship whole to targets that lack them, at a bounded rate. */
  readonly #catchUp = new Set<Hosted>();
  readonly #replicas = new Map<string, Replica>();
  #bytesHeld = 0;
  /** node -> the lowest incarnation of it whose writes are taken (earlier ones were declared down). */
  readonly #fencedBelow = new Map<string, number>();
  /** Nodes declared down since they were last in a layout. */
  readonly #gone = new Set<string>();
  #shipped = 0;
  #acked = 0;
  #refused = 0;
  #adopted = 0;

  constructor(options: ReplicationOptions, io: ReplicationIO) {
    this.node = options.node;
    this.incarnation = options.incarnation;
    this.thread = options.thread;
    this.#buckets = options.buckets;
    this.#io = io;
  }

  // host side

  /** The `TurnObserver` hook: a turn of a session hosted here ended without error. */
  committed(def: AnyActorDef, id: string, key: string, state: unknown): TurnHold | undefined {
    const mode = def.replication;
    if (mode === 'none' || this.#layout === null || replicasOf(this.#layout) === 0) return undefined;
    let bytes: Uint8Array;
    try {
      bytes = encode(state);
    } catch (error) {
      return new FailedHold(error);
    }
    let entry = this.#hosted.get(key);
    if (entry !== undefined && !entry.gone && sameBytes(entry.bytes, bytes)) return undefined;
    const version = this.#io.versionOf(key);
    if (entry === undefined || entry.gone || entry.version !== version) entry = this.#track(key, id, mode, version, bytes);
    else {
      entry.seq++;
      entry.bytes = bytes;
    }
    if (entry.targets.length === 0) return undefined;
    const now = this.#io.now();
    if (entry.unackedSince === Infinity) entry.unackedSince = now;
    if (entry.dirtySince === Infinity) entry.dirtySince = now;
    this.#unacked.add(entry);
    if (mode === 'async' && now - entry.unackedSince <= ASYNC_LOSS_WINDOW_MS / 2) {
      this.#asyncDirty.add(entry);
      if (this.#asyncDirty.size >= ASYNC_BATCH_MAX) this.#shipAsync();
      return undefined;
    }
    // Someone waits for this write: it goes at the end of this event-loop turn.
    this.#asyncDirty.delete(entry);
    this.#markDirty(entry);
    return new AckHold(entry, entry.seq);
  }

  /**
   * A session arrived here with its state (a migration, or an adoption): it is shipped whole to
   * its targets, at a bounded rate, so they hold it before its first turn here changes anything.
   */
  arrived(key: string, id: string, mode: ReplicationMode, version: number, state: Uint8Array): void {
    this.#dropReplica(key);
    if (mode === 'none' || this.#layout === null || replicasOf(this.#layout) === 0) return;
    const entry = this.#track(key, id, mode, version, state);
    if (entry.targets.length > 0) this.#catchUp.add(entry);
  }

  /** A session is hosted here now (activated, or placed here): a replica of it held here is superseded. */
  hosting(key: string): void {
    this.#dropReplica(key);
  }

  /**
   * A session left this worker (moved to `node`, or removed when `node` is undefined). Its replicas
   * on targets the new host does not ship to are dropped; replies still waiting are released as
   * their acknowledgements come.
   */
  left(key: string, node?: string): void {
    const entry = this.#hosted.get(key);
    if (entry === undefined) return;
    const keep = node === undefined || this.#layout === null ? [] : replicaTargets(this.#layout, entry.bucket, node);
    // A change not shipped yet goes first: replies wait for it.
    const unshipped = this.#dirty.delete(entry);
    if (this.#asyncDirty.delete(entry) || unshipped) this.#ship([entry], (dirty, target) => (dirty.acked.get(target) ?? 0) < dirty.seq);
    const drop = entry.targets.filter((target) => !keep.includes(target) && target !== node);
    for (const target of drop) this.#send(target, entry.bucket, { t: 'drop', items: [[key, entry.version, this.incarnation]] });
    this.#catchUp.delete(entry);
    if (entry.waiters.length === 0) this.#forget(entry);
    else entry.gone = true;
  }

  /** A session that arrived here did not stay (an aborted move): its source still ships it, so nothing is dropped. */
  abandon(key: string): void {
    const entry = this.#hosted.get(key);
    if (entry === undefined) return;
    if (entry.waiters.length === 0) this.#forget(entry);
    else entry.gone = true;
  }

  /** The bucket owner's side of a failover: `node`/`worker` is to adopt these replicas. */
  sendAdopt(node: string, worker: number, items: [key: string, version: number][]): void {
    this.#sendTo(node, worker, { t: 'adopt', items });
  }

  #track(key: string, id: string, mode: ReplicationMode, version: number, bytes: Uint8Array): Hosted {
    const old = this.#hosted.get(key);
    const bucket = bucketOf(id, this.#buckets);
    const entry: Hosted = {
      key,
      bucket,
      mode,
      version,
      // Continues the numbering of a version it replaces, so replies still waiting for the old
      // one are released by the new one's acknowledgements.
      seq: (old?.seq ?? 0) + 1,
      bytes,
      targets: this.#targetsOf(bucket),
      acked: new Map(),
      waiters: old?.waiters ?? [],
      callers: [],
      unackedSince: Infinity,
      dirtySince: Infinity,
      unackedShipments: [],
      lastShippedAt: -Infinity,
      gone: false,
    };
    if (old !== undefined) {
      this.#unacked.delete(old);
      this.#dirty.delete(old);
      this.#asyncDirty.delete(old);
      this.#catchUp.delete(old);
    }
    this.#hosted.set(key, entry);
    return entry;
  }

  #targetsOf(bucket: number): string[] {
    if (this.#layout === null) return [];
    let targets = this.#targets.get(bucket);
    if (targets === undefined) this.#targets.set(bucket, (targets = replicaTargets(this.#layout, bucket, this.node)));
    return targets;
  }

  #forget(entry: Hosted): void {
    if (this.#hosted.get(entry.key) === entry) this.#hosted.delete(entry.key);
    this.#unacked.delete(entry);
    this.#dirty.delete(entry);
    this.#asyncDirty.delete(entry);
    this.#catchUp.delete(entry);
  }

  #markDirty(entry: Hosted): void {
    this.#dirty.add(entry);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    const soon = this.#io.soon;
    // `entry` itself is unacknowledged already.
    this.#flushSoon = soon !== undefined && this.#unacked.size <= PROMPT_FLUSH_MAX_UNACKED;
    if (this.#flushSoon) soon!(this.#flush);
    else this.#io.defer(this.#flush);
  }

  /** Ships what changed in this event-loop turn: one frame per target thread. */
  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const entries = [...this.#dirty];
    this.#dirty.clear();
    if (entries.length > 0) this.#ship(entries, (entry, target) => (entry.acked.get(target) ?? 0) < entry.seq);
    const after = this.#afterShipment;
    if (after.length === 0) return;
    this.#afterShipment = [];
    for (const callback of after) callback();
  };

  /** Ships the `async` changes gathered since the last tick, each session's latest state once. */
  #shipAsync(): void {
    if (this.#asyncDirty.size === 0) return;
    const entries = [...this.#asyncDirty];
    this.#asyncDirty.clear();
    this.#ship(entries, (entry, target) => (entry.acked.get(target) ?? 0) < entry.seq);
  }

  /** Ships the current state of `entries` to each of their targets that `wants` it, batched per target thread. */
  #ship(entries: Iterable<Hosted>, wants: (entry: Hosted, target: string) => boolean): void {
    const batches = new Map<string, { node: string; thread: number; items: ShippedState[] }>();
    const now = this.#io.now();
    for (const entry of entries) {
      if (entry.gone) continue;
      for (const target of entry.targets) {
        if (!wants(entry, target)) continue;
        const thread = this.#io.threadFor(target, entry.bucket);
        const name = `${target}\u0000${thread}`;
        let batch = batches.get(name);
        if (batch === undefined) batches.set(name, (batch = { node: target, thread, items: [] }));
        batch.items.push(entry.callers.length === 0 ? [entry.key, entry.version, this.incarnation, entry.seq, entry.bytes] : [entry.key, entry.version, this.incarnation, entry.seq, entry.bytes, entry.callers]);
      }
      if (entry.callers.length > 0) entry.callers = [];
      if (entry.dirtySince !== Infinity) {
        entry.unackedShipments.push([entry.seq, entry.dirtySince]);
        entry.dirtySince = Infinity;
      }
      entry.lastShippedAt = now;
      if (entry.unackedSince === Infinity && entry.targets.some((target) => (entry.acked.get(target) ?? 0) < entry.seq)) {
        entry.unackedSince = now;
        this.#unacked.add(entry);
      }
    }
    for (const { node, thread, items } of batches.values()) {
      this.#shipped += items.length;
      this.#sendTo(node, thread, { t: 'ship', items });
    }
  }

  #onAck(from: string, items: readonly AckedWrite[], refused: readonly RefusedWrite[]): void {
    for (const [key, version, incarnation, seq] of items) {
      const entry = this.#hosted.get(key);
      if (entry === undefined || entry.version !== version || incarnation !== this.incarnation) continue;
      this.#acked++;
      if (seq > (entry.acked.get(from) ?? 0)) entry.acked.set(from, seq);
      this.#settle(entry);
    }
    for (const [key, version, incarnation, seq, reason, why] of refused) {
      const entry = this.#hosted.get(key);
      if (entry === undefined || entry.version !== version || incarnation !== this.incarnation) continue;
      if (entry.gone && why === 'older') {
        // It moved on, and its new host shipped a newer write first: that state carries this one.
        if (seq > (entry.acked.get(from) ?? 0)) entry.acked.set(from, seq);
        this.#settle(entry);
        continue;
      }
      this.#refused++;
      this.#io.log(`${from} refused the state of '${key.replace('\u0000', ':')}' (version ${version}, write ${seq}): ${reason}`);
      const error = new Fenced(`the state of ${key.replace('\u0000', " '")}' could not be replicated: ${from} refused it (${reason})`);
      const failed = entry.waiters.filter((waiter) => waiter.seq <= seq);
      entry.waiters = entry.waiters.filter((waiter) => waiter.seq > seq);
      for (const waiter of failed) waiter.release(error);
      if (entry.gone) {
        if (entry.waiters.length === 0) this.#forget(entry);
      } else {
        // Another activation of it is newer, or the cluster declared this node down: this one is stale.
        this.#forget(entry);
        this.#io.stale(key);
      }
    }
  }

  /** Releases the replies whose writes every current target acknowledged. */
  #settle(entry: Hosted): void {
    let low = entry.seq;
    for (const target of entry.targets) low = Math.min(low, entry.acked.get(target) ?? 0);
    const shipments = entry.unackedShipments;
    let acked = 0;
    while (acked < shipments.length && shipments[acked]![0] <= low) acked++;
    if (acked > 0) shipments.splice(0, acked);
    if (low >= entry.seq) {
      entry.unackedSince = Infinity;
      this.#unacked.delete(entry);
    } else if (acked > 0) {
      // What is still unacknowledged started with the first change after the acknowledged write.
      entry.unackedSince = shipments[0]?.[1] ?? entry.dirtySince;
    }
    if (entry.waiters.length > 0 && entry.waiters[0]!.seq <= low) {
      const released = entry.waiters.filter((waiter) => waiter.seq <= low);
      entry.waiters = entry.waiters.filter((waiter) => waiter.seq > low);
      for (const waiter of released) waiter.release();
    }
    if (entry.gone && entry.waiters.length === 0) this.#forget(entry);
  }

  // replica side

  #onShip(from: string, fromIncarnation: number, fromThread: number, items: readonly ShippedState[]): void {
    const { acked, refused, taken } = judgeShipment(from, fromIncarnation, this.#fencedBelow.get(from), items, (key) => {
      const held = this.#replicas.get(key);
      return held === undefined ? undefined : [held.version, held.incarnation, held.seq];
    });
    this.#store(from, taken);
    this.#refused += refused.length;
    this.#reply(from, fromThread, { t: 'ack', items: acked, refused });
  }

  /** Holds the states of writes judged newer than what is held (here, or by this node's main thread), written by `from`. */
  #store(from: string, items: readonly ShippedState[]): void {
    for (const [key, version, incarnation, seq, state] of items) {
      const held = this.#replicas.get(key);
      // The main thread judged against what it knows; what is held here is never replaced by an older write.
      if (held !== undefined && compareWrites([version, incarnation, seq], [held.version, held.incarnation, held.seq]) <= 0) continue;
      const bucket = bucketOf(key.slice(key.indexOf('\u0000') + 1), this.#buckets);
      this.#bytesHeld += state.byteLength - (held?.state.byteLength ?? 0);
      this.#replicas.set(key, { bucket, version, incarnation, seq, writer: from, state });
    }
  }

  #onDrop(items: readonly [string, number, number][]): void {
    for (const [key, version, incarnation] of items) {
      const held = this.#replicas.get(key);
      if (held !== undefined && compareWrites([held.version, held.incarnation, 0], [version, incarnation, 0]) <= 0) this.#dropReplica(key);
    }
  }

  #dropReplica(key: string): void {
    const held = this.#replicas.get(key);
    if (held === undefined) return;
    this.#replicas.delete(key);
    this.#bytesHeld -= held.state.byteLength;
  }

  /** The replicas held here of bucket `bucket`, as rebuild report entries (see `replicaEntry`). */
  replicaEntries(bucket: number): DirectoryEntry[] {
    const entries: DirectoryEntry[] = [];
    for (const [key, held] of this.#replicas) if (held.bucket === bucket) entries.push(replicaEntry(key, this.node, this.thread, [held.version, held.incarnation, held.seq]));
    return entries;
  }

  /** The replicas held here of bucket `bucket` written by `writer` (by its incarnations before `before`, if given). */
  claims(bucket: number, writer: string, before = Infinity): ReplicaClaim[] {
    const claims: ReplicaClaim[] = [];
    for (const [key, held] of this.#replicas) {
      if (held.bucket === bucket && held.writer === writer && held.incarnation < before) claims.push([key, held.version, held.incarnation, held.seq]);
    }
    return claims;
  }

  /** The bucket's owner placed these replicas here: adopt them as parked sessions. */
  #onAdopt(items: readonly [string, number][], typeOf: (type: string) => ReplicationMode | undefined): void {
    for (const [key, version] of items) {
      const held = this.#replicas.get(key);
      const split = key.indexOf('\u0000');
      const type = key.slice(0, split);
      const id = key.slice(split + 1);
      if (held === undefined) {
        this.#io.log(`asked to adopt ${type} '${id}', but no replica of it is held here (any more)`);
        continue;
      }
      this.#dropReplica(key);
      if (!this.#io.adopt(type, id, held.state, version)) {
        this.#io.log(`could not adopt ${type} '${id}': it is hosted here already, or its type is unknown`);
        continue;
      }
      this.#adopted++;
      const mode = typeOf(type) ?? 'sync';
      this.arrived(key, id, mode, version, held.state);
    }
  }

  // both

  /** A replication frame for this thread. */
  receive(frame: ReplicaFrame, typeOf: (type: string) => ReplicationMode | undefined): void {
    const [, , fromNode, fromIncarnation, fromThread, message] = frame;
    switch (message.t) {
      case 'ship':
        return this.#onShip(fromNode, fromIncarnation, fromThread, message.items);
      case 'store':
        return this.#store(fromNode, message.items);
      case 'ack':
        return this.#onAck(fromNode, message.items, message.refused);
      case 'drop':
        return this.#onDrop(message.items);
      case 'adopt':
        return this.#onAdopt(message.items, typeOf);
    }
  }

  /**
   * The write a `sync` reply's hold waits for (session key, location version, sequence), the
   * targets it waits on and the layout they were chosen by, for a main thread that can let the
   * reply go on the acknowledgements (`held-replies.ts`); undefined for any other hold.
   */
  heldWrite(hold: TurnHold): HeldWrite | undefined {
    if (!(hold instanceof AckHold)) return undefined;
    return { key: hold.entry.key, version: hold.entry.version, seq: hold.seq, targets: hold.entry.targets, epoch: this.#layout?.epoch ?? 0 };
  }

  /**
   * The caller of a remote ask waits for the write `hold` waits for: its first shipment names the
   * caller, so that each target tells it directly once it took the write (or a later one), when
   * that shipment goes promptly (see `#flushSoon`). `afterShipment` runs once that shipment went
   * (at once if it went already, or does not name the caller).
   */
  notifyOnAck(hold: TurnHold, caller: WaitingCaller, afterShipment: () => void): void {
    if (!(hold instanceof AckHold) || !this.#dirty.has(hold.entry) || !this.#flushSoon) return afterShipment();
    hold.entry.callers.push(caller);
    this.#afterShipment.push(afterShipment);
  }

  /** A committed layout: targets move, replicas of buckets this node no longer copies go. */
  setLayout(layout: Layout): void {
    this.#layout = layout;
    this.#targets = new Map();
    for (const member of layout.members) {
      this.#gone.delete(member.id);
      const fence = this.#fencedBelow.get(member.id);
      if (fence !== undefined && member.incarnation >= fence) this.#fencedBelow.delete(member.id);
    }
    for (const entry of this.#hosted.values()) {
      if (entry.gone) continue;
      const targets = this.#targetsOf(entry.bucket);
      if (sameList(targets, entry.targets)) continue;
      for (const target of entry.targets) if (!targets.includes(target) && !this.#gone.has(target)) this.#send(target, entry.bucket, { t: 'drop', items: [[entry.key, entry.version, this.incarnation]] });
      entry.targets = targets;
      for (const target of [...entry.acked.keys()]) if (!targets.includes(target)) entry.acked.delete(target);
      if (targets.some((target) => (entry.acked.get(target) ?? 0) < entry.seq)) this.#catchUp.add(entry);
      this.#settle(entry);
    }
    for (const [key, held] of this.#replicas) {
      if (!isCopyNode(layout, held.bucket, this.node)) this.#dropReplica(key);
    }
    this.#drainCatchUp();
  }

  /**
   * Node `node` (any incarnation it had so far) was declared down: its writes are refused from now
   * on, and its sessions' replicas held here are claimed to their buckets' owners.
   */
  nodeDown(node: string, owners: readonly string[], claim: (bucket: number, claims: ReplicaClaim[]) => void, before?: number): void {
    // Restarted (`before`: its new incarnation): only its earlier incarnations are gone.
    const incarnation = before ?? (this.#layout?.members.find((member) => member.id === node)?.incarnation ?? -1) + 1;
    if (incarnation > 0) this.#fencedBelow.set(node, Math.max(this.#fencedBelow.get(node) ?? 0, incarnation));
    if (before === undefined) this.#gone.add(node);
    // Sync replies waiting for that node's acknowledgement wait for the next layout's target instead.
    for (let bucket = 0; bucket < this.#buckets; bucket++) {
      if (owners[bucket] === undefined || owners[bucket] === node || this.#io.threadFor(this.node, bucket) !== this.thread) continue;
      claim(bucket, this.claims(bucket, node, before));
    }
  }

  /** Whether the current layout asks for replicas at all (R > 0). */
  get replicating(): boolean {
    return this.#layout !== null && replicasOf(this.#layout) > 0;
  }

  /**
   * Node `node` restarted: what its earlier incarnation acknowledged died with it, so the sessions
   * hosted here that ship to it are shipped to it whole again (at the catch-up rate).
   */
  targetRestarted(node: string): void {
    for (const entry of this.#hosted.values()) {
      if (entry.gone || !entry.targets.includes(node)) continue;
      entry.acked.delete(node);
      this.#catchUp.add(entry);
    }
    this.#gone.delete(node);
  }

  /** Members this worker takes for live: the layout's, without those declared down since. */
  liveMembers(): string[] {
    return (this.#layout?.members ?? []).map((member) => member.id).filter((id) => !this.#gone.has(id));
  }

  tick(): void {
    this.#shipAsync();
    const now = this.#io.now();
    const late: Hosted[] = [];
    for (const entry of this.#unacked) if (now - entry.lastShippedAt >= RESHIP_AFTER_MS) late.push(entry);
    if (late.length > 0) this.#ship(late, (entry, target) => (entry.acked.get(target) ?? 0) < entry.seq && !this.#gone.has(target));
    this.#drainCatchUp();
  }

  #drainCatchUp(): void {
    if (this.#catchUp.size === 0) return;
    const batch: Hosted[] = [];
    let bytes = 0;
    for (const entry of this.#catchUp) {
      // At least one per tick, however large.
      if (batch.length >= CATCH_UP_PER_TICK || (batch.length > 0 && bytes + entry.bytes.byteLength > CATCH_UP_BYTES_PER_TICK)) break;
      batch.push(entry);
      bytes += entry.bytes.byteLength;
    }
    for (const entry of batch) this.#catchUp.delete(entry);
    this.#ship(batch, (entry, target) => (entry.acked.get(target) ?? 0) < entry.seq);
  }

  /**
   * Whether every session hosted here of bucket `bucket` that ships to `member` had its current
   * state acknowledged by it (an incoming backup caught up, as far as this worker is concerned).
   */
  caughtUp(bucket: number, member: string): boolean {
    for (const entry of this.#hosted.values()) {
      if (entry.bucket !== bucket || entry.gone || !entry.targets.includes(member)) continue;
      if (!entry.acked.has(member)) return false;
    }
    return true;
  }

  /**
   * The incoming backups of the current layout (its epoch, -1 without one) that this worker has
   * not caught up yet (see `caughtUp`), as `[bucket, member]`.
   */
  lagging(): ReplicaLag {
    const layout = this.#layout;
    if (layout === null) return { epoch: -1, pairs: [] };
    const incoming = new Set<string>();
    for (const [bucket, member] of layout.incoming ?? []) {
      const id = layout.members[member]?.id;
      if (id !== undefined) incoming.add(`${bucket}\u0000${id}`);
    }
    const lagging = new Map<string, [number, string]>();
    if (incoming.size > 0) {
      for (const entry of this.#hosted.values()) {
        if (entry.gone) continue;
        for (const target of entry.targets) {
          // A copy of this activation's state is enough: later writes stream to it like to any
          // target (a sync one's reply waits for it), and a session that changes all the time
          // would otherwise keep its bucket's new backup lagging for as long as it is busy.
          if (entry.acked.has(target)) continue;
          const name = `${entry.bucket}\u0000${target}`;
          if (incoming.has(name)) lagging.set(name, [entry.bucket, target]);
        }
      }
    }
    return { epoch: layout.epoch, pairs: [...lagging.values()] };
  }


  stats(): ReplicationStats {
    let pending = 0;
    for (const entry of this.#hosted.values()) pending += entry.waiters.length;
    return {
      shipped: this.#shipped,
      acked: this.#acked,
      refused: this.#refused,
      replicasHeld: this.#replicas.size,
      bytesHeld: this.#bytesHeld,
      adopted: this.#adopted,
      pendingSyncAcks: pending,
      catchingUp: this.#catchUp.size,
    };
  }

  /** The last write of a session hosted here, if it was replicated (tests, inspection). */
  writeOf(key: string): { version: WriteVersion; state: Uint8Array } | undefined {
    const entry = this.#hosted.get(key);
    return entry === undefined || entry.gone ? undefined : { version: [entry.version, this.incarnation, entry.seq], state: entry.bytes };
  }

  /** The keys of the replicas held here (tests, inspection). */
  replicaKeys(): string[] {
    return [...this.#replicas.keys()];
  }

  /** Whether a replica of `key` is held here (tests, inspection). */
  replicaOf(key: string): { version: WriteVersion; writer: string; state: Uint8Array } | undefined {
    const held = this.#replicas.get(key);
    return held === undefined ? undefined : { version: [held.version, held.incarnation, held.seq], writer: held.writer, state: held.state };
  }

  #send(node: string, bucket: number, message: ReplicaMessage): void {
    this.#sendTo(node, this.#io.threadFor(node, bucket), message);
  }

  #sendTo(node: string, thread: number, message: ReplicaMessage): void {
    try {
      this.#io.send(node, thread, [REPLICA_FRAME, thread, this.node, this.incarnation, this.thread, message]);
    } catch {
      // Not reachable now: shipments are sent again on a tick, drops and adoptions are repaired
      // by the next layout (a replica of a bucket no longer copied is dropped, an adoption
      // that never arrives expires at the owner).
    }
  }

  #reply(node: string, thread: number, message: ReplicaMessage): void {
    this.#sendTo(node, thread, message);
  }
}

/**
 * A rebuild report's line for a replica (not a location): `[key, holder node, worker, version, 0, 0, 1, incarnation, seq]`.
 * The bucket's new owner uses it only for a session no member reported hosting.
 */
export function replicaEntry(key: string, node: string, worker: number, [version, incarnation, seq]: WriteVersion): DirectoryEntry {
  return [key, node, worker, version, 0, 0, 1, incarnation, seq] as unknown as DirectoryEntry;
}

/** The write version of a replica line of a report, or undefined for a location line. */
export function replicaEntryVersion(entry: DirectoryEntry): WriteVersion | undefined {
  const line = entry as unknown as unknown[];
  return line.length === 9 && line[6] === 1 ? [line[3] as number, line[7] as number, line[8] as number] : undefined;
}

/** Checks a replication message from the network; throws `InvalidArgument` naming what is wrong. */
export function parseReplicaMessage(value: unknown): ReplicaMessage {
  if (typeof value !== 'object' || value === null) throw new InvalidArgument('replica message is not an object');
  const message = value as ReplicaMessage;
  const items = (message as { items?: unknown }).items;
  if (!Array.isArray(items)) throw new InvalidArgument('replica message: items is not an array');
  const write = (item: unknown[], from: number): void => {
    for (let i = from; i < from + 3; i++) if (!Number.isSafeInteger(item[i]) || (item[i] as number) < 0) throw new InvalidArgument('replica message: malformed version');
  };
  const keyed = (item: unknown, length: number): unknown[] => {
    if (!Array.isArray(item) || item.length !== length || typeof item[0] !== 'string') throw new InvalidArgument(`replica message '${message.t}': malformed item`);
    return item;
  };
  switch (message.t) {
    case 'ship':
      for (const item of items) {
        const line = keyed(item, Array.isArray(item) && item.length === 6 ? 6 : 5);
        write(line, 1);
        if (!(line[4] instanceof Uint8Array)) throw new InvalidArgument('replica message: a state is not bytes');
        if (line.length === 6 && !(Array.isArray(line[5]) && line[5].every(isWaitingCaller))) throw new InvalidArgument('replica message: malformed waiting callers');
      }
      return message;
    case 'ack':
      for (const item of items) write(keyed(item, 4), 1);
      if (message.told !== undefined) {
        const told: unknown = message.told;
        if (!Array.isArray(told) || !told.every((item) => Array.isArray(item) && item.length === 3 && typeof item[0] === 'string' && Number.isSafeInteger(item[1]) && Number.isSafeInteger(item[2]))) {
          throw new InvalidArgument('replica ack: malformed told callers');
        }
        if (!Number.isSafeInteger(message.epoch)) throw new InvalidArgument('replica ack: told callers without an epoch');
      }
      if (!Array.isArray(message.refused)) throw new InvalidArgument('replica ack: refused is not an array');
      for (const item of message.refused) {
        const line = keyed(item, 6);
        write(line, 1);
        if (typeof line[4] !== 'string' || (line[5] !== 'fenced' && line[5] !== 'older')) throw new InvalidArgument('replica ack: a refusal without a reason');
      }
      return message;
    case 'drop':
      for (const item of items) {
        const line = keyed(item, 3);
        if (!Number.isSafeInteger(line[1]) || !Number.isSafeInteger(line[2])) throw new InvalidArgument('replica drop: malformed version');
      }
      return message;
    case 'adopt':
      for (const item of items) {
        const line = keyed(item, 2);
        if (!Number.isSafeInteger(line[1]) || (line[1] as number) < 0) throw new InvalidArgument('replica adopt: malformed version');
      }
      return message;
    default:
      throw new InvalidArgument(`unknown replica message '${String((message as { t: unknown }).t)}'`);
  }
}

/** A write's replica targets: node ids, at least one. */
export function isTargetList(value: unknown): value is string[] {
  return Array.isArray(value) && value.length > 0 && value.every((target) => typeof target === 'string');
}

function isWaitingCaller(value: unknown): boolean {
  if (!Array.isArray(value) || value.length !== 8 || typeof value[0] !== 'string') return false;
  const notice: unknown = value[5];
  const noticeOk =
    notice === null || (Array.isArray(notice) && notice.length === 4 && typeof notice[0] === 'string' && typeof notice[1] === 'string' && Number.isSafeInteger(notice[2]) && Number.isSafeInteger(notice[3]));
  return Number.isSafeInteger(value[1]) && Number.isSafeInteger(value[2]) && Number.isSafeInteger(value[3]) && (value[3] as number) > 0 && noticeOk && Number.isSafeInteger(value[6]) && isTargetList(value[7]);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((item, index) => item === b[index]);
}
