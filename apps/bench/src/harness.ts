/**
 * The bench harness: timing (warm-up, calibrated rounds, medians), result rows, the table and
 * `bench-results.json`.
 *
 * Timing model: an `Op` performs `n` operations per call. `measure()` warms every op up, sizes
 * `n` so one call lasts about `roundMs` (or uses a fixed `count`), then runs the rounds of all
 * ops interleaved (A B A B ...), so a figure and its baseline see the same machine conditions.
 * Each op's result is the median over its rounds.
 */
import { writeFileSync } from 'node:fs';

/** Performs `n` operations. Sync or async; for async ops the promise must settle when all are done. */
export type Op = (n: number) => void | Promise<void>;

export interface MeasureOptions {
  /** Time spent running each op before the measured rounds (default 300 ms). */
  warmupMs?: number;
  /** Target duration of one round, used to size `n` (default 200 ms). Ignored when `count` is set. */
  roundMs?: number;
  /** Operations per round, instead of sizing from `roundMs`. */
  count?: number;
  /** Measured rounds per op; the median is reported (default 7). */
  rounds?: number;
}

export interface Timing {
  /** Operations per round. */
  n: number;
  /** Median operations per second over the rounds. */
  opsPerSec: number;
  /** Median microseconds per operation over the rounds. */
  usPerOp: number;
  /** Operations per second of each round, in run order. */
  samples: number[];
}

/** Times one op: see `measureAll` for several ops measured side by side. */
export async function measure(op: Op, options: MeasureOptions = {}): Promise<Timing> {
  return (await measureAll({ op }, options)).op;
}

/**
 * Times several ops with interleaved rounds. Use it to measure a figure right next to its raw
 * baseline: `measureAll({ figure, baseline })`.
 */
export async function measureAll<K extends string>(ops: Record<K, Op>, options: MeasureOptions = {}): Promise<Record<K, Timing>> {
  const warmupMs = options.warmupMs ?? 300;
  const roundMs = options.roundMs ?? 200;
  const rounds = options.rounds ?? 7;
  const names = Object.keys(ops) as K[];
  const sizes = {} as Record<K, number>;
  for (const name of names) sizes[name] = options.count ?? (await calibrate(ops[name], warmupMs, roundMs));
  if (options.count !== undefined) {
    for (const name of names) await warmUp(ops[name], warmupMs, options.count);
  }
  const samples = {} as Record<K, number[]>;
  for (const name of names) samples[name] = [];
  for (let round = 0; round < rounds; round++) {
    for (const name of names) {
      const ms = await timeOnce(ops[name], sizes[name]);
      samples[name].push((sizes[name] * 1000) / Math.max(ms, 1e-6));
    }
  }
  const result = {} as Record<K, Timing>;
  for (const name of names) {
    const opsPerSec = median(samples[name]);
    result[name] = { n: sizes[name], opsPerSec, usPerOp: 1e6 / opsPerSec, samples: samples[name] };
  }
  return result;
}

/** Milliseconds one call of `op(n)` takes. */
export async function timeOnce(op: Op, n: number): Promise<number> {
  const start = performance.now();
  await op(n);
  return performance.now() - start;
}

/** Warms `op` up for about `warmupMs`, growing `n` as it goes, and returns `n` for a `roundMs` round. */
async function calibrate(op: Op, warmupMs: number, roundMs: number): Promise<number> {
  const deadline = performance.now() + warmupMs;
  let n = 1;
  let ms = await timeOnce(op, n);
  // Grow until a call is long enough to time reliably, then keep running until the warm-up ends.
  while (ms < 10 || performance.now() < deadline) {
    if (ms < 10) n *= 2;
    ms = await timeOnce(op, n);
  }
  return Math.max(1, Math.round((n * roundMs) / Math.max(ms, 1e-3)));
}

