/**
 * Session frames on a node's main thread, which owns the sockets to the other nodes:
 *
 * - frames a worker hands out for another node go on over the cluster connection;
 * - frames from another node go to the worker (or the main thread's own router) they name, and a
 *   call's hop count goes up by one on the way in;
 * - a call that cannot reach the node it was sent to goes to its bucket's owner instead (if it had
 *   not been sent there already), or fails back to its caller with `Unavailable`;
 * - the main thread's own calls (`node.ref()`) are routed by its own
 *   `SessionRouter`.
 */
import {
  CallFlag,
  Frame,
  MAIN_THREAD,
  SessionRouter,
  parseFrame,
  type CallFrame,
  type Layout,
  type RoutedFrame,
} from '@wadi/cluster';
import { Unavailable, activationKey, bucketOf, errorToShape, type Envelope } from '@wadi/core';

export interface MainRoutingIO {
  /** Sends a value to another node over its cluster connection; throws when not connected or overloaded. */
  toNode(node: string, value: unknown): void;
  /** Sends a frame to a worker of this node. */
  toWorker(thread: number, frame: RoutedFrame): void;
  /** Settles an ask of the main thread's actor system. */
  settle(envelope: Envelope): void;
  log(level: 'info' | 'warn' | 'error', message: string): void;
}

export class MainRouting {
  readonly router: SessionRouter;
  readonly #node: string;
  readonly #incarnation: number;
  readonly #buckets: number;
  readonly #workers: number;
  readonly #io: MainRoutingIO;
  refusedFrames = 0;

  constructor(self: { node: string; incarnation: number }, buckets: number, workers: number, io: MainRoutingIO) {
    this.#node = self.node;
    this.#incarnation = self.incarnation;
    this.#buckets = buckets;
    this.#workers = workers;
    this.#io = io;
    this.router = new SessionRouter(
      { node: self.node, incarnation: self.incarnation, thread: MAIN_THREAD, buckets },
      {
        send: (node, thread, frame) => this.send(node, thread, frame),
        settle: io.settle,
        now: () => performance.now(),
        log: (message) => io.log('warn', message),
      },
    );
  }

  setLayout(layout: Layout): void {
    this.router.setLayout(layout);
  }

  /** Sends a frame to thread `thread` of node `node` (this node included); throws when it cannot. */
  send(node: string, thread: number, frame: RoutedFrame): void {
    if (node !== this.#node) {
      this.#io.toNode(node, [Frame.Deliver, thread, frame]);
      return;
    }
    this.#local(thread, frame);
  }

  /** A frame a worker of this node handed out for thread `thread` of `node`. */
  fromWorker(node: string, thread: number, frame: RoutedFrame): void {
    try {
      this.send(node, thread, frame);
    } catch (error) {
      this.#undeliverable(node, frame, error);
    }
  }

  /** A `Deliver` frame from another node. */
  fromNode(peer: string, value: unknown[]): void {
    const thread = value[1];
    let frame: RoutedFrame;
    try {
      if (value.length !== 3 || !Number.isSafeInteger(thread)) throw new Error('malformed deliver frame');
      frame = parseFrame(value[2], this.#buckets);
    } catch (error) {
      this.refusedFrames++;
      this.#io.log('warn', `refused a frame from ${peer}: ${(error as Error).message}`);
      return;
    }
    if (frame[0] === Frame.Call) frame[9]++;
    else if ((frame[0] === Frame.Result || frame[0] === Frame.Notice) && frame[2] !== this.#incarnation) return; // for an earlier incarnation of this node
    try {
      this.#local(thread as number, frame);
    } catch (error) {
      this.#undeliverable(this.#node, frame, error);
    }
  }

  #local(thread: number, frame: RoutedFrame): void {
    if (thread === MAIN_THREAD) {
      if (frame[0] !== Frame.Result && frame[0] !== Frame.Notice) throw new Unavailable('the main thread hosts no sessions');
      this.router.receive(frame);
      return;
    }
    if (!(thread >= 0 && thread < this.#workers)) throw new Unavailable(`this node has no worker ${thread}`);
    this.#io.toWorker(thread, frame);
  }

  /** A frame could not reach `node`: a call tries the bucket's owner, or fails back to its caller. */
  #undeliverable(node: string, frame: RoutedFrame, error: unknown): void {
    if (frame[0] !== Frame.Call) return; // results, notices and migration messages are repeated or timed out by their senders
    const bucket = bucketOf(frame[6], this.#buckets);
    const owner = this.router.ownerOf(bucket);
    // Not when this node is the owner: its bucket actor sent the call there, and would again.
    if (owner !== undefined && owner !== node && owner !== this.#node && (frame[11] & CallFlag.Grant) === 0) {
      frame[11] &= ~CallFlag.Direct;
      try {
        this.send(owner, this.router.threadFor(owner, bucket), frame);
        return;
      } catch {
        // The owner is unreachable too.
      }
    }
    const reason = new Unavailable(`${frame[5]} '${frame[6]}' could not be routed to node ${node}: ${(error as Error).message}`);
    const call = frame as CallFrame;
    if (call[1] === 0) return this.#io.log('warn', `a tell was lost: ${reason.message}`);
    const ack: [string, string, number, number] = [activationKey(call[5], call[6]), '', 0, call[10]];
    try {
      this.send(call[2], call[4], [Frame.Result, call[4], call[3], call[1], false, errorToShape(reason), ack]);
    } catch {
      // The caller is unreachable as well: its ask times out.
    }
  }
}
