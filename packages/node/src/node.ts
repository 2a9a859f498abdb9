/**
 * One wadi node (one OS process): W worker threads hosting actors by bucket (or, with `workers: 0`,
 * one session runtime on the main thread itself), a pool for stateless work, and the main thread's
 * own actor system through which `node.ref()` calls go.
 *
 * Responsibilities here: starting and meshing the workers (every pair gets a direct
 * MessageChannel), replacing a worker that dies (waiting asks fail with `WorkerCrashed`; its
 * actors reactivate on next use), and a graceful stop that refuses new calls, drains what was
 * accepted, then shuts every thread down.
 */
import { EventEmitter } from 'node:events';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import { Piscina } from 'piscina';
import {
  ActorSystem,
  DEFAULT_ASK_TIMEOUT_MS,
  DEFAULT_BUCKETS,
  DEFAULT_MAILBOX_CAPACITY,
  InvalidArgument,
  checkOptionNames,
  Kind,
  LOCAL,
  ROUTED,
  Registry,
  Unavailable,
  WorkerCrashed,
  decode,
  encode,
  shapeToError,
  validateBucketCount,
  type AnyActorDef,
  type AskEnvelope,
  type Envelope,
  type ErrorShape,
  type RefOf,
  type RefOptions,
  type StatelessExecutor,
  type SystemStats,
  type TellEnvelope,
} from '@wadi/core';
import { Frame } from '@wadi/cluster';
import { MainRouting } from './internal/main-routing.js';
import { startCluster, type ClusterHandle, type ClusterHost, type ClusterOptions, type ReplicationStatus, type StoreStatus } from './cluster-node.js';
import { BUCKET_ACTOR, mergeLags, type DirectoryEntry, type DirectoryStats, type ReplicaLag, type ReplicationStats } from '@wadi/cluster';
import { InlineEnd } from './internal/inline-channel.js';
import { PortLink, receiveBatch, type PortLike } from './internal/link.js';
import { runWorker } from './internal/worker-runtime.js';
import { loadActorModules, toModuleUrl } from './internal/modules.js';
import { MAIN_THREAD, type WorkerStoreData, type StatelessPoolData, type StatelessTask, type ThreadMessage, type WorkerControl, type WorkerData } from './internal/protocol.js';
import { BucketRouter, roundRobinTable } from './internal/router.js';

export interface NodeOptions {
  /** Actor modules (paths or URLs): every export that is an actor definition is loaded. */
  actors?: readonly (string | URL)[];
  /**
   * Worker threads hosting actors (default: the number of CPUs). 0 runs them on the main thread,
   * beside the sockets: no thread hop per call, for nodes that get one core each (several nodes
   * on a small machine, one-CPU containers), at the price that a long turn delays the node's
   * networking too, heartbeats included. The node then has one session runtime (`node.workers`
   * is 1), which cannot crash apart from the process.
   */
  workers?: number;
  /** Buckets of the id space (default 1024). */
  buckets?: number;
  /** Default ask deadline in ms (default 30 s). */
  askTimeoutMs?: number;
  /** Default mailbox capacity per activation (default 10,000). */
  mailboxCapacity?: number;
  /** Threads of the pool that runs stateless actor types (default: half the CPUs, at least 1). */
  statelessThreads?: number;
  /** Bytes held for a worker that is being replaced before sends fail (default 64 MiB). */
  maxHeldBytes?: number;
  /** Worker restarts allowed per minute before a worker is given up for good (default 5). */
  maxRestartsPerMinute?: number;
  /** Makes this node a cluster member: listen for other nodes, join through seeds. */
  cluster?: ClusterOptions;
  /** Where sessions go when they leave memory: see `StoreOptions`. */
  store?: StoreOptions;
}

/**
 * The store stack of a node (docs/store.md). Without a disk, a deactivated session stays parked
 * in its worker's memory; with one, it is written to the node's LMDB environment and found there
 * again after a restart.
 */
export interface StoreOptions {
  /** Directory of this node's disk tier (default: `sessions` in the cluster's data directory, if there is one). */
  disk?: string;
  /** LMDB map size of the disk tier in bytes (default 1 GiB); a full map stops demotion, nothing is lost. */
  diskMapBytes?: number;
  /** The shared tier: a directory (an LMDB environment every node on this host opens) or a `postgres://` URL. */
  shared?: string;
  /** Sessions idle this long are demoted from memory to disk (ms; types may set a shorter `idleTimeoutMs`). */
  idleMs?: number;
  /** At most this many active sessions per worker: beyond it, the least recently used are demoted. */
  maxActivePerWorker?: number;
  /** A worker whose heap grows past this many bytes demotes its least recently used sessions. */
  maxHeapBytesPerWorker?: number;
  /** Demotions per second per worker, at most (default 2,000): a burst never stalls a worker. */
  demotionsPerSecond?: number;
  /** Promotions from disk per second per worker, at most (default 50,000; a tenth of a second's worth at once). */
  promotionsPerSecond?: number;
  /** Sessions on disk untouched this long move on to the shared tier (needs `shared`). */
  diskIdleMs?: number;
  /** At most this many sessions on disk per worker: beyond it, the least recently parked move on to the shared tier (needs `shared`). */
  maxOnDiskPerWorker?: number;
  /**
   * The application's own evicters: a module (path or URL) exporting `memory` and/or `disk`,
   * functions that each worker calls once to get its evicters (`EvicterModule`). They act beside
   * the ones the options above ask for: a session goes down when any evicter says so.
   */
  evicters?: string | URL;
}

