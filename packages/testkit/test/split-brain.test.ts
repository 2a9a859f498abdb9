/**
 * Split brain and fencing in the simulator (docs/cluster.md, "Split brain and fencing"):
 *
 * - a property over random partitions, heals and pauses (past the failure timeout too) with real
 *   sessions called from every node: no session has two activations whose turns both commit (the
 *   `one activation commits` check: an activation that a newer one superseded never commits again),
 *   no node commits a turn once it has been cut off from a majority for its quorum grace (`minority
 *   stops`), and after the faults stop everything converges and every session answers;
 * - a minority node refuses every call with `NoQuorum` while the majority carries on, and the
 *   sessions it kept are never served again;
 * - a node paused past the failure timeout applies none of the calls that waited for it;
 * - the checks themselves catch a second activation that commits.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CallLedger, checkSessions, describeFailure, runSchedule, sessionName, Simulation, splitBrainScheduleArbitrary, threeNodesFormed, type Schedule, type SentMessage, type Step } from '../src/index.js';

const RUNS = Number(process.env['WADI_SIM_RUNS'] ?? 1000);
const SEED = process.env['WADI_SIM_SEED'] === undefined ? undefined : Number(process.env['WADI_SIM_SEED']);

async function check(schedule: Schedule): Promise<void> {
  const result = await runSchedule(schedule);
  if (result.violations.length > 0) throw new Error(describeFailure(schedule, result));
  if (result.settledAfterMs === undefined) throw new Error(`did not settle\n${describeFailure(schedule, result)}`);
}

const formed = threeNodesFormed(6000);

/** Runs `before`, notes the time, runs `after`, settles and checks the sessions; fails on any violation. */
async function runAround(seed: number, before: Step[], after: Step[]): Promise<{ sim: Simulation; at: number }> {
  const schedule: Schedule = { options: { seed, buckets: 64, seeds: ['n1', 'n2', 'n3'] }, steps: [...before, ...after] };
  const sim = new Simulation(schedule.options);
  for (const step of before) await sim.apply(step);
  const at = sim.now;
  for (const step of after) await sim.apply(step);
  const settled = await sim.settle();
  if (settled !== undefined) await checkSessions(sim, { lossless: false });
  const report = { simulation: sim, violations: sim.violations, digest: sim.trace.digest, settledAfterMs: settled, sessions: undefined };
  if (sim.violations.length > 0 || settled === undefined) throw new Error(describeFailure(schedule, report));
  return { sim, at };
}

function sentBy(sim: Simulation, node: string): SentMessage[] {
  return [...sim.ledger.messages()].filter((message) => sim.ledger.senders.get(message.sender)?.node === node);
}

/** Times at which incarnation 1 of `node` applied a message (from the trace). */
function appliedTimes(sim: Simulation, node: string): number[] {
  return sim.trace.entries.filter((entry) => entry.kind === 'applied' && entry.node === node && entry.detail.includes(`activation ${node}#1/`)).map((entry) => entry.at);
}

