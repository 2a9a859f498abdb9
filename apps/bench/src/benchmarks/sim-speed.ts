/**
 * sim.speed: simulated seconds per wall-clock second of the deterministic simulator
 * (`@wadi/testkit`) running a 5-node cluster under faults: a lossy, duplicating, reordering
 * network, and every few simulated seconds a crash and restart, a partition and heal, a pause, a
 * join or a leave, with sessions created and moved. Absolute figure (no raw baseline); target
 * >= 100. Median of ROUNDS runs of 10 simulated minutes each.
 */
import { LOSSY_NETWORK, runSchedule, SeededRandom, type Schedule, type Step } from '@wadi/testkit';
import { median, result, type Benchmark } from '../harness.js';

const ROUNDS = 5;
const SIMULATED_MS = 10 * 60_000;
const NODES = ['n1', 'n2', 'n3', 'n4', 'n5'];

/** A fixed, busy fault schedule: one fault or session step every 2-5 simulated seconds. */
function faultSchedule(seed: number): Schedule {
  const random = new SeededRandom(seed);
  const steps: Step[] = NODES.flatMap((node): Step[] => [{ op: 'start', node }, { op: 'run', ms: 300 }]);
  steps.push({ op: 'run', ms: 5000 }, { op: 'create', node: 'n1', count: 200 });
  let elapsed = 0;
  while (elapsed < SIMULATED_MS) {
    const node = random.pick(NODES);
    const faults: Step[] = [
      { op: 'crash', node },
      { op: 'start', node },
      { op: 'pause', node, ms: 4000 },
      { op: 'partition', side: [node, random.pick(NODES)] },
      { op: 'heal' },
      { op: 'create', node, count: 20 },
      { op: 'move', pick: random.int(1000), to: node },
      { op: 'leave', node },
    ];
    steps.push(random.pick(faults));
    const ms = random.between(2000, 5000);
    steps.push({ op: 'run', ms });
    elapsed += ms;
  }
  return { options: { seed, buckets: 256, seeds: NODES.slice(0, 3), faults: LOSSY_NETWORK }, steps };
}

export const simSpeed: Benchmark = {
  title: 'deterministic simulation',
  names: ['sim.speed'],
  async run() {
    const speeds: number[] = [];
    await runSchedule(faultSchedule(999)); // warm-up: the first run pays for compilation
    for (let round = 0; round < ROUNDS; round++) {
      const schedule = faultSchedule(1000 + round);
      const started = performance.now();
      const run = await runSchedule(schedule);
      const wallSeconds = (performance.now() - started) / 1000;
      if (run.violations.length > 0) throw new Error(`sim.speed: the fault schedule broke an invariant: ${run.violations[0]!.property}: ${run.violations[0]!.detail}`);
      speeds.push(run.simulation.now / 1000 / wallSeconds);
    }
    return [
      result({ name: 'sim.speed', value: median(speeds), unit: 'sim s / s', better: 'higher', target: { on: 'value', op: '>=', threshold: 100 }, samples: speeds }),
    ];
  },
};
