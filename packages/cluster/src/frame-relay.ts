/**
 * A node's main thread in session routing: it holds the connections to the other nodes, so every
 * session frame between this node and another passes through here. The same code runs in a real
 * node (packages/node's main-routing.ts) and in the simulator.
 *
 * - A frame a thread of this node hands out for another node goes on over that node's connection,
 *   and only if that connection is to the incarnation of the node the layout names: a node that
 *   restarted may connect before the layout admits it, and a frame routed to its predecessor
 *   (a call to a session that died with it) would reach it, be bounced back, and arrive behind
 *   later calls of the same caller. Such a frame is undeliverable instead (next point).
 * - A frame from another node goes to the worker (or the main thread's own router) it names; a
 *   call's hop count goes up by one on the way in.
 * - A member of the layout this node has not been connected to yet (it just joined, or this node
 *   did, while the other was busy or paused) is not a lost cause: its frames wait here, in order,
 *   until the connection is up, for a bounded time and number. Once the connection to a member has
 *   been up, a broken one is not waited for: what was in flight on it is lost with it anyway.
 * - A call that cannot reach its node goes to its bucket's owner instead (when that is another
 *   node and not where it failed to go); the owner's own grant, which placed a new session on a
 *   node it cannot reach, comes back to the owner's worker, which activates the session itself;
 *   anything else fails back to its caller. Results, notices and migration messages are repeated
 *   or timed out by their senders.
 * - The main thread's own calls (`node.ref()`) are routed by its own `SessionRouter`.
 * - A call from another node or a client that the node may not serve now (`admit`: the quorum
 *   gate) fails back to its caller at once.
 * - A worker's `sync` reply for another node waits here (`HeldReplies`) until the replicas'
 *   acknowledgements pass on their way to the worker, or the worker lets it go or fails it; it is
 *   dropped instead when every replica delivered it to the caller itself.
 * - A replication shipment from another node is judged and acknowledged here (`ReplicaFences`);
 *   the results that wait for its writes go from here straight to their callers
 *   (`ReplicatedResult`), and what it took goes on to the holding worker to keep.
 */
import { InvalidArgument, Unavailable, activationKey, bucketOf, errorToShape, type Envelope } from '@wadi/core';
import { HeldReplies } from './held-replies.js';
import type { Layout } from './layout.js';
import { REPLICA_FRAME, ReplicaFences, type AckedWrite, type ReplicaFrame } from './replication.js';
import { CallFlag, Frame, MAIN_THREAD, PENDING_REPORT_MS, isCallerFrame, parseFrame, reportPending, type CallFrame, type DeliverFrame, type RoutedFrame } from './routing.js';
import { SessionRouter } from './session-router.js';

export interface FrameRelayIO {
  /**
   * Sends a frame to another node over its connection; throws when not connected or overloaded,
   * and, given an `incarnation`, when the connection is to another incarnation of that node.
   */
  toNode(node: string, value: DeliverFrame, incarnation?: number): void;
  /** Sends the frames `toNode` queued now, rather than with whatever else this turn produces (none: nothing to do). */
  flushToNodes?(): void;
  /** Hands a frame to worker `thread` of this node. */
  toWorker(thread: number, frame: RoutedFrame): void;
  /** Settles an ask of the main thread's actor system. */
  settle(envelope: Envelope): void;
  now(): number;
  log(level: 'info' | 'warn', message: string): void;
  /**
   * Asked about each call from another node or a client before it is routed: an error fails it
   * back to its caller instead (the quorum gate: a node in a minority routes nothing).
   */
  admit?(call: CallFrame): Error | undefined;
  /** Sees each frame as the relay handles it (the simulator's traces). */
  trace?(event: 'out' | 'in' | 'held' | 'undeliverable', frame: RoutedFrame, detail: string): void;
}

export interface FrameRelayOptions {
  node: string;
  incarnation: number;
  buckets: number;
  workers: number;
  /** Longest frames wait for the first connection to a member (default 5000 ms; a node paused longer is being declared down). */
  firstConnectionTimeoutMs?: number;
  /** Frames waiting for one member at most (default 10,000); past it a frame is undeliverable at once. */
  maxWaitingFrames?: number;
}

