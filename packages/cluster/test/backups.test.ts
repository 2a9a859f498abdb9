import { InvalidArgument } from '@wadi/core';
import { describe, expect, it } from 'vitest';
import {
  backupCounts,
  backupIds,
  copyHolders,
  incomingIds,
  parseClusterMessage,
  validateLayout,
  type Layout,
} from '../src/index.js';
import { backupTargets, minimumBackupMoves, minimumMoves, planLayout, type Plan, type PlanInput } from '../src/planner.js';
import { TestNetwork } from './network.js';

const url = TestNetwork.url;

function nulls(n: number): null[] {
  return new Array<null>(n).fill(null);
}

/** A settled plan: every incoming backup synced, planned again until nothing changes. */
function settled(input: PlanInput): Plan {
  let plan = planLayout(input);
  for (let round = 0; round < 4 && (plan.incoming.length > 0 || plan.backupMoves.length > 0); round++) {
    plan = planLayout({ ...input, owners: plan.owners, backups: plan.backups, incoming: plan.incoming, synced: () => true });
  }
  return plan;
}

function loads(plan: Plan): Map<string, number> {
  const counts = new Map<string, number>();
  for (const list of plan.backups) for (const id of list) counts.set(id, (counts.get(id) ?? 0) + 1);
  return counts;
}

function layout(partial: Partial<Layout>): Layout {
  return {
    cluster: 'a@1',
    epoch: 3,
    buckets: 4,
    members: ['a', 'b', 'c'].map((id) => ({ id, incarnation: 1, url: url(id), workers: 1 })),
    owners: [0, 1, 2, 0],
    coordinator: 'a',
    replicas: 1,
    backups: [1, 2, 0, 2],
    ...partial,
  };
}