export interface WorkerStats extends SystemStats {
  index: number;
  state: WorkerState;
  restarts: number;
}

export interface NodeStats {
  workers: WorkerStats[];
  main: SystemStats;
}

export type WorkerState = 'starting' | 'up' | 'restarting' | 'failed' | 'stopped';

/** Events: 'worker-crashed' ({ index, exitCode, failedAsks }), 'worker-restarted' ({ index }), 'worker-failed' ({ index, error }). */
export interface WadiNode {
  readonly workers: number;
  readonly buckets: number;
  /** Actor type names this node can host. */
  readonly actorTypes: readonly string[];
  readonly events: EventEmitter;
  /** Membership, layout and status when the node is a cluster member. */
  readonly cluster: ClusterHandle | undefined;
  ref<D extends AnyActorDef>(def: D, id: string, options?: RefOptions): RefOf<D>;
  /** Which worker hosts (`def`, `id`), or 'main' for stateless types. */
  locate(def: AnyActorDef, id: string): number | 'main';
  stats(): Promise<NodeStats>;
  /**
   * Graceful stop: a cluster member first leaves (hands its buckets off); then new calls are
   * refused, accepted ones finish (bounded by `timeoutMs`), and every thread ends.
   */
  stop(options?: { timeoutMs?: number }): Promise<void>;
}

type TransferList = Parameters<typeof Comlink.transfer>[1];

const WORKER_URL = new URL('./worker.js', import.meta.url);
const STATELESS_WORKER_URL = new URL('./stateless-worker.js', import.meta.url);
const DEFAULT_MAX_HELD_BYTES = 64 * 1024 * 1024;
const CONTROL_TIMEOUT_MS = 30_000;
/** Longest a worker may take to write what it still holds down the store stack when the node stops. */
const DEMOTE_ALL_TIMEOUT_MS = 120_000;
/** Longest a worker may take to move its sessions away when the node leaves. */
const EVACUATION_TIMEOUT_MS = 120_000;

export interface RoutingCounters {
  forwarded: number;
  placed: number;
  waiting: number;
  pointers: number;
  migratedOut: number;
  migratedIn: number;
  migrationsFailed: number;
  cached: number;
  held: number;
  rerouted: number;
}

export async function startNode(options: NodeOptions = {}): Promise<WadiNode> {
  const node = new LocalNode(options);
  try {
    await node.start();
  } catch (error) {
    await node.stop({ timeoutMs: 0 }).catch(() => undefined);
    throw error;
  }
  return node;
}

/** Where a slot's runtime runs: the port the main thread's link posts to, and how to end it. */
interface RuntimeThread {
  readonly port: PortLike;
  terminate(): Promise<unknown>;
}

class WorkerSlot {
  state: WorkerState = 'starting';
  incarnation = 0;
  thread: RuntimeThread | undefined;
  control: Comlink.Remote<WorkerControl> | undefined;
  restartTimes: number[] = [];
  restarts = 0;
  /** Rejects when the current worker exits, so control calls to a dead worker never hang. */
  exited: Promise<never> = new Promise(() => undefined);

  constructor(
    readonly index: number,
    readonly link: PortLink,
  ) {}
}

class LocalNode implements WadiNode {
  readonly workers: number;
  /** `workers: 0`: the one session runtime runs on this (the main) thread. */
  readonly #inline: boolean;
  readonly buckets: number;
  readonly events = new EventEmitter();
  actorTypes: readonly string[] = [];
  cluster: ClusterHandle | undefined;
  readonly #modules: string[];
  readonly #options: Required<Omit<NodeOptions, 'actors' | 'workers' | 'buckets' | 'cluster' | 'store'>>;
  readonly #store: WorkerStoreData | undefined;
  readonly #clusterOptions: ClusterOptions | undefined;
  readonly #registry = new Registry();
  readonly #slots: WorkerSlot[] = [];
  readonly #system: ActorSystem;
  readonly #router: BucketRouter;
  #pool: Piscina<StatelessTask, Uint8Array> | undefined;
  #stopping: Promise<void> | undefined;
  /** Set once this node is a cluster member: the main thread's side of session routing. */
  #routing: MainRouting | undefined;
  /** Sends the frames queued for other nodes now (the cluster transport's `flush`). */
  #flushToNodes: () => void = () => undefined;
  #routingTicker: NodeJS.Timeout | undefined;
  #member: { node: string; incarnation: number } | undefined;
  /** The main thread's quorum gate, once the cluster side gave it: calls from elsewhere and `node.ref()` pass it first. */
  #quorumRefusal: (() => Error | undefined) | undefined;

