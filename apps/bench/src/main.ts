/**
 * `pnpm bench`: runs the benchmarks in order, prints a table and writes `bench-results.json` at
 * the repository root.
 *
 * Each benchmark runs in a process of its own (this file, forked with `--one <title>`), as JMH
 * forks a JVM per benchmark: several benchmarks run wadi's code in this process, and what one
 * leaves behind (the JIT's type feedback above all, and the heap) colors the next one's figure.
 * Measured: `store.activate` read 0.29 after `ask.crossNode` in one process, against 0.32-0.35
 * on its own; its raw baseline, which shares little code with the other benchmarks, did not move.
 *
 * To add a benchmark, write a module under `benchmarks/` exporting a `Benchmark` (see
 * harness.ts; measure figures next to their raw baseline with `measureAll`, baselines live in
 * baselines.ts) and append it to `benchmarks` below.
 *
 * Arguments, if any, are filters: only benchmarks whose title or row names contain one of them
 * run (e.g. `node apps/bench/dist/main.js memory`).
 */
import { fork } from 'node:child_process';
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

/** How a benchmark's own process reports back. */
type ChildReport = { rows: BenchResult[] } | { error: string };

/** Runs one benchmark in a fresh process (see the module comment); its results, or throws why it failed. */
function runForked(bench: Benchmark): Promise<BenchResult[]> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--one', bench.title], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let report: ChildReport | undefined;
    child.on('message', (message: ChildReport) => (report = message));
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      if (report !== undefined && 'rows' in report) resolve(report.rows);
      else reject(new Error(report?.error ?? `the benchmark's process exited (${signal ?? code}) without a result`));
    });
  });
}

/** The `--one <title>` side: runs that benchmark here and sends its results to the parent. */
async function runOne(title: string): Promise<void> {
  const bench = benchmarks.find((candidate) => candidate.title === title);
  let report: ChildReport;
  try {
    if (bench === undefined) throw new Error(`no benchmark is titled '${title}'`);
    report = { rows: await bench.run() };
  } catch (error) {
    report = { error: error instanceof Error ? (error.stack ?? error.message) : String(error) };
  }
  await new Promise<void>((resolve) => process.send!(report, () => resolve()));
  // Benchmarks close what they start; a straggling handle must not keep the run waiting.
  process.exit(0);
}

async function main(): Promise<void> {
  if (process.argv[2] === '--one' && process.send !== undefined) return runOne(process.argv[3] ?? '');
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
      rows.push(...(await runForked(bench)));
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
