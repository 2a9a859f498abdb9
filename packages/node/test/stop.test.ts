/**
 * Graceful stop: calls accepted before stop() finish with their values, calls after it are
 * refused with Stopped, and stop() resolves (bounded even when a turn never ends).
 */
import { afterEach, expect, test } from 'vitest';
import { startNode, type WadiNode } from '@wadi/node';
import { Stopped } from '@wadi/core';
import { Compute, Counter, Gate, Relay, Slow } from './fixtures/actors.mjs';
import { ACTORS, eventually, idOn, idsOn, rejection } from './helpers.js';

let node: WadiNode | undefined;

afterEach(async () => {
  await node?.stop();
  node = undefined;
});

test('stop drains 1,000 accepted asks, refuses later ones with Stopped, and resolves', async () => {
  const n = (node = await startNode({ workers: 2, actors: [ACTORS] }));
  const ids = Array.from({ length: 40 }, (_, i) => `drain-${i}`);
  expect(new Set(ids.map((id) => n.locate(Counter, id)))).toEqual(new Set([0, 1]));
  const relay0 = idOn(n, Relay, 0, 'relay');
  const relay1 = idOn(n, Relay, 1, 'relay');
  const slow = [idOn(n, Slow, 0, 'slow'), idOn(n, Slow, 1, 'slow')];

  type Accepted = { promise: Promise<unknown>; expected: unknown };
  const accepted: Accepted[] = [];
  for (let i = 0; i < 1000; i++) {
    const id = ids[i % ids.length]!;
    switch (i % 10) {
      case 0:
        accepted.push({ promise: n.ref(Relay, i % 20 === 0 ? relay0 : relay1).echoAt(id, i), expected: { id, x: i } });
        break;
      case 1:
        accepted.push({ promise: n.ref(Compute, 'pool').square(i), expected: i * i });
        break;
      case 2:
        accepted.push({ promise: n.ref(Relay, i % 20 === 2 ? relay0 : relay1).callStateless(i), expected: i * i });
        break;
      default:
        accepted.push({ promise: n.ref(Counter, id).echo(i), expected: { id, x: i } });
    }
  }
  // Turns that take a while are accepted too (one running, one queued per actor).
  for (const id of slow) accepted.push({ promise: n.ref(Slow, id).block(100), expected: 100 }, { promise: n.ref(Slow, id).block(100), expected: 100 });
  const outcomes = Promise.allSettled(accepted.map((a) => a.promise));

  const stopping = n.stop();
  expect(n.stop()).toBe(stopping);

  const late = [n.ref(Counter, ids[0]!).echo('late'), n.ref(Compute, 'pool').square(2), n.ref(Relay, relay1).echoAt(ids[1]!, 'late')];
  for (const error of await Promise.all(late.map(rejection))) {
    expect(error).toBeInstanceOf(Stopped);
    expect(error.code).toBe('WADI_STOPPED');
  }
  expect(() => n.ref(Counter, ids[0]!).tell.append(1)).toThrow(Stopped);

  await stopping;
  const settled = await outcomes;
  settled.forEach((outcome, i) => {
    expect(outcome.status, `ask ${i}: ${outcome.status === 'rejected' ? String(outcome.reason) : ''}`).toBe('fulfilled');
    if (outcome.status === 'fulfilled') expect(outcome.value).toEqual(accepted[i]!.expected);
  });
  const stats = await n.stats();
  expect(stats.workers.map((w) => [w.state, w.restarts])).toEqual([
    ['stopped', 0],
    ['stopped', 0],
  ]);
  expect(stats.main.pendingAsks).toBe(0);
});

test('tells accepted before stop are processed before the workers end', async () => {
  const n = (node = await startNode({ workers: 2, actors: [ACTORS] }));
  const [on0, on1] = [idOn(n, Counter, 0, 'tells'), idOn(n, Counter, 1, 'tells')];
  for (let i = 1; i <= 500; i++) {
    n.ref(Counter, on0).tell.append(i);
    n.ref(Counter, on1).tell.append(i);
  }
  const lastAsks = [n.ref(Counter, on0).items(), n.ref(Counter, on1).items()];
  await n.stop();
  const expected = Array.from({ length: 500 }, (_, i) => i + 1);
  expect(await Promise.all(lastAsks)).toEqual([expected, expected]);
});

test('stop is bounded by its timeout when an accepted turn never ends', async () => {
  const n = (node = await startNode({ workers: 2, actors: [ACTORS] }));
  const [gate, opener] = idsOn(n, Gate, 1, 2, 'stuck');
  const stuck = n.ref(Gate, gate!).wait('forever');
  const stuckOutcome = rejection(stuck);
  await eventually(() => n.ref(Gate, opener!).waiting(), (labels) => labels.includes('forever'));
  expect(await n.ref(Counter, idOn(n, Counter, 0, 'fine')).add(1)).toBe(1);
  await n.stop({ timeoutMs: 300 });
  const error = await stuckOutcome;
  expect(error).toBeInstanceOf(Stopped);
  expect(error.code).toBe('WADI_STOPPED');
});

test('a node with no workers busy stops at once and can be stopped again', async () => {
  const n = (node = await startNode({ workers: 1, actors: [ACTORS] }));
  expect(await n.ref(Counter, 'only').add(2)).toBe(2);
  await n.stop();
  await n.stop();
  expect((await n.stats()).workers.map((w) => w.state)).toEqual(['stopped']);
});
