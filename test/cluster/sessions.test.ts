/**
 * Sessions across a cluster of real node processes on loopback, called through clients
 * (`connect()`) attached to different nodes: every call answered, at most two hops, one activation
 * per session, a join under load that moves no session and fails no call, migration under a
 * stream of calls that applies each message exactly once and in each sender's order, and a
 * graceful leave under load that keeps every session's value.
 *
 * The steps share one cluster and run in order.
 */
import { describe, expect, it } from 'vitest';
import { bucketOf, connect, type WadiClient } from 'wadi';
import { Ledger, Prober } from './fixtures/sessions.mjs';
import { FAST_TIMINGS, SECRET, layout, startNode, status, stopNode, waitForAgreement, type NodeProcess } from './helpers.js';

const ACTORS = new URL('./fixtures/sessions.mjs', import.meta.url).pathname;
const SESSIONS = 1000;
const nodeOptions = { workers: 2, extraArgs: [...FAST_TIMINGS, '--actors', ACTORS] };

const sessionId = (i: number): string => `user-${i}/ledger`;

/** Adds 1 to sessions round robin from every client, `inFlight` at a time each, until `stop()`; counts what was acknowledged. */
function loadGenerator(clients: WadiClient[], expected: number[], inFlight = 16): { stop: () => Promise<void>; failures: unknown[]; acknowledged: () => number } {
  const failures: unknown[] = [];
  let stopped = false;
  let next = 0;
  let acknowledged = 0;
  const deadline = performance.now() + 120_000;
  const lane = async (client: WadiClient): Promise<void> => {
    for (let calls = 0; !stopped && calls < 1_000_000 && performance.now() < deadline; calls++) {
      const i = next++ % expected.length;
      try {
        await client.ref(Ledger, sessionId(i)).add(1);
        expected[i]!++;
        acknowledged++;
      } catch (error) {
        failures.push(error);
      }
    }
  };
  const lanes = clients.flatMap((client) => Array.from({ length: inFlight }, () => lane(client)));
  return {
    failures,
    acknowledged: () => acknowledged,
    stop: async () => {
      stopped = true;
      await Promise.all(lanes);
    },
  };
}

/** Session ids of type Prober whose bucket `node` owns in the current layout: they live there. */
async function proberOn(any: NodeProcess, node: NodeProcess, tag: string): Promise<string> {
  const view = (await layout(any))!;
  for (let i = 0; i < 100_000; i++) {
    const id = `probe-${tag}-${i}`;
    if (view.ownerIds[bucketOf(id, view.buckets)] === node.id) return id;
  }
  throw new Error(`no prober id owned by ${node.name}`);
}

async function totalRouting(nodes: readonly NodeProcess[], field: string): Promise<number> {
  const statuses = await Promise.all(nodes.map((node) => status(node)));
  return statuses.reduce((sum, s) => sum + Number((s.routing as Record<string, unknown>)[field] ?? 0), 0);
}

