/**
 * Adversarial schedules from a review of the cluster protocol (membership, failure detection,
 * election, majority commits): `regression:` tests reproduce defects the review found (each
 * fixed), `holds:` tests pin properties it checked. All are deterministic and bounded in virtual
 * time. The directory-handoff half lives in packages/node/test/handoff-review.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { TestNetwork, rng, type TestNode } from './network.js';

const url = TestNetwork.url;

function formCluster(net: TestNetwork, n: number, seeds?: (i: number) => string[]): void {
  net.start('n1', seeds?.(1) ?? []);
  for (let i = 2; i <= n; i++) net.start(`n${i}`, seeds?.(i) ?? [url('n1')]);
  net.until(() => net.agreed() && net.live().every((node) => node.member.committed!.members.length === n));
}

function stateOf(node: TestNode, of: string): string | undefined {
  return node.member.status().members.find((m) => m.id === of)?.state;
}

describe('review: membership and failure detection', () => {
  /**
   * Found by the review, now fixed. The minority side of a partition admits joiners, which inflate "the live members", so
   * the minority reaches "a majority of the live members" and declares the real majority down.
   * On heal, every original member learns it was declared down and stops; the joiners are left
   * with a layout whose members are all gone, and nobody can ever commit again.
   */
  it('regression: joiners admitted on the minority side of a partition must not let it evict the majority', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    net.partition(['n1'], ['n2', 'n3']);
    net.start('n4', [url('n1')]);
    net.start('n5', [url('n1')]);
    net.partition(['n4', 'n5'], ['n2', 'n3']); // the joiners only reach the minority side
    net.run(10_000);
    // The minority side (n1, alone of the layout's 3 members) must evict nobody ...
    expect(stateOf(net.node('n1'), 'n2')).not.toBe('down');
    expect(stateOf(net.node('n1'), 'n3')).not.toBe('down');
    net.heal();
    net.run(20_000);
    // ... and after the heal the majority side must still be serving, and everyone converge.
    expect(net.node('n2').removed).toBeUndefined();
    expect(net.node('n3').removed).toBeUndefined();
    net.until(() => net.agreed() && net.live().length >= 4, 30_000);
  });

  it('holds: one-way slow link plus a crash elsewhere: still exactly one layout per epoch', () => {
    const net = new TestNetwork(64, {}, { jitterMs: 30, duplicate: 0.1 }, 7);
    formCluster(net, 5);
    net.partition(['n1'], ['n5']);
    net.crash('n4');
    net.until(() => net.agreed() && net.node('n1').member.committed!.members.length === 4, 30_000);
    expect(net.conflictingEpochs()).toEqual([]);
    expect(net.epochRegressions()).toEqual([]);
  });
});

