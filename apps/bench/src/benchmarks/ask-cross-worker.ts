/**
 * ask.crossWorker.*: asks from a node's main thread to actors on a worker thread, each measured
 * alternately with the raw postMessage echo it is compared to (same window, same thread count).
 * The node runs one worker, as the echo does, so both use the same two threads.
 * Issue #2 targets: pipelined ratio >= 1.0 (higher better); latency ratio <= 1.5 (lower better).
 */
import { startNode } from '@wadi/node';
import { DEFAULT_ECHO_WINDOW, RAW_POSTMESSAGE_LATENCY, RAW_POSTMESSAGE_PIPELINED, withEchoWorker } from '../baselines.js';
import { measureAll, result, type Benchmark, type Op } from '../harness.js';
import { Counter } from './counter.js';

const ACTORS = 16;

export const askCrossWorker: Benchmark = {
  title: 'ask across workers',
  names: ['ask.crossWorker.pipelined', 'ask.crossWorker.latency'],
  run: () =>
    withEchoWorker(async (echo) => {
      const node = await startNode({ workers: 1, actors: [new URL('./counter.js', import.meta.url)] });
      try {
        const refs = Array.from({ length: ACTORS }, (_, i) => node.ref(Counter, `bench-${i}`));
        const pipelinedAsks: Op = (n) =>
          new Promise<void>((resolve, reject) => {
            if (n <= 0) return resolve();
            let sent = 0;
            let received = 0;
            const next = (): void => {
              const ref = refs[sent % ACTORS]!;
              sent++;
              ref.add(1).then(onReply, reject);
            };
            const onReply = (): void => {
              received++;
              if (sent < n) next();
              else if (received === n) resolve();
            };
            while (sent < Math.min(DEFAULT_ECHO_WINDOW, n)) next();
          });
        const sequentialAsks: Op = async (n) => {
          const ref = refs[0]!;
          for (let i = 0; i < n; i++) await ref.add(1);
        };
        const pipelined = await measureAll(
          { asks: pipelinedAsks, echo: echo.pipelined(DEFAULT_ECHO_WINDOW) },
          { warmupMs: 800, roundMs: 300, rounds: 7 },
        );
        const latency = await measureAll({ asks: sequentialAsks, echo: echo.roundTrips() }, { warmupMs: 500, roundMs: 250, rounds: 7 });
        return [
          result({
            name: 'ask.crossWorker.pipelined',
            value: pipelined.asks.opsPerSec,
            unit: 'calls/s',
            better: 'higher',
            baseline: { name: RAW_POSTMESSAGE_PIPELINED, value: pipelined.echo.opsPerSec },
            target: { on: 'ratio', op: '>=', threshold: 1.0 },
            samples: pipelined.asks.samples,
          }),
          result({
            name: 'ask.crossWorker.latency',
            value: latency.asks.usPerOp,
            unit: 'us',
            better: 'lower',
            baseline: { name: RAW_POSTMESSAGE_LATENCY, value: latency.echo.usPerOp },
            target: { on: 'ratio', op: '<=', threshold: 1.5 },
            samples: latency.asks.samples.map((perSec) => 1e6 / perSec),
          }),
        ];
      } finally {
        await node.stop();
      }
    }),
};
