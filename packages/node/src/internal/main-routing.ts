/**
 * Session frames on a node's main thread, which owns the sockets to the other nodes: the
 * cluster's `FrameRelay` (what it does is described there) on the wall clock, between this
 * node's cluster connections and its workers' links.
 */
import { FrameRelay, type RoutedFrame } from '@wadi/cluster';
import type { Envelope } from '@wadi/core';

export interface MainRoutingIO {
  /** Sends a value to another node over its cluster connection; throws when not connected (to `incarnation` of it, if given) or overloaded. */
  toNode(node: string, value: unknown, incarnation?: number): void;
  /** Sends what `toNode` queued now rather than at the end of the tick. */
  flushToNodes(): void;
  /** Sends a frame to a worker of this node. */
  toWorker(thread: number, frame: RoutedFrame): void;
  /** Settles an ask of the main thread's actor system. */
  settle(envelope: Envelope): void;
  /** Why a call from another node or a client may not be routed now (the quorum gate), or undefined. */
  admit?(): Error | undefined;
  log(level: 'info' | 'warn' | 'error', message: string): void;
}

export class MainRouting extends FrameRelay {
  constructor(self: { node: string; incarnation: number }, buckets: number, workers: number, io: MainRoutingIO) {
    super(
      { node: self.node, incarnation: self.incarnation, buckets, workers },
      {
        toNode: io.toNode,
        flushToNodes: io.flushToNodes,
        toWorker: io.toWorker,
        settle: io.settle,
        now: () => performance.now(),
        log: io.log,
        ...(io.admit === undefined ? {} : { admit: io.admit }),
      },
    );
  }
}