export interface FrameRelayStats {
  /** Frames waiting for a member's first connection. */
  waitingForConnection: number;
  /** Frames from other nodes refused as malformed. */
  refusedFrames: number;
  /** `sync` replies held for the workers, and how many of them went on the acknowledgements alone. */
  heldReplies: number;
  heldRepliesReleasedEarly: number;
}

interface Waiting {
  incarnation: number;
  since: number;
  frames: [thread: number, frame: RoutedFrame][];
}

export class FrameRelay {
  readonly router: SessionRouter;
  readonly held: HeldReplies;
  readonly fences: ReplicaFences;
  refusedFrames = 0;
  readonly #node: string;
  readonly #incarnation: number;
  readonly #buckets: number;
  readonly #workers: number;
  readonly #io: FrameRelayIO;
  readonly #timeoutMs: number;
  readonly #maxWaiting: number;
  /** Members of the current layout: id -> incarnation. */
  #members = new Map<string, number>();
  /** `id@incarnation` of each member, made once per layout rather than on every send. */
  #memberKeys = new Map<string, string>();
  /** `id@incarnation` of the nodes this one has been connected to (or sent to), and of those given up on. */
  readonly #reached = new Set<string>();
  readonly #givenUp = new Set<string>();
  /** Frames for members not connected yet, in order, per node id. */
  readonly #waiting = new Map<string, Waiting>();
  #pendingReportedAt = -Infinity;

  constructor(options: FrameRelayOptions, io: FrameRelayIO) {
    this.#node = options.node;
    this.#incarnation = options.incarnation;
    this.#buckets = options.buckets;
    this.#workers = options.workers;
    this.#io = io;
    this.#timeoutMs = options.firstConnectionTimeoutMs ?? 5000;
    this.#maxWaiting = options.maxWaitingFrames ?? 10_000;
    this.held = new HeldReplies(options.incarnation);
    this.fences = new ReplicaFences(options.node, options.buckets);
    this.router = new SessionRouter(
      { node: options.node, incarnation: options.incarnation, thread: MAIN_THREAD, buckets: options.buckets },
      {
        send: (node, thread, frame) => this.send(node, thread, frame),
        settle: io.settle,
        now: io.now,
        log: (message) => io.log('warn', message),
      },
    );
  }

