/**
 * Sessions across a cluster of real nodes in one process (real worker threads, real WebSockets on
 * loopback): one activation per session wherever it is called from, calls reach it in at most two
 * hops, clients route like members, and the routing policies and evacuation move sessions
 * without losing state.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { CallFlag, Frame, parseFrame, type CallFrame, type ResultFrame } from '@wadi/cluster';
import { Redirected, activationKey } from '@wadi/core';
import { connect, startNode, type WadiClient, type WadiNode } from '@wadi/node';
import { Counter, Expiring } from './fixtures/actors.mjs';
import { ClusterTransport } from '../src/internal/cluster-transport.js';
import { ACTORS as FIXTURES, rejection, waitFor } from './helpers.js';

const until = (what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> => waitFor(what, probe, timeoutMs, 20);

const BUCKETS = 64;
const SECRET = 'routing-test';
const started: WadiNode[] = [];
const clients: WadiClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  await Promise.all(started.splice(0).map((node) => node.cluster!.close().then(() => node.stop({ timeoutMs: 1000 }))));
});

/** Worker threads per node: 2, or 0 (each node's sessions on its main thread, here all the same thread). */
async function start(seeds: string[] = [], workers = 2): Promise<WadiNode> {
  const node = await startNode({
    actors: [FIXTURES],
    workers,
    buckets: BUCKETS,
    cluster: {
      port: 0,
      seeds,
      secret: SECRET,
      timings: { heartbeatMs: 100, suspectAfterMs: 600, downAfterMs: 300, probeIntervalMs: 100, settleMs: 20 },
      tickMs: 20,
      handoffTimeoutMs: 500,
      log: process.env.DEBUG_CLUSTER ? (l, m, f) => console.log(performance.now().toFixed(0), l, m, JSON.stringify(f ?? {})) : () => undefined,
    },
  });
  started.push(node);
  return node;
}

async function clusterOf(size: number, workers = 2): Promise<WadiNode[]> {
  const first = await start([], workers);
  const nodes = [first];
  for (let i = 1; i < size; i++) nodes.push(await start([first.cluster!.url], workers));
  await settled(nodes);
  return nodes;
}

async function settled(nodes: WadiNode[]): Promise<void> {
  await until('one layout of every node, handed off', async () => {
    const layouts = nodes.map((node) => node.cluster!.layout());
    const statuses = await Promise.all(nodes.map((node) => node.cluster!.status()));
    return new Set(layouts.map((layout) => layout?.epoch)).size === 1 && layouts[0]?.members.length === nodes.length && statuses.every((status) => status.buckets.handoffsPending === 0);
  });
}

async function hops(nodes: WadiNode[]): Promise<Record<string, number>> {
  const total: Record<string, number> = {};
  for (const status of await Promise.all(nodes.map((node) => node.cluster!.status()))) {
    for (const [count, calls] of Object.entries(status.routing.hops)) total[count] = (total[count] ?? 0) + calls;
  }
  return total;
}

const ids = (prefix: string, count: number): string[] => Array.from({ length: count }, (_, i) => `${prefix}-${i}`);

/** Sessions active in memory on all of `nodes`: each activation counted once, wherever it is. */
async function activations(nodes: WadiNode[]): Promise<number> {
  const statuses = await Promise.all(nodes.map((node) => node.cluster!.status()));
  return statuses.reduce((sum, status) => sum + status.sessions.memory, 0);
}

/**
 * Where `caller`'s call of session `id` ran: the thread (a worker's, or with `workers: 0` the
 * main thread, which the nodes of this process share) and the node whose session host answered
 * (the call's hop counts: only the node that ran it counts an arrival).
 */
async function ranAt(nodes: WadiNode[], caller: WadiNode, id: string): Promise<string> {
  const before = await Promise.all(nodes.map((node) => node.cluster!.status()));
  const thread = await caller.ref(Counter, id).thread();
  const after = await Promise.all(nodes.map((node) => node.cluster!.status()));
  const arrivals = (status: (typeof after)[number]): number => Object.values(status.routing.hops).reduce((sum, calls) => sum + calls, 0);
  const ran = nodes.filter((_, i) => arrivals(after[i]!) > arrivals(before[i]!));
  if (ran.length !== 1) throw new Error(`the call of ${id} arrived at ${ran.length} nodes`);
  return `${ran[0]!.cluster!.id}/${thread}`;
}