describe('sessions across a cluster of processes', () => {
  const nodes: NodeProcess[] = [];
  const clients: WadiClient[] = [];
  const expected: number[] = Array.from({ length: SESSIONS }, (_, i) => i);
  const activations: string[] = [];

  it(`3 nodes, ${SESSIONS} sessions created through clients on different nodes: every call answered, at most 2 hops`, async () => {
    const n1 = await startNode({ name: 'n1', ...nodeOptions });
    const n2 = await startNode({ name: 'n2', seeds: [n1], ...nodeOptions });
    const n3 = await startNode({ name: 'n3', seeds: [n1], ...nodeOptions });
    nodes.push(n1, n2, n3);
    await waitForAgreement(nodes);
    for (const node of nodes) clients.push(await connect({ seeds: [node.url], secret: SECRET }));

    for (let start = 0; start < SESSIONS; start += 100) {
      await Promise.all(Array.from({ length: 100 }, (_, k) => start + k).map((i) => clients[i % 3]!.ref(Ledger, sessionId(i)).add(i)));
    }
    for (const [c, client] of clients.entries()) {
      const totals = await Promise.all(expected.map((_, i) => client.ref(Ledger, sessionId(i)).total()));
      expect(totals, `totals seen by client ${c}`).toEqual(expected);
    }
    for (let i = 0; i < SESSIONS; i++) activations.push(await clients[i % 3]!.ref(Ledger, sessionId(i)).activation());

    const statuses = await Promise.all(nodes.map((node) => status(node)));
    const hops = statuses.flatMap((s) => Object.keys(s.routing.hops).map(Number));
    expect(Math.max(...hops)).toBeLessThanOrEqual(2);
    expect(statuses.reduce((sum, s) => sum + s.sessions.memory, 0)).toBe(SESSIONS);
  });

  it('concurrent first calls for one id from every node make exactly one activation', async () => {
    const probers = await Promise.all(nodes.map((node, k) => proberOn(nodes[0]!, node, `race${k}`)));
    for (let round = 0; round < 20; round++) {
      const id = `race-${round}/ledger`;
      const seen = await Promise.all(probers.flatMap((prober) => [0, 1].map((c) => clients[c]!.ref(Prober, prober).activationOf(id))));
      expect(new Set(seen).size, `activations of ${id}`).toBe(1);
    }
  });

  it('a 4th node joins under load: no call fails and no session moves', async () => {
    const before = await totalRouting(nodes, 'migratedOut');
    const load = loadGenerator(clients, expected);
    const n4 = await startNode({ name: 'n4', seeds: [nodes[0]!], ...nodeOptions });
    nodes.push(n4);
    await waitForAgreement(nodes);
    await new Promise((resolve) => setTimeout(resolve, 500));
    await load.stop();
    expect(load.failures).toEqual([]);
    expect(load.acknowledged()).toBeGreaterThan(0);
    expect(await totalRouting(nodes, 'migratedOut')).toBe(before);
    expect(await Promise.all(expected.map((_, i) => clients[i % 3]!.ref(Ledger, sessionId(i)).activation()))).toEqual(activations);
    expect(await Promise.all(expected.map((_, i) => clients[(i + 1) % 3]!.ref(Ledger, sessionId(i)).total()))).toEqual(expected);
    expect((await status(n4)).sessions.memory).toBe(0);
  });

  it('a session migrating back and forth under a stream of calls applies every message once, in each sender\'s order', async () => {
    const [n1, n2] = nodes;
    const movers = [await proberOn(n1!, n1!, 'move1'), await proberOn(n1!, n2!, 'move2')];
    const hot = 'hot/ledger';
    await clients[0]!.ref(Prober, movers[0]!).apply(hot, 'mover', 0, 'migrate');
    const perSender = 300;
    const senders = clients.map(async (client, c) => {
      const window: Promise<unknown>[] = [];
      for (let seq = 1; seq <= perSender; seq++) {
        window.push(client.ref(Ledger, hot).apply(`client-${c}`, seq));
        if (window.length >= 8) await window.shift();
      }
      await Promise.all(window);
    });
    const moves = (async () => {
      for (let k = 1; k <= 12; k++) {
        await clients[k % 3]!.ref(Prober, movers[k % 2]!).apply(hot, 'mover', k, 'migrate');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    await Promise.all([...senders, moves]);

    const applied = await clients[0]!.ref(Ledger, hot).applied();
    for (const sender of [...clients.map((_, c) => `client-${c}`), 'mover']) {
      const seqs = applied.filter(([from]) => from === sender).map(([, seq]) => seq);
      const count = sender === 'mover' ? 13 : perSender;
      expect(seqs, `messages of ${sender}`).toEqual(Array.from({ length: count }, (_, k) => (sender === 'mover' ? k : k + 1)));
    }
    expect(await totalRouting(nodes, 'migratedIn')).toBeGreaterThanOrEqual(6);
  });

  it('a node leaves under load (SIGTERM): it exits 0 and every session keeps its value', async () => {
    const leaver = nodes.find((node) => node.name === 'n3')!;
    const hostedThere = (await status(leaver)).sessions.memory;
    expect(hostedThere).toBeGreaterThan(0);
    const load = loadGenerator(clients, expected);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await stopNode(leaver)).toBe(0);
    nodes.splice(nodes.indexOf(leaver), 1);
    await waitForAgreement(nodes);
    await load.stop();
    expect(load.failures).toEqual([]);
    const totals = await Promise.all(expected.map((_, i) => clients[0]!.ref(Ledger, sessionId(i)).total()));
    expect(totals).toEqual(expected);
    expect(await totalRouting(nodes, 'migratedIn')).toBeGreaterThanOrEqual(hostedThere);
    await Promise.all(clients.splice(0).map((client) => client.close()));
  });
});
