import { InvalidArgument } from '@wadi/core';
import { describe, expect, it } from 'vitest';
import { minimumMoves, planLayout, targetCounts, type Plan, type PlanInput } from '../src/planner.js';

function countOwners(owners: readonly (string | null)[]): Map<string | null, number> {
  const counts = new Map<string | null, number>();
  for (const owner of owners) counts.set(owner, (counts.get(owner) ?? 0) + 1);
  return counts;
}

function nulls(buckets: number): null[] {
  return new Array<null>(buckets).fill(null);
}

/** A balanced layout of `members` over `buckets`, as the planner would produce it. */
function initialLayout(buckets: number, members: string[]): string[] {
  return planLayout({ buckets, owners: nulls(buckets), members }).owners;
}

function applyMoves(owners: readonly (string | null)[], plan: Plan): (string | null)[] {
  const result = [...owners];
  for (const move of plan.moves) result[move.bucket] = move.to;
  return result;
}

describe('planLayout: first layout', () => {
  it('gives every bucket to a single member', () => {
    const plan = planLayout({ buckets: 16, owners: nulls(16), members: ['a'] });
    expect(plan.owners).toEqual(new Array(16).fill('a'));
    expect(plan.moves).toHaveLength(16);
    expect(plan.moves.every((m, i) => m.bucket === i && m.from === null && m.to === 'a')).toBe(true);
  });

  it('spreads 1024 buckets over 3 members, interleaved, the extra bucket to the smallest id', () => {
    const plan = planLayout({ buckets: 1024, owners: nulls(1024), members: ['c', 'a', 'b'] });
    const counts = countOwners(plan.owners);
    expect(counts.get('a')).toBe(342);
    expect(counts.get('b')).toBe(341);
    expect(counts.get('c')).toBe(341);
    expect(plan.moves).toHaveLength(1024);
    // Largest remaining deficit first: a (342) twice, then the three take turns.
    expect(plan.owners.slice(0, 8)).toEqual(['a', 'a', 'b', 'c', 'a', 'b', 'c', 'a']);
  });

  it('handles one bucket and many members', () => {
    const plan = planLayout({ buckets: 1, owners: [null], members: ['z', 'y', 'x'] });
    expect(plan.owners).toEqual(['x']);
    expect(plan.moves).toEqual([{ bucket: 0, from: null, to: 'x' }]);
  });
});

describe('planLayout: a member joins', () => {
  const owners = initialLayout(1024, ['a', 'b', 'c']);
  const input: PlanInput = { buckets: 1024, owners, members: ['a', 'b', 'c', 'd'] };
  const plan = planLayout(input);

  it('moves exactly 256 buckets, all from the old members to the new one', () => {
    expect(plan.moves).toHaveLength(256);
    expect(minimumMoves(input)).toBe(256);
    expect(plan.moves.every((m) => m.to === 'd' && m.from !== null && m.from !== 'd')).toBe(true);
    const lost = countOwners(plan.moves.map((m) => m.from));
    for (const id of ['a', 'b', 'c']) expect([85, 86]).toContain(lost.get(id));
    expect(lost.get('a')).toBe(86); // a held 342, the others 341
    expect([...countOwners(plan.owners).values()]).toEqual([256, 256, 256, 256]);
  });

  it('takes each old member its highest-numbered buckets', () => {
    for (const id of ['a', 'b', 'c']) {
      const held = owners.flatMap((owner, bucket) => (owner === id ? [bucket] : []));
      const moved = plan.moves.filter((m) => m.from === id).map((m) => m.bucket);
      expect(moved).toEqual(held.slice(held.length - moved.length));
    }
  });

  it('lists moves by ascending bucket and agrees with the result owners', () => {
    const buckets = plan.moves.map((m) => m.bucket);
    expect(buckets).toEqual([...buckets].sort((x, y) => x - y));
    expect(applyMoves(owners, plan)).toEqual(plan.owners);
  });

  it('does not move anything once balanced', () => {
    expect(planLayout({ ...input, owners: plan.owners }).moves).toEqual([]);
    expect(minimumMoves({ ...input, owners: plan.owners })).toBe(0);
  });
});

