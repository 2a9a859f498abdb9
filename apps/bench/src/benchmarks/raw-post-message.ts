/**
 * The raw postMessage floors, reported on their own (no baseline, no target): the figures that
 * cross-worker asks will be compared to.
 */
import { RAW_POSTMESSAGE_LATENCY, RAW_POSTMESSAGE_PIPELINED, DEFAULT_ECHO_WINDOW, withEchoWorker } from '../baselines.js';
import { measure, result, type Benchmark } from '../harness.js';

export const rawPostMessage: Benchmark = {
  title: 'raw postMessage',
  names: [RAW_POSTMESSAGE_PIPELINED, RAW_POSTMESSAGE_LATENCY],
  run: () =>
    withEchoWorker(async (echo) => {
      const pipelined = await measure(echo.pipelined(DEFAULT_ECHO_WINDOW), { warmupMs: 500, roundMs: 250, rounds: 7 });
      const latency = await measure(echo.roundTrips(), { warmupMs: 300, roundMs: 200, rounds: 7 });
      return [
        result({ name: RAW_POSTMESSAGE_PIPELINED, value: pipelined.opsPerSec, unit: 'msgs/s', better: 'higher', samples: pipelined.samples }),
        result({ name: RAW_POSTMESSAGE_LATENCY, value: latency.usPerOp, unit: 'us', better: 'lower', samples: latency.samples.map((perSec) => 1e6 / perSec) }),
      ];
    }),
};
