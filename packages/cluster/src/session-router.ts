/**
 * The caller's side of session routing, one per thread (each worker, the main thread, a client):
 * it turns an ask or tell for a session into a call frame and sends it where the session is.
 *
 * - With a cached location, the call goes straight there (1 hop) and is marked `Direct`.
 * - Otherwise it goes to the owner of the session's bucket, which forwards it (2 hops). The
 *   session's host then tells this thread where it is (a location notice, on the ask's result or
 *   on its own for a tell), and later calls go direct.
 * - A cached location is never trusted blindly: a node the session left forwards the call and the
 *   new host sends a notice, which corrects the cache.
 *
 * Per-sender order: calls to one session from this thread are numbered (`seq`). Every call that
 * did not arrive directly is acknowledged by a notice carrying its number. When this thread is
 * about to send on a different path than its last call took (a new location, a new bucket owner)
 * while calls on the old path are unacknowledged, it holds the new calls until the old path has
 * delivered them all, so a later call never overtakes an earlier one. A hold is given up after a
 * timeout (an acknowledgement lost with a connection), unless the calls it waits for are reported
 * waiting somewhere on their way (`Pending`), which starts the timeout again.
 *
 * At most once: an ask sent to a node that the cluster then declares down may have run there or
 * not; it is never sent again, and fails with `HostLost` at once rather than at its deadline.
 *
 * Replicated writes: the result of a `sync` turn may come from the replica holders of its write
 * (`ReplicatedResult`) rather than from its host; the ask settles once every replica target named
 * in it delivered it in the layout epoch the targets were chosen by, or once the host's own result
 * comes, whichever is first. The host sends its own unless the targets all delivered theirs (it
 * judges by the same rule), so the caller waits one network hop less than if the host gathered
 * the acknowledgements first.
 */
import { HostLost, Kind, Unavailable, activationKey, bucketOf, errorToShape, type AskEnvelope, type Envelope, type TellEnvelope } from '@wadi/core';
import type { Layout } from './layout.js';
import { CallFlag, Frame, type CallFrame, type CallerFrame, type LocationNotice, type ReplicatedResultFrame, type RoutedFrame } from './routing.js';

export interface SessionRouterIO {
  /**
   * Sends a frame to thread `thread` of node `node` (this node included). Throws when it cannot be
   * sent. A frame for this very thread is delivered (as a copy) before `send` returns.
   */
  send(node: string, thread: number, frame: RoutedFrame): void;
  /** Hands a Reply or Failure envelope to this thread's actor system (or whoever waits for `requestId`). */
  settle(envelope: Envelope): void;
  now(): number;
  log(message: string): void;
  /**
   * Nodes that can pass a call on when the node it is meant for cannot be reached from here (a
   * client not yet connected to every member): any member forwards a call toward its session.
   */
  relays?(): readonly string[];
}

export interface SessionRouterOptions {
  /** This thread: its node, the node's incarnation, and its thread index there. */
  node: string;
  incarnation: number;
  thread: number;
  /** The cluster's bucket count (a layout brings it too). */
  buckets: number;
  /** Locations cached per thread before the oldest are dropped (default 100,000). */
  cacheLimit?: number;
  /** Longest a path switch holds calls for unacknowledged earlier ones (default 2000 ms). */
  holdTimeoutMs?: number;
  /** Calls kept while this thread has no layout yet (default 10,000); more fail with `Unavailable`. */
  maxEarlyCalls?: number;
}

interface Route {
  /** Where the session was last heard to be, with that location's version. */
  node: string | undefined;
  version: number;
  /**
   * The number of the call whose notice gave that location (or of the last call sent when this
   * thread learned it otherwise). A notice for a later call is newer news whatever its version: a
   * session lost with a node starts again at a lower one.
   */
  nodeSeq: number;
  /** The number of the last call to it from this thread, and the highest one acknowledged by a notice. */
  seq: number;
  noticed: number;
  /**
   * The node the last call was sent to, and whether it went there directly: through a node as the
   * bucket's owner and straight to it as the session's host are different paths (the owner may
   * send calls elsewhere), even when that node is both.
   */
  via: string | undefined;
  viaDirect: boolean;
  sentSeq: number;
  held: CallFrame[] | undefined;
  heldSince: number;
}

export interface SessionRouterStats {
  cached: number;
  held: number;
  early: number;
  /** Calls re-sent through the bucket owner because their cached node could not be reached. */
  rerouted: number;
}

interface InFlight {
  node: string;
  at: number;
  route: Route;
  seq: number;
}

/** How long an unanswered ask is remembered for `nodeGone` (longer than any sensible ask deadline). */
const IN_FLIGHT_KEPT_MS = 10 * 60_000;

