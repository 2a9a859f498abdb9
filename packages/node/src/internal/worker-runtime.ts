/**
 * A session runtime: an actor system hosting the buckets assigned to it, linked to the node's main
 * thread and directly to every other runtime, controlled over comlink. It runs in a worker thread
 * (worker.ts), or on the main thread itself when a node has no worker threads (`workers: 0`,
 * inline-channel.ts): the same code either way, only the link to the main thread differs.
 *
 * Alone, a node places each session on the worker of its bucket. Once the node is a cluster
 * member (`joinCluster`), this worker also runs the cluster's session router (its calls to
 * sessions not hosted here) and session host (calls that reach it, the bucket actors' placement
 * decisions, migrations); frames for other nodes go out through the main thread.
 */
import type { MessagePort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import { BucketHost, Frame, QuorumGate, SessionHost, SessionRouter, UNFENCED, ownerIds, type QuorumView, type RoutedFrame } from '@wadi/cluster';
import {
  ActorSystem,
  InvalidArgument,
  LOCAL,
  ROUTED,
  Registry,
  Unavailable,
  WorkerCrashed,
  activationKey,
  bucketOf,
  cloneValue,
  type AnyActorDef,
  type AskEnvelope,
  type Envelope,
  type Router,
  type TellEnvelope,
} from '@wadi/core';
import { IdleEvicter, LmdbTier, LruEvicter, PostgresTier, RateLimiter, type Evicter, type Tier } from '@wadi/store';
import { Demotions, heapEvicter, idleEvicter, lruEvicter, type MemoryEvicter } from './demotions.js';
import { PortLink, receiveBatch, type PortLike } from './link.js';
import { SessionStates } from './session-states.js';
import { loadActorModules, loadEvicterModule } from './modules.js';
import { MAIN_THREAD, REQUEST_ID_SPAN, type ThreadMessage, type WorkerControl, type WorkerData, type WorkerStoreData } from './protocol.js';
import { BucketRouter, roundRobinTable } from './router.js';

const TICK_MS = 250;

/** The runtime's end of its link to the main thread: a worker's `parentPort`, or an inline channel's end. */
export type MainEndpoint = PortLike & {
  on(event: 'message', listener: (batch: unknown) => void): unknown;
  close(): void;
};

/** Starts a session runtime; the main thread drives it over `data.controlPort` (`WorkerControl`). */
export function runWorker(data: WorkerData, toMain: MainEndpoint): void {

  const registry = new Registry();
  const links = new Map<number, PortLink>();
  const localRouter = new BucketRouter(data.buckets, roundRobinTable(data.buckets, data.workers), data.index, MAIN_THREAD);

  interface ClusterSide {
    node: string;
    router: SessionRouter;
    host: SessionHost;
    /** The split-brain gate of this worker: no activation and no turn without the main thread's quorum lease (quorum-gate.ts). */
    quorum: QuorumGate;
  }
  let cluster: ClusterSide | undefined;
  /** The main thread's quorum view, on the absolute clock: open until it sends one. */
  let quorumView: QuorumView = UNFENCED;
  /** Active sessions dropped because their bucket's owner knew a newer copy elsewhere. */
  let droppedDuplicates = 0;

  const send = (destination: number, message: ThreadMessage): void => {
    const link = links.get(destination);
    if (link === undefined) throw new Unavailable(`worker ${data.index} has no link to destination ${destination}`);
    link.send(message);
  };

  const router: Router = {
    route(def: AnyActorDef, id: string, key: string): number {
      if (cluster === undefined || def.stateless) return localRouter.route(def, id);
      return system.hosts(key, def.name, id) && cluster.router.mayShortcut(key) ? LOCAL : ROUTED;
    },
  };

  /**
   * The disk tier's evicters `StoreOptions` asked for; they move sessions on to the shared tier.
   * The application's own (`StoreOptions.evicters`) join this list when the worker starts.
   */
  function diskEvicters(store: WorkerStoreData): Evicter[] {
    return [
      ...(store.diskIdleMs === undefined ? [] : [new IdleEvicter({ idleMs: store.diskIdleMs })]),
      ...(store.maxOnDisk === undefined ? [] : [new LruEvicter({ maxCount: store.maxOnDisk })]),
    ];
  }
  const diskEvicterList = data.store === undefined ? [] : diskEvicters(data.store);

  /** The layout epoch this worker holds: the fencing epoch of its store writes. */
  let layoutEpoch = 0;
  const log = (message: string): void => console.warn(`wadi worker ${data.index}: ${message}`);

  const states =
    data.store === undefined
      ? undefined
      : new SessionStates({
          disk: new LmdbTier({ path: data.store.disk, name: 'disk', ...(data.store.diskMapBytes === undefined ? {} : { mapSize: data.store.diskMapBytes }) }),
          bucketOf: (id) => bucketOf(id, data.buckets),
          versionOf: (key) => cluster?.host.versionOf(key) ?? 0,
          epoch: () => layoutEpoch,
          now: () => Date.now(),
          log,
          // The bucket directory keeps each session's tier as well as its node.
          onDemoted: (type, id, version) => buckets.sessionTier(type, id, version, true),
          onPromoted: (type, id, version) => buckets.sessionTier(type, id, version, false),
          // Gone to the shared tier: nobody hosts it now, and its next call activates it from there.
          // Its replicas go too: the shared tier holds it now.
          onLeft: (type, id, version) => sessionGone(type, id, version),
          promotions: new RateLimiter({ perSecond: data.store.promotionsPerSecond, burst: Math.max(1, Math.round(data.store.promotionsPerSecond / 10)) }),
          diskEvicters: diskEvicterList,
          diskDemotions: new RateLimiter({ perSecond: data.store.demotionsPerSecond, burst: data.store.demotionsPerSecond }),
        });

  const buckets = new BucketHost(data.index, data.workers, data.buckets, {
    toWorker: send,
    toNode: (envelope) => send(MAIN_THREAD, envelope),
    hosted: () => {
      const hosted: [string, string, number?][] = cluster?.host.hosted() ?? system.hostedIds();
      return states === undefined ? hosted : hosted.map(([type, id, version]) => [type, id, version, states.has(type, id)]);
    },
    stale(keys) {
      for (const key of keys) {
        const split = key.indexOf('\u0000');
        const type = key.slice(0, split);
        const id = key.slice(split + 1);
        if (states?.dropStale(type, id) === true) cluster?.host.moveAborted(key, id);
        else if (cluster?.host.dropStale(type, id) === true) {
          // Two activations of one session: the newer (elsewhere) wins; reported, not hidden.
          droppedDuplicates++;
          log(`warn: ${type} '${id}' was active here while its bucket actor knows a newer copy elsewhere: this copy is dropped`);
        }
      }
    },
    log: (message) => console.warn(`wadi worker ${data.index}: ${message}`),
  });

  const system = new ActorSystem({
    registry,
    router,
    selfIndex: data.index,
    firstRequestId: data.incarnation * REQUEST_ID_SPAN + 1,
    askTimeoutMs: data.askTimeoutMs,
    mailboxCapacity: data.mailboxCapacity,
    transport: {
      send(destination, envelope) {
        if (destination === ROUTED) {
          if (cluster === undefined) throw new Unavailable('this node is not a cluster member');
          // A turn that began before the node lost its quorum calls nobody after it did.
          const refusal = cluster.quorum.refusal();
          if (refusal !== undefined) throw refusal;
          cluster.router.send(envelope as AskEnvelope | TellEnvelope);
        } else send(destination, envelope);
      },
    },
    ...(states === undefined ? {} : { parkedStates: states }),
    trackLastUse: data.store?.maxActive !== undefined || data.store?.maxHeapBytes !== undefined || data.store?.idleMs !== undefined,
    onActivated: (type, id) => (cluster === undefined ? buckets.sessionActivated(type, id) : cluster.host.activated(type, id)),
    onExpired: (type, id) => sessionGone(type, id, cluster?.host.versionOf(activationKey(type, id)) ?? 0),
    turnGate: () => cluster?.quorum.check(),
  });

  /**
   * A session no longer hosted on this node and kept nowhere here (it went to the shared tier, or
   * expired): its bucket actor forgets its location, and its replicas are dropped.
   */
  function sessionGone(type: string, id: string, version: number): void {
    const key = activationKey(type, id);
    if (cluster === undefined) return buckets.sessionRemoved(type, id, version);
    cluster.host.replication.left(key);
    cluster.host.unregister(type, id, version);
    cluster.host.moveAborted(key, id);
  }

  /** Parked sessions looked at per tick for expiry (`ActorSystem.dropExpired`): 100,000 are swept in under 15 s. */
  const EXPIRY_CHECKS_PER_TICK = 2_000;
  /** Expired sessions removed from the shared tier per tick, at most (one bucket a tick). */
  const SHARED_EXPIRIES_PER_TICK = 500;
  let sharedSweepBucket = data.index;
  let sweepingShared = false;

  /**
   * Removes the expired sessions of the next bucket this worker serves from the shared tier: in a
   * cluster only the buckets this node owns, so each bucket is swept by one node.
   */
  function sweepSharedTier(): void {
    if (states === undefined || sweepingShared) return;
    for (let looked = 0; looked < data.buckets; looked += data.workers) {
      const bucket = sharedSweepBucket;
      sharedSweepBucket += data.workers;
      if (sharedSweepBucket >= data.buckets) sharedSweepBucket = data.index;
      if (cluster !== undefined && buckets.ownership(bucket) !== 'serving') continue;
      sweepingShared = true;
      states
        .sweepShared(bucket, Date.now(), SHARED_EXPIRIES_PER_TICK)
        .catch((error: unknown) => log(`removing expired sessions from the shared tier failed: ${(error as Error).message}`))
        .finally(() => (sweepingShared = false));
      return;
    }
  }

  /** Every interval this runtime started: an inline runtime outlives none of them (`stop`). */
  const timers: NodeJS.Timeout[] = [];
  timers.push(
    setInterval(() => {
      system.dropExpired(EXPIRY_CHECKS_PER_TICK);
      sweepSharedTier();
    }, TICK_MS).unref(),
  );

  const deliver = (message: ThreadMessage): void => {
    switch (message[0]) {
      case Frame.Call:
      case Frame.Migration:
      case Frame.Replica:
        if (cluster === undefined) return console.warn(`wadi worker ${data.index}: a session frame arrived before this node joined a cluster`);
        return cluster.host.receive(message);
      case Frame.Result:
      case Frame.Notice:
      case Frame.Pending:
      case Frame.ReplicatedResult:
        if (cluster === undefined) return;
        return cluster.router.receive(message);
      default:
        if (!buckets.receive(message as Envelope)) system.receive(message as Envelope);
    }
  };
  /** The memory evicters `StoreOptions` asked for; they demote to the disk tier. */
  function memoryEvicters(): MemoryEvicter[] {
    const store = data.store;
    if (store === undefined) return [];
    return [
      ...(store.idleMs === undefined ? [] : [idleEvicter(store.idleMs)]),
      ...(store.maxActive === undefined ? [] : [lruEvicter(store.maxActive)]),
      ...(store.maxHeapBytes === undefined ? [] : [heapEvicter(store.maxHeapBytes)]),
    ];
  }
  const memoryEvicterList = memoryEvicters();
  /** Set when the worker starts, once the application's evicters are known too. */
  let demotions: Demotions | undefined;

  /** Opens the shared tier named by `--shared`: a postgres:// URL, else a directory for LMDB. */
  async function openSharedTier(spec: string): Promise<Tier> {
    if (/^postgres(ql)?:\/\//.test(spec)) return PostgresTier.connect({ url: spec, name: 'shared' });
    return new LmdbTier({ path: spec, name: 'shared' });
  }

  const reportBadBatch = (error: unknown): void => console.error(`wadi worker ${data.index}: dropped an undecodable batch:`, error);

  /** Sends a session frame to thread `thread` of node `node`; to this very thread, as a copy delivered at once. */
  function sendFrame(node: string, thread: number, frame: RoutedFrame): void {
    if (node !== cluster?.node) {
      send(MAIN_THREAD, [Frame.Out, node, thread, frame]);
    } else if (thread === data.index) {
      // As if it had crossed a thread (the receiver must not share objects with the sender), but at
      // once: the router counts on it (a later call delivered locally must not overtake it).
      deliver(cloneValue(frame));
    } else {
      send(thread, frame);
    }
  }

  links.set(MAIN_THREAD, new PortLink(`link from worker ${data.index} to main`, toMain, data.maxHeldBytes, data.sameThread));
  toMain.on('message', (batch) => receiveBatch(batch, deliver, reportBadBatch));

  const peerPorts = new Map<number, MessagePort>();
  let ticker: NodeJS.Timeout | undefined;

  const control: WorkerControl = {
    async start() {
      const types = await loadActorModules(registry, data.modules);
      if (data.store?.evicters !== undefined) {
        const own = await loadEvicterModule(data.store.evicters, { worker: data.index, workers: data.workers });
        if (own.disk.length > 0 && data.store.shared === undefined) {
          throw new InvalidArgument(`evicter module ${data.store.evicters} has disk evicters, which move sessions to the shared tier, but this node has none: give store.shared (--shared)`);
        }
        memoryEvicterList.push(...own.memory);
        diskEvicterList.push(...own.disk);
      }
      if (data.store !== undefined && memoryEvicterList.length > 0) {
        demotions = new Demotions({
          system,
          evicters: memoryEvicterList,
          limiter: new RateLimiter({ perSecond: data.store.demotionsPerSecond, burst: data.store.demotionsPerSecond }),
          now: () => system.scheduler.now(),
        });
      }
      if (states !== undefined) {
        // Before any call: a session parked on disk must be found here, not created afresh.
        const mine: number[] = [];
        for (let bucket = data.index; bucket < data.buckets; bucket += data.workers) mine.push(bucket);
        await states.index(mine);
        if (data.store?.shared !== undefined) states.shared = await openSharedTier(data.store.shared);
      }
      if (demotions !== undefined || diskEvicterList.length > 0) {
        timers.push(
          setInterval(() => {
            demotions?.tick();
            states?.tick().catch((error: unknown) => log(`moving sessions to the shared tier failed: ${(error as Error).message}`));
          }, TICK_MS).unref(),
        );
      }
      return types;
    },
    connectPeer(peer, port) {
      peerPorts.get(peer)?.close();
      peerPorts.set(peer, port);
      port.on('message', (batch) => receiveBatch(batch, deliver, reportBadBatch));
      const link = links.get(peer);
      if (link === undefined) links.set(peer, new PortLink(`link from worker ${data.index} to worker ${peer}`, port, data.maxHeldBytes));
      else link.attach(port);
    },
    peerDown(peer) {
      links.get(peer)?.detach();
      peerPorts.get(peer)?.close();
      peerPorts.delete(peer);
      return system.failPendingTo(peer, () => new WorkerCrashed(`worker ${peer} died before replying`));
    },
    stats: () => system.stats(),
    storeStats: () => (states === undefined ? undefined : { ...states.stats(), evicted: demotions?.demoted ?? 0 }),
    joinCluster(node, incarnation) {
      const now = (): number => performance.now();
      const sessionRouter = new SessionRouter(
        { node, incarnation, thread: data.index, buckets: data.buckets },
        { send: sendFrame, settle: (envelope) => system.receive(envelope), now, log },
      );
      const host = new SessionHost(
        { node, incarnation, thread: data.index, buckets: data.buckets, migration: { firstBatch: data.incarnation * REQUEST_ID_SPAN + 1 } },
        system,
        buckets,
        sessionRouter,
        { send: sendFrame, now, log },
      );
      const quorum = new QuorumGate(node, () => quorumView, () => performance.timeOrigin + performance.now());
      cluster = { node, router: sessionRouter, host, quorum };
      // Sessions on this node's disk from before a restart: claimed at their stored versions.
      if (states !== undefined) for (const [type, id] of states.keys()) host.movedIn(activationKey(type, id), id, states.parkedVersion(type, id));
      ticker = setInterval(() => {
        sessionRouter.tick();
        host.tick();
      }, TICK_MS);
      ticker.unref();
    },
    setLayout(self, layout) {
      layoutEpoch = layout.epoch;
      buckets.setLayout(self, layout.epoch, ownerIds(layout));
      cluster?.router.setLayout(layout);
      cluster?.host.setLayout(layout);
    },
    setQuorum(view) {
      quorumView = view;
    },
    installBucket(bucket, epoch, entries) {
      buckets.install(bucket, epoch, entries, performance.now());
      cluster?.host.bucketInstalled(bucket);
    },
    exportBucket: (bucket) => buckets.export(bucket),
    reportBucket: (bucket) => buckets.report(bucket),
    forgetNode(node, crashed) {
      cluster?.router.nodeGone(node, crashed);
      cluster?.host.nodeGone(node, crashed);
      return buckets.forgetNode(node, crashed);
    },
    nodeRestarted(node, incarnation) {
      cluster?.router.nodeGone(node, true);
      cluster?.host.nodeRestarted(node, incarnation);
    },
    evacuate() {
      const side = cluster;
      if (side === undefined) return Promise.resolve();
      return new Promise<void>((resolve) => side.host.migrations.evacuate((bucket) => side.router.ownerOf(bucket), resolve));
    },
    routingStats() {
      if (cluster === undefined) return undefined;
      return { ...cluster.host.stats(), router: cluster.router.stats(), hosted: cluster.host.hostedCount, refusedNoQuorum: cluster.quorum.refused, droppedDuplicates };
    },
    resyncBuckets: (list) => buckets.resync(list),
    replicationLag: () => cluster?.host.replication.lagging() ?? { epoch: -1, pairs: [] },
    directoryStats: () => buckets.stats(),
    lookupSession: (bucket, key) => buckets.lookup(bucket, key),
    drain: (timeoutMs) => system.drain(timeoutMs),
    async demoteAll() {
      if (states === undefined) return { demoted: 0, moved: 0, kept: 0 };
      // What is still here when the node stops (the last node of a cluster, or what could not be
      // evacuated) goes down the stack rather than vanish with the process.
      let demoted = 0;
      for (const [type, id] of [...system.evictable()]) if (system.deactivate(type, id)) demoted++;
      await states.flush();
      const { moved, kept } = await states.moveAllToShared();
      return { demoted, moved, kept };
    },
    async stop() {
      clearInterval(ticker);
      for (const timer of timers) clearInterval(timer);
      system.stop();
      for (const link of links.values()) link.close();
      for (const port of peerPorts.values()) port.close();
      await states?.close();
      toMain.close();
    },
  };

  Comlink.expose(control, data.controlPort as unknown as Comlink.Endpoint);
}