describe('review: commits and recovery', () => {
  it('holds: coordinator crashes right after one voter accepted; the new coordinator resumes above it and nothing conflicts', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const epoch = net.node('n1').member.committed!.epoch;
    // Let n1's next proposal reach n2 only, then crash n1 before its commit goes out.
    let armed = true;
    net.filter = ({ from, to, message }) => {
      if (!armed) return true;
      if (from === 'n1' && message.t === 'propose' && to === 'n3') return false;
      if (from === 'n2' && message.t === 'accept' && to === 'n1') {
        armed = false;
        net.crash('n1');
        return false;
      }
      return true;
    };
    net.start('n4', [url('n1')]);
    net.until(() => !armed);
    expect(net.node('n2').persisted.accepted!.epoch).toBe(epoch + 1);
    net.until(() => net.agreed() && net.node('n2').member.committed!.members.map((m) => m.id).sort().join() === 'n2,n3,n4', 30_000);
    expect(net.node('n2').member.committed!.epoch).toBeGreaterThan(epoch + 1);
    expect(net.conflictingEpochs()).toEqual([]);
  });

  it('holds: a minority side commits nothing even with delayed and duplicated messages', () => {
    const net = new TestNetwork(64, {}, { jitterMs: 40, duplicate: 0.2 }, 3);
    formCluster(net, 5);
    const epoch = net.node('n1').member.committed!.epoch;
    net.split(['n1', 'n2'], ['n3', 'n4', 'n5']);
    net.run(20_000);
    expect(net.node('n1').member.committed!.epoch).toBe(epoch);
    expect(net.node('n2').member.committed!.epoch).toBe(epoch);
    expect(net.commits.filter((c) => (c.node === 'n1' || c.node === 'n2') && c.layout.epoch > epoch)).toEqual([]);
    expect(net.conflictingEpochs()).toEqual([]);
  });

  it('holds: random schedules of partitions, crashes, restarts with data, pauses, joins and leaves keep one layout per epoch and epochs monotonic', () => {
    for (let seed = 1; seed <= 40; seed++) {
      const r = rng(seed * 7919 + 13);
      const net = new TestNetwork(16, {}, { jitterMs: seed % 2 === 0 ? 40 : 5, duplicate: seed % 2 === 0 ? 0.05 : 0 }, seed);
      const n0 = 3 + Math.floor(r() * 3);
      net.start('n1', []);
      for (let i = 2; i <= n0; i++) net.start(`n${i}`, [url('n1')]);
      net.run(2000);
      let next = n0 + 1;
      for (let step = 0; step < 25; step++) {
        const ids = [...net.nodes.keys()];
        const pick = (): string => ids[Math.floor(r() * ids.length)]!;
        const x = r();
        if (x < 0.2) {
          const a: string[] = [];
          const b: string[] = [];
          for (const id of ids) (r() < 0.5 ? a : b).push(id);
          net.heal();
          net.partition(a, b);
        } else if (x < 0.35) net.heal();
        else if (x < 0.5) net.crash(pick());
        else if (x < 0.65) {
          const id = pick();
          const node = net.node(id);
          const others = ids.filter((o) => o !== id);
          if (!node.alive || node.removed !== undefined || node.left) net.start(id, [url(others[Math.floor(r() * others.length)]!)], node.persisted);
        } else if (x < 0.72) net.pause(pick());
        else if (x < 0.8) for (const id of ids) net.resume(id);
        else if (x < 0.9) net.start(`n${next++}`, [url(pick())]);
        else {
          const id = pick();
          if (net.node(id).alive) net.node(id).member.leave(net.now);
        }
        net.run(Math.floor(r() * 4000));
      }
      expect(net.conflictingEpochs(), `seed ${seed}`).toEqual([]);
      expect(net.epochRegressions(), `seed ${seed}`).toEqual([]);
    }
  }, 120_000);

  /**
   * Found by the review, now fixed. A node whose own URL is its first seed forms a new cluster when no other seed answers
   * within formAfterMs. Restarted without a data directory (supported: the incarnation is then the
   * start time) while cut off from the others, it commits epoch 1, 2, ... of a second cluster
   * with no quorum of anything. On heal the two lineages merge by epoch number alone: the real
   * members learn the rogue layouts (`#learn` takes any higher epoch), and two different layouts
   * exist for the same epoch.
   */
  it('regression: the first seed restarted without its data during a partition forms a second cluster whose epochs collide', () => {
    const net = new TestNetwork(64);
    const seeds = ['n1', 'n2', 'n3'].map(url);
    formCluster(net, 3, () => seeds);
    net.crash('n1');
    net.until(() => net.agreed(['n2', 'n3']) && net.node('n2').member.committed!.members.length === 2);
    net.partition(['n1', 'n4'], ['n2', 'n3']);
    net.start('n1', seeds); // no persisted state
    net.start('n4', [url('n1')]);
    net.partition(['n1', 'n4'], ['n2', 'n3']);
    net.run(6000);
    net.heal();
    net.run(10_000);
    expect(net.conflictingEpochs()).toEqual([]);
  });
});

describe('review: layouts learned out of order', () => {
  it('holds: a node can skip a committed layout (it learns epoch e+2 with e as its previous)', () => {
    const net = new TestNetwork(64);
    formCluster(net, 4);
    net.partition(['n4'], ['n1', 'n2', 'n3']);
    net.start('n5', [url('n1')]);
    net.partition(['n4'], ['n5']);
    net.run(200);
    net.start('n6', [url('n1')]);
    net.partition(['n4'], ['n6']);
    net.run(250);
    net.heal();
    net.run(2000);
    const n4 = net.commits.filter((c) => c.node === 'n4');
    expect(n4.some((c) => c.previousEpoch !== null && c.previousEpoch < c.layout.epoch - 1)).toBe(true);
  });
});
