/**
 * The simulator itself: determinism and replay, the virtual clock, and each fault it injects,
 * checked on small hand-written schedules against the real protocol code.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { convergence, runSchedule, Simulation, type Schedule, type Step } from '../src/index.js';

const formed: Step[] = [
  { op: 'start', node: 'n1' },
  { op: 'start', node: 'n2' },
  { op: 'start', node: 'n3' },
  { op: 'run', ms: 6000 },
];

async function simulation(nodes: string[], seed = 1, options: Partial<Schedule['options']> = {}): Promise<Simulation> {
  const sim = new Simulation({ seed, seeds: nodes.slice(0, 3), ...options });
  for (const id of nodes) await sim.apply({ op: 'start', node: id });
  await sim.runUntil(() => convergence(sim).length === 0, 30_000);
  return sim;
}

describe('the simulator', () => {
  afterEach(() => vi.restoreAllMocks());

  it('replays a schedule byte for byte: same seed, same trace', async () => {
    const schedule: Schedule = {
      options: { seed: 42, faults: { jitterMs: 20, loss: 0.05, duplicate: 0.05, reorder: true } },
      steps: [...formed, { op: 'create', node: 'n2', count: 20 }, { op: 'start', node: 'n4' }, { op: 'crash', node: 'n1' }, { op: 'run', ms: 5000 }, { op: 'move', pick: 3, to: 'n4' }, { op: 'leave', node: 'n2' }, { op: 'run', ms: 5000 }],
    };
    const first = await runSchedule(schedule);
    const second = await runSchedule(structuredClone(schedule));
    expect(second.digest).toBe(first.digest);
    expect(second.simulation.trace.format()).toBe(first.simulation.trace.format());
    expect(first.violations).toEqual([]);
    const other = await runSchedule({ ...schedule, options: { ...schedule.options, seed: 43 } });
    expect(other.digest).not.toBe(first.digest);
  });

  it('runs on virtual time only: no real timers and no Math.random inside a run', async () => {
    for (const name of ['setTimeout', 'setInterval', 'setImmediate'] as const) {
      vi.spyOn(globalThis, name).mockImplementation((() => {
        throw new Error(`${name} called inside a simulated run`);
      }) as never);
    }
    vi.spyOn(Math, 'random').mockImplementation(() => {
      throw new Error('Math.random called inside a simulated run');
    });
    vi.spyOn(Date, 'now').mockImplementation(() => {
      throw new Error('Date.now called inside a simulated run');
    });
    const result = await runSchedule({
      options: { seed: 5 },
      steps: [
        ...formed,
        { op: 'create', node: 'n1', count: 10 },
        // Real sessions: actor systems, ask deadlines, routers' and hosts' ticks, a migration.
        { op: 'call', node: 'n1', thread: 0, session: 1, count: 20, everyMs: 50 },
        { op: 'call', node: 'n2', thread: -2, session: 1, count: 20, everyMs: 70 },
        { op: 'run', ms: 300 },
        { op: 'migrate', node: 'n3', thread: 1, session: 1 },
        { op: 'run', ms: 10 * 60_000 },
      ],
    });
    expect(result.simulation.now).toBeGreaterThanOrEqual(10 * 60_000);
    expect(result.violations).toEqual([]);
    expect(result.simulation.ledger.applications).toBeGreaterThan(40);
  });

  it('a minority side commits nothing; after the heal one layout wins', async () => {
    const sim = await simulation(['n1', 'n2', 'n3', 'n4', 'n5'], 3);
    const before = sim.monitor.latestChosen()!.epoch;
    await sim.apply({ op: 'partition', side: ['n1', 'n2'] });
    await sim.apply({ op: 'run', ms: 30_000 });
    const minority = ['n1', 'n2'].map((id) => sim.node(id)!);
    for (const node of minority) {
      expect(node.protocol.layout!.epoch).toBe(before);
      expect(node.protocol.member.hasQuorum()).toBe(false);
    }
    // The majority side declared the minority down and took its buckets over.
    const majority = sim.node('n3')!.protocol.layout!;
    expect(majority.epoch).toBeGreaterThan(before);
    expect(majority.members.map((member) => member.id).sort()).toEqual(['n3', 'n4', 'n5']);
    await sim.settle(60_000);
    expect(sim.violations).toEqual([]);
    expect(new Set(sim.running().map((node) => node.protocol.layout!.epoch)).size).toBe(1);
  });

  it('a one-way cut holds messages (TCP retransmits) until the connection dies of silence', async () => {
    const sim = await simulation(['n1', 'n2', 'n3']);
    await sim.apply({ op: 'cut', from: ['n1'], to: ['n2'] });
    await sim.run(500);
    expect(sim.network.isConnected('n1', 'n2')).toBe(true);
    await sim.run(sim.network.livenessMs + 500);
    expect(sim.network.isConnected('n1', 'n2')).toBe(false);
    await sim.apply({ op: 'heal' });
    await sim.run(1000);
    expect(sim.network.isConnected('n1', 'n2')).toBe(true);
  });

  it('a pause longer than the failure detector: the node is declared down, exits when it wakes, and its restart rejoins', async () => {
    const sim = await simulation(['n1', 'n2', 'n3'], 9);
    await sim.apply({ op: 'create', node: 'n3', count: 5 });
    await sim.apply({ op: 'pause', node: 'n3', ms: 10_000 });
    await sim.run(8000);
    expect(sim.node('n1')!.protocol.layout!.members.map((member) => member.id)).not.toContain('n3');
    await sim.run(3000);
    expect(sim.node('n3')!.running).toBe(false);
    expect(sim.trace.entries.some((entry) => entry.node === 'n3' && entry.kind === 'removed')).toBe(true);
    await sim.settle(60_000);
    expect(sim.violations).toEqual([]);
    expect(sim.node('n3')!.incarnation).toBe(2);
    expect(sim.node('n3')!.protocol.layout!.members.map((member) => member.id)).toContain('n3');
  });

  it('puts sessions only on members, as wadi does: a create on a node not admitted yet is skipped', async () => {
    const sim = await simulation(['n1', 'n2', 'n3']);
    await sim.apply({ op: 'start', node: 'n6' });
    await sim.apply({ op: 'create', node: 'n6', count: 1 });
    expect(sim.sessions.size).toBe(0);
    expect(sim.trace.entries.some((entry) => entry.kind === 'skip' && entry.detail.includes('not a member of its layout yet'))).toBe(true);
    await sim.settle(60_000);
    await sim.apply({ op: 'create', node: 'n6', count: 1 });
    expect([...sim.sessions.values()].map((place) => place.node)).toEqual(['n6']);
    expect(sim.violations).toEqual([]);
  });

  it('a crashed node restarts as a new incarnation with its disk', async () => {
    const sim = await simulation(['n1', 'n2', 'n3']);
    const epoch = sim.node('n2')!.protocol.layout!.epoch;
    await sim.apply({ op: 'crash', node: 'n2' });
    await sim.apply({ op: 'start', node: 'n2' });
    const restarted = sim.node('n2')!;
    expect(restarted.incarnation).toBe(2);
    expect(restarted.disk.committed!.epoch).toBeGreaterThanOrEqual(epoch);
    await sim.settle(60_000);
    expect(sim.violations).toEqual([]);
  });

  it('keeps converging under loss, duplication, reordering and connection resets', async () => {
    const result = await runSchedule({
      options: { seed: 11, faults: { latencyMs: [1, 10], jitterMs: 40, loss: 0.1, duplicate: 0.1, reorder: true, reset: 0.002 } },
      steps: [...formed, { op: 'create', node: 'n1', count: 30 }, { op: 'start', node: 'n4' }, { op: 'start', node: 'n5' }, { op: 'run', ms: 20_000 }, { op: 'leave', node: 'n2' }, { op: 'run', ms: 20_000 }],
    });
    expect(result.violations).toEqual([]);
    expect(result.simulation.network.lost).toBeGreaterThan(0);
  });

  it('prints a readable trace of events, layouts and epochs', async () => {
    const result = await runSchedule({ options: { seed: 2 }, steps: [...formed, { op: 'start', node: 'n4' }, { op: 'run', ms: 3000 }] });
    const text = result.simulation.trace.format();
    expect(text).toMatch(/ {4}0\.000s n1 {3}started {4}incarnation 1/);
    expect(text).toMatch(/committed {2}epoch \d+ by n1 \[.*n4:16.*\] from epoch \d+, 16 moves/);
    expect(text).toContain('converged');
  });
});
