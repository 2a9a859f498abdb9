/**
 * The entry of a worker thread: an actor system hosting the buckets assigned to this worker,
 * linked to the main thread and directly to every other worker. Controlled over comlink.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import { BucketHost } from '@wadi/cluster';
import { ActorSystem, Registry, Unavailable, WorkerCrashed, type Envelope } from '@wadi/core';
import { PortLink, receiveBatch } from './internal/link.js';
import { loadActorModules } from './internal/modules.js';
import { MAIN_THREAD, REQUEST_ID_SPAN, type WorkerControl, type WorkerData } from './internal/protocol.js';
import { BucketRouter, roundRobinTable } from './internal/router.js';

const data = workerData as WorkerData;
if (parentPort === null) throw new Error('wadi worker entry must run in a worker thread');
const toMain = parentPort;

const registry = new Registry();
const links = new Map<number, PortLink>();
const router = new BucketRouter(data.buckets, roundRobinTable(data.buckets, data.workers), data.index, MAIN_THREAD);

const send = (destination: number, envelope: Envelope): void => {
  const link = links.get(destination);
  if (link === undefined) throw new Unavailable(`worker ${data.index} has no link to destination ${destination}`);
  link.send(envelope);
};

const buckets = new BucketHost(data.index, data.workers, data.buckets, {
  toWorker: send,
  toNode: (envelope) => send(MAIN_THREAD, envelope),
  hosted: () => system.hostedIds(),
  log: (message) => console.warn(`wadi worker ${data.index}: ${message}`),
});

const system = new ActorSystem({
  registry,
  router,
  selfIndex: data.index,
  firstRequestId: data.incarnation * REQUEST_ID_SPAN + 1,
  askTimeoutMs: data.askTimeoutMs,
  mailboxCapacity: data.mailboxCapacity,
  transport: { send },
  onActivated: (type, id) => buckets.sessionActivated(type, id),
});

const deliver = (envelope: Envelope): void => {
  if (!buckets.receive(envelope)) system.receive(envelope);
};
const reportBadBatch = (error: unknown): void => console.error(`wadi worker ${data.index}: dropped an undecodable batch:`, error);

links.set(MAIN_THREAD, new PortLink(`link from worker ${data.index} to main`, toMain, data.maxHeldBytes));
toMain.on('message', (batch) => receiveBatch(batch, deliver, reportBadBatch));

const peerPorts = new Map<number, MessagePort>();

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
  setLayout: (self, epoch, owners) => buckets.setLayout(self, epoch, owners),
  installBucket: (bucket, epoch, entries) => buckets.install(bucket, epoch, entries),
  exportBucket: (bucket) => buckets.export(bucket),
  reportBucket: (bucket) => buckets.report(bucket),
  forgetNode: (node) => buckets.forgetNode(node),
  resyncBuckets: (list) => buckets.resync(list),
  directoryStats: () => buckets.stats(),
  lookupSession: (bucket, key) => buckets.lookup(bucket, key),
  drain: (timeoutMs) => system.drain(timeoutMs),
  stop() {
    system.stop();
    for (const link of links.values()) link.close();
    for (const port of peerPorts.values()) port.close();
    toMain.close();
  },
};

Comlink.expose(control, data.controlPort as unknown as Comlink.Endpoint);
