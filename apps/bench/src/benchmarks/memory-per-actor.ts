/**
 * memory.perActor: heap bytes per active actor with a small state, 100k actors in one
 * ActorSystem. Measured in child processes started with --expose-gc (median of a few), so the
 * bench's own heap does not blur it. Issue #2 target: <= 1024 bytes.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { median, result, type Benchmark } from '../harness.js';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('../children/memory-per-actor.js', import.meta.url));
const ACTORS = 100_000;
const ROUNDS = 3;

interface ChildReport {
  count: number;
  activations: number;
  deltaBytes: number;
  bytesPerActor: number;
}

export async function measureBytesPerActor(actors = ACTORS): Promise<number> {
  const { stdout } = await run(process.execPath, ['--expose-gc', CHILD, String(actors)], { timeout: 120_000 });
  const line = stdout.trim().split('\n').at(-1) ?? '';
  const report = JSON.parse(line) as ChildReport;
  return report.bytesPerActor;
}

export const memoryPerActor: Benchmark = {
  title: 'memory per actor',
  names: ['memory.perActor'],
  async run() {
    const samples: number[] = [];
    for (let i = 0; i < ROUNDS; i++) samples.push(await measureBytesPerActor());
    return [
      result({
        name: 'memory.perActor',
        value: median(samples),
        unit: 'bytes',
        better: 'lower',
        target: { on: 'value', op: '<=', threshold: 1024 },
        samples,
      }),
    ];
  },
};
