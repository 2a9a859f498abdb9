/**
 * Runs a schedule from start to settled end and reports what it broke: the one entry point the
 * property tests, the replay command and the soak share, so a printed schedule replays exactly.
 * A schedule that called real sessions is checked for what they applied too (`checkSessions`).
 */
import type { Violation } from './invariants.js';
import { keepsAcknowledged, losesCalls, type Schedule } from './schedule.js';
import { checkSessions, type SessionReport } from './session-check.js';
import { Simulation } from './simulation.js';

export interface RunResult {
  simulation: Simulation;
  violations: readonly Violation[];
  /** Hash of the whole trace: two runs of one schedule give the same. */
  digest: string;
  /** Simulated time from the end of the schedule until the cluster converged (undefined: it did not). */
  settledAfterMs: number | undefined;
  /** What the session checks covered (undefined: no real session was called, or the cluster never settled). */
  sessions: SessionReport | undefined;
}

export interface RunOptions {
  /** Converge within this long after the faults stop (simulated ms, default 120 s). */
  settleLimitMs?: number;
  /**
   * Check that no acknowledged ask was lost and no replica holds a write its session's host did
   * not make (replication; see `SessionCheckOptions.acknowledged`), when the schedule keeps at
   * most R = 1 node down at a time (`keepsAcknowledged`).
   */
  acknowledged?: boolean;
}

export async function runSchedule(schedule: Schedule, options: RunOptions = {}): Promise<RunResult> {
  const simulation = new Simulation(schedule.options);
  for (const step of schedule.steps) await simulation.apply(step);
  const settledAfterMs = await simulation.settle(options.settleLimitMs);
  const sessions = simulation.ledger.used && settledAfterMs !== undefined ? await checkSessions(simulation, { lossless: !losesCalls(schedule) && !simulation.sessionsLost, acknowledged: options.acknowledged === true && keepsAcknowledged(schedule) }) : undefined;
  return { simulation, violations: simulation.violations, digest: simulation.trace.digest, settledAfterMs, sessions };
}

/** A failure report a person can act on: what broke, the trace around it, and how to replay it. */
export function describeFailure(schedule: Schedule, result: RunResult, traceLines = 60): string {
  const json = JSON.stringify(schedule);
  const violations = result.violations.map((violation) => `  at ${(violation.at / 1000).toFixed(3)}s ${violation.property}: ${violation.detail}`).join('\n');
  const firstAt = result.violations[0]?.at ?? Infinity;
  const trace = result.simulation.trace.format(traceLines, (entry) => entry.at <= firstAt);
  return [
    `${result.violations.length} violation(s) with seed ${schedule.options.seed}:`,
    violations,
    '',
    `trace up to the first violation (last ${traceLines} entries):`,
    trace,
    '',
    `schedule: ${json}`,
    `replay:   pnpm sim:replay '${json}'`,
  ].join('\n');
}