  constructor(options: NodeOptions) {
    if (typeof options !== 'object' || options === null) throw new InvalidArgument('startNode() needs options: { actors, ... }');
    checkOptionNames('startNode()', options, NODE_OPTION_NAMES);
    checkOptionNames('startNode(): store', options.store, STORE_OPTION_NAMES);
    checkOptionNames('startNode(): cluster', options.cluster, CLUSTER_OPTION_NAMES);
    if (options.actors !== undefined && !Array.isArray(options.actors)) throw new InvalidArgument('startNode(): actors must be an array of module paths or URLs');
    if (options.cluster !== undefined && (typeof options.cluster !== 'object' || options.cluster === null)) throw new InvalidArgument('startNode(): cluster must be an object');
    for (const [name, path] of [['cluster.dataDir', options.cluster?.dataDir], ['store.disk', options.store?.disk], ['store.shared', options.store?.shared]] as const) {
      if (path !== undefined && !(typeof path === 'string' && path.trim() !== '')) throw new InvalidArgument(`startNode(): ${name} must be a path, got ${JSON.stringify(path)}`);
    }
    const workers = options.workers ?? availableParallelism();
    if (!Number.isInteger(workers) || workers < 0 || workers > 256) {
      throw new InvalidArgument(`workers must be an integer from 0 (sessions on the main thread) to 256, got ${String(options.workers)}`);
    }
    this.#inline = workers === 0;
    this.workers = Math.max(1, workers);
    this.buckets = validateBucketCount(options.buckets ?? DEFAULT_BUCKETS);
    this.#modules = (options.actors ?? []).map((module) => toModuleUrl(module));
    this.#clusterOptions = options.cluster;
    this.#options = {
      askTimeoutMs: positive('askTimeoutMs', options.askTimeoutMs ?? DEFAULT_ASK_TIMEOUT_MS),
      mailboxCapacity: positive('mailboxCapacity', options.mailboxCapacity ?? DEFAULT_MAILBOX_CAPACITY),
      statelessThreads: positive('statelessThreads', options.statelessThreads ?? Math.max(1, Math.floor(availableParallelism() / 2))),
      maxHeldBytes: positive('maxHeldBytes', options.maxHeldBytes ?? DEFAULT_MAX_HELD_BYTES),
      maxRestartsPerMinute: positive('maxRestartsPerMinute', options.maxRestartsPerMinute ?? 5),
    };
    this.#store = resolveStore(options.store, options.cluster?.dataDir);
    this.#router = new BucketRouter(this.buckets, roundRobinTable(this.buckets, this.workers), MAIN_THREAD, LOCAL);
    const statelessExecutor: StatelessExecutor = { run: (def, method, args) => this.#runStateless(def, method, args) };
    const localRouter = this.#router;
    this.#system = new ActorSystem({
      registry: this.#registry,
      // A member routes every session call through the cluster; the main thread hosts none.
      router: { route: (def, id) => (this.#routing === undefined || def.stateless ? localRouter.route(def, id) : ROUTED) },
      selfIndex: MAIN_THREAD,
      askTimeoutMs: this.#options.askTimeoutMs,
      mailboxCapacity: this.#options.mailboxCapacity,
      statelessExecutor,
      transport: {
        send: (destination, envelope) => {
          if (destination !== ROUTED) return this.#linkTo(destination).send(envelope);
          if (this.#routing === undefined) throw new Unavailable('this node is not a cluster member');
          // A node in a minority routes none of its own calls either: they fail with NoQuorum.
          const refusal = this.#quorumRefusal?.();
          if (refusal !== undefined) throw refusal;
          this.#routing.router.send(envelope as AskEnvelope | TellEnvelope);
        },
      },
    });
  }

  async start(): Promise<void> {
    this.actorTypes = await loadActorModules(this.#registry, this.#modules);
    for (let index = 0; index < this.workers; index++) {
      this.#slots.push(new WorkerSlot(index, new PortLink(`link from main to worker ${index}`, undefined, this.#options.maxHeldBytes, this.#inline)));
    }
    await Promise.all(this.#slots.map((slot) => this.#spawn(slot)));
    for (let a = 0; a < this.workers; a++) {
      for (let b = a + 1; b < this.workers; b++) await this.#connect(this.#slots[a]!, this.#slots[b]!);
    }
    for (const slot of this.#slots) {
      this.#attach(slot);
      slot.state = 'up';
    }
    if (this.#clusterOptions !== undefined) {
      this.cluster = await startCluster(this.#clusterHost(), this.#clusterOptions);
      this.events.on('worker-restarted', ({ index }: { index: number }) => this.cluster?.workerRestarted(index));
    }
  }

  /** What the cluster side may ask of this node's workers. */
  #clusterHost(): ClusterHost {
    const upSlots = (): WorkerSlot[] => this.#slots.filter((slot) => slot.state === 'up');
    const slotOf = (bucket: number): WorkerSlot => this.#slots[bucket % this.workers]!;
    return {
      workers: this.workers,
      buckets: this.buckets,
      sessionCounts: () => this.#sessionCounts(),
      joined: async (self, toNode, flushToNodes) => {
        this.#member = self;
        this.#flushToNodes = flushToNodes;
        this.#routing = new MainRouting(self, this.buckets, this.workers, {
          toNode,
          flushToNodes,
          toWorker: (thread, frame) => this.#linkTo(thread).send(frame),
          settle: (envelope) => this.#system.receive(envelope),
          admit: () => this.#quorumRefusal?.(),
          log: (level, message) => (level === 'error' ? console.error : console.warn)(`wadi: ${message}`),
        });
        this.#routingTicker = setInterval(() => this.#routing?.tick(), 250);
        this.#routingTicker.unref();
        await Promise.all(upSlots().map((slot) => this.#control(slot, (c) => c.joinCluster(self.node, self.incarnation))));
      },
      applyLayout: async (self, layout) => {
        this.#routing?.setLayout(layout);
        await Promise.all(upSlots().map((slot) => this.#control(slot, (c) => c.setLayout(self, layout))));
      },
      quorumGate: (refusal) => {
        this.#quorumRefusal = refusal;
      },
      setQuorum: async (view) => {
        await Promise.all(upSlots().map((slot) => this.#control(slot, (c) => c.setQuorum(view)).catch(() => undefined)));
      },
      deliverFrame: (peer, value) => this.#routing?.fromNode(peer, value),
      peerConnected: (peer) => this.#routing?.connected(peer),
      evacuate: async () => {
        await Promise.all(upSlots().map((slot) => this.#control(slot, (c) => c.evacuate(), EVACUATION_TIMEOUT_MS).catch(() => undefined)));
      },
      deliverToBucket: (envelope) => {
        try {
          slotOf(Number(envelope[2])).link.send(envelope);
        } catch (error) {
          console.warn(`wadi: directory update for bucket ${envelope[2]} not delivered: ${(error as Error).message}`);
        }
      },
      installBucket: (bucket, epoch, entries) => this.#control(slotOf(bucket), (c) => c.installBucket(bucket, epoch, entries)),
      exportBucket: (bucket) => this.#control(slotOf(bucket), (c) => c.exportBucket(bucket)),
      reportBucket: async (bucket) => {
        const reports = await Promise.all(upSlots().map((slot) => this.#control(slot, (c) => c.reportBucket(bucket)).catch((): DirectoryEntry[] => [])));
        return reports.flat();
      },
      replicationLag: async () => {
        const lags = await Promise.all(upSlots().map((slot) => this.#control(slot, (c) => c.replicationLag()).catch((): ReplicaLag => ({ epoch: -1, pairs: [] }))));
        return mergeLags(lags);
      },
      resyncDirectories: async (buckets) => {
        await Promise.all(upSlots().map((slot) => this.#control(slot, (c) => c.resyncBuckets(buckets)).catch(() => undefined)));
      },
      forgetNode: async (node, crashed) => {
        this.#routing?.router.nodeGone(node, crashed);
        this.#routing?.memberGone(node, crashed);
        await Promise.all(upSlots().map((slot) => this.#control(slot, (c) => c.forgetNode(node, crashed)).catch(() => 0)));
      },
      nodeRestarted: async (node, incarnation) => {
        this.#routing?.router.nodeGone(node, true);
        this.#routing?.memberGone(node, true, incarnation);
        await Promise.all(upSlots().map((slot) => this.#control(slot, (c) => c.nodeRestarted(node, incarnation)).catch(() => undefined)));
      },
      lookupSession: (bucket, key) => this.#control(slotOf(bucket), (c) => c.lookupSession(bucket, key)),
      directoryStats: async () => {
        const all = await Promise.all(upSlots().map((slot) => this.#control(slot, (c) => c.directoryStats()).catch((): DirectoryStats => ({ buckets: 0, entries: 0, duplicateClaims: 0 }))));
        return all.reduce(
          (sum, stats) => ({ buckets: sum.buckets + stats.buckets, entries: sum.entries + stats.entries, duplicateClaims: sum.duplicateClaims + stats.duplicateClaims }),
          { buckets: 0, entries: 0, duplicateClaims: 0 },
        );
      },
    };
  }

  async #sessionCounts(): Promise<{
    memory: number;
    disk: number;
    expired: number;
    hops: Record<string, number>;
    routing: Record<string, number>;
    store: StoreStatus | null;
    fencing: { refused: number; droppedDuplicates: number };
    replication: ReplicationStatus;
  }> {
    const up = this.#slots.filter((slot) => slot.state === 'up');
    const all = await Promise.all(up.map((slot) => this.#control(slot, (c) => c.routingStats()).catch(() => undefined)));
    const { workers } = await this.stats();
    const stores = await Promise.all(up.map((slot) => this.#control(slot, (c) => c.storeStats()).catch(() => undefined)));
    let memory = 0;
    let disk = 0;
    let expired = 0;
    for (const worker of workers) {
      // Without a disk tier, parked sessions stay in their worker's memory.
      memory += worker.activations + (this.#store === undefined ? worker.parked : 0);
      expired += worker.expired;
    }
    const store: StoreStatus | null = this.#store === undefined ? null : { demoted: 0, promoted: 0, fromShared: 0, writing: 0, failedWrites: 0, droppedStale: 0, expiredFromShared: 0, diskFull: false, shared: null };
    for (const worker of stores) {
      if (worker === undefined || store === null) continue;
      disk += worker.disk;
      store.demoted += worker.demoted;
      store.promoted += worker.promoted;
      store.fromShared += worker.fromShared;
      store.writing += worker.writing;
      store.failedWrites += worker.failedWrites;
      store.droppedStale += worker.dropped;
      store.expiredFromShared += worker.expiredFromShared;
      store.diskFull ||= worker.full;
      if (worker.shared !== null) store.shared = Math.max(store.shared ?? 0, worker.shared);
    }
    const hops: Record<string, number> = {};
    const routing: RoutingCounters = { forwarded: 0, placed: 0, waiting: 0, pointers: 0, migratedOut: 0, migratedIn: 0, migrationsFailed: 0, cached: 0, held: 0, rerouted: 0 };
    const replication: ReplicationStats = { shipped: 0, acked: 0, refused: 0, replicasHeld: 0, bytesHeld: 0, adopted: 0, pendingSyncAcks: 0, catchingUp: 0 };
    const fencing = { refused: 0, droppedDuplicates: 0 };
    for (const stats of all) {
      if (stats === undefined) continue;
      fencing.refused += stats.refusedNoQuorum;
      fencing.droppedDuplicates += stats.droppedDuplicates;
      for (const name of Object.keys(replication) as (keyof ReplicationStats)[]) replication[name] += stats.replication[name];
      for (const [count, calls] of Object.entries(stats.hops)) hops[count] = (hops[count] ?? 0) + (calls as number);
      for (const name of ['forwarded', 'placed', 'waiting', 'pointers', 'migratedOut', 'migratedIn', 'migrationsFailed'] as const) routing[name] += stats[name];
      routing.cached += stats.router.cached;
      routing.held += stats.router.held;
      routing.rerouted += stats.router.rerouted;
    }
    return { memory, disk, expired, hops, routing: { ...routing }, store, fencing, replication: { ...replication, refused: replication.refused + (this.#routing?.fences.refused ?? 0), releasedByMain: this.#routing?.held.releasedEarly ?? 0, deliveredByReplicas: this.#routing?.held.deliveredByReplicas ?? 0 } };
  }

  ref<D extends AnyActorDef>(def: D, id: string, options?: RefOptions): RefOf<D> {
    return this.#system.ref(def, id, options);
  }

  locate(def: AnyActorDef, id: string): number | 'main' {
    return def.stateless ? 'main' : this.#router.table[this.#router.bucketOf(id)]!;
  }

  async stats(): Promise<NodeStats> {
    const workers = await Promise.all(
      this.#slots.map(async (slot): Promise<WorkerStats> => {
        const base = { index: slot.index, state: slot.state, restarts: slot.restarts };
        const stats = slot.state === 'up' ? await this.#control(slot, (c) => c.stats()).catch(() => undefined) : undefined;
        return { ...emptyStats(), ...stats, ...base };
      }),
    );
    return { workers, main: this.#system.stats() };
  }

  stop(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#stopping ??= this.#stop(options.timeoutMs ?? 10_000);
    return this.#stopping;
  }

  async #stop(timeoutMs: number): Promise<void> {
    if (this.cluster !== undefined) {
      await this.cluster.leave();
      await this.cluster.close();
    }
    this.#system.close('the node is stopping');
    const deadline = performance.now() + timeoutMs;
    await this.#system.drain(timeoutMs);
    const remaining = (): number => Math.max(0, deadline - performance.now());
    await Promise.all(
      this.#slots.filter((slot) => slot.state === 'up').map((slot) => this.#control(slot, (c) => c.drain(remaining())).catch(() => false)),
    );
    if (this.#store !== undefined) {
      const results = await Promise.all(
        this.#slots.filter((slot) => slot.state === 'up').map((slot) => this.#control(slot, (c) => c.demoteAll(), DEMOTE_ALL_TIMEOUT_MS).catch((error: unknown) => {
          console.error(`wadi: worker ${slot.index} could not demote its sessions before stopping:`, error);
          return { demoted: 0, moved: 0, kept: 0 };
        })),
      );
      const total = results.reduce((sum, r) => ({ demoted: sum.demoted + r.demoted, moved: sum.moved + r.moved, kept: sum.kept + r.kept }), { demoted: 0, moved: 0, kept: 0 });
      if (total.demoted + total.moved + total.kept > 0) console.log(`wadi: stopping: ${total.demoted} session(s) demoted to disk, ${total.moved} moved to the shared store, ${total.kept} kept on disk`);
    }
    await Promise.all(
      this.#slots.map(async (slot) => {
        const thread = slot.thread;
        const wasUp = slot.state === 'up';
        slot.state = 'stopped';
        slot.link.close();
        if (thread === undefined) return;
        if (wasUp) await this.#control(slot, (c) => c.stop(), 1000).catch(() => undefined);
        slot.control?.[Comlink.releaseProxy]();
        await thread.terminate();
      }),
    );
    await this.#pool?.destroy();
    this.#system.stop();
    clearInterval(this.#routingTicker);
  }

  // workers

  #linkTo(destination: number): PortLink {
    const slot = this.#slots[destination];
    if (slot === undefined) throw new Unavailable(`no worker ${destination} on this node`);
    return slot.link;
  }

  async #spawn(slot: WorkerSlot): Promise<void> {
    const { port1, port2 } = new MessageChannel();
    const data: WorkerData = {
      index: slot.index,
      incarnation: slot.incarnation++,
      workers: this.workers,
      sameThread: this.#inline,
      buckets: this.buckets,
      modules: this.#modules,
      askTimeoutMs: this.#options.askTimeoutMs,
      mailboxCapacity: this.#options.mailboxCapacity,
      maxHeldBytes: this.#options.maxHeldBytes,
      controlPort: port2,
      ...(this.#store === undefined ? {} : { store: this.#store }),
    };
    slot.control = Comlink.wrap<WorkerControl>(port1 as unknown as Comlink.Endpoint);
    const deliver = (message: ThreadMessage): void => {
      switch (message[0]) {
        case Frame.Out:
          // A session frame for another node.
          return this.#routing?.fromWorker(message[1], message[2], message[3]);
        case Frame.Result:
        case Frame.Notice:
        case Frame.Pending:
          return this.#routing?.fromWorker(this.#member!.node, message[1], message);
        case Frame.Held:
        case Frame.HeldOutcome:
          // A sync reply for another node, held here until its replicas acknowledge (held-replies.ts).
          return this.#routing?.fromWorker(this.#member!.node, MAIN_THREAD, message);
        default:
          // Directory updates for buckets another node owns pass through here on their way out.
          if (message[0] === Kind.Tell && message[1] === BUCKET_ACTOR) this.cluster?.forwardDirectoryUpdate(message as TellEnvelope);
          else this.#system.receive(message as Envelope);
      }
    };
    const receive = (batch: unknown): void => {
      receiveBatch(batch, deliver, (error) => console.error(`wadi: undecodable batch from worker ${slot.index}:`, error));
      // What the batch sends other nodes (replies, replica shipments) leaves before this thread does anything else.
      this.#flushToNodes();
    };
    if (this.#inline) {
      const [mainEnd, runtimeEnd] = InlineEnd.pair();
      mainEnd.on('message', receive);
      runWorker(data, runtimeEnd);
      slot.thread = {
        port: mainEnd,
        terminate: async () => {
          mainEnd.close();
          port1.close();
          port2.close();
        },
      };
    } else {
      this.#startWorker(slot, data, port1, receive);
    }
    await this.#control(slot, (c) => c.start());
    const member = this.#member;
    if (member !== undefined) await this.#control(slot, (c) => c.joinCluster(member.node, member.incarnation));
  }

  /** Starts `slot`'s runtime in a worker thread, restarted by `#onWorkerExit` when it dies. */
  #startWorker(slot: WorkerSlot, data: WorkerData, controlPort: MessagePort, receive: (batch: unknown) => void): void {
    const worker = new Worker(WORKER_URL, { workerData: data, transferList: [data.controlPort], name: `wadi-worker-${slot.index}` });
    const thread: RuntimeThread = { port: worker, terminate: () => worker.terminate() };
    slot.thread = thread;
    let signalExit!: (error: Error) => void;
    slot.exited = new Promise<never>((_, reject) => (signalExit = reject));
    slot.exited.catch(() => undefined);
    worker.on('message', receive);
    worker.on('error', (error) => console.error(`wadi: worker ${slot.index} threw:`, error));
    worker.once('exit', (exitCode) => {
      signalExit(new WorkerCrashed(`worker ${slot.index} exited with code ${exitCode}`));
      controlPort.close();
      if (slot.thread === thread) {
        this.#routing?.workerGone(slot.index);
        void this.#onWorkerExit(slot, exitCode);
      }
    });
  }

  /** Lets the main thread's messages (held meanwhile) reach a worker once it is meshed with its peers. */
  #attach(slot: WorkerSlot): void {
    if (slot.thread !== undefined) slot.link.attach(slot.thread.port);
  }

  async #connect(a: WorkerSlot, b: WorkerSlot): Promise<void> {
    const { port1, port2 } = new MessageChannel();
    await Promise.all([
      this.#control(a, (c) => c.connectPeer(b.index, Comlink.transfer(port1, [port1] as unknown as TransferList))),
      this.#control(b, (c) => c.connectPeer(a.index, Comlink.transfer(port2, [port2] as unknown as TransferList))),
    ]);
  }

  async #onWorkerExit(slot: WorkerSlot, exitCode: number): Promise<void> {
    if (slot.state === 'stopped' || slot.state === 'starting' || this.#stopping) return;
    slot.state = 'restarting';
    slot.link.detach();
    let failedAsks = this.#system.failPendingTo(slot.index, () => new WorkerCrashed(`worker ${slot.index} died before replying`));
    const others = this.#slots.filter((other) => other !== slot && other.state === 'up');
    const counts = await Promise.all(others.map((other) => this.#control(other, (c) => c.peerDown(slot.index)).catch(() => 0)));
    failedAsks += counts.reduce((sum, count) => sum + count, 0);
    this.events.emit('worker-crashed', { index: slot.index, exitCode, failedAsks });
    if (this.#stopping) return;

    const now = performance.now();
    slot.restartTimes = slot.restartTimes.filter((time) => now - time < 60_000);
    if (slot.restartTimes.length >= this.#options.maxRestartsPerMinute) {
      this.#giveUp(slot, new Unavailable(`worker ${slot.index} crashed ${slot.restartTimes.length + 1} times within a minute`));
      return;
    }
    slot.restartTimes.push(now);
    try {
      await this.#spawn(slot);
      for (const other of this.#slots) {
        if (other !== slot && other.state === 'up') await this.#connect(slot, other);
      }
      if (this.#stopping) {
        // stop() may have passed this slot while it was restarting: end the new worker here.
        await slot.thread?.terminate();
        return;
      }
      this.#attach(slot);
      slot.restarts++;
      slot.state = 'up';
      this.events.emit('worker-restarted', { index: slot.index });
    } catch (error) {
      if (this.#stopping) return;
      this.#giveUp(slot, error);
    }
  }

  #giveUp(slot: WorkerSlot, error: unknown): void {
    slot.state = 'failed';
    slot.link.close();
    console.error(`wadi: worker ${slot.index} is not restarted again:`, error);
    this.events.emit('worker-failed', { index: slot.index, error });
  }

  /** A control-plane call that fails (instead of hanging) if the worker exits or stalls. */
  #control<T>(slot: WorkerSlot, call: (control: Comlink.Remote<WorkerControl>) => Promise<T> | T, timeoutMs = CONTROL_TIMEOUT_MS): Promise<T> {
    const control = slot.control;
    if (control === undefined) return Promise.reject(new Unavailable(`worker ${slot.index} is not running`));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Unavailable(`worker ${slot.index} did not answer a control call in ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([Promise.resolve(call(control)), slot.exited, timeout]).finally(() => clearTimeout(timer));
  }

  // stateless pool

  async #runStateless(def: AnyActorDef, method: string, args: unknown[]): Promise<unknown> {
    this.#pool ??= new Piscina<StatelessTask, Uint8Array>({
      filename: STATELESS_WORKER_URL.href,
      workerData: { modules: this.#modules } satisfies StatelessPoolData,
      minThreads: 0,
      maxThreads: this.#options.statelessThreads,
      idleTimeout: 30_000,
    });
    const result = await this.#pool.run({ type: def.name, method, args: encode(args) });
    const [ok, value] = decode(result) as [boolean, unknown];
    if (!ok) throw shapeToError(value as ErrorShape);
    return value;
  }
}

function positive(name: string, value: number): number {
  if (!(typeof value === 'number' && value > 0 && Number.isFinite(value))) {
    throw new InvalidArgument(`${name} must be a positive number, got ${String(value)}`);
  }
  return value;
}

const NODE_OPTION_NAMES: Record<keyof Required<NodeOptions>, true> = {
  actors: true,
  workers: true,
  buckets: true,
  askTimeoutMs: true,
  mailboxCapacity: true,
  statelessThreads: true,
  maxHeldBytes: true,
  maxRestartsPerMinute: true,
  cluster: true,
  store: true,
};

const STORE_OPTION_NAMES: Record<keyof Required<StoreOptions>, true> = {
  disk: true,
  diskMapBytes: true,
  shared: true,
  idleMs: true,
  maxActivePerWorker: true,
  maxHeapBytesPerWorker: true,
  demotionsPerSecond: true,
  promotionsPerSecond: true,
  diskIdleMs: true,
  maxOnDiskPerWorker: true,
  evicters: true,
};

const CLUSTER_OPTION_NAMES: Record<keyof Required<ClusterOptions>, true> = {
  id: true,
  host: true,
  port: true,
  advertisedUrl: true,
  httpPort: true,
  seeds: true,
  dataDir: true,
  secret: true,
  clusterName: true,
  tls: true,
  timings: true,
  election: true,
  maxPayloadBytes: true,
  highWaterMarkBytes: true,
  lowWaterMarkBytes: true,
  tickMs: true,
  maxMovesPerLayout: true,
  replicas: true,
  maxHandoffs: true,
  handoffTimeoutMs: true,
  log: true,
};

function emptyStats(): SystemStats {
  return { activations: 0, parked: 0, queued: 0, pendingAsks: 0, turns: 0, failedTurns: 0, activated: 0, deactivated: 0, expired: 0 };
}

const DEFAULT_DEMOTIONS_PER_SECOND = 2_000;
const DEFAULT_PROMOTIONS_PER_SECOND = 50_000;

/** The workers' view of `StoreOptions`: the disk defaults to `sessions` in the data directory. */
function resolveStore(options: StoreOptions | undefined, dataDir: string | undefined): WorkerStoreData | undefined {
  const disk = options?.disk ?? (dataDir === undefined ? undefined : join(dataDir, 'sessions'));
  const wantsDisk = options !== undefined && Object.values(options).some((value) => value !== undefined);
  if (disk === undefined) {
    if (wantsDisk) throw new InvalidArgument('the store options need a disk tier: give a data directory (--data) or store.disk');
    return undefined;
  }
  const positiveOrUndefined = (name: string, value: number | undefined): number | undefined => (value === undefined ? undefined : positive(`store.${name}`, value));
  const idleMs = positiveOrUndefined('idleMs', options?.idleMs);
  const maxActive = positiveOrUndefined('maxActivePerWorker', options?.maxActivePerWorker);
  const maxHeapBytes = positiveOrUndefined('maxHeapBytesPerWorker', options?.maxHeapBytesPerWorker);
  const diskMapBytes = positiveOrUndefined('diskMapBytes', options?.diskMapBytes);
  const diskIdleMs = positiveOrUndefined('diskIdleMs', options?.diskIdleMs);
  const maxOnDisk = positiveOrUndefined('maxOnDiskPerWorker', options?.maxOnDiskPerWorker);
  if ((diskIdleMs !== undefined || maxOnDisk !== undefined) && options?.shared === undefined) {
    throw new InvalidArgument('store.diskIdleMs and store.maxOnDiskPerWorker move sessions to the shared tier: give store.shared too');
  }
  return {
    disk,
    demotionsPerSecond: positive('store.demotionsPerSecond', options?.demotionsPerSecond ?? DEFAULT_DEMOTIONS_PER_SECOND),
    promotionsPerSecond: positive('store.promotionsPerSecond', options?.promotionsPerSecond ?? DEFAULT_PROMOTIONS_PER_SECOND),
    ...(diskIdleMs === undefined ? {} : { diskIdleMs }),
    ...(maxOnDisk === undefined ? {} : { maxOnDisk }),
    ...(options?.shared === undefined ? {} : { shared: options.shared }),
    ...(idleMs === undefined ? {} : { idleMs }),
    ...(maxActive === undefined ? {} : { maxActive }),
    ...(maxHeapBytes === undefined ? {} : { maxHeapBytes }),
    ...(diskMapBytes === undefined ? {} : { diskMapBytes }),
    ...(options?.evicters === undefined ? {} : { evicters: toModuleUrl(options.evicters, 'store.evicters') }),
  };
}
