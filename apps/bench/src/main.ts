/**
 * `pnpm bench`: runs the benchmarks in order, prints a table and writes `bench-results.json` at
 * the repository root.
 *
 * To add a benchmark, write a module under `benchmarks/` exporting a `Benchmark` (see
 * harness.ts; measure figures next to their raw baseline with `measureAll`, baselines live in
 * baselines.ts) and append it to `benchmarks` below.
 *
 * Arguments, if any, are filters: only benchmarks whose title or row names contain one of them
 * run (e.g. `node apps/bench/dist/main.js memory`).
 */
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { askCrossNode } from './benchmarks/ask-cross-node.js';
import { askCrossWorker } from './benchmarks/ask-cross-worker.js';
import { storeActivate } from './benchmarks/store-activate.js';
import { askInThread } from './benchmarks/ask-in-thread.js';
import { clusterMembership } from './benchmarks/cluster.js';
import { failover } from './benchmarks/failover.js';
import { httpSession } from './benchmarks/http-session.js';
import { replication } from './benchmarks/replication.js';
import { sessionEvacuate } from './benchmarks/session-evacuate.js';
import { sessionMigrate } from './benchmarks/session-migrate.js';
import { simSpeed } from './benchmarks/sim-speed.js';
import { storeWrites } from './benchmarks/store.js';
import { memoryPerActor } from './benchmarks/memory-per-actor.js';
import { rawPostMessage } from './benchmarks/raw-post-message.js';
import { formatTable, writeResults, type BenchResult, type Benchmark } from './harness.js';

const benchmarks: Benchmark[] = [askInThread, askCrossWorker, memoryPerActor, rawPostMessage, clusterMembership, simSpeed, askCrossNode, sessionMigrate, sessionEvacuate, storeWrites, storeActivate, httpSession, replication, failover];

const RESULTS_FILE = new URL('../../../bench-results.json', import.meta.url);

async function main(): Promise<void> {
  const filters = process.argv.slice(2);
  const selected = benchmarks.filter(
    (bench) => filters.length === 0 || filters.some((f) => bench.title.includes(f) || bench.names.some((name) => name.includes(f))),
  );
  if (selected.length === 0) {
    console.error(`no benchmark matches ${filters.join(', ')}; known: ${benchmarks.flatMap((b) => b.names).join(', ')}`);
    process.exitCode = 2;
    return;
  }
  const cpu = cpus()[0]?.model ?? 'unknown cpu';
  console.log(`wadi bench: node ${process.version}, ${process.platform}/${process.arch}, ${cpus().length} x ${cpu}`);
  const rows: BenchResult[] = [];
  const failed: string[] = [];
  const started = performance.now();
  for (const bench of selected) {
    const t0 = performance.now();
    process.stderr.write(`running ${bench.title}...`);
    try {
      rows.push(...(await bench.run()));
      process.stderr.write(` ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    } catch (error) {
      process.stderr.write(' failed\n');
      console.error(error);
      failed.push(bench.title);
    }
  }
  console.log();
  console.log(formatTable(rows));
  console.log();
  writeResults(RESULTS_FILE, rows);
  console.log(`${rows.length} results written to ${fileURLToPath(RESULTS_FILE)} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  if (failed.length > 0) {
    console.error(`failed: ${failed.join(', ')}`);
    process.exitCode = 1;
  }
}

await main();
