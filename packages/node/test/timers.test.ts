/**
 * Timers and idle deactivation inside worker threads.
 */
import { afterEach, beforeEach, expect, test } from 'vitest';
import { threadId } from 'node:worker_threads';
import { startNode, type WadiNode } from '@wadi/node';
import { Sleepy, Ticker } from './fixtures/actors.mjs';
import { ACTORS, eventually, idOn } from './helpers.js';

let node: WadiNode;

beforeEach(async () => {
  node = await startNode({ workers: 2, actors: [ACTORS] });
});

afterEach(async () => {
  await node.stop();
});

test('timers.after delivers its tick to the actor inside its worker', async () => {
  for (const worker of [0, 1]) {
    const ref = node.ref(Ticker, idOn(node, Ticker, worker, 'ticker'));
    const hostThread = await ref.start(30, `tick-on-${worker}`);
    expect(hostThread).not.toBe(threadId);
    const state = await eventually(() => ref.read(), (s) => s.ticks >= 1);
    expect(state).toEqual({ ticks: 1, labels: [`tick-on-${worker}`], tickThreads: [hostThread] });
  }
  // Several timers on one actor each fire once, with their own arguments.
  const ref = node.ref(Ticker, idOn(node, Ticker, 1, 'multi'));
  await Promise.all([ref.start(10, 'a'), ref.start(20, 'b'), ref.start(30, 'c')]);
  const state = await eventually(() => ref.read(), (s) => s.ticks >= 3);
  expect(state.ticks).toBe(3);
  expect([...state.labels].sort()).toEqual(['a', 'b', 'c']);
});

test('an idle actor is deactivated on its worker and reactivates with its state', async () => {
  const ids = [idOn(node, Sleepy, 0, 'sleepy'), idOn(node, Sleepy, 1, 'sleepy')];
  await node.ref(Sleepy, ids[0]!).set(41);
  await node.ref(Sleepy, ids[1]!).set(42);

  const parked = await eventually(
    () => node.stats(),
    (stats) => stats.workers.every((w) => w.parked === 1),
  );
  for (const w of parked.workers) {
    expect(w.activations).toBe(0);
    expect(w.deactivated).toBe(1);
    expect(w.activated).toBe(1);
  }

  expect(await node.ref(Sleepy, ids[0]!).get()).toBe(41);
  expect(await node.ref(Sleepy, ids[1]!).get()).toBe(42);
  const after = await node.stats();
  for (const w of after.workers) {
    expect(w.parked).toBe(0);
    expect(w.activations).toBe(1);
    expect(w.activated).toBe(2);
  }

  // It goes idle again, and comes back again, with the last state.
  await node.ref(Sleepy, ids[1]!).set(43);
  await eventually(() => node.stats(), (stats) => stats.workers[1]!.deactivated === 2);
  expect(await node.ref(Sleepy, ids[1]!).get()).toBe(43);
});