describe('planLayout: backups', () => {
  it('gives every bucket R backups other than its owner, balanced, in the first layout', () => {
    const plan = planLayout({ buckets: 1024, owners: nulls(1024), members: ['a', 'b', 'c'], replicas: 2 });
    plan.backups.forEach((list, bucket) => {
      expect(list).toHaveLength(2);
      expect(list).not.toContain(plan.owners[bucket]);
      expect(new Set(list).size).toBe(2);
    });
    expect([...loads(plan).values()].sort()).toEqual([682, 683, 683]);
    // Nothing is copied yet: every backup starts incoming, with nothing to retire.
    expect(plan.incoming).toHaveLength(2048);
    expect(plan.incoming.every((entry) => entry.retiring === null)).toBe(true);
  });

  it('gives fewer backups when fewer members may hold them, and none with one member', () => {
    expect(planLayout({ buckets: 8, owners: nulls(8), members: ['a'], replicas: 1 }).backups).toEqual(new Array(8).fill([]));
    const two = planLayout({ buckets: 8, owners: nulls(8), members: ['a', 'b'], replicas: 3 });
    two.backups.forEach((list, bucket) => expect(list).toEqual([two.owners[bucket] === 'a' ? 'b' : 'a']));
  });

  it('with no replicas, plans exactly as before and lists no backups', () => {
    const input: PlanInput = { buckets: 64, owners: nulls(64), members: ['a', 'b', 'c'] };
    const plan = planLayout(input);
    expect(plan.backups.every((list) => list.length === 0)).toBe(true);
    expect(plan.incoming).toEqual([]);
    expect(plan.backupMoves).toEqual([]);
  });

  it('a join moves only the backups balance needs, each kept until its replacement is synced', () => {
    const start = settled({ buckets: 1024, owners: nulls(1024), members: ['a', 'b', 'c'], replicas: 1 });
    const input: PlanInput = { buckets: 1024, owners: start.owners, members: ['a', 'b', 'c', 'd'], replicas: 1, backups: start.backups, incoming: [] };
    const plan = planLayout(input);
    // d takes 256 owners and its share of 256 backups, from the members above their targets.
    expect(plan.moves).toHaveLength(256);
    expect(plan.backupMoves).toHaveLength(minimumBackupMoves(input));
    expect(loads(plan).get('d')).toBe(256);
    const live = plan.backupMoves.filter((move) => move.from !== null && move.from !== 'd');
    // Each backup that moved away from a live member stays, retiring, until d has its copy.
    for (const move of live) {
      expect(plan.incoming).toContainEqual({ bucket: move.bucket, id: move.to, retiring: move.from });
    }
    const next = planLayout({ ...input, owners: plan.owners, backups: plan.backups, incoming: plan.incoming, synced: () => true });
    expect(next.moves).toEqual([]);
    expect(next.backupMoves).toEqual([]);
    expect(next.incoming).toEqual([]);
    expect(next.backups).toEqual(plan.backups);
  });

  it('a crash promotes each bucket the node owned to its backup, and refills only the lost slots', () => {
    const start = settled({ buckets: 1024, owners: nulls(1024), members: ['a', 'b', 'c', 'd'], replicas: 1 });
    const owned = start.owners.flatMap((owner, bucket) => (owner === 'd' ? [bucket] : []));
    const backed = start.backups.flatMap((list, bucket) => (list.includes('d') ? [bucket] : []));
    const input: PlanInput = { buckets: 1024, owners: start.owners, members: ['a', 'b', 'c'], replicas: 1, backups: start.backups, incoming: [] };
    const plan = planLayout(input);
    for (const bucket of owned) expect(plan.owners[bucket]).toBe(start.backups[bucket]![0]);
    // The promotions land evenly (backups of d's buckets were spread over a, b and c): the
    // owners are balanced with no further move.
    expect(minimumMoves({ buckets: 1024, owners: plan.owners, members: ['a', 'b', 'c'] })).toBe(0);
    expect(plan.moves).toHaveLength(owned.length);
    // One new backup for each slot d held and for each promoted backup's slot; nothing else.
    expect(plan.backupMoves).toHaveLength(owned.length + backed.length);
    for (const move of plan.backupMoves) expect(move.from === 'd' || owned.includes(move.bucket)).toBe(true);
  });

  it('does not promote a backup that is still incoming', () => {
    const input: PlanInput = {
      buckets: 2,
      owners: ['x', 'a'],
      members: ['a', 'b'],
      replicas: 1,
      backups: [['b'], ['b']],
      incoming: [{ bucket: 0, id: 'b', retiring: null }],
    };
    // b's copy of bucket 0 is not complete; balance decides (b owns nothing, so it still gets it).
    expect(planLayout(input).owners[0]).toBe('b');
    const skewed: PlanInput = { ...input, owners: ['x', 'b'], backups: [['a'], ['a']], incoming: [{ bucket: 0, id: 'a', retiring: 'b' }] };
    // The retiring holder b has a complete copy: it is promoted, not the incoming a.
    expect(planLayout(skewed).owners[0]).toBe('b');
  });

  it('a draining member keeps its copies, retiring, until their replacements are synced', () => {
    const start = settled({ buckets: 64, owners: nulls(64), members: ['a', 'b', 'c', 'd'], replicas: 1 });
    const input: PlanInput = { buckets: 64, owners: start.owners, members: ['a', 'b', 'c', 'd'], draining: ['d'], replicas: 1, backups: start.backups, incoming: [] };
    const plan = planLayout(input);
    expect(plan.owners).not.toContain('d');
    expect(plan.backups.flat()).not.toContain('d');
    const kept = plan.incoming.filter((entry) => entry.retiring === 'd');
    expect(kept.length).toBeGreaterThan(0);
    // Until synced, planning again keeps d retiring; once synced, d holds nothing.
    const waiting = planLayout({ ...input, owners: plan.owners, backups: plan.backups, incoming: plan.incoming });
    expect(waiting.incoming.filter((entry) => entry.retiring === 'd')).toHaveLength(kept.length);
    const done = planLayout({ ...input, owners: plan.owners, backups: plan.backups, incoming: plan.incoming, synced: () => true });
    expect(done.incoming).toEqual([]);
  });

  it('an incoming backup that crashes gives its slot back to the backup it was replacing', () => {
    const input: PlanInput = {
      buckets: 1,
      owners: ['a'],
      members: ['a', 'b'],
      replicas: 1,
      backups: [['c']],
      incoming: [{ bucket: 0, id: 'c', retiring: 'b' }],
    };
    const plan = planLayout(input);
    expect(plan.backups).toEqual([['b']]);
    expect(plan.incoming).toEqual([]);
  });

  it('starts live backup moves only while fewer than maxMoves are in flight', () => {
    const start = settled({ buckets: 256, owners: nulls(256), members: ['a', 'b', 'c'], replicas: 1 });
    const input: PlanInput = { buckets: 256, owners: start.owners, members: ['a', 'b', 'c', 'd'], replicas: 1, backups: start.backups, incoming: [], maxMoves: 5 };
    // Live moves: away from a member that stays (refills of a slot the new owner vacated are not).
    const live = (plan: Plan): number => plan.backupMoves.filter((move) => move.from !== null && move.from !== plan.owners[move.bucket]).length;
    // In flight when `next` was planned from `plan`: copies still going, onto a member that did not
    // become the bucket's owner meanwhile (that cancels the move), with the backup they replace.
    const inFlight = (plan: Plan, next: Plan): number => plan.incoming.filter((entry) => entry.retiring !== null && next.owners[entry.bucket] !== entry.id).length;
    let plan = planLayout(input);
    expect(live(plan)).toBe(5);
    // Nothing synced: only as many live moves start as moves in flight were cancelled.
    const stalled = planLayout({ ...input, owners: plan.owners, backups: plan.backups, incoming: plan.incoming });
    expect(live(stalled)).toBe(5 - inFlight(plan, stalled));
    const still = planLayout({ ...input, owners: stalled.owners, backups: stalled.backups, incoming: stalled.incoming });
    expect(live(still)).toBe(Math.max(0, 5 - inFlight(stalled, still)));
    let rounds = 0;
    for (; rounds < 100 && (plan.incoming.length > 0 || plan.backupMoves.length > 0 || plan.moves.length > 0); rounds++) {
      plan = planLayout({ ...input, owners: plan.owners, backups: plan.backups, incoming: plan.incoming, synced: () => true });
      expect(live(plan)).toBeLessThanOrEqual(5);
    }
    // 64 backups reach d at most five at a time.
    expect(rounds).toBeGreaterThanOrEqual(13);
    expect(loads(plan).get('d')).toBe(64);
  });

  it('weights backups like owners, capped by the buckets a member does not own', () => {
    const input: PlanInput = { buckets: 100, owners: nulls(100), members: ['a', 'b', 'c'], weights: { a: 8 }, replicas: 1 };
    const plan = settled(input);
    const targets = backupTargets({ ...input, owners: plan.owners, backups: plan.backups, incoming: [] });
    // a owns 80 buckets: it can back up at most the other 20.
    expect(targets.get('a')).toBe(20);
    expect(loads(plan).get('a')).toBe(20);
    expect((loads(plan).get('b') ?? 0) + (loads(plan).get('c') ?? 0)).toBe(80);
  });

  it('refuses malformed backup input', () => {
    const good: PlanInput = { buckets: 2, owners: ['a', 'b'], members: ['a', 'b'], replicas: 1, backups: [['b'], ['a']] };
    const cases: [string, PlanInput, RegExp][] = [
      ['replicas too high', { ...good, replicas: 9 }, /replicas must be an integer from 0 to 8/],
      ['replicas fractional', { ...good, replicas: 0.5 }, /replicas must be an integer/],
      ['backups too short', { ...good, backups: [['b']] }, /one list per bucket/],
      ['backup is the owner', { ...good, backups: [['a'], ['a']] }, /lists its owner/],
      ['backup twice', { ...good, owners: ['a', 'a'], backups: [['b', 'b'], []] }, /lists "b" twice/],
      ['incoming not a backup', { ...good, incoming: [{ bucket: 0, id: 'c', retiring: null }] }, /not a backup of bucket 0/],
      ['retiring is a backup', { ...good, incoming: [{ bucket: 0, id: 'b', retiring: 'b' }] }, /neither its owner nor a backup/],
      ['incoming without backups', { ...good, backups: undefined, incoming: [{ bucket: 0, id: 'b', retiring: null }] }, /without backups/],
    ];
    for (const [, input, message] of cases) {
      expect(() => planLayout(input)).toThrow(InvalidArgument);
      expect(() => planLayout(input)).toThrow(message);
    }
  });
});