export class SessionRouter {
  readonly node: string;
  readonly thread: number;
  readonly #incarnation: number;
  #buckets: number;
  readonly #io: SessionRouterIO;
  readonly #cacheLimit: number;
  readonly #holdTimeoutMs: number;
  readonly #maxEarly: number;
  readonly #routes = new Map<string, Route>();
  readonly #holding = new Set<Route>();
  #layout: Layout | null = null;
  /** owner node id and its workers, per bucket. */
  #owners: string[] = [];
  readonly #workers = new Map<string, number>();
  #early: CallFrame[] = [];
  #rerouted = 0;
  /** Asks sent and not answered yet: request id -> the node sent to, when, and the call's route and number. */
  readonly #inFlight = new Map<number, InFlight>();
  #inFlightSweptAt = 0;
  /**
   * Asks whose `sync` result one or more of several replica targets delivered: the targets that
   * have not yet. (Not kept with `#inFlight`: an ask this thread delivered to itself is not there,
   * and may still end up answered by replicas, after its session moved away.)
   */
  readonly #replicasWaiting = new Map<number, { waiting: Set<string>; at: number }>();

  constructor(options: SessionRouterOptions, io: SessionRouterIO) {
    this.node = options.node;
    this.thread = options.thread;
    this.#incarnation = options.incarnation;
    this.#buckets = options.buckets;
    this.#io = io;
    this.#cacheLimit = options.cacheLimit ?? 100_000;
    this.#holdTimeoutMs = options.holdTimeoutMs ?? 2000;
    this.#maxEarly = options.maxEarlyCalls ?? 10_000;
  }

  get layout(): Layout | null {
    return this.#layout;
  }

  setLayout(layout: Layout): void {
    this.#layout = layout;
    this.#buckets = layout.buckets;
    this.#owners = layout.owners.map((owner) => layout.members[owner]!.id);
    for (const member of layout.members) this.#workers.set(member.id, member.workers);
    const early = this.#early;
    this.#early = [];
    for (const frame of early) this.#send(frame);
  }

