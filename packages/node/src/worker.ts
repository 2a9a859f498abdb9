/**
 * The entry of a worker thread: an actor system hosting the buckets assigned to this worker,
 * linked to the main thread and directly to every other worker. Controlled over comlink.
 *
 * Alone, a node places each session on the worker of its bucket. Once the node is a cluster
 * member (`joinCluster`), this worker also runs the cluster's session router (its calls to
 * sessions not hosted here) and session host (calls that reach it, the bucket actors' placement
 * decisions, migrations); frames for other nodes go out through the main thread.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import { BucketHost, Frame, SessionHost, SessionRouter, ownerIds, type RoutedFrame } from '@wadi/cluster';
import {
  ActorSystem,
  LOCAL,
  ROUTED,
  Registry,
  Unavailable,
  WorkerCrashed,
  decode,
  encode,
  type AnyActorDef,
  type AskEnvelope,
  type Envelope,
  type Router,
  type TellEnvelope,
} from '@wadi/core';
import { PortLink, receiveBatch } from './internal/link.js';
import { loadActorModules } from './internal/modules.js';
import { MAIN_THREAD, REQUEST_ID_SPAN, type ThreadMessage, type WorkerControl, type WorkerData } from './internal/protocol.js';
import { BucketRouter, roundRobinTable } from './internal/router.js';

const data = workerData as WorkerData;
if (parentPort === null) throw new Error('wadi worker entry must run in a worker thread');
const toMain = parentPort;
const TICK_MS = 250;

const registry = new Registry();
const links = new Map<number, PortLink>();
const localRouter = new BucketRouter(data.buckets, roundRobinTable(data.buckets, data.workers), data.index, MAIN_THREAD);

interface ClusterSide {
  node: string;
  router: SessionRouter;
  host: SessionHost;
}
let cluster: ClusterSide | undefined;

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

const buckets = new BucketHost(data.index, data.workers, data.buckets, {
  toWorker: send,
  toNode: (envelope) => send(MAIN_THREAD, envelope),
  hosted: () => cluster?.host.hosted() ?? system.hostedIds(),
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
        cluster.router.send(envelope as AskEnvelope | TellEnvelope);
      } else send(destination, envelope);
    },
  },
  onActivated: (type, id) => (cluster === undefined ? buckets.sessionActivated(type, id) : cluster.host.activated(type, id)),
});


const deliver = (message: ThreadMessage): void => {
  switch (message[0]) {
    case Frame.Call:
    case Frame.Migration:
      if (cluster === undefined) return console.warn(`wadi worker ${data.index}: a session frame arrived before this node joined a cluster`);
      return cluster.host.receive(message);
    case Frame.Result:
    case Frame.Notice:
    case Frame.Pending:
      if (cluster === undefined) return;
      return cluster.router.receive(message);
    default:
      if (!buckets.receive(message as Envelope)) system.receive(message as Envelope);
  }
};
const reportBadBatch = (error: unknown): void => console.error(`wadi worker ${data.index}: dropped an undecodable batch:`, error);

/** Sends a session frame to thread `thread` of node `node`; to this very thread, as a copy delivered at once. */
function sendFrame(node: string, thread: number, frame: RoutedFrame): void {
  if (node !== cluster?.node) {
    send(MAIN_THREAD, [Frame.Out, node, thread, frame]);
  } else if (thread === data.index) {
    // As if it had crossed a thread (the receiver must not share objects with the sender), but at
    // once: the router counts on it (a later call delivered locally must not overtake it).
    deliver(decode(encode(frame)) as RoutedFrame);
  } else {
    send(thread, frame);
  }
}

links.set(MAIN_THREAD, new PortLink(`link from worker ${data.index} to main`, toMain, data.maxHeldBytes));
toMain.on('message', (batch) => receiveBatch(batch, deliver, reportBadBatch));

const peerPorts = new Map<number, MessagePort>();
let ticker: NodeJS.Timeout | undefined;

const control: WorkerControl = {
  start: () => loadActorModules(registry, data.modules),
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
  joinCluster(node, incarnation) {
    const log = (message: string): void => console.warn(`wadi worker ${data.index}: ${message}`);
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
    cluster = { node, router: sessionRouter, host };
    ticker = setInterval(() => {
      sessionRouter.tick();
      host.tick();
    }, TICK_MS);
    ticker.unref();
  },
  setLayout(self, layout) {
    buckets.setLayout(self, layout.epoch, ownerIds(layout));
    cluster?.router.setLayout(layout);
    cluster?.host.setLayout(layout);
  },
  installBucket(bucket, epoch, entries) {
    buckets.install(bucket, epoch, entries, performance.now());
    cluster?.host.bucketInstalled(bucket);
  },
  exportBucket: (bucket) => buckets.export(bucket),
  reportBucket: (bucket) => buckets.report(bucket),
  forgetNode(node) {
    cluster?.router.nodeGone(node);
    cluster?.host.nodeGone(node);
    return buckets.forgetNode(node);
  },
  nodeRestarted(node) {
    cluster?.router.nodeGone(node);
    cluster?.host.nodeRestarted(node);
  },
  evacuate() {
    const side = cluster;
    if (side === undefined) return Promise.resolve();
    return new Promise<void>((resolve) => side.host.migrations.evacuate((bucket) => side.router.ownerOf(bucket), resolve));
  },
  routingStats() {
    if (cluster === undefined) return undefined;
    return { ...cluster.host.stats(), router: cluster.router.stats(), hosted: cluster.host.hostedCount };
  },
  resyncBuckets: (list) => buckets.resync(list),
  directoryStats: () => buckets.stats(),
  lookupSession: (bucket, key) => buckets.lookup(bucket, key),
  drain: (timeoutMs) => system.drain(timeoutMs),
  stop() {
    clearInterval(ticker);
    system.stop();
    for (const link of links.values()) link.close();
    for (const port of peerPorts.values()) port.close();
    toMain.close();
  },
};

Comlink.expose(control, data.controlPort as unknown as Comlink.Endpoint);