describe('layout: backups on the wire', () => {
  it('reads backups, incoming and copy holders', () => {
    const value = layout({ replicas: 2, backups: [1, 2, 2, -1, 0, 1, 1, 2], incoming: [[0, 2, -1], [3, 2, 0]] });
    expect(() => validateLayout(value)).toThrow(/retiring member 0 of bucket 3 .* its owner/);
    const ok = layout({ replicas: 2, backups: [1, 2, 2, -1, 0, 1, 1, -1], incoming: [[0, 2, -1], [3, 1, 2]] });
    expect(validateLayout(ok, 4)).toBe(ok);
    expect(backupIds(ok)).toEqual([['b', 'c'], ['c'], ['a', 'b'], ['b']]);
    expect(incomingIds(ok)).toEqual([
      { bucket: 0, id: 'c', retiring: null },
      { bucket: 3, id: 'b', retiring: 'c' },
    ]);
    expect(copyHolders(ok, 0)).toEqual([0, 1]);
    expect(copyHolders(ok, 3)).toEqual([0, 2]);
    expect(backupCounts(ok)).toEqual(new Map([['a', 1], ['b', 3], ['c', 2]]));
  });

  it('accepts layouts from before backups', () => {
    const old = layout({});
    delete old.replicas;
    delete old.backups;
    expect(validateLayout(old, 4)).toBe(old);
    expect(backupIds(old)).toEqual([[], [], [], []]);
    expect(copyHolders(old, 1)).toEqual([1]);
  });

  it.each([
    ['replicas out of range', { replicas: 9 }, /replicas 9/],
    ['replicas without backups', { backups: undefined }, /replicas 1 without backups/],
    ['wrong slot count', { backups: [1, 2, 0] }, /backups must hold 1 slots for each of 4 buckets/],
    ['index out of range', { backups: [1, 2, 0, 3] }, /backup index 3 of bucket 3 is out of range/],
    ['not an integer', { backups: [1, 2, 0, 1.5] }, /backup index 1.5/],
    ['the owner as backup', { backups: [0, 2, 0, 2] }, /bucket 0 lists its owner/],
    ['repeated backup', { replicas: 2, backups: [1, 1, 2, -1, 0, -1, 1, 2] }, /bucket 0 lists backup 1 twice/],
    ['a gap', { replicas: 2, backups: [-1, 1, 2, -1, 0, -1, 1, 2] }, /bucket 0 has a backup after an unused slot/],
    ['incoming not a backup', { incoming: [[0, 2, -1]] }, /incoming member 2 is not a backup of bucket 0/],
    ['incoming malformed', { incoming: [[0, 1]] }, /not \[bucket, member, retiring\]/],
    ['incoming out of order', { incoming: [[1, 2, -1], [0, 1, -1]] }, /out of range or out of order/],
    ['incoming twice', { replicas: 2, backups: [1, 2, 2, -1, 0, -1, 1, 2], incoming: [[0, 1, -1], [0, 1, -1]] }, /listed twice/],
    ['retiring a backup', { incoming: [[0, 1, 1]] }, /retiring member 1 of bucket 0/],
    [
      'retiring twice',
      { members: ['a', 'b', 'c', 'd'].map((id) => ({ id, incarnation: 1, url: url(id), workers: 1 })), replicas: 2, backups: [1, 2, 2, -1, 0, -1, 1, 2], incoming: [[0, 1, 3], [0, 2, 3]] },
      /retiring member 3 of bucket 0 .* listed twice/,
    ],
  ] as [string, Partial<Layout>, RegExp][])('refuses %s', (_, partial, message) => {
    expect(() => validateLayout(layout(partial), 4)).toThrow(InvalidArgument);
    expect(() => validateLayout(layout(partial), 4)).toThrow(message);
  });

  it('checks the backups of layouts in commits and state replies', () => {
    const bad = layout({ backups: [0, 2, 0, 2] });
    expect(() => parseClusterMessage({ t: 'commit', layout: bad }, 4)).toThrow(/lists its owner/);
    expect(() => parseClusterMessage({ t: 'propose', layout: bad }, 4)).toThrow(/lists its owner/);
    expect(() => parseClusterMessage({ t: 'state-reply', round: 1, committed: null, accepted: bad }, 4)).toThrow(/lists its owner/);
    expect(parseClusterMessage({ t: 'commit', layout: layout({}) }, 4)).toBeTruthy();
  });
});