  /** The worker of node `node` that hosts bucket `bucket`'s sessions and directory. */
  threadFor(node: string, bucket: number): number {
    return bucket % (this.#workers.get(node) ?? 1);
  }

  ownerOf(bucket: number): string | undefined {
    return this.#owners[bucket];
  }

  /** An ask or tell for a session, from this thread's actor system. */
  send(envelope: AskEnvelope | TellEnvelope): void {
    const ask = envelope[0] === Kind.Ask;
    const frame: CallFrame = ask
      ? [Frame.Call, envelope[1], this.node, this.#incarnation, this.thread, envelope[3], envelope[4], envelope[5], envelope[6], 0, 0, 0, 0, envelope[7] ?? '', '', 0]
      : [Frame.Call, 0, this.node, this.#incarnation, this.thread, envelope[1], envelope[2], envelope[3], envelope[4], 0, 0, 0, 0, envelope[5] ?? '', '', 0];
    this.#send(frame);
  }

  /**
   * Whether a call to a session hosted on this very thread may skip the router and be delivered
   * at once: only when no earlier call to it from here is still on its way (through its owner, or
   * held), or it would overtake them.
   */
  mayShortcut(key: string): boolean {
    const route = this.#routes.get(key);
    return route === undefined || (route.held === undefined && route.noticed >= route.sentSeq);
  }

  /** A result, a notice or a pending report addressed to this thread. */
  receive(frame: CallerFrame): void {
    if (frame[0] === Frame.Notice) {
      this.#notice(frame[3]);
      return;
    }
    if (frame[0] === Frame.Pending) {
      // Calls this hold waits for are alive: wait on.
      const route = this.#routes.get(frame[3]);
      if (route?.held !== undefined && frame[4] > route.noticed) route.heldSince = Math.max(route.heldSince, this.#io.now());
      return;
    }
    if (frame[0] === Frame.ReplicatedResult) return this.#replicatedResult(frame);
    const [, , , requestId, ok, value, notice] = frame;
    if (notice !== null) this.#notice(notice);
    else if (requestId !== 0) this.#answered(requestId);
    if (requestId !== 0) this.#inFlight.delete(requestId);
    if (requestId !== 0) this.#replicasWaiting.delete(requestId);
    if (requestId !== 0) this.#io.settle(ok ? [Kind.Reply, requestId, value] : [Kind.Failure, requestId, value as never]);
  }

  /** A replica holder delivers a `sync` result: taken once every target did, in the epoch the targets were chosen by. */
  #replicatedResult([, , , requestId, value, notice, fromNode, holderEpoch, writeEpoch, targets]: ReplicatedResultFrame): void {
    // Judged by another layout than the targets were chosen by: the host sends its own result then.
    if (holderEpoch !== writeEpoch) return;
    if (targets.length > 1) {
      let entry = this.#replicasWaiting.get(requestId);
      if (entry === undefined) this.#replicasWaiting.set(requestId, (entry = { waiting: new Set(targets), at: this.#io.now() }));
      if (!entry.waiting.delete(fromNode) || entry.waiting.size > 0) return;
      this.#replicasWaiting.delete(requestId);
    } else if (targets[0] !== fromNode) return;
    // (An ask settled already, by the host's result, or given up on, is settled in vain: its caller ignores it.)
    if (notice !== null) this.#notice(notice);
    else this.#answered(requestId);
    this.#inFlight.delete(requestId);
    this.#io.settle([Kind.Reply, requestId, value]);
  }

  /** This thread learned where a session is without a call (it migrated the session away itself). */
  learn(key: string, node: string, version: number): void {
    const route = this.#route(key);
    if (version >= route.version) {
      route.node = node;
      route.version = version;
      route.nodeSeq = route.seq;
    }
  }

  /**
   * A node left or went down (`lost`: it crashed, or a new incarnation replaced it): forget the
   * locations there, so calls go through the owners again. Asks sent to a lost node fail with
   * `HostLost`; a node that left passes on what it was sent.
   * Calls already sent there are not taken for lost: a node that leaves forwards them to where
   * its sessions went, and even a crashed one may have passed them on first; a later call waits
   * for them (or the hold timeout) like on any path switch, or it could overtake them.
   */
  nodeGone(node: string, lost = false): void {
    for (const route of this.#routes.values()) {
      if (route.node === node) route.node = undefined;
    }
    if (!lost) return;
    for (const [requestId, sent] of this.#inFlight) {
      if (sent.node !== node) continue;
      this.#inFlight.delete(requestId);
      const error = new HostLost(`node ${node} went down after this call was sent to it: it may or may not have run, and it was not sent again`);
      this.#io.settle([Kind.Failure, requestId, errorToShape(error)]);
    }
  }

  /** Releases holds that waited too long (an acknowledgement was lost with a connection). */
  tick(): void {
    const now = this.#io.now();
    if (now - this.#inFlightSweptAt >= IN_FLIGHT_KEPT_MS) {
      // Asks that timed out at their caller never get a result here: forget them eventually.
      this.#inFlightSweptAt = now;
      for (const [requestId, sent] of this.#inFlight) if (now - sent.at >= IN_FLIGHT_KEPT_MS) this.#inFlight.delete(requestId);
      for (const [requestId, entry] of this.#replicasWaiting) if (now - entry.at >= IN_FLIGHT_KEPT_MS) this.#replicasWaiting.delete(requestId);
    }
    if (this.#holding.size === 0) return;
    for (const route of [...this.#holding]) {
      if (now - route.heldSince >= this.#holdTimeoutMs) {
        this.#io.log(`released calls held ${Math.round(now - route.heldSince)} ms for earlier ones that were never acknowledged`);
        this.#release(route);
      }
    }
  }

  stats(): SessionRouterStats {
    let held = 0;
    for (const route of this.#holding) held += route.held?.length ?? 0;
    return { cached: this.#routes.size, held, early: this.#early.length, rerouted: this.#rerouted };
  }

  // internals

  #send(frame: CallFrame): void {
    if (this.#layout === null) {
      if (this.#early.length >= this.#maxEarly) return this.#fail(frame, new Unavailable('this node has not joined a cluster layout yet'));
      this.#early.push(frame);
      return;
    }
    const route = this.#route(activationKey(frame[5], frame[6]));
    frame[10] = ++route.seq;
    if (route.held !== undefined) {
      route.held.push(frame);
      return;
    }
    const target = route.node ?? this.#owners[bucketOf(frame[6], this.#buckets)]!;
    const switching = target !== route.via || (route.node !== undefined) !== route.viaDirect;
    if (route.via !== undefined && switching && route.noticed < route.sentSeq) {
      // Calls on the previous path are not all delivered yet: this one must not overtake them.
      route.held = [frame];
      route.heldSince = this.#io.now();
      this.#holding.add(route);
      return;
    }
    this.#dispatch(route, frame);
  }

  #dispatch(route: Route, frame: CallFrame): void {
    const bucket = bucketOf(frame[6], this.#buckets);
    const direct = route.node !== undefined;
    const target = route.node ?? this.#owners[bucket]!;
    frame[11] = direct ? frame[11] | CallFlag.Direct | CallFlag.Located : frame[11] & ~(CallFlag.Direct | CallFlag.Located);
    frame[12] = direct ? route.version : 0;
    frame[15] = Math.max(frame[15], this.#layout?.epoch ?? 0);
    // Noted before it is sent: a call to this very thread may be answered before `send` returns.
    if (frame[1] !== 0) this.#inFlight.set(frame[1], { node: target, at: this.#io.now(), route, seq: frame[10] });
    try {
      this.#io.send(target, this.threadFor(target, bucket), frame);
    } catch (error) {
      this.#inFlight.delete(frame[1]);
      if (!direct) {
        for (const relay of this.#io.relays?.() ?? []) {
          if (relay === target) continue;
          try {
            if (frame[1] !== 0) this.#inFlight.set(frame[1], { node: relay, at: this.#io.now(), route, seq: frame[10] });
            this.#io.send(relay, this.threadFor(relay, bucket), frame);
            route.via = relay;
            route.viaDirect = false;
            route.sentSeq = frame[10];
            return;
          } catch {
            this.#inFlight.delete(frame[1]);
            // Try the next one.
          }
        }
        return this.#fail(frame, error);
      }
      // The cached node cannot be reached (it left or crashed): ask the bucket's owner instead.
      this.#rerouted++;
      route.node = undefined;
      if (route.via === target) route.noticed = Math.max(route.noticed, route.sentSeq);
      return this.#dispatch(route, frame);
    }
    route.via = target;
    route.viaDirect = direct;
    route.sentSeq = frame[10];
  }

  /**
   * A call sent straight to the session's host was answered (no notice: it came directly): the
   * calls sent before it on that path reached the session too, in order, so a path switch need
   * not wait for them.
   */
  #answered(requestId: number): void {
    const sent = this.#inFlight.get(requestId);
    if (sent === undefined) return;
    const route = sent.route;
    if (sent.seq <= route.noticed || route.via !== sent.node || !route.viaDirect) return;
    route.noticed = sent.seq;
    if (route.held !== undefined && route.noticed >= route.sentSeq) this.#release(route);
  }

  /**
   * This thread's session host ran (queued) call `seq` to session `key` from this very thread: it
   * is not in flight any more, and, unless it came direct, `notice` says where the session is.
   * (A call this thread sends itself is not necessarily delivered here: the host may pass it on, as
   * the bucket's owner or along a pointer.)
   */
  delivered(key: string, seq: number, notice: LocationNotice | null = null): void {
    // Where it arrived first, then that it did: a call held behind this one must go there, not
    // to the place the route knew before (a session arriving here by migration is not there).
    if (notice !== null) return this.#notice(notice);
    const route = this.#routes.get(key);
    if (route === undefined || seq <= route.noticed) return;
    route.noticed = seq;
    if (route.held !== undefined && route.noticed >= route.sentSeq) this.#release(route);
  }

  #notice([key, node, version, seq]: LocationNotice): void {
    const route = this.#routes.get(key);
    if (route === undefined) {
      if (node !== '') this.learn(key, node, version);
      return;
    }
    if (seq > route.noticed) route.noticed = seq;
    // Calls reach the session in their order, so a later call's notice is the newer news; of two
    // for one call (or for none), the higher version.
    if (node !== '' && (seq > route.nodeSeq || (seq === route.nodeSeq && version >= route.version))) {
      route.node = node;
      route.version = version;
      route.nodeSeq = Math.max(route.nodeSeq, seq);
    }
    if (route.held !== undefined && route.noticed >= route.sentSeq) this.#release(route);
  }

  #release(route: Route): void {
    const held = route.held ?? [];
    route.held = undefined;
    this.#holding.delete(route);
    for (const frame of held) this.#dispatch(route, frame);
  }

  #fail(frame: CallFrame, error: unknown): void {
    if (frame[1] !== 0) this.#io.settle([Kind.Failure, frame[1], errorToShape(error)]);
    else this.#io.log(`a tell ${frame[5]}.${frame[7]} to '${frame[6]}' was not delivered: ${(error as Error).message}`);
  }

  #route(key: string): Route {
    let route = this.#routes.get(key);
    if (route === undefined) {
      if (this.#routes.size >= this.#cacheLimit) this.#evict();
      route = { node: undefined, version: 0, nodeSeq: 0, seq: 0, noticed: 0, via: undefined, viaDirect: false, sentSeq: 0, held: undefined, heldSince: 0 };
      this.#routes.set(key, route);
    }
    return route;
  }

  /** Drops the oldest tenth of the cache, keeping routes with calls not yet acknowledged. */
  #evict(): void {
    let budget = Math.max(1, Math.floor(this.#cacheLimit / 10));
    for (const [key, route] of this.#routes) {
      if (budget === 0) break;
      if (route.held !== undefined || (route.node === undefined && route.noticed < route.sentSeq)) continue;
      this.#routes.delete(key);
      budget--;
    }
  }
}
