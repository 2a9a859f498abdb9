/**
 * Child process for memory.perActor (run with --expose-gc): activates `count` counter actors in
 * one ActorSystem and prints, as one JSON line, the heap growth per activation (heapUsed +
 * arrayBuffers after a full GC, minus the same before).
 *
 * usage: node --expose-gc memory-per-actor.js [count]
 */
import { ActorSystem } from '@wadi/core';
import { Counter } from '../benchmarks/counter.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('memory-per-actor needs --expose-gc');
const fullGc: () => void = gc;

const count = Number(process.argv[2] ?? 100_000);
if (!(Number.isInteger(count) && count > 0)) throw new Error(`bad actor count: ${process.argv[2]}`);

async function activate(system: ActorSystem, n: number, prefix: string): Promise<void> {
  for (let i = 0; i < n; i++) await system.ref(Counter, `${prefix}${i}`).add(1);
}

function heapBytes(): number {
  fullGc();
  fullGc();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.arrayBuffers;
}

// Warm the code paths up in a throwaway system, so compiled code is not counted as actor state.
const warm = new ActorSystem();
warm.registry.add(Counter);
await activate(warm, 20_000, 'warm-');
warm.stop();

const system = new ActorSystem();
system.registry.add(Counter);
const before = heapBytes();
await activate(system, count, 'user-');
const after = heapBytes();

const activations = system.stats().activations;
if (activations !== count) throw new Error(`expected ${count} activations, found ${activations}`);
process.stdout.write(`${JSON.stringify({ count, activations, deltaBytes: after - before, bytesPerActor: (after - before) / count })}\n`);
system.stop();
