/**
 * Replication over real processes: 3 nodes, R = 1, sync sessions (the default). Sessions are
 * written through clients (each write a unique value, acknowledged or not), then the node hosting
 * a third of them is SIGKILLed; once the two survivors agree on a layout without it, every
 * acknowledged value is in its session, exactly once and in order, and the sessions the dead node
 * hosted were adopted from their replicas (not created afresh). Writes after the failover are
 * replicated again, so R copies are restored. Run with sessions on worker threads and with
 * sessions on each node's main thread (`--workers 0`).
 */
import { describe, expect, it } from 'vitest';
import { connect, type NodeStatus, type WadiClient } from 'wadi';
import { Ledger } from './fixtures/sessions.mjs';
import { FAST_TIMINGS, SECRET, killNode, startNode, status, waitFor, waitForAgreement, type NodeProcess } from './helpers.js';

const ACTORS = new URL('./fixtures/sessions.mjs', import.meta.url).pathname;
const SESSIONS = 150;
const WRITES = 4;

const sessionId = (i: number): string => `repl-${i}/ledger`;

type Replication = NodeStatus['replication'];

async function replication(node: NodeProcess): Promise<Replication> {
  return ((await status(node)) as unknown as NodeStatus).replication;
}

/** Reads a session's applied list, retrying (bounded) while the cluster settles after a crash. */
async function appliedOf(client: WadiClient, id: string): Promise<[string, number][]> {
  let last: unknown;
  for (let attempt = 0; attempt < 40; attempt++) {
    try {
      return (await client.ref(Ledger, id, { timeoutMs: 5000 }).applied()) as [string, number][];
    } catch (error) {
      last = error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  throw new Error(`${id} did not answer: ${String(last)}`);
}

// Sessions on worker threads, and on each node's main thread beside its sockets (`--workers 0`).
describe.each([2, 0])('replication across a cluster of processes (R = 1, sync), %i worker threads per node', (workers) => {
  const nodeOptions = { workers, extraArgs: [...FAST_TIMINGS, '--replicas', '1', '--actors', ACTORS] };
  const nodes: NodeProcess[] = [];
  const clients: WadiClient[] = [];
  /** Per session, the seqs whose `apply` was acknowledged, in order. */
  const acknowledged: number[][] = Array.from({ length: SESSIONS }, () => []);

  it('writes through clients are acknowledged once their replicas hold them', async () => {
    const n1 = await startNode({ name: 'n1', ...nodeOptions });
    const n2 = await startNode({ name: 'n2', seeds: [n1], ...nodeOptions });
    const n3 = await startNode({ name: 'n3', seeds: [n1], ...nodeOptions });
    nodes.push(n1, n2, n3);
    await waitForAgreement(nodes);
    // Clients attached to the nodes that survive: the victim is n3.
    clients.push(await connect({ seeds: [n1.url], secret: SECRET }), await connect({ seeds: [n2.url], secret: SECRET }));
    for (let seq = 1; seq <= WRITES; seq++) {
      await Promise.all(
        acknowledged.map(async (seqs, i) => {
          await clients[i % 2]!.ref(Ledger, sessionId(i)).apply('writer', seq);
          seqs.push(seq);
        }),
      );
    }
    // Every session is replicated once (a backup still being replaced keeps its copy a moment
    // longer, until its successor has it); its host keeps no replica of its own.
    await waitFor(async () => {
      const stats = await Promise.all(nodes.map((node) => replication(node)));
      return stats.reduce((sum, s) => sum + s.replicasHeld, 0) === SESSIONS;
    }, { timeoutMs: 15_000, intervalMs: 200, what: 'one replica per session' });
    // One at a time, each caller waits on its write alone: its result comes from the backup that
    // took the write, not from the host (replication.ts, the prompt path).
    for (let i = 0; i < 8; i++) {
      await clients[i % 2]!.ref(Ledger, sessionId(i)).apply('writer', WRITES + 1);
      acknowledged[i]!.push(WRITES + 1);
    }
    const stats = await Promise.all(nodes.map((node) => replication(node)));
    expect(stats.reduce((sum, s) => sum + s.pendingSyncAcks, 0)).toBe(0);
    expect(stats.reduce((sum, s) => sum + s.refused, 0)).toBe(0);
    // The clients' replies waited on the hosts' main threads, which let them go on the
    // acknowledgements (held-replies.ts) rather than after a round through the worker.
    expect(stats.reduce((sum, s) => sum + s.releasedByMain, 0)).toBeGreaterThan(0);
    expect(stats.reduce((sum, s) => sum + s.deliveredByReplicas, 0)).toBeGreaterThan(0);
  });

  it('after a SIGKILL of a host, every acknowledged write is there exactly once, in order', async () => {
    const [n1, n2, n3] = nodes as [NodeProcess, NodeProcess, NodeProcess];
    const hostedOnVictim = (await status(n3)).sessions.memory;
    expect(hostedOnVictim).toBeGreaterThan(0);
    await killNode(n3);
    await waitForAgreement([n1, n2], 30_000);
    // In parallel: a caller's first call to a session whose host died may wait (up to 2 s) for
    // calls it sent there that were never acknowledged, like on any path switch (session-router.ts).
    const applied = await Promise.all(acknowledged.map((_, i) => appliedOf(clients[i % 2]!, sessionId(i))));
    for (let i = 0; i < SESSIONS; i++) {
      expect(applied[i], `applied of ${sessionId(i)}`).toEqual(acknowledged[i]!.map((seq) => ['writer', seq]));
    }
    const stats = await Promise.all([n1, n2].map((node) => replication(node)));
    expect(stats.reduce((sum, s) => sum + s.adopted, 0), 'sessions adopted from replicas').toBe(hostedOnVictim);
  });

  it('writes after the failover are replicated again (R copies restored)', async () => {
    const [n1, n2] = nodes as [NodeProcess, NodeProcess];
    await Promise.all(
      acknowledged.map(async (seqs, i) => {
        await clients[i % 2]!.ref(Ledger, sessionId(i)).apply('writer', WRITES + 2);
        seqs.push(WRITES + 2);
      }),
    );
    // Each session is held by its host and replicated on the other survivor.
    await waitFor(async () => {
      const stats = await Promise.all([n1, n2].map((node) => replication(node)));
      return stats.reduce((sum, s) => sum + s.replicasHeld, 0) === SESSIONS;
    }, { timeoutMs: 15_000, intervalMs: 200, what: 'every session to have a replica on the other survivor' });
    for (const client of clients) await client.close();
  });
});
