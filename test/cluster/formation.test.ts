/**
 * Cluster formation over real processes: three nodes form a cluster with a balanced layout, a
 * fourth joins with the minimum number of bucket moves, one leaves gracefully without losing a
 * bucket, and one crashes and is declared down by the others, its buckets going to their backups.
 *
 * The steps share one cluster and run in order.
 */
import { describe, expect, it } from 'vitest';
// @wadi/cluster is not a dependency of the test package: use its build directly.
import { minimumMoves } from '@wadi/cluster';
import {
  FAST_TIMINGS,
  countOwners,
  killNode,
  movedBuckets,
  startNode,
  status,
  stopNode,
  waitFor,
  waitForAgreement,
  type Agreement,
  type NodeProcess,
  type Status,
} from './helpers.js';

const BUCKETS = 1024;

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

/**
 * Checks the owner moves after `victim` crashed: each bucket it owned went to its backup (the node
 * holding its copy), and other buckets moved only to even out what those promotions piled up
 * (the fewest moves that do). Returns the buckets the victim owned.
 */
function expectPromotions(before: Agreement, after: Agreement, victim: NodeProcess, rest: readonly NodeProcess[]): number[] {
  const { layout } = before;
  const replicas = layout.replicas ?? 0;
  const owned = before.ownerIds.flatMap((owner, bucket) => (owner === victim.id ? [bucket] : []));
  const promoted = [...before.ownerIds];
  for (const bucket of owned) {
    const backups = (layout.backups ?? []).slice(bucket * replicas, (bucket + 1) * replicas).filter((member) => member >= 0);
    expect(backups.map((member) => layout.members[member]!.id)).toContain(after.ownerIds[bucket]);
    promoted[bucket] = after.ownerIds[bucket]!;
  }
  const rebalance = minimumMoves({ buckets: BUCKETS, owners: promoted, members: rest.map((node) => node.id) });
  expect(movedBuckets(before.ownerIds, after.ownerIds)).toHaveLength(owned.length + rebalance);
  console.log(`crash of ${victim.name}: its ${owned.length} buckets went to their backups; ${rebalance} more moved to rebalance`);
  return owned;
}

/** Waits until no node has a handoff pending, and returns their statuses. */
async function waitForHandoffs(nodes: readonly NodeProcess[]): Promise<Map<NodeProcess, Status>> {
  return waitFor(
    async () => {
      const all = await Promise.all(nodes.map(async (node) => [node, await status(node)] as const));
      return all.every(([, s]) => s.buckets.handoffsPending === 0) && new Map(all);
    },
    { timeoutMs: 30_000, what: `${nodes.map((node) => node.name).join(', ')} to finish their handoffs` },
  );
}

