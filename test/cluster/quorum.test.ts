/**
 * Split brain and fencing with real node processes on loopback (docs/cluster.md, "Split brain
 * and fencing"):
 *
 * - 3 nodes; two are SIGSTOPped for longer than the failure timeout. The third cannot reach a
 *   majority: a client attached to it gets `NoQuorum` (typed, within a bound), a write it refuses
 *   is never applied, and `/status` says since when and how many calls were refused. After
 *   SIGCONT the cluster converges, nobody was declared down, and every session answers with its
 *   state intact.
 * - 3 nodes; one is SIGSTOPped past the failure timeout (until the others committed a layout
 *   without it) while a client writes to its sessions. After SIGCONT the woken node notices the
 *   stall, applies none of the writes that waited for it (its output lists every write it
 *   applied), and leaves (declared down: exit 1); every write the client saw acknowledged is in
 *   its session's final state.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NoQuorum, Unavailable, bucketOf, connect, type WadiClient } from 'wadi';
import { Journal, JournalWriter } from './fixtures/quorum.mjs';
import { Ledger } from './fixtures/sessions.mjs';
import { FAST_TIMINGS, SECRET, layout, logs, sleep, startNode, status, waitExit, waitFor, waitForAgreement, type NodeProcess } from './helpers.js';

const ACTORS = [new URL('./fixtures/sessions.mjs', import.meta.url).pathname, new URL('./fixtures/quorum.mjs', import.meta.url).pathname].join(',');
const nodeOptions = { workers: 2, extraArgs: [...FAST_TIMINGS, '--actors', ACTORS] };
/** FAST_TIMINGS: suspect after 1 s of silence, down 0.5 s later; a pause of 4 s is well past both. */
const PAUSE_MS = 4000;

interface Fencing {
  serving: boolean;
  reached: number;
  members: number;
  lostAt: string | null;
  losses: number;
  refusedCalls: number;
  stalls: number;
}

async function fencing(node: NodeProcess): Promise<Fencing & { quorum: boolean }> {
  const body = (await status(node)) as unknown as { fencing: Fencing; quorum: boolean };
  return { ...body.fencing, quorum: body.quorum };
}

const stopped = new Set<NodeProcess>();
function pause(node: NodeProcess): void {
  node.child.kill('SIGSTOP');
  stopped.add(node);
}
function resume(node: NodeProcess): void {
  node.child.kill('SIGCONT');
  stopped.delete(node);
}

const clients: WadiClient[] = [];
afterEach(async () => {
  for (const node of stopped) resume(node);
  await Promise.all(clients.splice(0).map((client) => client.close().catch(() => undefined)));
});

/** `count` session ids whose bucket `owner` owns in the current layout (a client's first call places them there). */
async function idsOwnedBy(any: NodeProcess, owner: NodeProcess, tag: string, count: number): Promise<string[]> {
  const view = (await layout(any))!;
  const ids: string[] = [];
  for (let i = 0; ids.length < count && i < 100_000; i++) {
    const id = `${tag}-${i}/ledger`;
    if (view.ownerIds[bucketOf(id, view.buckets)] === owner.id) ids.push(id);
  }
  expect(ids).toHaveLength(count);
  return ids;
}

async function startCluster(): Promise<NodeProcess[]> {
  const n1 = await startNode({ name: 'n1', ...nodeOptions });
  const n2 = await startNode({ name: 'n2', seeds: [n1], ...nodeOptions });
  const n3 = await startNode({ name: 'n3', seeds: [n1], ...nodeOptions });
  const nodes = [n1, n2, n3];
  await waitForAgreement(nodes);
  return nodes;
}

