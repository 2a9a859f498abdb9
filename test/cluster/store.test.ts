/**
 * Sessions down the store stack, on real node processes with real data directories: an idle
 * evicter demotes them to each node's disk and a call promotes them back with their values; a
 * node SIGKILLed and restarted with its data directory serves the sessions on its disk again, but
 * drops the copies of sessions created again elsewhere while it was down; and the last node of a
 * cluster leaves everything in the shared store, where a new cluster finds it.
 *
 * The steps share one cluster (then a second one) and run in order.
 */
import { describe, expect, it } from 'vitest';
import { connect, type WadiClient } from 'wadi';
import { Ledger } from './fixtures/sessions.mjs';
import { FAST_TIMINGS, SECRET, killNode, restartNode, startNode, status, stopNode, tempDir, waitFor, waitForAgreement, type NodeProcess } from './helpers.js';

const ACTORS = new URL('./fixtures/sessions.mjs', import.meta.url).pathname;
const SESSIONS = 300;
const IDLE_MS = 400;
const sessionId = (i: number): string => `stored-${i}/ledger`;

async function storeCounts(nodes: readonly NodeProcess[]): Promise<{ memory: number; disk: number }> {
  const statuses = await Promise.all(nodes.map((node) => status(node)));
  return statuses.reduce((sum, s) => ({ memory: sum.memory + s.sessions.memory, disk: sum.disk + s.sessions.disk }), { memory: 0, disk: 0 });
}

/** Once every session is parked on disk, SIGKILLs `nodes[index]` and waits until the others declare it down. */
async function crashOnceAllParked(nodes: readonly NodeProcess[], index: number): Promise<{ victim: NodeProcess; onVictim: number }> {
  await waitFor(async () => (await storeCounts(nodes)).disk === SESSIONS, { timeoutMs: 20_000, what: 'every session back on disk' });
  const victim = nodes[index]!;
  const onVictim = (await status(victim)).sessions.disk;
  expect(onVictim).toBeGreaterThan(0);
  await killNode(victim);
  await waitFor(async () => (await status(nodes[0]!)).members.every((member) => member.id !== victim.id || member.state === 'down'), {
    timeoutMs: 30_000,
    what: `${victim.name} declared down`,
  });
  return { victim, onVictim };
}

async function totals(client: WadiClient, count: number): Promise<number[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => client.ref(Ledger, sessionId(i)).total()));
}

describe('sessions down the store stack, on real processes', () => {
  const nodes: NodeProcess[] = [];
  const expected = Array.from({ length: SESSIONS }, (_, i) => i + 1);
  let client: WadiClient | undefined;

  it('idle sessions are demoted to disk, and a call promotes them back with their values', async () => {
    // Without replication (--replicas 0): these steps are about what a node's own disk keeps
    // through a crash; with replicas, a crashed node's sessions continue elsewhere instead (see
    // replication.test.ts).
    const options = (name: string) => ({ name, workers: 2, dataDir: tempDir(`wadi-store-${name}-`), extraArgs: [...FAST_TIMINGS, '--actors', ACTORS, '--idle-ms', String(IDLE_MS), '--replicas', '0'] });
    const n1 = await startNode(options('n1'));
    const n2 = await startNode({ ...options('n2'), seeds: [n1] });
    const n3 = await startNode({ ...options('n3'), seeds: [n1] });
    nodes.push(n1, n2, n3);
    await waitForAgreement(nodes);
    client = await connect({ seeds: nodes.map((node) => node.url), secret: SECRET });
    await Promise.all(expected.map((value, i) => client!.ref(Ledger, sessionId(i)).add(value)));

    const demoted = await waitFor(async () => {
      const counts = await storeCounts(nodes);
      return counts.disk === SESSIONS && counts.memory === 0 && counts;
    }, { timeoutMs: 20_000, what: 'every session demoted to disk' });
    expect(demoted).toEqual({ memory: 0, disk: SESSIONS });
    const stores = await Promise.all(nodes.map(async (node) => (await status(node)) as unknown as { store: { demoted: number; diskFull: boolean } }));
    expect(stores.reduce((sum, s) => sum + s.store.demoted, 0)).toBe(SESSIONS);
    expect(stores.every((s) => !s.store.diskFull)).toBe(true);

    expect(await totals(client, SESSIONS)).toEqual(expected);
    const promoted = await storeCounts(nodes);
    expect(promoted.memory + promoted.disk).toBe(SESSIONS);
    expect(promoted.memory).toBeGreaterThan(0);
  });

  it('a node SIGKILLed and restarted with its data directory serves the sessions on its disk again', async () => {
    const { victim, onVictim } = await crashOnceAllParked(nodes, 1);
    const restarted = await restartNode(victim);
    nodes[1] = restarted;
    await waitForAgreement(nodes);
    expect((await status(restarted)).sessions.disk).toBe(onVictim);
    expect(await totals(client!, SESSIONS)).toEqual(expected);
  });

  it('a node restarted after its sessions were created again elsewhere drops its older copies', async () => {
    const { victim, onVictim } = await crashOnceAllParked(nodes, 2);
    await waitForAgreement(nodes.slice(0, 2));
    // Without replication, the sessions on the dead node start afresh elsewhere on their next call.
    const after = await Promise.all(expected.map((_, i) => client!.ref(Ledger, sessionId(i)).add(1000)));
    expect(after.filter((total) => total === 1000).length).toBe(onVictim);
    const restarted = await restartNode(victim);
    nodes[2] = restarted;
    await waitForAgreement(nodes);
    const dropped = await waitFor(async () => {
      const store = ((await status(restarted)) as unknown as { store: { droppedStale: number } }).store;
      return store.droppedStale === onVictim && store.droppedStale;
    }, { what: `${onVictim} stale copies dropped on ${victim.name}` });
    expect(dropped).toBe(onVictim);
    expect(await totals(client!, SESSIONS)).toEqual(after);
  });

  it('the last node to leave puts every session in the shared store, and a new cluster finds them all', async () => {
    await client?.close();
    for (const node of nodes.splice(0)) expect(await stopNode(node)).toBe(0);

    const shared = tempDir('wadi-store-shared-');
    const options = (name: string) => ({ name, workers: 2, dataDir: tempDir(`wadi-store-${name}-`), extraArgs: [...FAST_TIMINGS, '--actors', ACTORS, '--shared', shared] });
    const first = [await startNode(options('s1'))];
    first.push(await startNode({ ...options('s2'), seeds: [first[0]!] }));
    await waitForAgreement(first);
    const writer = await connect({ seeds: first.map((node) => node.url), secret: SECRET });
    await Promise.all(expected.map((value, i) => writer.ref(Ledger, sessionId(i)).add(value)));
    await writer.close();
    // One leaves (its sessions are evacuated to the other), then the last one leaves.
    expect(await stopNode(first[1]!)).toBe(0);
    expect(await stopNode(first[0]!)).toBe(0);

    const second = [await startNode(options('t1'))];
    second.push(await startNode({ ...options('t2'), seeds: [second[0]!] }));
    await waitForAgreement(second);
    // `/status` counts the shared store's sessions (cluster-wide; counted in the background, so asked until it is).
    await waitFor(async () => ((await status(second[0]!)) as unknown as { store: { shared: number | null } }).store.shared === SESSIONS, {
      timeoutMs: 10_000,
      what: `the shared store's count in /status to reach ${SESSIONS}`,
    });
    const reader = await connect({ seeds: second.map((node) => node.url), secret: SECRET });
    expect(await totals(reader, SESSIONS)).toEqual(expected);
    await reader.close();
    for (const node of second) expect(await stopNode(node)).toBe(0);
  });
});