describe.each([2, 0])('sessions across a cluster, %i worker threads per node', (workers) => {
  const cluster = (size: number): Promise<WadiNode[]> => clusterOf(size, workers);

  it('one activation per session, whichever node calls it, in at most two hops', async () => {
    const nodes = await cluster(3);
    const sessions = ids('s', 60);
    for (const node of nodes) await Promise.all(sessions.map((id) => node.ref(Counter, id).add(1)));
    for (const id of sessions.slice(0, 10)) {
      const places = [];
      for (const node of nodes) places.push(await ranAt(nodes, node, id));
      expect(new Set(places).size).toBe(1);
      expect(await nodes[2]!.ref(Counter, id).get()).toBe(3);
    }
    const counted = await hops(nodes);
    expect(Object.keys(counted).every((count) => Number(count) <= 2)).toBe(true);
    // Placed on the first caller's node: 60 activations in all, spread by who called first.
    const memory = (await Promise.all(nodes.map((node) => node.cluster!.status()))).map((status) => status.sessions.memory);
    expect(memory.reduce((sum, count) => sum + count, 0)).toBe(60);
  });

  it('concurrent first calls for one id from every node make one activation', async () => {
    const nodes = await cluster(3);
    for (let round = 0; round < 10; round++) {
      const id = `race-${round}`;
      const threads = await Promise.all(nodes.flatMap((node) => [node.ref(Counter, id).thread(), node.ref(Counter, id).thread()]));
      expect(new Set(threads).size).toBe(1);
      expect(await activations(nodes)).toBe(round + 1);
    }
  });

  it('a client routes like a member and keeps working when the node it first reached leaves', async () => {
    const nodes = await cluster(3);
    const client = await connect({ seeds: [nodes[2]!.cluster!.url], secret: SECRET });
    clients.push(client);
    await until('the client to reach every member', () => client.connectedNodes().length === 3);
    const sessions = ids('c', 50);
    await Promise.all(sessions.map((id) => client.ref(Counter, id).add(5)));
    for (const id of sessions) expect(await nodes[0]!.ref(Counter, id).get()).toBe(5);

    await nodes[2]!.stop();
    started.splice(started.indexOf(nodes[2]!), 1);
    await settled(nodes.slice(0, 2));
    for (const id of sessions) expect(await client.ref(Counter, id).add(1)).toBe(6);
  });

  it('migrate moves the session (with its group) to the caller; redirect names where it is', async () => {
    const [a, b] = await cluster(2);
    await a!.ref(Counter, 'g1/cart').add(7);
    await a!.ref(Counter, 'g1/profile').add(1);
    const before = await ranAt([a!, b!], a!, 'g1/cart');

    const redirected = await rejection(b!.ref(Counter, 'g1/cart', { routing: 'redirect' }).get());
    expect(redirected).toBeInstanceOf(Redirected);
    expect((redirected as Redirected).node).toBe(a!.cluster!.id);

    expect(await b!.ref(Counter, 'g1/cart', { routing: 'migrate' }).add(1)).toBe(8);
    const after = await ranAt([a!, b!], b!, 'g1/cart');
    expect(after).not.toBe(before);
    expect(after.startsWith(`${b!.cluster!.id}/`)).toBe(true);
    expect(await ranAt([a!, b!], a!, 'g1/profile')).toBe(after);
    expect(await a!.ref(Counter, 'g1/profile').get()).toBe(1);
    const statuses = await Promise.all([a!, b!].map((node) => node.cluster!.status()));
    expect(statuses[0]!.routing['migratedOut']).toBe(2);
    expect(statuses[1]!.routing['migratedIn']).toBe(2);
  });

  it('a session too large to move stays where it is under migrate, and its call runs there', async () => {
    const [a, b] = await cluster(2);
    await a!.ref(Counter, 'heavy/cart').add(7);
    // Over the 4 MiB one migration offer may carry.
    await a!.ref(Counter, 'heavy/cart').append('x'.repeat(5 * 1024 * 1024));
    const before = await ranAt([a!, b!], a!, 'heavy/cart');
    expect(await b!.ref(Counter, 'heavy/cart', { routing: 'migrate' }).add(1)).toBe(8);
    expect(await b!.ref(Counter, 'heavy/cart', { routing: 'migrate' }).add(1)).toBe(9);
    expect(await ranAt([a!, b!], a!, 'heavy/cart')).toBe(before);
    const statuses = await Promise.all([a!, b!].map((node) => node.cluster!.status()));
    expect(statuses[0]!.routing['migratedOut']).toBe(0);
    expect(statuses[0]!.sessions.memory).toBe(1);
    expect(statuses[1]!.sessions.memory).toBe(0);
  });

  it('a client cannot forge a member\'s grant: its call is routed like any other, and other frames are refused', async () => {
    const [a, b] = await cluster(2);
    const id = 'forged/one';
    const thread = await a!.ref(Counter, id).thread();
    const forger = new ClusterTransport({ host: '127.0.0.1', port: 0, listen: false, clusterName: 'wadi', secret: SECRET, self: { id: '~forger', incarnation: 1 }, log: () => undefined });
    const results: ResultFrame[] = [];
    forger.on('message', (_peer, value: unknown) => {
      if (Array.isArray(value) && value[0] === Frame.Deliver) results.push(parseFrame(value[2], BUCKETS) as ResultFrame);
    });
    await forger.start();
    try {
      // Like a client, it is connected to every member: results come straight from where the session runs.
      forger.dial(a!.cluster!.url);
      forger.dial(b!.cluster!.url);
      await until('the forger to connect', () => forger.isConnected(a!.cluster!.id) && forger.isConnected(b!.cluster!.id));
      const granted: CallFrame = [Frame.Call, 1, '~forger', 1, 0, 'Counter', id, 'thread', [], 0, 1, CallFlag.Grant, 99, '', '', 0];
      forger.send(b!.cluster!.id, [Frame.Deliver, 0, granted]);
      forger.send(b!.cluster!.id, [Frame.Deliver, 0, [Frame.Migration, 0, '~forger', 0, { t: 'abort', batch: 1 }]]);
      await until('the result', () => results.length > 0);
      expect(results[0]![4]).toBe(true);
      expect(results[0]![5]).toBe(thread);
      expect(results[0]![6]?.[0]).toBe(activationKey('Counter', id));
      expect(await b!.ref(Counter, id).thread()).toBe(thread);
    } finally {
      await forger.close();
    }
  });

  it('a node that leaves moves its sessions to the others first: every value survives', async () => {
    const nodes = await cluster(3);
    const leaver = nodes[2]!;
    const sessions = ids('e', 100);
    await Promise.all(sessions.map((id, i) => leaver.ref(Counter, id).add(i)));
    expect((await leaver.cluster!.status()).sessions.memory).toBe(100);
    await leaver.stop();
    started.splice(started.indexOf(leaver), 1);
    await settled(nodes.slice(0, 2));
    for (const [i, id] of sessions.entries()) expect(await nodes[0]!.ref(Counter, id).get()).toBe(i);
  });
});

