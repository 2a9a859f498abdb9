/**
 * fast-check generators of fault schedules: random interleavings of joins, graceful leaves,
 * crashes, restarts, pauses, partitions (both ways and one way), heals, and sessions being
 * created, moved and destroyed, with time passing in between. Steps that do not apply when they
 * come (a crash of a node that is not running) are skipped by the simulation, so every shrunk
 * schedule still runs.
 */
import fc from 'fast-check';
import type { LinkFaults } from './network.js';
import type { Schedule, SimulationOptions, Step } from './schedule.js';

export interface ScheduleShape {
  /** Node ids the schedule may use (the first three are the seeds). */
  nodes?: string[];
  /** Nodes started before the random steps. */
  initialNodes?: number;
  maxSteps?: number;
  buckets?: number;
  faults?: Partial<LinkFaults>;
}

/** A network that loses, duplicates and reorders protocol messages, and now and then resets a connection. */
export const LOSSY_NETWORK: Partial<LinkFaults> = { latencyMs: [1, 10], jitterMs: 30, loss: 0.03, duplicate: 0.03, reorder: true, reset: 0.0005 };

export const DEFAULT_NODES = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'];

export function stepArbitrary(nodes: readonly string[]): fc.Arbitrary<Step> {
  const node = fc.constantFrom(...nodes);
  const side = fc.uniqueArray(node, { minLength: 1, maxLength: Math.max(1, nodes.length - 1) });
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ op: fc.constant('start' as const), node }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('leave' as const), node }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('crash' as const), node }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('pause' as const), node, ms: fc.integer({ min: 500, max: 8000 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('partition' as const), side }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('cut' as const), from: side, to: side }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('heal' as const) }) },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('create' as const), node, count: fc.integer({ min: 1, max: 20 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('move' as const), pick: fc.nat(1000), to: node }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('destroy' as const), pick: fc.nat(1000) }) },
    { weight: 5, arbitrary: fc.record({ op: fc.constant('run' as const), ms: fc.integer({ min: 10, max: 10_000 }) }) },
  );
}

export function scheduleArbitrary(shape: ScheduleShape = {}): fc.Arbitrary<Schedule> {
  const nodes = shape.nodes ?? DEFAULT_NODES;
  const initial = Math.min(shape.initialNodes ?? 3, nodes.length);
  const options = fc.integer({ min: 1, max: 0x7fffffff }).map(
    (seed): SimulationOptions => ({
      seed,
      buckets: shape.buckets ?? 64,
      seeds: nodes.slice(0, 3),
      ...(shape.faults === undefined ? {} : { faults: shape.faults }),
    }),
  );
  const prelude: Step[] = [];
  for (const id of nodes.slice(0, initial)) prelude.push({ op: 'start', node: id }, { op: 'run', ms: 500 });
  prelude.push({ op: 'run', ms: 5000 });
  return fc
    .record({ options, steps: fc.array(stepArbitrary(nodes), { maxLength: shape.maxSteps ?? 40 }) })
    .map(({ options, steps }) => ({ options, steps: [...prelude, ...steps] }));
}