describe('planLayout: a member leaves', () => {
  const owners = initialLayout(1024, ['a', 'b', 'c', 'd']);

  it('empties a draining member onto the others and then lets it go without moves', () => {
    const input: PlanInput = { buckets: 1024, owners, members: ['a', 'b', 'c', 'd'], draining: ['d'] };
    const plan = planLayout(input);
    expect(plan.moves).toHaveLength(256);
    expect(plan.moves.every((m) => m.from === 'd' && m.to !== 'd')).toBe(true);
    const counts = countOwners(plan.owners);
    expect(counts.has('d')).toBe(false);
    expect([counts.get('a'), counts.get('b'), counts.get('c')]).toEqual([342, 341, 341]);
    expect(targetCounts(input)).toEqual(new Map([['a', 342], ['b', 341], ['c', 341]]));

    const after = planLayout({ buckets: 1024, owners: plan.owners, members: ['a', 'b', 'c'] });
    expect(after.moves).toEqual([]);
  });

  it('reassigns a crashed member’s buckets as orphans, even with maxMoves 0', () => {
    const input: PlanInput = { buckets: 1024, owners, members: ['a', 'b', 'c'], maxMoves: 0 };
    const plan = planLayout(input);
    expect(plan.moves).toHaveLength(256);
    expect(plan.moves.every((m) => m.from === 'd')).toBe(true);
    expect(minimumMoves(input)).toBe(256);
    expect(countOwners(plan.owners).has('d')).toBe(false);
    // Survivors keep everything they had.
    plan.owners.forEach((owner, bucket) => {
      if (owners[bucket] !== 'd') expect(owner).toBe(owners[bucket]);
    });
  });

  it('treats null and unknown owners alike as orphaned', () => {
    const plan = planLayout({ buckets: 4, owners: ['a', null, 'ghost', 'a'], members: ['a', 'b'] });
    expect(plan.moves).toEqual([
      { bucket: 1, from: null, to: 'b' },
      { bucket: 2, from: 'ghost', to: 'b' },
    ]);
    expect(plan.owners).toEqual(['a', 'b', 'b', 'a']);
  });

  it('ignores draining ids that are not members', () => {
    const plan = planLayout({ buckets: 4, owners: ['a', 'a', 'b', 'b'], members: ['a', 'b'], draining: ['x'] });
    expect(plan.moves).toEqual([]);
  });
});

describe('planLayout: weights', () => {
  it('splits 1024 buckets 2:1:1 exactly', () => {
    const input: PlanInput = {
      buckets: 1024,
      owners: nulls(1024),
      members: ['a', 'b', 'c'],
      weights: { a: 2, b: 1, c: 1 },
    };
    const counts = countOwners(planLayout(input).owners);
    expect([counts.get('a'), counts.get('b'), counts.get('c')]).toEqual([512, 256, 256]);
  });

  it('gives floor or ceil of a fractional share (1023 buckets at 2:1:1)', () => {
    const targets = targetCounts({ buckets: 1023, owners: nulls(1023), members: ['a', 'b', 'c'], weights: { a: 2 } });
    // Shares 511.5, 255.75, 255.75: the two larger fractions take the remainder of 2.
    expect(targets).toEqual(new Map([['a', 511], ['b', 256], ['c', 256]]));
  });

  it('treats shares that are integers up to rounding as integers', () => {
    const input: PlanInput = {
      buckets: 60,
      owners: nulls(60),
      members: ['a', 'b', 'c'],
      weights: { a: 0.1, b: 0.2, c: 0.3 },
    };
    expect(targetCounts(input)).toEqual(new Map([['a', 10], ['b', 20], ['c', 30]]));
  });

  it('copes with huge weights whose sum overflows', () => {
    const input: PlanInput = {
      buckets: 4,
      owners: nulls(4),
      members: ['a', 'b'],
      weights: { a: Number.MAX_VALUE, b: Number.MAX_VALUE },
    };
    expect(targetCounts(input)).toEqual(new Map([['a', 2], ['b', 2]]));
  });

  it('moves only the difference when a weight changes', () => {
    const owners = initialLayout(1024, ['a', 'b', 'c', 'd']);
    const input: PlanInput = { buckets: 1024, owners, members: ['a', 'b', 'c', 'd'], weights: { d: 5 } };
    const plan = planLayout(input);
    // d's share becomes 1024 * 5/8 = 640, so it gains 384 buckets, 128 from each other member.
    expect(plan.moves).toHaveLength(384);
    expect(plan.moves.every((m) => m.to === 'd')).toBe(true);
    expect(countOwners(plan.moves.map((m) => m.from))).toEqual(new Map([['a', 128], ['b', 128], ['c', 128]]));
  });

  it('reads weights by own property only, so odd ids work', () => {
    const plan = planLayout({ buckets: 4, owners: nulls(4), members: ['constructor', 'toString'], weights: {} });
    expect(countOwners(plan.owners)).toEqual(new Map([['constructor', 2], ['toString', 2]]));
  });
});