describe('ClusterMember: backups', () => {
  function form(net: TestNetwork, n: number, extra = {}): void {
    net.start('n1', [], undefined, 2, extra);
    for (let i = 2; i <= n; i++) net.start(`n${i}`, [url('n1')], undefined, 2, extra);
    net.until(() => net.agreed() && net.live().every((node) => node.member.committed!.members.length === n && (node.member.committed!.incoming ?? []).length === 0));
  }

  it('commits layouts with one balanced backup per bucket by default, settled once copies are synced', () => {
    const net = new TestNetwork(64);
    form(net, 3);
    const committed = net.node('n1').member.committed!;
    expect(committed.replicas).toBe(1);
    const ids = backupIds(committed);
    ids.forEach((list, bucket) => {
      expect(list).toHaveLength(1);
      expect(list[0]).not.toBe(committed.members[committed.owners[bucket]!]!.id);
    });
    expect([...backupCounts(committed).values()].sort()).toEqual([21, 21, 22]);
  });

  it('with replicas 0, commits layouts without backup fields', () => {
    const net = new TestNetwork(64);
    form(net, 3, { replicas: 0 });
    const committed = net.node('n1').member.committed!;
    expect(committed.replicas).toBeUndefined();
    expect(committed.backups).toBeUndefined();
  });

  it('a crashed node’s buckets go to their backups', () => {
    const net = new TestNetwork(64);
    form(net, 4);
    const before = net.node('n1').member.committed!;
    const backups = backupIds(before);
    const owned = before.owners.flatMap((owner, bucket) => (before.members[owner]!.id === 'n4' ? [bucket] : []));
    net.crash('n4');
    net.until(() => net.agreed() && !net.node('n1').member.committed!.members.some((member) => member.id === 'n4'));
    const after = net.node('n1').member.committed!;
    for (const bucket of owned) expect(after.members[after.owners[bucket]!]!.id).toBe(backups[bucket]![0]);
  });

  it('a leaver stays in the layout, holding its copies, until their replacements are synced', () => {
    let synced = true;
    const net = new TestNetwork(64);
    form(net, 3, { backupSynced: () => synced });
    // From here on, no copy completes until the test says so.
    synced = false;
    const n3 = net.node('n3');
    n3.member.leave(net.now);
    net.run(3000);
    const during = net.node('n1').member.committed!;
    expect(during.owners.some((owner) => during.members[owner]!.id === 'n3')).toBe(false);
    expect(incomingIds(during).some((entry) => entry.retiring === 'n3')).toBe(true);
    expect(n3.left).toBe(false);
    synced = true;
    net.until(() => n3.left);
    net.until(() => net.agreed() && (net.node('n1').member.committed!.incoming ?? []).length === 0);
    expect(net.node('n1').member.committed!.members.map((member) => member.id).sort()).toEqual(['n1', 'n2']);
  });

  it('refuses a replica count out of range', () => {
    const net = new TestNetwork(64);
    expect(() => net.start('n1', [], undefined, 2, { replicas: 9 })).toThrow(/replicas must be an integer from 0 to 8/);
  });
});
