/**
 * Sequence properties of the layout planner. A random cluster (random B, members, weights and
 * starting owners, which need not be balanced) goes through a random history of joins, graceful
 * leaves (drain, then removal), crashes (removal without draining), weight changes and plain
 * rounds, each planned with a random maxMoves (often none). After every plan we check, against an
 * oracle computed here with exact integer arithmetic:
 *
 * - the result agrees with the moves, moves are listed by bucket, and each comes from the owner
 *   the input named and goes to an eligible member;
 * - every orphan is reassigned; only orphaned, draining or above-target owners lose buckets, and
 *   members above target shed only once no draining member holds anything;
 * - targets are the floor or ceil of each weighted share and sum to B, and minimumMoves equals the
 *   oracle's minimum over every choice of who gets the ceil;
 * - without maxMoves: balance (counts equal the targets), moves == minimumMoves, nothing left on
 *   draining members, and planning the result again moves nothing;
 * - with maxMoves: live moves == min(maxMoves, work left), and each move takes exactly one off
 *   minimumMoves, so rounds continued to the end move exactly minimumMoves of the first input;
 * - the same input with members, draining and weight keys shuffled gives the identical plan.
 */
import { InvalidArgument } from '@wadi/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { minimumMoves, planLayout, targetCounts, type Plan, type PlanInput } from '../src/planner.js';
import { applyMembershipChange, changeArbs, eligibleOf, maxMovesArb, POOL, scrambled, WEIGHTS, weight2, type MembershipChange } from './histories.js';
import { rng } from './network.js';

type Change = MembershipChange;

interface Step {
  change: Change;
  maxMoves: number | undefined;
  shuffleSeed: number;
}

interface Cluster {
  buckets: number;
  owners: (string | null)[];
  members: string[];
  draining: Set<string>;
  weights: Map<string, number>;
}

function toInput(cluster: Cluster, maxMoves: number | undefined): PlanInput {
  return {
    buckets: cluster.buckets,
    owners: [...cluster.owners],
    members: [...cluster.members],
    draining: [...cluster.draining],
    // fromEntries defines own properties, so '__proto__' becomes a real key.
    weights: Object.fromEntries(cluster.weights),
    ...(maxMoves === undefined ? {} : { maxMoves }),
  };
}


interface Oracle {
  orphaned: Set<number>;
  onDraining: number;
  current: Map<string, number>;
  minimum: number;
}

/**
 * The minimum, computed independently of the planner: every member at its floor, then the
 * remainder R handed out as +1s, each of which saves a move only for a member holding more than
 * its floor (and only members with a fractional share may take one).
 */
function oracle(input: PlanInput): Oracle {
  const members = new Set(input.members);
  const draining = new Set((input.draining ?? []).filter((id) => members.has(id)));
  const eligible = eligibleOf(input);
  const current = new Map(eligible.map((id) => [id, 0]));
  const orphaned = new Set<number>();
  let onDraining = 0;
  input.owners.forEach((owner, bucket) => {
    if (owner !== null && current.has(owner)) current.set(owner, (current.get(owner) ?? 0) + 1);
    else if (owner !== null && draining.has(owner)) onDraining++;
    else orphaned.add(bucket);
  });
  const total2 = eligible.reduce((sum, id) => sum + weight2(input, id), 0);
  let floorSum = 0;
  let excessOverFloor = 0;
  let savers = 0;
  for (const id of eligible) {
    const numerator = input.buckets * weight2(input, id);
    const floor = Math.floor(numerator / total2);
    const fractional = numerator % total2 !== 0;
    const held = current.get(id) ?? 0;
    floorSum += floor;
    excessOverFloor += Math.max(0, held - floor);
    if (fractional && held > floor) savers++;
  }
  const remainder = input.buckets - floorSum;
  const minimum = orphaned.size + onDraining + excessOverFloor - Math.min(remainder, savers);
  return { orphaned, onDraining, current, minimum };
}

function countsOf(owners: readonly (string | null)[]): Map<string | null, number> {
  const counts = new Map<string | null, number>();
  for (const owner of owners) counts.set(owner, (counts.get(owner) ?? 0) + 1);
  return counts;
}

/** Deep equality, fast when it holds (the usual case); falls back to toEqual for a readable diff. */
function expectSame(actual: unknown, expected: unknown): void {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) expect(actual).toEqual(expected);
}

