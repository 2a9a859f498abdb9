/**
 * Replacing a crashed worker: late replies to the dead worker never settle its replacement's asks,
 * messages held during the restart reach actors that call other workers, and a stop that begins
 * during a restart ends with every worker stopped (regressions found by these tests).
 */
import { afterEach, expect, test } from 'vitest';
import { once } from 'node:events';
import { startNode, type WadiNode } from '@wadi/node';
import { WorkerCrashed } from '@wadi/core';
import { Counter, Crash, Gate, Relay } from './fixtures/actors.mjs';
import { ACTORS, eventually, idOn, rejection } from './helpers.js';

let node: WadiNode | undefined;
afterEach(async () => { await node?.stop(); });

test('a reply meant for the dead worker does not settle an ask of its replacement', async () => {
  const n = (node = await startNode({ workers: 2, actors: [ACTORS] }));
  const relay = idOn(n, Relay, 0, 'relay');
  const [gateA, gateB, opener] = [idOn(n, Gate, 1, 'ga'), idOn(n, Gate, 1, 'gb'), idOn(n, Gate, 1, 'op')];
  // Worker 0's first remote ask (request id 1): held open on worker 1.
  const first = n.ref(Relay, relay).waitAt(gateA, 'first').catch((e) => e);
  await eventually(() => n.ref(Gate, opener).waiting(), (w) => w.includes('first'));
  const restarted = once(n.events, 'worker-restarted');
  await n.ref(Crash, idOn(n, Crash, 0, 'crash')).exitSoon(1);
  expect(await first).toBeInstanceOf(WorkerCrashed);
  await restarted;
  // The replacement worker 0's first remote ask: request id 1 again.
  const second = n.ref(Relay, relay).waitAt(gateB, 'second');
  await eventually(() => n.ref(Gate, opener).waiting(), (w) => w.includes('second'));
  // The old turn on worker 1 finishes now; its reply goes to "worker 0, request 1".
  expect(await n.ref(Gate, opener).open('first', 'reply meant for the dead worker')).toBe(true);
  await new Promise((r) => setTimeout(r, 200));
  expect(await n.ref(Gate, opener).open('second', 'reply to the second ask')).toBe(true);
  expect(await second).toBe('reply to the second ask');
});

test('asks held for a restarting worker that call another worker succeed after the restart', async () => {
  const n = (node = await startNode({ workers: 2, actors: [ACTORS] }));
  const relay = idOn(n, Relay, 0, 'relay');
  const target = idOn(n, Counter, 1, 'target');
  const crashed = once(n.events, 'worker-crashed');
  await n.ref(Crash, idOn(n, Crash, 0, 'crash')).exitSoon(1);
  await crashed;
  // Worker 0 is being replaced: these are held, then delivered to the new worker 0.
  const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => n.ref(Relay, relay).echoAt(target, i)));
  const errors = results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
  expect(errors).toEqual([]);
});

test('a stop that begins while a worker is being replaced leaves every worker stopped', async () => {
  const n = (node = await startNode({ workers: 2, actors: [ACTORS] }));
  const events: string[] = [];
  for (const e of ['worker-crashed', 'worker-restarted', 'worker-failed']) n.events.on(e, () => events.push(e));
  let stopping: Promise<void> | undefined;
  n.events.once('worker-crashed', () => {
    stopping = n.stop();
  });
  const crashed = once(n.events, 'worker-crashed');
  await n.ref(Crash, idOn(n, Crash, 0, 'c')).exitSoon(1);
  await crashed;
  await stopping;
  // The aborted restart finishes after stop() resolved: give it a moment to show.
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(events).toEqual(['worker-crashed']);
  expect((await n.stats()).workers.map((w) => w.state)).toEqual(['stopped', 'stopped']);
});