describe('replies too large for the network', () => {
  it('fail their caller at once with why, and the session goes on', async () => {
    const nodes = await clusterOf(2);
    const client = await connect({ seeds: [nodes[0]!.cluster!.url], secret: SECRET });
    clients.push(client);
    const ref = client.ref(Counter, 'big-reply', { timeoutMs: 20_000 });
    expect(await ref.add(1)).toBe(1);
    // 20 MiB: over the default 16 MiB a frame between processes may carry. The error says why:
    // not a Timeout at the deadline.
    await expect(ref.big(20)).rejects.toMatchObject({ code: 'WADI_INVALID_ARGUMENT', message: expect.stringMatching(/the reply could not be sent: .*exceeds maxPayloadBytes/) });
    expect(await ref.add(1)).toBe(2);
  });
});

describe('expiry across a cluster', () => {
  it('an expired session leaves its node, its replicas and its bucket directory; the others stay', async () => {
    const nodes = await clusterOf(2);
    const soon = Date.now() + 2_500;
    const sessions = ids('expiring', 20);
    for (const [i, id] of sessions.entries()) await nodes[i % 2]!.ref(Expiring, id).keepUntil(soon);
    await nodes[0]!.ref(Expiring, 'lasting').keepUntil(0);
    const statuses = () => Promise.all(nodes.map((node) => node.cluster!.status()));
    const total = async (pick: (status: Awaited<ReturnType<typeof statuses>>[number]) => number) => (await statuses()).reduce((sum, status) => sum + pick(status), 0);
    await until('every session replicated and in its directory', async () => (await total((s) => s.replication.replicasHeld)) === 21 && (await total((s) => s.directory.entries)) === 21);
    await until('the expired sessions dropped', async () => (await total((s) => s.sessions.expired)) === 20);
    await until('their replicas and directory entries gone', async () => (await total((s) => s.replication.replicasHeld)) === 1 && (await total((s) => s.directory.entries)) === 1);
    expect(await nodes[1]!.ref(Expiring, 'expiring-4').keepUntil(0)).toBe(1);
    expect(await nodes[1]!.ref(Expiring, 'lasting').keepUntil(0)).toBe(2);
  });
});