describe('targetCounts and minimumMoves', () => {
  it('gives the remainder to the members that hold more, to save moves', () => {
    // 10 buckets over 3 members: shares 3.33; one member gets 4. c holds 6, so c keeps 4.
    const input: PlanInput = {
      buckets: 10,
      owners: ['a', 'b', 'c', 'c', 'c', 'c', 'c', 'c', 'b', 'b'],
      members: ['a', 'b', 'c'],
    };
    expect(targetCounts(input)).toEqual(new Map([['a', 3], ['b', 3], ['c', 4]]));
    expect(minimumMoves(input)).toBe(2);
    const plan = planLayout(input);
    expect(plan.moves).toEqual([
      { bucket: 6, from: 'c', to: 'a' },
      { bucket: 7, from: 'c', to: 'a' },
    ]);
  });

  it('counts orphans, draining buckets and excess', () => {
    const input: PlanInput = {
      buckets: 8,
      owners: [null, 'gone', 'x', 'x', 'a', 'a', 'a', 'a'],
      members: ['a', 'b', 'x'],
      draining: ['x'],
    };
    // 2 orphans + 2 on draining x + a's excess of 4 - 4 = 0 over target 4.
    expect(minimumMoves(input)).toBe(4);
    expect(planLayout(input).moves).toHaveLength(4);
  });

  it('does not depend on the order of members, draining or weights', () => {
    const owners = initialLayout(257, ['p', 'q', 'r', 's', 't']);
    const base: PlanInput = {
      buckets: 257,
      owners,
      members: ['p', 'q', 'r', 's', 't', 'u'],
      draining: ['q', 's'],
      weights: { p: 3, u: 2, r: 1.5 },
      maxMoves: 20,
    };
    const shuffled: PlanInput = {
      ...base,
      members: ['u', 's', 'p', 't', 'r', 'q'],
      draining: ['s', 'q'],
      weights: { r: 1.5, u: 2, p: 3 },
    };
    expect(planLayout(shuffled)).toEqual(planLayout(base));
    expect([...targetCounts(shuffled)]).toEqual([...targetCounts(base)]);
  });
});

describe('planLayout: maxMoves', () => {
  function runRounds(first: PlanInput): { rounds: Plan[]; final: (string | null)[] } {
    const rounds: Plan[] = [];
    let owners: readonly (string | null)[] = first.owners;
    for (let round = 0; round < 1000; round++) {
      const plan = planLayout({ ...first, owners });
      if (plan.moves.length === 0) return { rounds, final: [...owners] };
      rounds.push(plan);
      owners = plan.owners;
    }
    throw new Error('did not converge');
  }

  it('converges over rounds, draining first, moving the minimum in total', () => {
    const owners = initialLayout(1024, ['a', 'b', 'c', 'g']);
    // g crashes, c leaves gracefully, d, e and f join, all at once.
    const first: PlanInput = {
      buckets: 1024,
      owners,
      members: ['a', 'b', 'c', 'd', 'e', 'f'],
      draining: ['c'],
      maxMoves: 50,
    };
    // Targets 205 for a, b (they hold more), d, e and 204 for f.
    expect(targetCounts(first)).toEqual(new Map([['a', 205], ['b', 205], ['d', 205], ['e', 205], ['f', 204]]));
    const minimum = minimumMoves(first);
    expect(minimum).toBe(256 + 256 + 51 + 51); // g's orphans, c's buckets, a's and b's excess
    const { rounds, final } = runRounds(first);

    // g's orphans are reassigned in the first round, whatever the budget.
    expect((rounds[0] as Plan).moves.filter((m) => m.from === 'g')).toHaveLength(256);
    expect(rounds.flatMap((plan) => plan.moves).filter((m) => m.from === 'g')).toHaveLength(256);
    // Every round uses its whole budget on live owners until the work left is smaller.
    expect(rounds.map((plan) => plan.moves.filter((m) => m.from !== 'g').length)).toEqual([50, 50, 50, 50, 50, 50, 50, 8]);
    // Draining moves first: c is emptied before a or b shed anything.
    const live = rounds.flatMap((plan) => plan.moves.filter((m) => m.from !== 'g'));
    expect(live.slice(0, 256).every((m) => m.from === 'c')).toBe(true);
    expect(live.slice(256).every((m) => m.from === 'a' || m.from === 'b')).toBe(true);

    expect(rounds.reduce((sum, plan) => sum + plan.moves.length, 0)).toBe(minimum);
    // Balanced at the end: nothing left to move, every member at its target.
    expect(minimumMoves({ ...first, owners: final })).toBe(0);
    const counts = countOwners(final);
    for (const [id, target] of targetCounts({ ...first, owners: final })) expect(counts.get(id)).toBe(target);
    expect([...countOwners(final).values()].sort((x, y) => x - y)).toEqual([204, 205, 205, 205, 205]);
  });

  it('sheds excess in turns across overloaded members and fills the neediest receivers first', () => {
    // a and b hold everything; c and d join. Budget 4 per round.
    const owners = initialLayout(16, ['a', 'b']);
    const plan = planLayout({ buckets: 16, owners, members: ['a', 'b', 'c', 'd'], maxMoves: 4 });
    expect(countOwners(plan.moves.map((m) => m.from))).toEqual(new Map([['a', 2], ['b', 2]]));
    expect(countOwners(plan.moves.map((m) => m.to))).toEqual(new Map([['c', 2], ['d', 2]]));
  });

  it('keeps total moves equal to minimumMoves across rounds with weights and budget 1', () => {
    const owners = initialLayout(100, ['a', 'b', 'c']);
    const first: PlanInput = {
      buckets: 100,
      owners,
      members: ['a', 'b', 'c', 'd'],
      weights: { a: 3, d: 2 },
      maxMoves: 1,
    };
    const minimum = minimumMoves(first);
    const { rounds, final } = runRounds(first);
    expect(rounds.every((plan) => plan.moves.length === 1)).toBe(true);
    expect(rounds).toHaveLength(minimum);
    // Balanced at the end: nothing left to move, every member at its target.
    expect(minimumMoves({ ...first, owners: final })).toBe(0);
    const counts = countOwners(final);
    for (const [id, target] of targetCounts({ ...first, owners: final })) expect(counts.get(id)).toBe(target);
  });

  it('moves nothing from live owners with maxMoves 0', () => {
    const owners = initialLayout(12, ['a', 'b']);
    const plan = planLayout({ buckets: 12, owners, members: ['a', 'b', 'c'], draining: ['a'], maxMoves: 0 });
    expect(plan.moves).toEqual([]);
    expect(plan.owners).toEqual(owners);
  });
});