async function warmUp(op: Op, warmupMs: number, n: number): Promise<void> {
  const deadline = performance.now() + warmupMs;
  do await op(n);
  while (performance.now() < deadline);
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

// Results

export type Better = 'higher' | 'lower';

/** An issue's target for a row: `on` says whether it applies to the value or to the ratio. */
export interface Target {
  on: 'value' | 'ratio';
  op: '>=' | '<=';
  threshold: number;
}

/** One row. The first six fields are the `bench-results.json` contract; the rest feed the table. */
export interface BenchResult {
  name: string;
  value: number;
  unit: string;
  /** Name of the raw figure measured in the same run that `value` is compared to. */
  baseline: string | null;
  baselineValue: number | null;
  /** value / baselineValue. */
  ratio: number | null;
  better: Better;
  target: Target | null;
  /** The per-round figures `value` is the median of, in `unit` (shown as a spread in the table). */
  samples: number[] | null;
}

export interface ResultInput {
  name: string;
  value: number;
  unit: string;
  better: Better;
  baseline?: { name: string; value: number };
  target?: Target;
  samples?: number[];
}

export function result(input: ResultInput): BenchResult {
  const baseline = input.baseline;
  return {
    name: input.name,
    value: input.value,
    unit: input.unit,
    baseline: baseline?.name ?? null,
    baselineValue: baseline?.value ?? null,
    ratio: baseline === undefined ? null : input.value / baseline.value,
    better: input.better,
    target: input.target ?? null,
    samples: input.samples ?? null,
  };
}

/** true / false when the row has a target, null when it has none (or lacks the figure it names). */
export function targetMet(row: BenchResult): boolean | null {
  const target = row.target;
  if (target === null) return null;
  const actual = target.on === 'ratio' ? row.ratio : row.value;
  if (actual === null || !Number.isFinite(actual)) return null;
  return target.op === '>=' ? actual >= target.threshold : actual <= target.threshold;
}

/** A module of benchmarks: `main.ts` runs them in order. */
export interface Benchmark {
  /** Short label for progress output and for filtering from the command line. */
  readonly title: string;
  /** Names of the rows `run()` returns. */
  readonly names: readonly string[];
  run(): Promise<BenchResult[]>;
}

// Output

export function formatNumber(value: number | null): string {
  if (value === null) return '-';
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1000) return Math.round(value).toLocaleString('en-US');
  if (abs >= 100) return value.toFixed(1);
  if (abs >= 1) return value.toFixed(2);
  return value.toPrecision(3);
}

/** (max - min) / median of the rounds, as a percentage: how noisy the figure was. */
function describeSpread(row: BenchResult): string {
  const samples = row.samples;
  if (samples === null || samples.length < 2) return '-';
  const spread = (Math.max(...samples) - Math.min(...samples)) / Math.abs(median(samples));
  return `${(spread * 100).toFixed(0)}%`;
}

function describeTarget(row: BenchResult): string {
  const target = row.target;
  if (target === null) return '-';
  return target.on === 'ratio' ? `ratio ${target.op} ${target.threshold}` : `${target.op} ${formatNumber(target.threshold)} ${row.unit}`;
}

export function formatTable(rows: readonly BenchResult[]): string {
  const header = ['benchmark', 'value', 'unit', 'spread', 'better', 'baseline', 'baseline value', 'ratio', 'target', 'met'];
  const right = new Set([1, 3, 6, 7]);
  const cells = rows.map((row) => {
    const met = targetMet(row);
    return [
      row.name,
      formatNumber(row.value),
      row.unit,
      describeSpread(row),
      row.better,
      row.baseline ?? '-',
      formatNumber(row.baselineValue),
      row.ratio === null ? '-' : row.ratio.toFixed(3),
      describeTarget(row),
      met === null ? '-' : met ? 'yes' : 'NO',
    ];
  });
  const widths = header.map((title, i) => Math.max(title.length, ...cells.map((line) => line[i]!.length)));
  const line = (values: string[]): string =>
    values.map((value, i) => (right.has(i) ? value.padStart(widths[i]!) : value.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)].join('\n');
}

/** Writes the JSON contract: an array of `{ name, value, unit, baseline, baselineValue, ratio }`. */
export function writeResults(path: string | URL, rows: readonly BenchResult[]): void {
  const json = rows.map(({ name, value, unit, baseline, baselineValue, ratio }) => ({ name, value, unit, baseline, baselineValue, ratio }));
  writeFileSync(path, `${JSON.stringify(json, null, 2)}\n`);
}
