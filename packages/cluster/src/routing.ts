/**
 * The frames that carry session calls through a cluster, declared once for the routers, the
 * hosts, the node's threads, clients and the simulator; and `parseFrame`, which checks every
 * frame that comes from the network before anything acts on it.
 *
 * A call is addressed to a session, not to a place: whoever holds it (the caller's thread, the
 * bucket's owner, a node the session left) sends it on toward where the session lives. Its
 * result goes straight back to the caller's thread, named in the call. Frames are tuples (one
 * msgpack array each) because millions of them cross threads and sockets.
 */
import { InvalidArgument, ROUTING_POLICIES, activationKey, type ErrorShape, type RoutingPolicy } from '@wadi/core';
import { isTargetList, parseReplicaMessage, type ReplicaFrame } from './replication.js';

/** Frame kinds; core's envelope kinds are below 16. */
export const enum Frame {
  Call = 16,
  Result = 17,
  Notice = 18,
  Migration = 19,
  /** A frame for thread `thread` of the node that receives this (node to node). */
  Deliver = 20,
  /** A frame a thread hands to its node's main thread, for thread `thread` of node `node` (within a node). */
  Out = 21,
  Pending = 22,
  /** Session replication between worker threads (see `replication.ts`). */
  Replica = 23,
  /** A worker hands its main thread a `sync` reply to hold until the replicas acknowledged its write (`held-replies.ts`; within a node). */
  Held = 24,
  /** The worker's own word on a reply it handed its main thread to hold: let it go, or fail it (within a node). */
  HeldOutcome = 25,
  /** A `sync` turn's result, from a replica holder that took its write (straight to the caller, not through the host). */
  ReplicatedResult = 26,
}

/** Bits of a call's `flags`. */
export const enum CallFlag {
  /** The caller sent it where its cache says the session is: no location notice is wanted. */
  Direct = 1,
  /** The bucket's owner placed the session on the receiving node (version in `version`): activate it. */
  Grant = 2,
  /**
   * A node that was sent the call as the session's host (`Located`, or a grant) does not host it:
   * the owner must not point back there (`bouncedBy`) with the location version it was sent by
   * (`version`) or an older one.
   */
  Bounced = 4,
  /**
   * Sent where a cache, a directory or a forwarding pointer says the session is, at location
   * version `version`; without it the call was sent to a node as the bucket's (presumed) owner,
   * and that node's not hosting the session says nothing about where it is.
   */
  Located = 8,
}

/**
 * An ask (`requestId` > 0) or a tell (0) for session (`type`, `id`). `from*` is the caller's thread,
 * where the result and location notices go. `hops` counts node-to-node transfers so far. `seq`
 * numbers the caller thread's messages to this session (see `SessionRouter`). `epoch` is the
 * newest layout epoch any node that routed it had: a node with an older layout does not route it
 * by that one (it would send it back where it came from), but waits until it has caught up.
 */
export type CallFrame = [
  kind: Frame.Call,
  requestId: number,
  fromNode: string,
  fromIncarnation: number,
  fromThread: number,
  type: string,
  id: string,
  method: string,
  args: unknown[],
  hops: number,
  seq: number,
  flags: number,
  version: number,
  routing: RoutingPolicy | '',
  bouncedBy: string,
  epoch: number,
];

/** Where a session is: `version` grows with each move, so of two notices the newer wins. */
export type LocationNotice = [key: string, node: string, version: number, seq: number];

/** The outcome of an ask, for thread `toThread` of the caller's node (incarnation `toIncarnation`). */
export type ResultFrame = [
  kind: Frame.Result,
  toThread: number,
  toIncarnation: number,
  requestId: number,
  ok: boolean,
  value: unknown,
  /** Set when the call did not come directly: where the session is now. */
  notice: LocationNotice | null,
];

/** A location notice for a tell (an ask's rides on its result). `node` '' acknowledges `seq` without a location. */
export type NoticeFrame = [kind: Frame.Notice, toThread: number, toIncarnation: number, notice: LocationNotice];

/**
 * The caller's calls to session `key` numbered up to `seq` are alive but waiting on their way (for
 * a bucket's handoff, a newer layout, a first connection): a path switch keeps holding later ones
 * for them (see `SessionRouter`). Repeated while they wait, so a hold is not given up on a call that
 * is merely slow; one lost with a connection stops being reported, and the hold times out.
 */