describe('cluster formation, join, leave and crash', () => {
  let n1: NodeProcess;
  let n2: NodeProcess;
  let n3: NodeProcess;
  let n4: NodeProcess;
  let three: Agreement;
  let four: Agreement;

  it('three nodes form a cluster: the first coordinates and the layout is balanced', async () => {
    n1 = await startNode({ name: 'n1', extraArgs: FAST_TIMINGS });
    await waitFor(async () => (await status(n1)).epoch > 0, { what: 'n1 to form a cluster' });
    [n2, n3] = await Promise.all([
      startNode({ name: 'n2', seeds: [n1], extraArgs: FAST_TIMINGS }),
      startNode({ name: 'n3', seeds: [n1], extraArgs: FAST_TIMINGS }),
    ]);
    three = await waitForAgreement([n1, n2, n3]);

    expect(three.coordinator).toBe(n1.id);
    expect(three.epoch).toBeGreaterThan(0);
    expect(three.ownerIds).toHaveLength(BUCKETS);
    const counts = countOwners(three.ownerIds);
    expect([...counts.keys()].sort()).toEqual([n1.id, n2.id, n3.id].sort());
    expect([...counts.values()].sort()).toEqual([341, 341, 342]);
    for (const [node, s] of three.statuses) {
      expect(s.id).toBe(node.id);
      expect(s.url).toBe(node.url);
      expect(s.buckets.total).toBe(BUCKETS);
      expect(s.buckets.owned).toBe(counts.get(node.id));
      expect(s.buckets.byMember).toEqual(Object.fromEntries(counts));
    }
    // Formed means settled too: every bucket's directory has reached its owner.
    await waitForHandoffs([n1, n2, n3]);
  });

  it('a fourth node joins and the layout rebalances with the minimum number of moves', async () => {
    const rebuiltBefore = sum(await Promise.all([n1, n2, n3].map(async (node) => (await status(node)).buckets.rebuilt)));
    n4 = await startNode({ name: 'n4', seeds: [n1], extraArgs: FAST_TIMINGS });
    four = await waitForAgreement([n1, n2, n3, n4]);

    expect(four.coordinator).toBe(n1.id);
    expect(four.epoch).toBeGreaterThan(three.epoch);
    const before = three.ownerIds;
    const after = four.ownerIds;
    const moved = movedBuckets(before, after);
    const minimum = minimumMoves({ buckets: BUCKETS, owners: before, members: [n1.id, n2.id, n3.id, n4.id] });
    expect(minimum).toBe(256);
    expect(moved.length).toBe(minimum);
    // A join moves buckets only to the newcomer.
    expect(moved.filter((bucket) => after[bucket] !== n4.id)).toEqual([]);
    expect([...countOwners(after).values()]).toEqual([256, 256, 256, 256]);
    // The newcomer pulls its 256 directories from their live previous owners: handoffs, no rebuild.
    const settled = await waitForHandoffs([n1, n2, n3, n4]);
    expect(settled.get(n4)!.buckets.owned).toBe(256);
    // n4 is new: each of its buckets came by a completed handoff.
    expect(settled.get(n4)!.buckets.handoffsCompleted).toBe(256);
    expect(sum([...settled.values()].map((s) => s.buckets.rebuilt))).toBe(rebuiltBefore);
  });

  it('a node that leaves gracefully exits 0, hands off its buckets and is down for the others', async () => {
    const leaver = n2;
    const rest = [n1, n3, n4];
    const before = four.ownerIds;
    const beforeLeave = new Map(await Promise.all(rest.map(async (node) => [node.id, (await status(node)).buckets] as const)));

    expect(await stopNode(leaver)).toBe(0);
    const afterLeave = await waitForAgreement(rest);
    expect(afterLeave.ownerIds).not.toContain(leaver.id);
    expect(afterLeave.coordinator).toBe(n1.id);

    // Only the leaver's buckets moved, and the survivors are balanced again.
    const moved = movedBuckets(before, afterLeave.ownerIds);
    expect(moved.filter((bucket) => before[bucket] !== leaver.id)).toEqual([]);
    expect(moved.length).toBe(256);
    expect(moved.length).toBe(minimumMoves({ buckets: BUCKETS, owners: before, members: rest.map((node) => node.id) }));
    expect([...countOwners(afterLeave.ownerIds).values()].sort()).toEqual([341, 341, 342]);

    // Nothing lost: every handoff finished, and each node that received buckets completed handoffs.
    const receivers = new Set(moved.map((bucket) => afterLeave.ownerIds[bucket]!));
    expect(receivers.size).toBe(3);
    const statuses = [...(await waitForHandoffs(rest)).values()];
    for (const s of statuses) {
      expect(s.members.find((member) => member.id === leaver.id)?.state).toBe('down');
      expect(s.buckets.handoffsPending).toBe(0);
      const before = beforeLeave.get(s.id)!;
      if (receivers.has(s.id)) expect(s.buckets.handoffsCompleted).toBeGreaterThan(before.handoffsCompleted);
      // The leaver was alive to hand its buckets off: nothing had to be rebuilt from the survivors.
      expect(s.buckets.rebuilt).toBe(before.rebuilt);
    }
    expect(sum(statuses.map((s) => s.buckets.handoffsCompleted - beforeLeave.get(s.id)!.handoffsCompleted))).toBe(moved.length);
    four = afterLeave;
  });

  it('a crashed node is declared down and the majority commits a layout without it', async () => {
    const victim = n3; // not the coordinator
    const rest = [n1, n4];
    expect(four.coordinator).not.toBe(victim.id);

    const rebuiltBefore = sum(await Promise.all(rest.map(async (node) => (await status(node)).buckets.rebuilt)));
    await killNode(victim);
    const two = await waitForAgreement(rest);
    expect(two.ownerIds).not.toContain(victim.id);
    expect(two.epoch).toBeGreaterThan(four.epoch);
    expect(two.coordinator).toBe(n1.id);
    const owned = expectPromotions(four, two, victim, rest);
    expect([...countOwners(two.ownerIds).values()]).toEqual([512, 512]);
    for (const s of two.statuses.values()) {
      expect(s.members.find((member) => member.id === victim.id)?.state).toBe('down');
    }
    // The crashed node's buckets cannot be handed off: they are rebuilt from the survivors, and
    // settle (the rebalancing moves, from live owners, are handoffs).
    const settled = await waitForHandoffs(rest);
    expect(sum([...settled.values()].map((s) => s.buckets.rebuilt)) - rebuiltBefore).toBe(owned.length);
    // The survivors keep running; nobody exited.
    expect(n1.exit).toBeUndefined();
    expect(n4.exit).toBeUndefined();
  });
});

describe('crash on the default failure-detection timings', () => {
  it("reassigns a SIGKILLed node's buckets within a few seconds", async () => {
    const m1 = await startNode({ name: 'd1' });
    await waitFor(async () => (await status(m1)).epoch > 0, { what: 'd1 to form a cluster' });
    const [m2, m3] = await Promise.all([startNode({ name: 'd2', seeds: [m1] }), startNode({ name: 'd3', seeds: [m1] })]);
    await waitForAgreement([m1, m2, m3]);
    await waitForHandoffs([m1, m2, m3]);
    const agreed = await waitForAgreement([m1, m2, m3]);
    const before = agreed.ownerIds;

    const victim = m3;
    const killedAt = performance.now();
    await killNode(victim);
    const after = await waitForAgreement([m1, m2], 30_000);
    const seconds = (performance.now() - killedAt) / 1000;
    console.log(`default timings: the crashed node's ${countOwners(before).get(victim.id)} buckets were reassigned ${seconds.toFixed(2)} s after SIGKILL (the issue asks for <= 5 s)`);

    expect(after.ownerIds).not.toContain(victim.id);
    expectPromotions(agreed, after, victim, [m1, m2]);
    // A sanity bound only: CI machines are noisy. The figure itself is printed above.
    expect(seconds).toBeLessThan(15);
  });
});
