import { describe, expect, it } from 'vitest';
import { majority, minimumMoves, ownedCounts, quorum, type Layout } from '../src/index.js';
import { TestNetwork } from './network.js';

const url = TestNetwork.url;

function ownersById(layout: Layout): string[] {
  return layout.owners.map((owner) => layout.members[owner]!.id);
}

function counts(layout: Layout): number[] {
  return [...ownedCounts(layout).values()].sort((a, b) => a - b);
}

/** Starts n1 (forming) and n2..nN joining through n1, and waits until they agree on a settled layout (no backup still incoming). */
function formCluster(net: TestNetwork, n: number): void {
  net.start('n1', []);
  for (let i = 2; i <= n; i++) net.start(`n${i}`, [url('n1')]);
  net.until(() => net.agreed() && net.live().every((node) => node.member.committed!.members.length === n && (node.member.committed!.incoming ?? []).length === 0));
}

describe('ClusterMember', () => {
  it('majority and quorum', () => {
    expect([1, 2, 3, 4, 5].map(majority)).toEqual([1, 2, 2, 3, 3]);
    expect(quorum(0)).toBe(0);
    expect(quorum(3)).toBe(2);
  });

  it('a node without seeds forms a cluster and owns every bucket at epoch 1', () => {
    const net = new TestNetwork(64);
    const n1 = net.start('n1', []);
    net.until(() => n1.member.committed !== null);
    expect(n1.member.committed!.epoch).toBe(1);
    expect(n1.member.coordinator).toBe('n1');
    expect(new Set(ownersById(n1.member.committed!))).toEqual(new Set(['n1']));
    expect(n1.persisted.committed?.epoch).toBe(1);
  });

  it('three nodes agree on coordinator, epoch and a balanced layout', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const layouts = net.live().map((node) => node.member.committed!);
    expect(new Set(layouts.map((layout) => layout.epoch)).size).toBe(1);
    expect(new Set(layouts.map((layout) => JSON.stringify(ownersById(layout)))).size).toBe(1);
    expect(new Set(net.live().map((node) => node.member.coordinator))).toEqual(new Set(['n1']));
    expect(counts(layouts[0]!)).toEqual([21, 21, 22]);
    for (const node of net.live()) expect(node.member.status().members.every((member) => member.state === 'up')).toBe(true);
  });

  it('a fourth node joins with the minimum number of moves, and only to the newcomer', () => {
    const net = new TestNetwork(1024);
    formCluster(net, 3);
    const before = net.nodes.get('n1')!.member.committed!;
    net.start('n4', [url('n2')]);
    net.until(() => net.agreed() && net.nodes.get('n1')!.member.committed!.members.length === 4);
    const after = net.nodes.get('n1')!.member.committed!;
    const a = ownersById(before);
    const b = ownersById(after);
    const moved = b.filter((owner, bucket) => owner !== a[bucket]);
    expect(moved.length).toBe(256);
    expect(new Set(moved)).toEqual(new Set(['n4']));
    expect(moved.length).toBe(minimumMoves({ buckets: 1024, owners: a, members: ['n1', 'n2', 'n3', 'n4'] }));
    expect(after.epoch).toBeGreaterThan(before.epoch);
  });

  it('a graceful leave hands every bucket to the others, then the leaver is down', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const n3 = net.nodes.get('n3')!;
    n3.member.leave(net.now);
    net.until(() => n3.left);
    net.until(() => net.agreed() && net.live().every((node) => node.member.status().members.find((m) => m.id === 'n3')?.state === 'down'));
    const layout = net.nodes.get('n1')!.member.committed!;
    expect(layout.members.map((member) => member.id).sort()).toEqual(['n1', 'n2']);
    expect(counts(layout)).toEqual([32, 32]);
  });

  it('the coordinator itself can leave: the next oldest takes over and commits without it', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const n1 = net.nodes.get('n1')!;
    n1.member.leave(net.now);
    net.until(() => n1.left);
    const n2 = net.nodes.get('n2')!;
    net.until(() => net.agreed() && n2.member.committed!.members.length === 2);
    expect(n2.member.coordinator).toBe('n2');
    expect(n2.member.committed!.coordinator).toBe('n2');
  });

  it('a crashed node is declared down with confirmation and its buckets are reassigned', () => {
    const net = new TestNetwork(64, { suspectAfterMs: 2000, downAfterMs: 1000 });
    formCluster(net, 3);
    const epoch = net.nodes.get('n1')!.member.committed!.epoch;
    net.crash('n3');
    const took = net.until(() => net.agreed() && net.nodes.get('n1')!.member.committed!.members.length === 2);
    expect(took).toBeLessThan(5000);
    const layout = net.nodes.get('n2')!.member.committed!;
    expect(layout.epoch).toBeGreaterThan(epoch);
    expect(counts(layout)).toEqual([32, 32]);
    for (const node of net.live()) expect(node.member.status().members.find((m) => m.id === 'n3')!.state).toBe('down');
  });

  it('a killed coordinator is replaced; the new one commits above the last epoch', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const epoch = net.nodes.get('n2')!.member.committed!.epoch;
    net.crash('n1');
    net.until(() => net.agreed() && net.nodes.get('n2')!.member.committed!.members.length === 2);
    const n2 = net.nodes.get('n2')!;
    expect(n2.member.coordinator).toBe('n2');
    expect(n2.member.committed!.epoch).toBeGreaterThan(epoch);
    expect(n2.member.committed!.coordinator).toBe('n2');
  });

  it('one slow link evicts nobody: the others still reach the node', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const epoch = net.nodes.get('n1')!.member.committed!.epoch;
    net.partition(['n1'], ['n3']);
    net.run(10_000);
    for (const node of net.live()) {
      expect(node.member.status().members.every((member) => member.state !== 'down')).toBe(true);
      expect(node.member.committed!.epoch).toBe(epoch);
    }
    expect(net.nodes.get('n1')!.member.status().members.find((m) => m.id === 'n3')!.state).toBe('suspect');
    net.heal();
    net.run(3000);
    expect(net.nodes.get('n1')!.member.status().members.find((m) => m.id === 'n3')!.state).toBe('up');
  });

  it('a minority side commits nothing; the majority carries on; the minority is removed on heal', () => {
    const net = new TestNetwork(64);
    formCluster(net, 5);
    const epoch = net.nodes.get('n1')!.member.committed!.epoch;
    net.partition(['n1', 'n2'], ['n3', 'n4', 'n5']);
    net.until(() => net.agreed(['n3', 'n4', 'n5']) && net.nodes.get('n3')!.member.committed!.members.length === 3);
    expect(net.nodes.get('n1')!.member.committed!.epoch).toBe(epoch);
    expect(net.nodes.get('n2')!.member.committed!.epoch).toBe(epoch);
    expect(net.nodes.get('n3')!.member.coordinator).toBe('n3');
    net.run(5000);
    expect(net.nodes.get('n1')!.member.committed!.epoch).toBe(epoch);
    net.heal();
    net.until(() => net.nodes.get('n1')!.removed !== undefined && net.nodes.get('n2')!.removed !== undefined);
  });

  it('a stalled node longer than the failure timeout is declared down and, on waking, learns it was removed', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    net.pause('n3');
    net.until(() => net.agreed(['n1', 'n2']) && net.nodes.get('n1')!.member.committed!.members.length === 2);
    net.resume('n3');
    net.until(() => net.nodes.get('n3')!.removed !== undefined);
  });

  it('a restarted node is a new member: its old incarnation is replaced and buckets come back to it', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const n3 = net.nodes.get('n3')!;
    net.crash('n3');
    net.until(() => net.agreed(['n1', 'n2']) && net.nodes.get('n1')!.member.committed!.members.length === 2);
    const restarted = net.start('n3', [url('n1')], n3.persisted);
    expect(restarted.member.incarnation).toBe(2);
    net.until(() => net.agreed() && net.nodes.get('n1')!.member.committed!.members.length === 3);
    const layout = net.nodes.get('n1')!.member.committed!;
    expect(layout.members.find((member) => member.id === 'n3')!.incarnation).toBe(2);
    expect(counts(layout)).toEqual([21, 21, 22]);
  });

  it('epochs never go backwards and stale proposals are refused', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const n2 = net.nodes.get('n2')!;
    const layout = n2.member.committed!;
    const seen: string[] = [];
    const stale = { ...layout, coordinator: 'n3' };
    n2.member.receive('n3', { t: 'propose', layout: stale }, net.now);
    n2.member.receive('n3', { t: 'commit', layout: { ...layout, epoch: layout.epoch - 1 } }, net.now);
    expect(n2.member.committed!.epoch).toBe(layout.epoch);
    for (const node of net.live()) for (const l of node.layouts) seen.push(`${node.id}:${l.epoch}`);
    for (const node of net.live()) {
      const epochs = node.layouts.map((l) => l.epoch);
      expect(epochs).toEqual([...epochs].sort((a, b) => a - b));
      expect(new Set(epochs).size).toBe(epochs.length);
    }
    expect(seen.length).toBeGreaterThan(0);
  });

  it('a whole cluster restarted from its data directories resumes above its last epoch', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const epoch = net.nodes.get('n1')!.member.committed!.epoch;
    const saved = new Map([...net.nodes.values()].map((node) => [node.id, node.persisted]));
    for (const id of ['n1', 'n2', 'n3']) net.crash(id);
    const n1 = net.start('n1', [], saved.get('n1'));
    net.run(2000);
    // Alone, n1 is no majority of the last layout's members: it must not commit.
    expect(n1.member.committed!.epoch).toBe(epoch);
    net.start('n2', [url('n1')], saved.get('n2'));
    net.start('n3', [url('n1')], saved.get('n3'));
    net.until(() => net.agreed() && n1.member.committed!.epoch > epoch && n1.member.committed!.members.length === 3);
  });

  it('a node restarted without seeds rejoins through the members it remembers, as the youngest', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const n1 = net.nodes.get('n1')!;
    net.crash('n1');
    net.until(() => net.agreed(['n2', 'n3']) && net.nodes.get('n2')!.member.committed!.members.length === 2);
    const epoch = net.nodes.get('n2')!.member.committed!.epoch;
    const restarted = net.start('n1', [], n1.persisted);
    net.until(() => net.agreed() && net.nodes.get('n2')!.member.committed!.members.length === 3);
    expect(restarted.member.coordinator).toBe('n2');
    expect(restarted.member.committed!.epoch).toBeGreaterThan(epoch);
    expect(restarted.log.some((line) => line.includes('forming a cluster'))).toBe(false);
  });

  it('knows when it is in a minority, and a leave from there does not wait for a handoff', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const n1 = net.nodes.get('n1')!;
    expect(n1.member.status().quorum).toBe(true);
    net.partition(['n1'], ['n2', 'n3']);
    net.run(3000);
    expect(n1.member.status().quorum).toBe(false);
    expect(n1.log.some((line) => line.includes('in a minority'))).toBe(true);
    expect(net.nodes.get('n2')!.member.status().quorum).toBe(true);
    n1.member.leave(net.now);
    expect(n1.left).toBe(true);
  });
});