export type PendingFrame = [kind: Frame.Pending, toThread: number, toIncarnation: number, key: string, seq: number];

/** Callers of calls waiting somewhere hear this often that they still are, well within a router's hold timeout (2 s). */
export const PENDING_REPORT_MS = 1000;

/** A migration protocol message between the session hosts of two nodes (see `migration.ts`). */
export type MigrationFrame = [kind: Frame.Migration, toThread: number, fromNode: string, fromThread: number, message: MigrationMessage];

export type DeliverFrame = [kind: Frame.Deliver, thread: number, frame: RoutedFrame];
export type OutFrame = [kind: Frame.Out, node: string, thread: number, frame: RoutedFrame];

/**
 * A result for another node that waits on the host's main thread until every replica target in
 * `targets` acknowledged write `seq` (or a later one) of session `key` at location `version`
 * (written by this node's incarnation), or the worker says so (`HeldOutcomeFrame`); it is not
 * sent at all when every target delivered it to the caller itself (`ReplicatedResultFrame`).
 * `epoch`: the layout the worker chose the targets by.
 */
export type HeldFrame = [kind: Frame.Held, fromThread: number, holdId: number, key: string, version: number, seq: number, targets: string[], toNode: string, result: ResultFrame, epoch: number];

/** Lets a held result go (`error` null) or replaces it with a failure. */
export type HeldOutcomeFrame = [kind: Frame.HeldOutcome, fromThread: number, holdId: number, error: ErrorShape | null];

/**
 * The result of a `sync` turn, from replica holder `fromNode`, which took the turn's write while
 * in layout `holderEpoch`. The host shipped the result with the write, to each of the replica
 * `targets` it chose in layout `writeEpoch`; the caller takes it once every target delivered it in
 * that same epoch. Otherwise (a target refused, could not reach the caller, or judged by another
 * layout) the host sends the result itself once it has the acknowledgements: the host decides
 * which by the same rule (docs/cluster.md, "Where a sync reply waits"). So a replicated write
 * costs the caller one network hop more than an unreplicated one, not two.
 */
export type ReplicatedResultFrame = [
  kind: Frame.ReplicatedResult,
  toThread: number,
  toIncarnation: number,
  requestId: number,
  value: unknown,
  notice: LocationNotice | null,
  fromNode: string,
  holderEpoch: number,
  writeEpoch: number,
  targets: string[],
];

export type RoutedFrame = CallFrame | ResultFrame | NoticeFrame | PendingFrame | MigrationFrame | ReplicaFrame | HeldFrame | HeldOutcomeFrame | ReplicatedResultFrame;
/** What a caller's thread receives about its calls (each names the thread and incarnation it is for at [1] and [2]). */
export type CallerFrame = ResultFrame | NoticeFrame | PendingFrame | ReplicatedResultFrame;

export function isCallerFrame(frame: RoutedFrame): frame is CallerFrame {
  const kind = frame[0];
  return kind === Frame.Result || kind === Frame.Notice || kind === Frame.Pending || kind === Frame.ReplicatedResult;
}

/** One session in a migration offer: its location version at the target, and its encoded state. */
export type MigratingSession = [type: string, id: string, version: number, state: Uint8Array];

export type MigrationMessage =
  /** The source froze these sessions (one group or more) and offers them with their state. */
  | { t: 'offer'; batch: number; sessions: MigratingSession[] }
  /** The target holds them frozen and registered them with their bucket owners; `refused` did not move. */
  | { t: 'accepted'; batch: number; accepted: string[]; refused: [key: string, reason: string][] }
  /** The calls that waited at the source, in order, per session key: run them first, then thaw. */
  | { t: 'handover'; batch: number; calls: CallFrame[] }
  /** The target thawed the batch; the source may forget it. */
  | { t: 'done'; batch: number }
  /** The source asks a bucket owner on a third node whether it routes these sessions (at these versions) to the target yet. */
  | { t: 'fence'; batch: number; sessions: [key: string, version: number][] }
  /** The owner does: every call it sent the source before comes before this answer. */
  | { t: 'fenced'; batch: number; keys: string[] }
  /** The source gave up before handing over: drop what was accepted and send back what waited. */
  | { t: 'abort'; batch: number };