/** Checks one plan against everything the planner promises; returns it for chaining. */
function checkPlan(input: PlanInput, plan: Plan, shuffleSeed: number): Plan {
  const { buckets, maxMoves } = input;
  const eligible = new Set(eligibleOf(input));
  const members = new Set(input.members);
  const facts = oracle(input);

  // Targets: floor or ceil of the weighted share, exact when the share is an integer, summing to B.
  const targets = targetCounts(input);
  expect([...targets.keys()]).toEqual([...eligible].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  const total2 = [...eligible].reduce((sum, id) => sum + weight2(input, id), 0);
  let targetSum = 0;
  for (const [id, target] of targets) {
    const numerator = buckets * weight2(input, id);
    if (numerator % total2 === 0) expect(target).toBe(numerator / total2);
    else expect(target === Math.floor(numerator / total2) || target === Math.ceil(numerator / total2)).toBe(true);
    targetSum += target;
  }
  expect(targetSum).toBe(buckets);

  // The targets reach the oracle's minimum.
  const excess = [...targets].reduce((sum, [id, t]) => sum + Math.max(0, (facts.current.get(id) ?? 0) - t), 0);
  expect(facts.orphaned.size + facts.onDraining + excess).toBe(facts.minimum);
  expect(minimumMoves(input)).toBe(facts.minimum);

  // Moves: by ascending bucket, from the input's owner to an eligible member, and the result agrees.
  // Per-move checks collect offenders and assert once, since an expect per move is slow.
  const result = [...input.owners];
  let previous = -1;
  const lostBy = new Map<string, number>();
  const badMoves: unknown[] = [];
  let liveMoves = 0;
  for (const move of plan.moves) {
    const ok =
      move.bucket > previous &&
      move.bucket < buckets &&
      move.from === input.owners[move.bucket] &&
      eligible.has(move.to) &&
      move.to !== move.from;
    if (!ok) badMoves.push(move);
    previous = move.bucket;
    result[move.bucket] = move.to;
    if (!facts.orphaned.has(move.bucket)) {
      liveMoves++;
      const from = move.from as string;
      lostBy.set(from, (lostBy.get(from) ?? 0) + 1);
    }
  }
  expect(badMoves).toEqual([]);
  expectSame(plan.owners, result);

  // Every orphan moves; only draining or above-target live owners lose buckets, within their excess.
  const moved = new Set(plan.moves.map((m) => m.bucket));
  expect([...facts.orphaned].filter((bucket) => !moved.has(bucket))).toEqual([]);
  for (const [from, lost] of lostBy) {
    if (eligible.has(from)) {
      expect(lost).toBeLessThanOrEqual((facts.current.get(from) ?? 0) - (targets.get(from) ?? 0));
    } else {
      expect(members.has(from)).toBe(true); // a draining member
    }
  }
  expect(plan.owners.filter((owner) => !members.has(owner))).toEqual([]);

  // Draining members are emptied first: an eligible member sheds only once no draining one holds any.
  const shedByEligible = [...lostBy.keys()].some((from) => eligible.has(from));
  if (shedByEligible) expect(plan.owners.filter((owner) => !eligible.has(owner))).toEqual([]);

  // The budget is used in full while live work remains, and never exceeded.
  const liveWork = facts.minimum - facts.orphaned.size;
  expect(liveMoves).toBe(Math.min(maxMoves ?? Number.POSITIVE_INFINITY, liveWork));

  // Each move takes exactly one off the minimum, so rounds add up to the first minimum.
  const next: PlanInput = { ...input, owners: plan.owners };
  expect(minimumMoves(next)).toBe(facts.minimum - plan.moves.length);

  if (maxMoves === undefined) {
    expect(plan.moves).toHaveLength(facts.minimum);
    const counts = countsOf(plan.owners);
    for (const [id, target] of targets) expect(counts.get(id) ?? 0).toBe(target);
    for (const owner of counts.keys()) expect(eligible.has(owner as string)).toBe(true);
    const again = planLayout(next);
    expect(again.moves).toEqual([]);
    expectSame(again.owners, plan.owners);
  }

  expectSame(planLayout(scrambled(input, shuffleSeed)), plan);
  return plan;
}

const applyChange = applyMembershipChange;

const changeArb: fc.Arbitrary<Change> = fc.oneof(
  { arbitrary: changeArbs.join, weight: 3 },
  { arbitrary: changeArbs.drain, weight: 2 },
  { arbitrary: changeArbs.remove, weight: 2 },
  { arbitrary: changeArbs.crash, weight: 2 },
  { arbitrary: changeArbs.weight, weight: 1 },
  { arbitrary: changeArbs.round, weight: 2 },
);

const stepArb: fc.Arbitrary<Step> = fc.record({ change: changeArb, maxMoves: maxMovesArb(2), shuffleSeed: fc.nat() });

const startArb = fc.record({
  buckets: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 2048 })),
  memberCount: fc.integer({ min: 1, max: 6 }),
  weights: fc.array(fc.option(fc.constantFrom(...WEIGHTS), { nil: undefined }), { minLength: 6, maxLength: 6 }),
  owners: fc.constantFrom('empty', 'random'),
  ownerSeed: fc.nat(),
});