  setLayout(layout: Layout): void {
    // The members first: the router sends the calls it held for a layout as soon as it has one,
    // and each must go only to the incarnation this layout names (see the module comment).
    this.#members = new Map(layout.members.map((member) => [member.id, member.incarnation]));
    this.#memberKeys = new Map(layout.members.map((member) => [member.id, `${member.id}@${member.incarnation}`]));
    const current = new Set(layout.members.map((member) => `${member.id}@${member.incarnation}`));
    for (const key of [...this.#reached]) if (!current.has(key)) this.#reached.delete(key);
    for (const key of [...this.#givenUp]) if (!current.has(key)) this.#givenUp.delete(key);
    this.router.setLayout(layout);
    this.held.layoutChanged();
    this.fences.setLayout(layout);
    // Frames waiting for a node that is no longer that member of the layout wait no more.
    for (const [node, waiting] of [...this.#waiting]) {
      if (this.#members.get(node) !== waiting.incarnation) this.#giveUp(node, waiting, `${node} is no longer a member`);
    }
  }

  /** A connection to another node is up: what waited for it goes now, in order. */
  connected(peer: { id: string; incarnation: number }): void {
    this.#reached.add(`${peer.id}@${peer.incarnation}`);
    this.#flush(peer.id);
  }

  /** Sends what waits once a connection is up (in case its `connected` was not seen), and gives up on what waited too long. */
  tick(): void {
    this.router.tick();
    const now = this.#io.now();
    const expired = this.held.expire(now);
    if (expired > 0) this.#io.log('warn', `dropped ${expired} sync repl${expired === 1 ? 'y' : 'ies'} held too long for a worker's word`);
    for (const [node, waiting] of [...this.#waiting]) {
      if (this.#flush(node)) continue;
      if (now - waiting.since >= this.#timeoutMs) {
        this.#givenUp.add(`${node}@${waiting.incarnation}`);
        this.#giveUp(node, waiting, `no connection to ${node} within ${this.#timeoutMs} ms`);
      }
    }
    if (this.#waiting.size > 0 && now - this.#pendingReportedAt >= PENDING_REPORT_MS) {
      this.#pendingReportedAt = now;
      const calls: CallFrame[] = [];
      for (const waiting of this.#waiting.values()) for (const [, frame] of waiting.frames) if (frame[0] === Frame.Call) calls.push(frame);
      this.#reportPending(calls);
    }
  }

  /** Tells the callers of calls waiting here that they are alive (their routers keep holding later calls). */
  #reportPending(calls: CallFrame[]): void {
    reportPending(calls, (node, thread, frame) => {
      // Not behind the frames that wait for the caller's own node: those are what it waits for.
      if (node !== this.#node && this.#waiting.has(node)) return;
      this.send(node, thread, frame);
    });
  }

  stats(): FrameRelayStats {
    let waiting = 0;
    for (const entry of this.#waiting.values()) waiting += entry.frames.length;
    return { waitingForConnection: waiting, refusedFrames: this.refusedFrames, heldReplies: this.held.size, heldRepliesReleasedEarly: this.held.releasedEarly };
  }

  /**
   * Node `node` is gone: it left (`crashed` false), was declared down, or restarted as incarnation
   * `restartedAs`. Held replies waiting for its acknowledgements wait for the workers' word; the
   * writes of a node down (of its earlier incarnations, if it restarted) are refused from now on.
   */
  memberGone(node: string, crashed: boolean, restartedAs?: number): void {
    this.held.targetGone(node);
    if (crashed || restartedAs !== undefined) this.fences.nodeDown(node, restartedAs);
  }

  /** Worker `thread` of this node is gone: the replies it handed over to hold go with it. */
  workerGone(thread: number): void {
    this.held.threadGone(thread);
  }

  /**
   * Sends a frame to thread `thread` of node `node` (this node included); throws when it cannot.
   * A frame for a member this node has not been connected to yet waits (see the module comment).
   */
  send(node: string, thread: number, frame: RoutedFrame): void {
    if (node === this.#node) return this.#local(thread, frame);
    const waiting = this.#waiting.get(node);
    if (waiting !== undefined) {
      // Behind the frames that wait already, whatever the connection does meanwhile: order.
      if (waiting.frames.length >= this.#maxWaiting) throw new Unavailable(`${waiting.frames.length} frames already wait for a connection to ${node}`);
      waiting.frames.push([thread, frame]);
      this.#io.trace?.('held', frame, node);
      return;
    }
    const incarnation = this.#members.get(node);
    try {
      this.#io.toNode(node, [Frame.Deliver, thread, frame], incarnation);
    } catch (error) {
      const key = `${node}@${incarnation}`;
      if (incarnation === undefined || this.#reached.has(key) || this.#givenUp.has(key)) throw error;
      this.#waiting.set(node, { incarnation, since: this.#io.now(), frames: [[thread, frame]] });
      this.#io.trace?.('held', frame, node);
      if (frame[0] === Frame.Call) this.#reportPending([frame]);
      return;
    }
    const key = this.#memberKeys.get(node);
    if (key !== undefined) this.#reached.add(key);
  }

  /** A frame a thread of this node handed out for thread `thread` of `node`. */
  fromWorker(node: string, thread: number, frame: RoutedFrame): void {
    this.#io.trace?.('out', frame, `${node}/${thread}`);
    try {
      this.send(node, thread, frame);
    } catch (error) {
      this.#undeliverable(node, frame, error);
    }
  }

  /** A `Deliver` frame from another node (not yet checked). */
  fromNode(peer: string, value: unknown): void {
    let thread: number;
    let frame: RoutedFrame;
    try {
      if (!Array.isArray(value) || value.length !== 3 || value[0] !== Frame.Deliver || !Number.isSafeInteger(value[1])) throw new Error('malformed deliver frame');
      thread = value[1] as number;
      frame = parseFrame(value[2], this.#buckets);
    } catch (error) {
      this.refusedFrames++;
      this.#io.log('warn', `refused a frame from ${peer}: ${(error as Error).message}`);
      return;
    }
    if (frame[0] === Frame.Call) {
      frame[9]++;
      const refusal = this.#io.admit?.(frame);
      if (refusal !== undefined) return this.#fail(frame, refusal);
    } else if (isCallerFrame(frame) && frame[2] !== this.#incarnation) return; // for an earlier incarnation of this node
    else if (frame[0] === Frame.Replica) {
      const message = frame[5];
      if (message.t === 'ack') {
        delete message.released;
        if (this.held.size > 0) {
          const released = this.held.acked(frame[2], thread, message);
          // Replies go before the acknowledgement goes on: they are what the caller waits for.
          for (const [toNode, word] of released) if (word !== null) this.fromWorker(toNode, word[1], word);
          if (released.length > 0) message.released = released.map(([, , id]) => id);
        }
      } else if (message.t === 'ship' && thread >= 0 && thread < this.#workers) {
        const stored = this.#acknowledge(frame, thread, message.items);
        if (stored === undefined) return;
        frame = stored;
      } else if (message.t === 'drop') this.fences.drop(message.items);
    }
    try {
      this.#local(thread, frame);
    } catch (error) {
      this.#undeliverable(this.#node, frame, error);
    }
  }

  /**
   * Judges a shipment for worker `thread` here and acknowledges it at once (see `ReplicaFences`):
   * the frame that takes what was taken on to the worker, or undefined when nothing was.
   */
  #acknowledge(frame: ReplicaFrame, thread: number, items: Extract<ReplicaFrame[5], { t: 'ship' }>['items']): ReplicaFrame | undefined {
    const [, , from, fromIncarnation, fromThread] = frame;
    const { acked, refused, taken } = this.fences.ship(from, fromIncarnation, items);
    // The callers first, and at once: the writer's acknowledgement is off their path now.
    const told = acked.length > 0 ? this.#tellCallers(items, acked) : [];
    if (told.length > 0) this.#io.flushToNodes?.();
    const ack: Extract<ReplicaFrame[5], { t: 'ack' }> = told.length > 0 ? { t: 'ack', items: acked, refused, told, epoch: this.fences.epoch } : { t: 'ack', items: acked, refused };
    try {
      this.send(from, fromThread, [REPLICA_FRAME, fromThread, this.#node, this.#incarnation, thread, ack]);
    } catch {
      // Not reachable now: the writer ships again, and gets its acknowledgement then.
    }
    return taken.length === 0 ? undefined : [REPLICA_FRAME, thread, from, fromIncarnation, fromThread, { t: 'store', items: taken }];
  }

  /**
   * The results waiting for writes of a shipment go from here to their callers, once this node
   * took the writes: the callers need not wait for the writer to hear it and send them itself.
   * Returns the callers sent theirs.
   */
  #tellCallers(items: Extract<ReplicaFrame[5], { t: 'ship' }>['items'], acked: readonly AckedWrite[]): [node: string, thread: number, requestId: number][] {
    const told: [node: string, thread: number, requestId: number][] = [];
    let ackedKeys: Set<string> | undefined;
    for (const item of items) {
      const callers = item[5];
      if (callers === undefined) continue;
      ackedKeys ??= new Set(acked.map((write) => write[0]));
      if (!ackedKeys.has(item[0])) continue;
      const epoch = this.fences.epoch;
      for (const [node, incarnation, thread, requestId, value, notice, writeEpoch, targets] of callers) {
        try {
          this.send(node, thread, [Frame.ReplicatedResult, thread, incarnation, requestId, value, notice, this.#node, epoch, writeEpoch, targets]);
          told.push([node, thread, requestId]);
        } catch {
          // The caller is not reachable from here: the writer sends it the result instead.
        }
      }
    }
    return told;
  }

  #local(thread: number, frame: RoutedFrame): void {
    if (thread === MAIN_THREAD) {
      if (frame[0] === Frame.Held) {
        const [, fromThread, id, key, version, seq, targets, toNode, result, epoch] = frame;
        this.held.hold(fromThread, id, key, version, seq, targets, epoch, toNode, result, this.#io.now());
        return;
      }
      if (frame[0] === Frame.HeldOutcome) {
        const released = this.held.outcome(frame[1], frame[2], frame[3]);
        if (released !== undefined && released[1] !== null) this.fromWorker(released[0], released[1][1], released[1]);
        return;
      }
      if (!isCallerFrame(frame)) throw new Unavailable('the main thread hosts no sessions');
      this.#io.trace?.('in', frame, '');
      this.router.receive(frame);
      return;
    }
    if (!(thread >= 0 && thread < this.#workers)) throw new Unavailable(`this node has no worker ${thread}`);
    this.#io.toWorker(thread, frame);
  }

  /** Sends what waits for `node` if its connection takes it; true when nothing waits any more. */
  #flush(node: string): boolean {
    const waiting = this.#waiting.get(node);
    if (waiting === undefined) return true;
    while (waiting.frames.length > 0) {
      const [thread, frame] = waiting.frames[0]!;
      try {
        this.#io.toNode(node, [Frame.Deliver, thread, frame], waiting.incarnation);
      } catch {
        return false;
      }
      waiting.frames.shift();
    }
    this.#waiting.delete(node);
    this.#reached.add(`${node}@${waiting.incarnation}`);
    return true;
  }

  #giveUp(node: string, waiting: Waiting, reason: string): void {
    this.#waiting.delete(node);
    for (const [, frame] of waiting.frames) this.#undeliverable(node, frame, new Unavailable(reason));
  }

  /** A frame could not reach `node` (see the module comment). */
  #undeliverable(node: string, frame: RoutedFrame, error: unknown): void {
    this.#io.trace?.('undeliverable', frame, `to ${node} (${(error as Error).message})`);
    if (frame[0] === Frame.Result && frame[4] && error instanceof InvalidArgument) {
      // The reply itself cannot travel (larger than a frame may be): its caller hears why now,
      // rather than at its deadline.
      const failed: RoutedFrame = [Frame.Result, frame[1], frame[2], frame[3], false, errorToShape(new InvalidArgument(`the reply could not be sent: ${error.message}`)), frame[6]];
      try {
        this.send(node, frame[1], failed);
      } catch {
        // The caller is out of reach too.
      }
      return;
    }
    if (frame[0] !== Frame.Call) return;
    const bucket = bucketOf(frame[6], this.#buckets);
    const owner = this.router.ownerOf(bucket);
    if ((frame[11] & CallFlag.Grant) !== 0) {
      // This node's bucket actor placed a new session on a node it cannot reach: it never got
      // there, so the owner's worker activates it itself (the grant confirms the placement there).
      if (owner === this.#node && node !== this.#node) {
        try {
          return this.#local(this.router.threadFor(owner, bucket), frame);
        } catch {
          // No such worker: fail it below.
        }
      }
    } else if (owner !== undefined && owner !== node && (owner !== this.#node || (frame[11] & CallFlag.Direct) !== 0)) {
      // To this node's own bucket actor only when a caller's cache sent the call (its directory
      // may know better); when the bucket actor sent it, it would send it there again.
      // To the owner, as the owner: no presumption of where the session is.
      frame[11] &= ~(CallFlag.Direct | CallFlag.Located);
      frame[15] = Math.max(frame[15], this.router.layout?.epoch ?? 0);
      try {
        return this.send(owner, this.router.threadFor(owner, bucket), frame);
      } catch {
        // The owner is unreachable too.
      }
    }
    this.#fail(frame as CallFrame, new Unavailable(`${frame[5]} '${frame[6]}' could not be routed to node ${node}: ${(error as Error).message}`));
  }

  /** Fails a call back to its caller, with an acknowledgement of its number so the caller holds nothing for it. */
  #fail(call: CallFrame, reason: Error): void {
    if (call[1] === 0) return this.#io.log('warn', `a tell was lost: ${reason.message}`);
    const ack: [string, string, number, number] = [activationKey(call[5], call[6]), '', 0, call[10]];
    try {
      this.send(call[2], call[4], [Frame.Result, call[4], call[3], call[1], false, errorToShape(reason), ack]);
    } catch {
      // The caller is unreachable as well: its ask times out.
    }
  }
}