export const ROUTING_CODES: readonly (RoutingPolicy | '')[] = ['', ...ROUTING_POLICIES];

/** A thread index on a node: workers are 0..W-1; the main thread is MAIN_THREAD. */
export const MAIN_THREAD = -2;
/**
 * Clients (`connect()`) take part under an id that starts with this, which no node id may: they
 * call sessions like a thread of a node, and get results and notices at thread 0.
 */
export const CLIENT_ID_PREFIX = '~';

export function isClientId(id: string): boolean {
  return id.startsWith(CLIENT_ID_PREFIX);
}

/** Checks a routed frame from the network (or a client); throws `InvalidArgument` naming what is wrong. */
export function parseFrame(value: unknown, buckets: number): RoutedFrame {
  if (!Array.isArray(value)) throw new InvalidArgument('a frame must be an array');
  switch (value[0]) {
    case Frame.Call:
      return parseCall(value);
    case Frame.Result: {
      if (value.length !== 7) throw new InvalidArgument('result frame: wrong length');
      thread(value[1]);
      integer(value[2], 'incarnation');
      integer(value[3], 'request id');
      if (typeof value[4] !== 'boolean') throw new InvalidArgument('result frame: ok is not a boolean');
      if (!value[4] && !isErrorShape(value[5])) throw new InvalidArgument('result frame: a failure without an error');
      if (value[6] !== null) notice(value[6]);
      return value as ResultFrame;
    }
    case Frame.Notice:
      if (value.length !== 4) throw new InvalidArgument('notice frame: wrong length');
      thread(value[1]);
      integer(value[2], 'incarnation');
      notice(value[3]);
      return value as NoticeFrame;
    case Frame.ReplicatedResult:
      if (value.length !== 10) throw new InvalidArgument('replicated result frame: wrong length');
      thread(value[1]);
      integer(value[2], 'incarnation');
      integer(value[3], 'request id');
      if (value[5] !== null) notice(value[5]);
      if (typeof value[6] !== 'string') throw new InvalidArgument('replicated result frame: no replica node');
      integer(value[7], 'holder epoch');
      integer(value[8], 'write epoch');
      if (!isTargetList(value[9])) throw new InvalidArgument('replicated result frame: malformed targets');
      return value as ReplicatedResultFrame;
    case Frame.Pending:
      if (value.length !== 5) throw new InvalidArgument('pending frame: wrong length');
      thread(value[1]);
      integer(value[2], 'incarnation');
      if (typeof value[3] !== 'string') throw new InvalidArgument('pending frame: no session key');
      integer(value[4], 'pending seq');
      return value as PendingFrame;
    case Frame.Migration:
      if (value.length !== 5) throw new InvalidArgument('migration frame: wrong length');
      thread(value[1]);
      if (typeof value[2] !== 'string') throw new InvalidArgument('migration frame: no source node');
      thread(value[3]);
      migration(value[4], buckets);
      return value as MigrationFrame;
    case Frame.Replica:
      if (value.length !== 6) throw new InvalidArgument('replica frame: wrong length');
      thread(value[1]);
      if (typeof value[2] !== 'string') throw new InvalidArgument('replica frame: no source node');
      integer(value[3], 'incarnation');
      thread(value[4]);
      parseReplicaMessage(value[5]);
      return value as ReplicaFrame;
    default:
      throw new InvalidArgument(`unknown frame kind ${String(value[0])}`);
  }
}

export function parseCall(value: unknown[]): CallFrame {
  if (value.length !== 16) throw new InvalidArgument('call frame: wrong length');
  integer(value[1], 'request id');
  if (typeof value[2] !== 'string') throw new InvalidArgument('call frame: no caller node');
  integer(value[3], 'caller incarnation');
  thread(value[4]);
  for (const [index, name] of [[5, 'type'], [6, 'id'], [7, 'method']] as const) {
    if (typeof value[index] !== 'string' || (value[index] as string).length === 0) throw new InvalidArgument(`call frame: ${name} is not a non-empty string`);
  }
  if (!Array.isArray(value[8])) throw new InvalidArgument('call frame: arguments are not an array');
  integer(value[9], 'hops');
  integer(value[10], 'seq');
  integer(value[11], 'flags');
  integer(value[12], 'version');
  if (!ROUTING_CODES.includes(value[13] as RoutingPolicy)) throw new InvalidArgument(`call frame: unknown routing policy ${JSON.stringify(value[13])}`);
  if (typeof value[14] !== 'string') throw new InvalidArgument('call frame: bouncedBy is not a string');
  integer(value[15], 'epoch');
  return value as CallFrame;
}

