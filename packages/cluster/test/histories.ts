/**
 * Membership histories for the planner's property tests: the ids and weights they draw from,
 * the changes (join, drain, remove after a drain, crash, weight change, plain round) and how a
 * change applies to a cluster, shared by the owner and the backup properties.
 */
import fc from 'fast-check';
import type { PlanInput } from '../src/planner.js';
import { rng } from './network.js';

/** Ids the histories draw from; two of them are Object.prototype names on purpose. */
export const POOL = ['n0', 'n1', 'n2', 'n3', 'n4', 'n5', 'n6', 'n7', 'n8', 'n9', 'constructor', '__proto__'];
/** Weights that are all multiples of 1/2, so doubled they are integers and the oracles are exact. */
export const WEIGHTS = [0.5, 1, 1, 1, 1.5, 2, 3, 4];

export type MembershipChange =
  | { kind: 'join'; pick: number; weight: number | undefined }
  | { kind: 'drain'; pick: number }
  | { kind: 'remove'; pick: number }
  | { kind: 'crash'; pick: number }
  | { kind: 'weight'; pick: number; weight: number }
  | { kind: 'round' };

/** The part of a simulated cluster that membership changes touch. */
export interface Membership {
  members: string[];
  draining: Set<string>;
  weights: Map<string, number>;
}

/** One arbitrary per kind of change, for each property to weigh as it needs. */
export const changeArbs = {
  join: fc.record({ kind: fc.constant('join' as const), pick: fc.nat(), weight: fc.option(fc.constantFrom(...WEIGHTS), { nil: undefined }) }),
  drain: fc.record({ kind: fc.constant('drain' as const), pick: fc.nat() }),
  remove: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }),
  crash: fc.record({ kind: fc.constant('crash' as const), pick: fc.nat() }),
  weight: fc.record({ kind: fc.constant('weight' as const), pick: fc.nat(), weight: fc.constantFrom(...WEIGHTS) }),
  round: fc.record({ kind: fc.constant('round' as const) }),
};

/** A round's maxMoves: often none (weighed by `unlimited`), sometimes 0, small or large. */
export function maxMovesArb(unlimited: number): fc.Arbitrary<number | undefined> {
  return fc.oneof(
    { arbitrary: fc.constant(undefined), weight: unlimited },
    { arbitrary: fc.constant(0), weight: 1 },
    { arbitrary: fc.integer({ min: 1, max: 8 }), weight: 1 },
    { arbitrary: fc.integer({ min: 9, max: 300 }), weight: 1 },
  );
}

export function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const result = [...items];
  for (let i = result.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [result[i], result[j]] = [result[j] as T, result[i] as T];
  }
  return result;
}

/** Applies a membership change; returns false if it does not apply to this cluster. */
export function applyMembershipChange(cluster: Membership, change: MembershipChange): boolean {
  const eligible = cluster.members.filter((id) => !cluster.draining.has(id));
  const pick = <T>(items: readonly T[], index: number): T | undefined =>
    items.length === 0 ? undefined : items[index % items.length];
  switch (change.kind) {
    case 'join': {
      const id = pick(POOL.filter((p) => !cluster.members.includes(p)), change.pick);
      if (id === undefined) return false;
      cluster.members.push(id);
      if (change.weight === undefined) cluster.weights.delete(id);
      else cluster.weights.set(id, change.weight);
      return true;
    }
    case 'drain': {
      // Keep one eligible member: with none, the planner must refuse (tested separately).
      const id = pick(eligible, change.pick);
      if (id === undefined || eligible.length < 2) return false;
      cluster.draining.add(id);
      return true;
    }
    case 'remove': {
      // The graceful leave completes; under maxMoves it may still hold buckets, which become orphans.
      const id = pick([...cluster.draining], change.pick);
      if (id === undefined) return false;
      cluster.draining.delete(id);
      cluster.members = cluster.members.filter((m) => m !== id);
      return true;
    }
    case 'crash': {
      const id = pick(cluster.members, change.pick);
      if (id === undefined || (eligible.length < 2 && eligible.includes(id))) return false;
      cluster.draining.delete(id);
      cluster.members = cluster.members.filter((m) => m !== id);
      return true;
    }
    case 'weight': {
      const id = pick(cluster.members, change.pick);
      if (id === undefined) return false;
      cluster.weights.set(id, change.weight);
      return true;
    }
    case 'round':
      return true;
  }
}

/** The same input with every order the planner must ignore scrambled. */
export function scrambled(input: PlanInput, seed: number): PlanInput {
  const random = rng(seed);
  return {
    ...input,
    members: shuffled(input.members, random),
    draining: shuffled(input.draining ?? [], random),
    weights: Object.fromEntries(shuffled(Object.entries(input.weights ?? {}), random)),
    ...(input.incoming === undefined ? {} : { incoming: shuffled(input.incoming, random) }),
  };
}

/** The members that are not draining, in id order. */
export function eligibleOf(input: PlanInput): string[] {
  const draining = new Set(input.draining ?? []);
  return input.members.filter((id) => !draining.has(id)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Doubled weight, an integer for every weight in WEIGHTS. */
export function weight2(input: PlanInput, id: string): number {
  const weights = input.weights ?? {};
  return 2 * (Object.hasOwn(weights, id) ? (weights[id] as number) : 1);
}
