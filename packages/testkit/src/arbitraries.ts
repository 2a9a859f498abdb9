/**
 * fast-check generators of fault schedules: random interleavings of joins, graceful leaves,
 * crashes, restarts, pauses, partitions (both ways and one way), heals, and sessions being
 * created, moved and destroyed, with time passing in between; with `calls`, real sessions called
 * and migrated among them. Steps that do not apply when they come (a crash of a node that is not
 * running) are skipped by the simulation, so every shrunk schedule still runs.
 *
 * `sessionScheduleArbitrary` generates what the session properties promise to survive without
 * losing a message: streams of calls (asks and tells) from many senders, `migrate` calls, joins,
 * graceful leaves and abstract session churn, with no crash, partition or connection reset (and,
 * if asked for, short pauses and restarts of nodes that left).
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
  /** More simulation options every generated schedule gets. */
  options?: Omit<SimulationOptions, 'seed'>;
  /** Fault schedules: mix in calls to real sessions and migrations (default false). */
  calls?: boolean;
}

export interface SessionScheduleShape extends ScheduleShape {
  /** Pauses shorter than any timeout (default true). */
  pauses?: boolean;
  /** A node that left may be started again, as a new incarnation with its disk (default true). */
  rejoins?: boolean;
}

/** A network that loses, duplicates and reorders protocol messages, and now and then resets a connection. */
export const LOSSY_NETWORK: Partial<LinkFaults> = { latencyMs: [1, 10], jitterMs: 30, loss: 0.03, duplicate: 0.03, reorder: true, reset: 0.0005 };

/** Loses, duplicates and reorders protocol messages, but never breaks a connection (what session frames travel on). */
export const LOSSY_PROTOCOL: Partial<LinkFaults> = { ...LOSSY_NETWORK, reset: 0 };

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

/** Thread indices a call may come from: the workers of a two-worker node, and its main thread. */
const THREADS = [0, 1, -2];

/** A stream of calls from one thread to one real session, or a `migrate` call. */
export function callStepArbitrary(nodes: readonly string[]): fc.Arbitrary<Step> {
  const node = fc.constantFrom(...nodes);
  const thread = fc.constantFrom(...THREADS);
  const session = fc.nat(7);
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc.record({
        op: fc.constant('call' as const),
        node,
        thread,
        session,
        count: fc.integer({ min: 1, max: 20 }),
        everyMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 100 })),
      }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('migrate' as const), node, thread, session }) },
  );
}

/** Steps that lose no call: joins, graceful leaves, (short pauses,) abstract sessions, calls and migrations. */
export function sessionStepArbitrary(nodes: readonly string[], pauses = true): fc.Arbitrary<Step> {
  const node = fc.constantFrom(...nodes);
  const steps: fc.WeightedArbitrary<Step>[] = [
    { weight: 2, arbitrary: fc.record({ op: fc.constant('start' as const), node }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('leave' as const), node }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('create' as const), node, count: fc.integer({ min: 1, max: 10 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('move' as const), pick: fc.nat(1000), to: node }) },
    { weight: 8, arbitrary: callStepArbitrary(nodes) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('run' as const), ms: fc.integer({ min: 10, max: 5000 }) }) },
  ];
  if (pauses) steps.push({ weight: 1, arbitrary: fc.record({ op: fc.constant('pause' as const), node, ms: fc.integer({ min: 100, max: 1400 }) }) });
  return fc.oneof(...steps);
}

export function scheduleArbitrary(shape: ScheduleShape = {}): fc.Arbitrary<Schedule> {
  const nodes = shape.nodes ?? DEFAULT_NODES;
  const step = shape.calls === true ? fc.oneof({ weight: 3, arbitrary: stepArbitrary(nodes) }, { weight: 2, arbitrary: callStepArbitrary(nodes) }) : stepArbitrary(nodes);
  return withPrelude(shape, nodes, fc.array(step, { maxLength: shape.maxSteps ?? 40 }));
}

/** Schedules for the session properties: every message must be applied exactly once (see `losesCalls`). */
export function sessionScheduleArbitrary(shape: SessionScheduleShape = {}): fc.Arbitrary<Schedule> {
  const nodes = shape.nodes ?? DEFAULT_NODES;
  let steps = fc.array(sessionStepArbitrary(nodes, shape.pauses ?? true), { maxLength: shape.maxSteps ?? 30 });
  if (shape.rejoins === false) {
    // A start of a node that left turns into a start of a node never started, or goes.
    steps = steps.map((list) => {
      const left = new Set<string>();
      return list.filter((step) => {
        if (step.op === 'leave') left.add(step.node);
        return step.op !== 'start' || !left.has(step.node);
      });
    });
  }
  return withPrelude(shape, nodes, steps);
}

/**
 * Split-brain schedules: a formed cluster whose real sessions are called from every node while
 * the network splits it (into a majority and a minority, or with no majority at all), heals, and
 * nodes pause for up to 8 s (SIGSTOP past the failure timeout, and SIGCONT). No crash: what a
 * minority side does with the sessions it kept is the point.
 */
export function splitBrainScheduleArbitrary(shape: ScheduleShape = {}): fc.Arbitrary<Schedule> {
  const nodes = shape.nodes ?? ['n1', 'n2', 'n3', 'n4', 'n5'];
  const node = fc.constantFrom(...nodes);
  const side = fc.uniqueArray(node, { minLength: 1, maxLength: Math.max(1, nodes.length - 1) });
  const step: fc.Arbitrary<Step> = fc.oneof(
    { weight: 2, arbitrary: fc.record({ op: fc.constant('partition' as const), side }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('heal' as const) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('pause' as const), node, ms: fc.integer({ min: 500, max: 8000 }) }) },
    { weight: 6, arbitrary: callStepArbitrary(nodes) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('run' as const), ms: fc.integer({ min: 10, max: 6000 }) }) },
  );
  return withPrelude({ initialNodes: nodes.length, ...shape }, nodes, fc.array(step, { maxLength: shape.maxSteps ?? 30 }));
}

/** The initial nodes start half a second apart and form a cluster; then `steps`. */
function withPrelude(shape: ScheduleShape, nodes: readonly string[], steps: fc.Arbitrary<Step[]>): fc.Arbitrary<Schedule> {
  const initial = Math.min(shape.initialNodes ?? 3, nodes.length);
  const options = fc.integer({ min: 1, max: 0x7fffffff }).map(
    (seed): SimulationOptions => ({
      seed,
      buckets: shape.buckets ?? 64,
      seeds: nodes.slice(0, 3),
      ...(shape.faults === undefined ? {} : { faults: shape.faults }),
      ...shape.options,
    }),
  );
  const prelude: Step[] = [];
  for (const id of nodes.slice(0, initial)) prelude.push({ op: 'start', node: id }, { op: 'run', ms: 500 });
  prelude.push({ op: 'run', ms: 5000 });
  return fc.record({ options, steps }).map(({ options, steps }) => ({ options, steps: [...prelude, ...steps] }));
}
