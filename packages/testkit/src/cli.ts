#!/usr/bin/env node
/**
 * `wadi-sim`: replays a schedule a failing property printed, or soaks the cluster protocol with
 * many more random schedules than CI runs.
 *
 *   wadi-sim replay '<schedule json>' | <file.json>   [--trace N]
 *   wadi-sim soak [--runs N] [--minutes M] [--seed S] [--steps N] [--lossy] [--no-calls] [--no-shortcut]
 *   wadi-sim soak --sessions [--runs N] ... [--lossy] [--no-pauses] [--no-rejoins] [--no-shortcut]
 *
 * The fault schedules call and migrate real sessions too (`--no-calls`: only the protocol).
 * `--sessions` soaks the session properties instead (calls, migrations, joins, graceful leaves,
 * short pauses: no message lost or applied twice); `--lossy` then loses, duplicates and reorders
 * protocol messages but resets no connection. `--no-shortcut`: workers route calls to the
 * sessions they host through their router (see `SimulationOptions.localShortcut`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { LOSSY_NETWORK, LOSSY_PROTOCOL, scheduleArbitrary, sessionScheduleArbitrary } from './arbitraries.js';
import { describeFailure, runSchedule } from './run.js';
import { parseSchedule, type Schedule } from './schedule.js';

function flag(args: string[], name: string): string | undefined {
  const index = args.indexOf(`--${name}`);
  return index < 0 ? undefined : args[index + 1];
}

function integerFlag(args: string[], name: string, fallback: number): number {
  const raw = flag(args, name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) throw new TypeError(`--${name} must be a non-negative integer, not '${raw}'`);
  return value;
}

async function replay(args: string[]): Promise<number> {
  const source = args.find((arg, index) => !arg.startsWith('--') && (index === 0 || !args[index - 1]!.startsWith('--')));
  if (source === undefined) throw new TypeError("replay needs a schedule: '<json>' or a file");
  const text = source.trim().startsWith('{') ? source : readFileSync(source, 'utf8');
  const schedule = parseSchedule(JSON.parse(text));
  const result = await runSchedule(schedule);
  console.log(result.simulation.trace.format(integerFlag(args, 'trace', 200)));
  console.log(`\ndigest ${result.digest}; ${result.simulation.now / 1000} simulated seconds; settled ${result.settledAfterMs === undefined ? 'never' : `after ${result.settledAfterMs} ms`}`);
  if (result.sessions !== undefined) console.log(`sessions: ${JSON.stringify(result.sessions)}`);
  if (result.violations.length === 0) {
    console.log('no violations');
    return 0;
  }
  console.log(describeFailure(schedule, result));
  return 1;
}

async function soak(args: string[]): Promise<number> {
  const runs = integerFlag(args, 'runs', 2000);
  const minutes = integerFlag(args, 'minutes', 0);
  const seed = integerFlag(args, 'seed', Date.now() % 0x7fffffff);
  const maxSteps = integerFlag(args, 'steps', 60);
  const lossy = args.includes('--lossy');
  const sessions = args.includes('--sessions');
  const options = args.includes('--no-shortcut') ? { options: { localShortcut: false } } : {};
  const arbitrary = sessions
    ? sessionScheduleArbitrary({ maxSteps, ...options, ...(lossy ? { faults: LOSSY_PROTOCOL } : {}), pauses: !args.includes('--no-pauses'), rejoins: !args.includes('--no-rejoins') })
    : scheduleArbitrary({ maxSteps, ...options, ...(lossy ? { faults: LOSSY_NETWORK } : {}), calls: !args.includes('--no-calls') });
  const started = Date.now();
  let failure: Schedule | undefined;
  console.log(`soak: up to ${runs} ${sessions ? 'session' : 'fault'} schedules${minutes > 0 ? ` or ${minutes} min` : ''}, fast-check seed ${seed}`);
  const details = await fc.check(
    fc.asyncProperty(arbitrary, async (schedule) => {
      const result = await runSchedule(schedule);
      if (result.violations.length > 0) {
        failure = schedule;
        return false;
      }
      return true;
    }),
    { numRuns: runs, seed, ...(minutes > 0 ? { interruptAfterTimeLimit: minutes * 60_000, markInterruptAsFailure: false } : {}) },
  );
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  if (!details.failed) {
    console.log(`soak: ${details.numRuns} schedules passed in ${seconds} s`);
    return 0;
  }
  const shrunk = (details.counterexample?.[0] as Schedule | undefined) ?? failure!;
  const file = join(tmpdir(), `wadi-sim-${shrunk.options.seed}.json`);
  writeFileSync(file, JSON.stringify(shrunk, null, 1));
  console.log(describeFailure(shrunk, await runSchedule(shrunk)));
  console.log(`\nsoak: failed after ${details.numRuns} schedules in ${seconds} s; schedule saved to ${file} (pnpm sim:replay ${file})`);
  return 1;
}

const [command, ...rest] = process.argv.slice(2);
try {
  if (command === 'replay') process.exitCode = await replay(rest);
  else if (command === 'soak') process.exitCode = await soak(rest);
  else {
    console.log(command === undefined || command === '--help' ? '' : `unknown command '${command}'\n`);
    console.log("usage: wadi-sim replay '<schedule json>' | <file.json> [--trace N]\n       wadi-sim soak [--sessions] [--runs N] [--minutes M] [--seed S] [--steps N] [--lossy] [--no-calls] [--no-pauses] [--no-rejoins] [--no-shortcut]");
    process.exitCode = command === undefined || command === '--help' ? 0 : 2;
  }
} catch (error) {
  console.error(`wadi-sim: ${(error as Error).message}`);
  process.exitCode = 2;
}
