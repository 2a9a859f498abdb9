/**
 * The rebalance invariants over random fault schedules (fast-check generates and shrinks them):
 * joins, graceful leaves, crashes, restarts, pauses, partitions both ways and one way, heals, and
 * sessions created, moved and destroyed. Every run is checked as it goes (one owner per bucket,
 * one layout per epoch, epochs never backwards, majority commits, minimal moves, fenced installs)
 * and once the faults stop (convergence within a bounded time to one balanced layout of every
 * running node, with every session's directory entry pointing where it is).
 *
 * CI runs a fixed budget; `pnpm soak` runs many more. A failure prints the seed, the shrunk
 * schedule, the trace up to the first violation, and the command that replays it.
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { describeFailure, LOSSY_NETWORK, runSchedule, scheduleArbitrary, type Schedule } from '../src/index.js';

const RUNS = Number(process.env['WADI_SIM_RUNS'] ?? 1000);
const SEED = process.env['WADI_SIM_SEED'] === undefined ? undefined : Number(process.env['WADI_SIM_SEED']);

function check(schedule: Schedule): void {
  const result = runSchedule(schedule);
  if (result.violations.length > 0) throw new Error(describeFailure(schedule, result));
}

describe('rebalance invariants over random fault schedules', () => {
  it(`hold over ${RUNS} schedules on a network that keeps order (TCP)`, () => {
    fc.assert(fc.property(scheduleArbitrary({ maxSteps: 40 }), check), { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) });
  });

  it(`hold over ${Math.ceil(RUNS / 2)} schedules on a network that loses, duplicates and reorders protocol messages`, () => {
    fc.assert(fc.property(scheduleArbitrary({ maxSteps: 40, faults: LOSSY_NETWORK }), check), {
      numRuns: Math.ceil(RUNS / 2),
      ...(SEED === undefined ? {} : { seed: SEED }),
    });
  });

  it('hold with more nodes and buckets than workers can spread evenly', () => {
    fc.assert(fc.property(scheduleArbitrary({ maxSteps: 30, nodes: ['a', 'b', 'c', 'd', 'e', 'f', 'g'], initialNodes: 5, buckets: 97 }), check), {
      numRuns: Math.ceil(RUNS / 4),
      ...(SEED === undefined ? {} : { seed: SEED }),
    });
  });
});
