/**
 * Replication in the simulator, over random schedules (fast-check): three nodes, R = 1, sync
 * sessions (the `Log` actor) called by senders on every node, and crashes of one node at a time,
 * each restarted (as a supervisor would) either at once, before the others could declare it down
 * (its new incarnation replaces it), or after its sessions failed over. Once the run settles:
 * every ask answered ok is in its session's log where its answer said (no acknowledged write
 * lost), no message applied twice or out of its sender's order, one activation per session, and
 * every replica held anywhere is a write its session's host made (no stale write accepted).
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { describeFailure, runSchedule, threeNodesFormed, type Schedule, type Step } from '../src/index.js';

const RUNS = Math.max(1, Math.ceil(Number(process.env['WADI_SIM_RUNS'] ?? 1000) / 40));
const SEED = process.env['WADI_SIM_SEED'] === undefined ? undefined : Number(process.env['WADI_SIM_SEED']);
const NODES = ['n1', 'n2', 'n3'];

const formed = threeNodesFormed(5000);

/** A round: calls from a few senders to a few sessions, a crash of one node amid them, time to fail over, its restart. */
const roundArbitrary = fc.record({
  calls: fc.array(
    fc.record({ node: fc.constantFrom(...NODES), thread: fc.constantFrom(0, 1, -2), session: fc.integer({ min: 1, max: 6 }), count: fc.integer({ min: 1, max: 30 }), everyMs: fc.integer({ min: 2, max: 20 }) }),
    { minLength: 1, maxLength: 5 },
  ),
  crashAfterMs: fc.integer({ min: 0, max: 400 }),
  victim: fc.constantFrom(...NODES),
  /** Restarted before the others could declare it down (a supervisor restarting it at once), or after its failover. */
  restartAfterMs: fc.constantFrom(100, 400, 8000),
});

const scheduleArbitrary = fc.record({ seed: fc.integer({ min: 1, max: 2 ** 30 }), rounds: fc.array(roundArbitrary, { minLength: 1, maxLength: 2 }) }).map(({ seed, rounds }): Schedule => {
  const steps: Step[] = [...formed];
  for (const round of rounds) {
    for (const call of round.calls) steps.push({ op: 'call', ...call });
    steps.push({ op: 'run', ms: round.crashAfterMs }, { op: 'crash', node: round.victim }, { op: 'run', ms: round.restartAfterMs }, { op: 'start', node: round.victim }, { op: 'run', ms: 8000 });
  }
  return { options: { seed, buckets: 64, seeds: NODES }, steps };
});

describe('replication under crashes (R = 1, sync, one node down at a time)', () => {
  it(`no acknowledged write lost, none applied twice, no stale write accepted, over ${RUNS} schedules`, async () => {
    await fc.assert(
      fc.asyncProperty(scheduleArbitrary, async (schedule) => {
        const result = await runSchedule(schedule, { acknowledged: true });
        if (result.violations.length > 0) throw new Error(describeFailure(schedule, result));
        if (result.sessions === undefined) throw new Error('the run did not settle, so its sessions were not checked');
      }),
      { numRuns: RUNS, ...(SEED === undefined ? {} : { seed: SEED }) },
    );
  });
});
