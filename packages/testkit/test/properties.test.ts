/**
 * The rebalance invariants over random fault schedules (fast-check generates and shrinks them):
 * joins, graceful leaves, crashes, restarts, pauses, partitions both ways and one way, heals, and
 * sessions created, moved and destroyed. Every run is checked as it goes (one owner per bucket,
 * one layout per epoch, epochs never backwards, majority commits, minimal moves, fenced installs)
 * and once the faults stop (convergence within a bounded time to one balanced layout of every
 * running node, with every session's directory entry pointing where it is).
 *
 * The session properties: real sessions called by many senders (asks and tells) while they
 * migrate, nodes join, leave gracefully, pause briefly and rejoin, and buckets are handed off,
 * without crashes. After the
 * run settles, every message was applied exactly once and in its sender's order, every ask was
 * answered with what was applied, each session has exactly one activation, and on the stable
 * layout no call takes more than 2 node-to-node hops (see session-check.ts).
 *
 * CI runs a fixed budget; `pnpm soak` runs many more. A failure prints the seed, the shrunk
 * schedule, the trace up to the first violation, and the command that replays it.
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { describeFailure, LOSSY_NETWORK, LOSSY_PROTOCOL, runSchedule, scheduleArbitrary, sessionScheduleArbitrary, type Schedule, type SessionScheduleShape } from '../src/index.js';

const RUNS = Number(process.env['WADI_SIM_RUNS'] ?? 1000);
const SEED = process.env['WADI_SIM_SEED'] === undefined ? undefined : Number(process.env['WADI_SIM_SEED']);

async function check(schedule: Schedule): Promise<void> {
  const result = await runSchedule(schedule);
  if (result.violations.length > 0) throw new Error(describeFailure(schedule, result));
}

describe('rebalance invariants over random fault schedules', () => {
  it(`hold over ${RUNS} schedules on a network that keeps order (TCP)`, async () => {
    await fc.assert(fc.asyncProperty(scheduleArbitrary({ maxSteps: 40 }), check), { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) });
  });

  it(`hold over ${Math.ceil(RUNS / 2)} schedules on a network that loses, duplicates and reorders protocol messages`, async () => {
    await fc.assert(fc.asyncProperty(scheduleArbitrary({ maxSteps: 40, faults: LOSSY_NETWORK }), check), {
      numRuns: Math.ceil(RUNS / 2),
      ...(SEED === undefined ? {} : { seed: SEED }),
    });
  });

  it('hold with more nodes and buckets than workers can spread evenly', async () => {
    await fc.assert(fc.asyncProperty(scheduleArbitrary({ maxSteps: 30, nodes: ['a', 'b', 'c', 'd', 'e', 'f', 'g'], initialNodes: 5, buckets: 97 }), check), {
      numRuns: Math.ceil(RUNS / 4),
      ...(SEED === undefined ? {} : { seed: SEED }),
    });
  });
});

/** The session properties: calls, migrations, joins, graceful leaves, short pauses and restarts of nodes that left. */
const SESSIONS: SessionScheduleShape = { maxSteps: 30 };

describe('sessions across migrations, handoffs, joins, graceful leaves, short pauses and rejoins', () => {
  it(`no message lost, duplicated or reordered over ${RUNS} schedules of calls from many senders`, async () => {
    await fc.assert(fc.asyncProperty(sessionScheduleArbitrary(SESSIONS), check), { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) });
  });

  it(`no message lost, duplicated or reordered over ${Math.ceil(RUNS / 2)} schedules on a network that loses, duplicates and reorders protocol messages`, async () => {
    await fc.assert(fc.asyncProperty(sessionScheduleArbitrary({ ...SESSIONS, faults: LOSSY_PROTOCOL }), check), {
      numRuns: Math.ceil(RUNS / 2),
      ...(SEED === undefined ? {} : { seed: SEED }),
    });
  });
});
