#!/usr/bin/env node
/**
 * One process of the demo cluster: a wadi node (cluster member, status endpoint) that also serves
 * the shop over the session middleware. The demo's supervisor (main.ts) starts these; anyone can
 * start more by hand with the same flags.
 *
 * When ready it prints one line `WADI_DEMO_READY {json}` with its id, incarnation and URLs.
 * SIGTERM or SIGINT is a graceful leave that loses no request: the node first tells clients to
 * stop reusing connections and waits until requests stop arriving, then closes its HTTP port
 * (requests in progress finish), then leaves the cluster (its sessions move to the others), and
 * exits 0.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { HTTP_ACTORS, httpSessions, startNode, type RoutingPolicy } from 'wadi';
import { readyLine } from './ready.js';
import { shopApp } from './shop.js';

/** Once draining, close the HTTP port when no request has arrived for this long... */
const HTTP_QUIET_MS = 400;
/** ...or after this long at most. */
const HTTP_DRAIN_MAX_MS = 3_000;

const { values } = parseArgs({
  options: {
    id: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    'http-port': { type: 'string', default: '0' },
    'app-port': { type: 'string', default: '0' },
    seeds: { type: 'string', default: '' },
    data: { type: 'string' },
    workers: { type: 'string', default: '2' },
    buckets: { type: 'string', default: '1024' },
    routing: { type: 'string', default: 'proxy' },
    // The store stack: sessions idle this long go to this node's disk (under --data), and with
    // --shared, the last node to stop leaves them all in that shared store.
    'idle-ms': { type: 'string', default: '60000' },
    shared: { type: 'string' },
  },
});

const cookieSecret = process.env['DEMO_COOKIE_SECRET'];
if (cookieSecret === undefined || cookieSecret.length < 16) {
  console.error('demo-node: set DEMO_COOKIE_SECRET (at least 16 characters) and WADI_SECRET');
  process.exit(2);
}
const host = values.host!;
const node = await startNode({
  actors: [HTTP_ACTORS, new URL('./actors.js', import.meta.url)],
  workers: Number(values.workers),
  buckets: Number(values.buckets),
  cluster: {
    host,
    port: Number(values.port),
    httpPort: Number(values['http-port']),
    seeds: values.seeds!.split(',').filter((seed) => seed.length > 0),
    ...(values.id === undefined ? {} : { id: values.id }),
    ...(values.data === undefined ? {} : { dataDir: values.data }),
    log: (level, message) => {
      if (level !== 'info') console.error(`${new Date().toISOString()} ${level}: ${message}`);
    },
  },
  ...(values.data === undefined ? {} : { store: { idleMs: Number(values['idle-ms']), ...(values.shared === undefined ? {} : { shared: values.shared }) } }),
});
const cluster = node.cluster!;

let draining = false;
let inFlight = 0;
let lastRequestAt = performance.now();
const server: Server = createServer();
await new Promise<void>((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(values['app-port']), host, () => resolve());
});
const appUrl = `http://${host}:${(server.address() as AddressInfo).port}`;
const sessions = httpSessions({
  node,
  secret: cookieSecret.split(','),
  routing: values.routing as RoutingPolicy,
  appUrl,
});
const app = shopApp({ node, sessions, draining: () => draining, dashboard: process.env['DEMO_DASHBOARD_URL'] });
server.on('request', (req, res) => {
  inFlight++;
  lastRequestAt = performance.now();
  res.once('close', () => inFlight--);
  app(req, res);
});

console.log(readyLine({ id: cluster.id, incarnation: cluster.incarnation, pid: process.pid, ws: cluster.url, status: cluster.httpUrl!, app: appUrl }));

async function drainHttp(): Promise<void> {
  draining = true;
  server.closeIdleConnections();
  const deadline = performance.now() + HTTP_DRAIN_MAX_MS;
  while (performance.now() < deadline && (inFlight > 0 || performance.now() - lastRequestAt < HTTP_QUIET_MS)) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  // Connections still busy finish their response (which says `Connection: close`); bounded.
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, HTTP_DRAIN_MAX_MS))]);
  server.closeAllConnections();
}

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) {
    console.error(`demo-node ${cluster.id}: ${signal} again: exiting now`);
    process.exit(1);
  }
  stopping = true;
  console.log(`demo-node ${cluster.id}: ${signal}: draining HTTP, then leaving the cluster`);
  await drainHttp();
  sessions.close();
  await node.stop();
  console.log(`demo-node ${cluster.id}: left the cluster`);
  process.exit(0);
}
process.on('SIGTERM', () => void stop('SIGTERM'));
process.on('SIGINT', () => void stop('SIGINT'));
cluster.events.once('removed', (reason: string) => {
  if (stopping) return;
  stopping = true;
  console.error(`demo-node ${cluster.id}: removed from the cluster (${reason}); exiting`);
  server.closeAllConnections();
  void node.stop({ timeoutMs: 1000 }).finally(() => process.exit(1));
});