describe('split brain and fencing in the simulator', () => {
  it(`over ${Math.ceil(RUNS / 5)} schedules of partitions, heals and pauses: one committing activation per session, minorities stop, all converges`, async () => {
    await fc.assert(fc.asyncProperty(splitBrainScheduleArbitrary(), check), { numRuns: Math.ceil(RUNS / 5), ...(SEED === undefined ? {} : { seed: SEED }) });
  });

  it('a node cut off from the others refuses every call with NoQuorum; the sessions it kept never commit again; all answer after the heal', async () => {
    // Sessions 0..3 are placed on n3 (the caller's node), then n3 is cut off while everyone calls them.
    const place: Step[] = [0, 1, 2, 3].map((session) => ({ op: 'call', node: 'n3', thread: 0, session, count: 1 }));
    const { sim, at } = await runAround(
      11,
      [...formed, ...place, { op: 'run', ms: 500 }, { op: 'partition', side: ['n3'] }],
      [
        { op: 'call', node: 'n3', thread: -2, session: 0, count: 40, everyMs: 200 },
        { op: 'call', node: 'n3', thread: 0, session: 1, count: 40, everyMs: 200 },
        { op: 'call', node: 'n1', thread: 0, session: 2, count: 40, everyMs: 200 },
        { op: 'call', node: 'n2', thread: -2, session: 3, count: 40, everyMs: 200 },
        { op: 'run', ms: 6000 },
        { op: 'heal' },
        { op: 'run', ms: 5000 },
      ],
    );
    // Everything n3 was asked to send while cut off failed, and with NoQuorum: it knew at once.
    const cutOff = sentBy(sim, 'n3').filter((message) => message.sentAt > at && message.sentAt < at + 6000);
    expect(cutOff.length).toBeGreaterThanOrEqual(58);
    for (const message of cutOff) {
      expect(message.outcome, `${message.sender} #${message.n}`).toBe('failed');
      expect((message.reply as Error).name).toBe('NoQuorum');
    }
    expect(appliedTimes(sim, 'n3').every((time) => time < at)).toBe(true);
    // The majority served the calls of n1 and n2 (on sessions placed anew once n3 was declared down).
    const served = [...sentBy(sim, 'n1'), ...sentBy(sim, 'n2')].filter((message) => message.ask && message.sentAt > at + 5000 && message.sentAt < at + 6000);
    expect(served.length).toBeGreaterThan(0);
    for (const message of served) expect(message.outcome).toBe('ok');
    expect(sim.node('n3')!.incarnation).toBe(2);
  });

  it('a node paused past the failure timeout applies none of the calls that waited for it, and serves nothing stale', async () => {
    const place: Step[] = [0, 1, 2, 3].map((session) => ({ op: 'call', node: 'n3', thread: 1, session, count: 1 }));
    const { sim, at } = await runAround(
      12,
      [...formed, ...place, { op: 'run', ms: 500 }, { op: 'pause', node: 'n3', ms: 6000 }],
      [
        { op: 'call', node: 'n1', thread: 0, session: 0, count: 50, everyMs: 200 },
        { op: 'call', node: 'n2', thread: -2, session: 1, count: 50, everyMs: 200 },
        { op: 'call', node: 'n1', thread: -2, session: 2, count: 50, everyMs: 200 },
        { op: 'run', ms: 12_000 },
      ],
    );
    expect(appliedTimes(sim, 'n3').every((time) => time < at)).toBe(true);
    // It noticed the stall on waking, before it learned that it had been declared down.
    expect(sim.trace.entries.some((entry) => entry.node === 'n3' && entry.detail.includes('stalled for'))).toBe(true);
    for (const session of [0, 1, 2]) {
      const latest = [...sim.ledger.sent.get(sessionName(session))!.values()].flat().filter((message) => message.ask && message.sentAt > at + 8000 && message.outcome === 'ok');
      expect(latest.length, sessionName(session)).toBeGreaterThan(0);
    }
  });

  it('two activations made by hand (a bug): when the older one\'s node re-announces, the owner reports it and that copy is dropped', async () => {
    const sim = new Simulation({ seed: 21, buckets: 64, seeds: ['n1', 'n2', 'n3'] });
    for (const step of formed) await sim.apply(step);
    const session = sessionName(0);
    const n1 = sim.node('n1')!;
    const n2 = sim.node('n2')!;
    const bucket = n1.bucketOfSession(session);
    const worker = bucket % 2;
    await sim.apply({ op: 'call', node: 'n1', thread: worker, session: 0, count: 3 });
    await sim.apply({ op: 'run', ms: 500 });
    expect(n1.realSessions()).toEqual([{ id: session, worker }]);
    // The bug: a second activation on n2, registered with a newer location version.
    n2.whenAwake(() => {
      n2.threads[worker]!.system.deliverRouted('Log', session, 'read', [], { settle: () => undefined });
      n2.threads[worker]!.host.register('Log', session, 1e9);
    });
    await sim.apply({ op: 'run', ms: 500 });
    expect(n2.realSessions()).toEqual([{ id: session, worker }]);
    // n1 re-announces what it hosts in that bucket (as after a partition heals).
    n1.whenAwake(() => n1.workers[worker]!.resync([bucket]));
    await sim.apply({ op: 'run', ms: 500 });
    expect(n1.realSessions()).toEqual([]);
    expect(n1.droppedDuplicates).toBe(1);
    const reported = [...sim.nodes.values()].reduce((sum, node) => sum + node.workers.reduce((count, host) => count + host.duplicates, 0), 0);
    expect(reported).toBe(1);
    expect(sim.trace.entries.some((entry) => entry.node === 'n1' && entry.kind === 'warn' && entry.detail.includes('dropped'))).toBe(true);
    // Calls go on to the newer copy; everything settles with one activation.
    await sim.apply({ op: 'call', node: 'n3', thread: -2, session: 0, count: 2 });
    expect(await sim.settle()).toBeDefined();
    await checkSessions(sim, { lossless: false });
    expect(sim.violations).toEqual([]);
    expect(n2.realSessions()).toEqual([{ id: session, worker }]);
  });

  it('the checks catch an activation that commits after a newer one did', () => {
    const ledger = new CallLedger();
    expect(ledger.committedBy('g0/l0', 'n1#1/0:1')).toBeUndefined();
    expect(ledger.committedBy('g0/l0', 'n1#1/0:1')).toBeUndefined();
    // Placed anew elsewhere (its first copy was lost): fine, as long as the first never commits again.
    expect(ledger.committedBy('g0/l0', 'n2#1/0:1')).toBeUndefined();
    expect(ledger.committedBy('g0/l0', 'n2#1/0:1')).toBeUndefined();
    expect(ledger.committedBy('g0/l0', 'n1#1/0:1')?.property).toBe('one activation commits');
  });
});