describe('split brain and fencing across processes', () => {
  it('a node left alone refuses with NoQuorum, quickly; after SIGCONT the cluster converges and every session keeps its state', async () => {
    const [n1, n2, n3] = await startCluster();
    const c1 = await connect({ seeds: [n1!.url], secret: SECRET });
    const c3 = await connect({ seeds: [n3!.url], secret: SECRET });
    clients.push(c1, c3);
    // Sessions on every node, with a known total each.
    const ids = [
      ...(await idsOwnedBy(n1!, n1!, 'a', 10)),
      ...(await idsOwnedBy(n1!, n2!, 'b', 10)),
      ...(await idsOwnedBy(n1!, n3!, 'c', 10)),
    ];
    const expected = new Map<string, number>();
    for (const [i, id] of ids.entries()) {
      await (i % 2 === 0 ? c1 : c3).ref(Ledger, id).add(i + 1);
      expected.set(id, i + 1);
    }
    const onN3 = ids.filter((id) => id.startsWith('c-'));
    for (const id of onN3) expect(await c3.ref(Ledger, id).total()).toBe(expected.get(id));

    pause(n1!);
    pause(n2!);
    const stoppedAt = performance.now();
    // A client attached to n3 calls a session that lives there: NoQuorum, typed, within a bound.
    let refusal: unknown;
    await waitFor(
      async () => {
        try {
          await c3.ref(Ledger, onN3[0]!, { timeoutMs: 5000 }).total();
          return false;
        } catch (error) {
          refusal = error;
          return error instanceof NoQuorum;
        }
      },
      { timeoutMs: 15_000, intervalMs: 50, what: 'NoQuorum from n3' },
    );
    const tookMs = performance.now() - stoppedAt;
    expect(refusal).toBeInstanceOf(NoQuorum);
    expect(refusal).toBeInstanceOf(Unavailable);
    expect((refusal as NoQuorum).node).toBe(n3!.id);
    expect((refusal as NoQuorum).members).toBe(3);
    expect((refusal as NoQuorum).reached).toBe(1);
    expect((refusal as Error).message).toContain(`node ${n3!.id} reaches 1 of the 3 members`);
    // Bounded by failure detection (suspect after 1 s) plus scheduling slack on a busy machine.
    expect(tookMs).toBeLessThan(10_000);
    // A write it refuses is not applied, now or later.
    await expect(c3.ref(Ledger, onN3[1]!, { timeoutMs: 5000 }).add(1000)).rejects.toBeInstanceOf(NoQuorum);
    const during = await fencing(n3!);
    expect(during).toMatchObject({ quorum: false, serving: false, reached: 1, members: 3 });
    expect(during.lostAt).not.toBeNull();
    expect(during.refusedCalls).toBeGreaterThanOrEqual(2);

    // Past the failure timeout: nobody can declare anybody down (n3 alone is no majority).
    await sleep(Math.max(0, PAUSE_MS - (performance.now() - stoppedAt)));
    resume(n1!);
    resume(n2!);
    const agreement = await waitForAgreement([n1!, n2!, n3!], 30_000);
    expect(agreement.layout.members.map((member) => member.id).sort()).toEqual([n1!.id, n2!.id, n3!.id].sort());
    await waitFor(async () => (await Promise.all([n1!, n2!, n3!].map(fencing))).every((view) => view.serving && view.quorum), { what: 'every node serving again' });
    for (const node of [n1!, n2!]) expect((await fencing(node)).stalls).toBeGreaterThanOrEqual(1);
    // Every session answers through either client, with its state intact (the refused write is not in it).
    for (const id of ids) {
      expect(await c1.ref(Ledger, id, { timeoutMs: 10_000 }).total()).toBe(expected.get(id));
      expect(await c3.ref(Ledger, id, { timeoutMs: 10_000 }).total()).toBe(expected.get(id));
    }
    for (const node of [n1!, n2!, n3!]) expect(node.exit).toBeUndefined();
  });

  it('a node paused past the failure timeout applies none of the writes that waited for it, and serves nothing stale', async () => {
    const [n1, n2, n3] = await startCluster();
    const c1 = await connect({ seeds: [n1!.url], secret: SECRET });
    clients.push(c1);
    const ids = await idsOwnedBy(n1!, n3!, 'p', 12);
    // Half the sessions are written to straight from the client, half through a writer on n1.
    const writers = await idsOwnedBy(n1!, n1!, 'w', 6);
    const writerOf = new Map(ids.slice(6).map((id, i) => [id, writers[i]!]));
    // Write 0 of each session, applied on n3 (its output says so: the fixture prints what it applies).
    for (const id of ids) expect(await c1.ref(Journal, id).write(0)).toBe(1);
    const appliedOn = (node: NodeProcess): Set<string> => new Set([...logs(node).matchAll(/^quorum-fixture applied (\S+) (\d+)$/gm)].map((match) => `${match[1]} ${match[2]}`));
    expect([...appliedOn(n3!)].sort()).toEqual(ids.map((id) => `${id} 0`).sort());

    pause(n3!);
    const pausedAt = performance.now();
    // Writes to n3's sessions while n3 is stopped, from the client and through n1: one stream per
    // session, unique sequence numbers.
    const acknowledged = new Map<string, number[]>(ids.map((id) => [id, []]));
    const failures: string[] = [];
    let writing = true;
    const streams = ids.map(async (id) => {
      for (let seq = 1; writing && seq <= 10_000 && performance.now() - pausedAt < 60_000; seq++) {
        try {
          const writer = writerOf.get(id);
          if (writer === undefined) await c1.ref(Journal, id, { timeoutMs: 8000 }).write(seq);
          else await c1.ref(JournalWriter, writer, { timeoutMs: 8000 }).write(id, seq);
          acknowledged.get(id)!.push(seq);
        } catch (error) {
          failures.push((error as Error).name);
          await sleep(50);
        }
      }
    });
    // n1 and n2 declare n3 down and take its buckets; its sessions are placed anew (no replication yet).
    // SIGCONT as soon as that is committed: the connections to n3 may still be open (they are
    // given up after 2 s without pongs), so what was sent to it meanwhile waits in its sockets.
    await waitFor(async () => (await layout(n1!))?.members.every((member) => member.id !== n3!.id), { timeoutMs: 20_000, intervalMs: 20, what: 'n3 out of the layout' });
    resume(n3!);
    const exit = await waitExit(n3!, 20_000);
    expect(exit.code).toBe(1);
    expect(logs(n3!)).toMatch(/stalled for \d+ ms/);
    // Writes go on until every session has taken some on its new node, then stop and compare
    // with the sessions' final states.
    await waitFor(() => [...acknowledged.values()].every((seqs) => seqs.length >= 2), { timeoutMs: 40_000, what: `writes acknowledged on every session (failures so far: ${failures.length})` });
    writing = false;
    await Promise.all(streams);
    // n3 applied nothing after write 0: none of the writes that waited in its sockets while it was stopped.
    expect([...appliedOn(n3!)].filter((entry) => !entry.endsWith(' 0'))).toEqual([]);
    for (const id of ids) {
      const present = new Set(await c1.ref(Journal, id, { timeoutMs: 10_000 }).writes());
      for (const seq of acknowledged.get(id)!) expect(present.has(seq), `${id}: acknowledged write #${seq} is not in its state`).toBe(true);
    }
    await waitForAgreement([n1!, n2!], 20_000);
    for (const node of [n1!, n2!]) expect(await fencing(node)).toMatchObject({ serving: true, quorum: true });
  });
});