type Start = typeof startArb extends fc.Arbitrary<infer S> ? S : never;

function startCluster(start: Start): Cluster {
  const members = POOL.slice(0, start.memberCount);
  const weights = new Map<string, number>();
  members.forEach((id, i) => {
    const w = start.weights[i];
    if (w !== undefined) weights.set(id, w);
  });
  // Random owners include null and departed ids: the planner must cope with any table.
  const choices = [...members, null, 'ghost'];
  const random = rng(start.ownerSeed);
  const owners =
    start.owners === 'empty'
      ? new Array<string | null>(start.buckets).fill(null)
      : Array.from({ length: start.buckets }, () => choices[Math.floor(random() * choices.length)] ?? null);
  return { buckets: start.buckets, owners, members, draining: new Set(), weights };
}

describe('planLayout properties', () => {
  it('keeps every promise through random histories of joins, leaves, crashes and weight changes', () => {
    fc.assert(
      fc.property(startArb, fc.array(stepArb, { minLength: 1, maxLength: 12 }), (start, steps) => {
        const cluster = startCluster(start);
        for (const step of steps) {
          if (!applyChange(cluster, step.change)) continue;
          const input = toInput(cluster, step.maxMoves);
          cluster.owners = checkPlan(input, planLayout(input), step.shuffleSeed).owners;
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('finishes rate-limited work in later rounds, moving exactly the first minimum in total', () => {
    fc.assert(
      fc.property(
        startArb,
        fc.array(changeArb, { minLength: 0, maxLength: 6 }),
        // The budget as a share of the work, so the number of rounds stays bounded for any B.
        fc.integer({ min: 1, max: 25 }),
        fc.integer({ min: 0, max: 3 }),
        fc.nat(),
        (start, changes, roundsWanted, slack, shuffleSeed) => {
          const cluster = startCluster(start);
          for (const change of changes) applyChange(cluster, change);
          const unlimitedInput = toInput(cluster, undefined);
          const minimum = minimumMoves(unlimitedInput);
          const orphans = oracle(unlimitedInput).orphaned.size;
          const liveWork = minimum - orphans;
          const maxMoves = Math.max(1, Math.floor(liveWork / roundsWanted) + slack);
          const first = toInput(cluster, maxMoves);

          let owners: (string | null)[] = [...first.owners];
          let total = 0;
          let rounds = 0;
          for (;;) {
            const input: PlanInput = { ...first, owners };
            const plan = checkPlan(input, planLayout(input), shuffleSeed);
            if (plan.moves.length === 0) break;
            total += plan.moves.length;
            rounds++;
            owners = plan.owners;
          }
          expect(total).toBe(minimum);
          // Orphans all go in the first round; live work goes maxMoves at a time.
          expect(rounds).toBe(Math.max(Math.ceil(liveWork / maxMoves), orphans > 0 ? 1 : 0));
          // The rounds end balanced (possibly with a different member holding a ceil than an
          // unlimited plan would pick, when shares tie) with nothing on draining members.
          const final: PlanInput = { ...first, owners };
          expect(minimumMoves(final)).toBe(0);
          const counts = countsOf(owners);
          for (const [id, target] of targetCounts(final)) expect(counts.get(id) ?? 0).toBe(target);
          for (const id of first.draining ?? []) expect(counts.has(id)).toBe(false);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('refuses a cluster with no eligible member, whatever else the input says', () => {
    fc.assert(
      fc.property(startArb, fc.boolean(), (start, emptyMembers) => {
        const cluster = startCluster(start);
        const input: PlanInput = emptyMembers
          ? { ...toInput(cluster, undefined), members: [], draining: [] }
          : { ...toInput(cluster, undefined), draining: [...cluster.members] };
        for (const call of [planLayout, minimumMoves, targetCounts] as ((i: PlanInput) => unknown)[]) {
          expect(() => call(input)).toThrow(InvalidArgument);
          expect(() => call(input)).toThrow(emptyMembers ? /members is empty/ : /every member is draining/);
        }
      }),
      { numRuns: 100 },
    );
  });
});