describe('planLayout: large inputs', () => {
  it('plans 65536 buckets over 1000 members correctly', () => {
    const members = Array.from({ length: 1000 }, (_, i) => `node-${i}`);
    const owners = initialLayout(65536, members.slice(0, 999));
    const input: PlanInput = { buckets: 65536, owners, members, draining: ['node-5'] };
    const plan = planLayout(input);
    expect(plan.moves).toHaveLength(minimumMoves(input));
    const counts = countOwners(plan.owners);
    expect(counts.has('node-5')).toBe(false);
    const values = [...counts.values()];
    expect(Math.max(...values) - Math.min(...values)).toBeLessThanOrEqual(1);
    expect(counts.size).toBe(999);
  });
});

describe('planLayout: invalid input', () => {
  const good: PlanInput = { buckets: 2, owners: [null, null], members: ['a'] };
  const cases: [string, PlanInput, RegExp][] = [
    ['buckets 0', { ...good, buckets: 0, owners: [] }, /buckets must be an integer >= 1, got 0/],
    ['fractional buckets', { ...good, buckets: 1.5 }, /buckets must be an integer/],
    ['NaN buckets', { ...good, buckets: Number.NaN }, /buckets must be an integer/],
    ['owners too short', { ...good, owners: [null] }, /owners must have one entry per bucket \(2\), got 1/],
    ['owners entry not a string', { ...good, owners: [null, 7 as unknown as string] }, /owners\[1\] must be a node id or null/],
    ['owners not an array', { ...good, owners: 'ab' as unknown as string[] }, /owners must be an array/],
    ['empty member id', { ...good, members: ['a', ''] }, /members must be non-empty strings, got ""/],
    ['non-string member', { ...good, members: ['a', 3 as unknown as string] }, /members must be non-empty strings, got 3/],
    ['duplicate member', { ...good, members: ['a', 'b', 'a'] }, /members lists "a" twice/],
    ['no members', { ...good, members: [] }, /members is empty/],
    ['all draining', { ...good, members: ['a', 'b'], draining: ['b', 'a'] }, /every member is draining/],
    ['draining entry not a string', { ...good, draining: [1 as unknown as string] }, /draining must contain node ids/],
    ['zero weight', { ...good, weights: { a: 0 } }, /weights\["a"\] must be a positive finite number, got 0/],
    ['negative weight', { ...good, weights: { x: -1 } }, /weights\["x"\] must be a positive finite number/],
    ['infinite weight', { ...good, weights: { a: Infinity } }, /weights\["a"\] .* got Infinity/],
    ['NaN weight', { ...good, weights: { a: Number.NaN } }, /weights\["a"\] .* got NaN/],
    ['negative maxMoves', { ...good, maxMoves: -1 }, /maxMoves must be an integer >= 0, got -1/],
    ['fractional maxMoves', { ...good, maxMoves: 0.5 }, /maxMoves must be an integer >= 0, got 0.5/],
  ];

  it.each(cases)('rejects %s', (_name, input, message) => {
    for (const call of [planLayout, minimumMoves, targetCounts] as ((i: PlanInput) => unknown)[]) {
      let caught: unknown;
      try {
        call(input);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(InvalidArgument);
      expect((caught as InvalidArgument).code).toBe('WADI_INVALID_ARGUMENT');
      expect((caught as Error).message).toMatch(message);
    }
  });
});
