/**
 * The contract between a node's main thread and its worker threads, declared once and used by
 * both sides: what a worker is started with, and the control-plane calls (comlink) it answers.
 * The message hot path does not go through here: it is batched envelopes over MessagePorts.
 */
import type { MessagePort } from 'node:worker_threads';
import { MAIN_THREAD, type DirectoryEntry, type DirectoryStats, type Layout, type OutFrame, type QuorumView, type ReplicaLag, type RoutedFrame, type SessionHostStats, type SessionRouterStats } from '@wadi/cluster';
import type { Envelope, SystemStats } from '@wadi/core';
import type { SessionStatesStats } from './session-states.js';

/** The destination index of a node's main thread; workers are 0..W-1. */
export { MAIN_THREAD };

/** What crosses a link between two threads of a node: actor envelopes and the cluster's session frames. */
export type ThreadMessage = Envelope | RoutedFrame | OutFrame;

export interface WorkerRoutingStats extends SessionHostStats {
  router: SessionRouterStats;
  hosted: number;
  /** Calls and turns this worker refused with `NoQuorum`. */
  refusedNoQuorum: number;
  /** Active sessions dropped because their bucket's owner knew a newer copy elsewhere (two activations). */
  droppedDuplicates: number;
}

export interface WorkerData {
  index: number;
  /** Counts up each time worker `index` is (re)started; its asks get ids of their own range. */
  incarnation: number;
  workers: number;
  /** The runtime runs on the node's main thread (`workers: 0`): its link there clones envelopes instead of encoding them. */
  sameThread: boolean;
  buckets: number;
  /** Actor modules to import, as URLs. */
  modules: string[];
  askTimeoutMs: number;
  mailboxCapacity: number;
  /** Bytes a link may hold for a destination that is restarting before sends fail. */
  maxHeldBytes: number;
  /** The comlink control port. */
  controlPort: MessagePort;
  /** The node's store stack, if sessions leave memory for a disk (`StoreOptions`). */
  store?: WorkerStoreData;
}

export interface WorkerStoreStats extends SessionStatesStats {
  /** Sessions demoted by the memory evicters. */
  evicted: number;
}

/** What a worker needs of `StoreOptions` (paths resolved by the node). */
export interface WorkerStoreData {
  disk: string;
  diskMapBytes?: number;
  shared?: string;
  idleMs?: number;
  maxActive?: number;
  maxHeapBytes?: number;
  demotionsPerSecond: number;
  promotionsPerSecond: number;
  diskIdleMs?: number;
  maxOnDisk?: number;
  /** URL of the application's evicter module. */
  evicters?: string;
}

export interface WorkerControl {
  /** Imports the actor modules; resolves with the actor type names they define. */
  start(): Promise<string[]>;
  /** A direct channel to worker `peer`, replacing any earlier one. */
  connectPeer(peer: number, port: MessagePort): void;
  /** Worker `peer` died: fail what waits on it and hold new messages until it is back. */
  peerDown(peer: number): number;
  stats(): SystemStats;
  /** Demotes every session still in memory to disk, then everything on disk to the shared tier if there is one. */
  demoteAll(): Promise<{ demoted: number; moved: number; kept: number }>;
  /** The store stack as this worker sees it; undefined without a disk tier. */
  storeStats(): WorkerStoreStats | undefined;
  /** This node became a cluster member: from now on sessions are placed and routed cluster-wide. */
  joinCluster(node: string, incarnation: number): void;
  /** A committed layout; `self` is this node's id. */
  setLayout(self: string, layout: Layout): void;
  /** The main thread's quorum view, on the absolute clock (`performance.timeOrigin + performance.now()`): sessions run only under its lease. */
  setQuorum(view: QuorumView): void;
  /** Installs the directory of a bucket this worker gained (merged beneath updates already applied). */
  installBucket(bucket: number, epoch: number, entries: DirectoryEntry[]): void;
  /** Hands off a bucket this worker lost: its entries, or null if it holds no installed directory. */
  exportBucket(bucket: number): DirectoryEntry[] | null;
  /** The sessions this worker hosts in `bucket`. */
  reportBucket(bucket: number): DirectoryEntry[];
  /** A node is gone: drop directory entries and cached locations naming it, and moves to or from it. */
  forgetNode(node: string, crashed: boolean): number;
  /** An earlier incarnation of `node` is gone: forwarding pointers to it and session moves to or from it are given up (its directory entries stay). */
  nodeRestarted(node: string, incarnation: number): void;
  /** Moves every session hosted here to the owner of its bucket in the current layout; resolves once none is left. */
  evacuate(): Promise<void>;
  routingStats(): WorkerRoutingStats | undefined;
  /** Re-announces what this worker hosts in `buckets` to their owners (updates to them may have been lost). */
  resyncBuckets(buckets: number[]): void;
  /** The incoming backups this worker has not shipped every session of its to yet. */
  replicationLag(): ReplicaLag;
  directoryStats(): DirectoryStats;
  /** Where the directory of `bucket` (if this worker holds it) says session `key` lives. */
  lookupSession(bucket: number, key: string): { node: string; worker: number; tier: 'memory' | 'disk' } | undefined;
  /** Resolves true once every accepted message has been processed (false on timeout). */
  drain(timeoutMs: number): Promise<boolean>;
  stop(): Promise<void>;
}

/** Request ids of one worker incarnation: [incarnation * span + 1, (incarnation + 1) * span). */
export const REQUEST_ID_SPAN = 2 ** 32;

/** The task a stateless actor call becomes in the piscina pool. */
export interface StatelessTask {
  type: string;
  method: string;
  /** msgpack-encoded argument list. */
  args: Uint8Array;
}

export interface StatelessPoolData {
  modules: string[];
}