function migration(value: unknown, buckets: number): void {
  if (typeof value !== 'object' || value === null) throw new InvalidArgument('migration message is not an object');
  const message = value as MigrationMessage;
  integer(message.batch, 'batch');
  switch (message.t) {
    case 'offer':
      if (!Array.isArray(message.sessions)) throw new InvalidArgument('offer: sessions is not an array');
      for (const session of message.sessions) {
        if (!Array.isArray(session) || session.length !== 4 || typeof session[0] !== 'string' || typeof session[1] !== 'string') {
          throw new InvalidArgument('offer: malformed session');
        }
        integer(session[2], 'version');
        if (!(session[3] instanceof Uint8Array)) throw new InvalidArgument('offer: a session state is not bytes');
      }
      return;
    case 'accepted':
      if (!Array.isArray(message.accepted) || !message.accepted.every((key) => typeof key === 'string')) throw new InvalidArgument('accepted: malformed keys');
      if (!Array.isArray(message.refused) || !message.refused.every((item) => Array.isArray(item) && typeof item[0] === 'string' && typeof item[1] === 'string')) {
        throw new InvalidArgument('accepted: malformed refusals');
      }
      return;
    case 'handover':
      if (!Array.isArray(message.calls)) throw new InvalidArgument('handover: calls is not an array');
      for (const call of message.calls) {
        if (!Array.isArray(call) || call[0] !== Frame.Call) throw new InvalidArgument('handover: a call is malformed');
        parseCall(call);
      }
      return;
    case 'fence':
      if (!Array.isArray(message.sessions) || !message.sessions.every((item) => Array.isArray(item) && item.length === 2 && typeof item[0] === 'string' && Number.isSafeInteger(item[1]))) {
        throw new InvalidArgument('fence: malformed sessions');
      }
      return;
    case 'fenced':
      if (!Array.isArray(message.keys) || !message.keys.every((key) => typeof key === 'string')) throw new InvalidArgument('fenced: malformed keys');
      return;
    case 'done':
    case 'abort':
      return;
    default:
      void buckets;
      throw new InvalidArgument(`unknown migration message '${String((message as { t: unknown }).t)}'`);
  }
}

function notice(value: unknown): void {
  if (!Array.isArray(value) || value.length !== 4 || typeof value[0] !== 'string' || typeof value[1] !== 'string') {
    throw new InvalidArgument('malformed location notice');
  }
  integer(value[2], 'notice version');
  integer(value[3], 'notice seq');
}

function thread(value: unknown): void {
  if (!Number.isSafeInteger(value) || (value as number) < MAIN_THREAD || (value as number) > 4096) throw new InvalidArgument(`no thread ${String(value)}`);
}

function integer(value: unknown, name: string): void {
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw new InvalidArgument(`${name} is not a non-negative integer`);
}

function isErrorShape(value: unknown): value is ErrorShape {
  return typeof value === 'object' && value !== null && typeof (value as ErrorShape).message === 'string' && typeof (value as ErrorShape).name === 'string';
}

/**
 * Tells the callers of these waiting calls that they are alive (one `Pending` frame per caller
 * thread and session, with the highest number), so their routers keep holding later calls for
 * them. Calls without a number (from a migration's source thread) need none.
 */
export function reportPending(frames: Iterable<CallFrame>, send: (node: string, thread: number, frame: PendingFrame) => void): void {
  const highest = new Map<string, CallFrame>();
  for (const frame of frames) {
    if (frame[10] === 0) continue;
    const name = `${frame[2]}\u0000${frame[3]}\u0000${frame[4]}\u0000${frame[5]}\u0000${frame[6]}`;
    const seen = highest.get(name);
    if (seen === undefined || frame[10] > seen[10]) highest.set(name, frame);
  }
  for (const frame of highest.values()) {
    try {
      send(frame[2], frame[4], [Frame.Pending, frame[4], frame[3], activationKey(frame[5], frame[6]), frame[10]]);
    } catch {
      // The caller is unreachable: its hold times out.
    }
  }
}
