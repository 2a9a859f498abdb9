/**
 * Messages across threads: main to workers, worker to worker, same worker, many at once, and
 * per-sender order.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { threadId } from 'node:worker_threads';
import { startNode, type WadiNode } from '@wadi/node';
import { Counter, Relay } from './fixtures/actors.mjs';
import { ACTORS, idOn, idsOn, noRestarts } from './helpers.js';

let node: WadiNode;

beforeEach(async () => {
  node = await startNode({ workers: 2, actors: [ACTORS] });
});

afterEach(async () => {
  await node.stop();
});

describe('cross-worker calls', () => {
  test('the node loads the fixture types and places ids on both workers', () => {
    expect(node.workers).toBe(2);
    expect([...node.actorTypes].sort()).toEqual(['Compute', 'Counter', 'Crash', 'Expiring', 'Gate', 'Relay', 'Sleepy', 'Slow', 'Ticker']);
    const placements = new Set(Array.from({ length: 50 }, (_, i) => node.locate(Counter, `p-${i}`)));
    expect(placements).toEqual(new Set([0, 1]));
  });

  test('main asks actors on both workers, each hosted on its own worker thread', async () => {
    const a = idOn(node, Counter, 0, 'a');
    const b = idOn(node, Counter, 1, 'b');
    expect(await node.ref(Counter, a).add(5)).toBe(5);
    expect(await node.ref(Counter, a).add(2)).toBe(7);
    expect(await node.ref(Counter, b).add(11)).toBe(11);
    expect(await node.ref(Counter, a).get()).toBe(7);
    expect(await node.ref(Counter, b).get()).toBe(11);
    expect(await node.ref(Counter, b).echo({ nested: [1, 'two', { three: 3 }] })).toEqual({ id: b, x: { nested: [1, 'two', { three: 3 }] } });

    const threadA = await node.ref(Counter, a).thread();
    const threadB = await node.ref(Counter, b).thread();
    expect(threadA).not.toBe(threadId);
    expect(threadB).not.toBe(threadId);
    expect(threadA).not.toBe(threadB);
    // Every id on the same worker runs on the same thread.
    for (const id of idsOn(node, Counter, 0, 5, 'same')) expect(await node.ref(Counter, id).thread()).toBe(threadA);

    const stats = await node.stats();
    expect(stats.workers.map((w) => w.activations)).toEqual([6, 1]);
    expect(stats.main.activations).toBe(0);
  });

  test('an actor asks an actor on the other worker and returns its result', async () => {
    const relay = idOn(node, Relay, 0, 'relay');
    const target = idOn(node, Counter, 1, 'target');
    expect(await node.ref(Relay, relay).addTo(target, 3)).toBe(3);
    expect(await node.ref(Relay, relay).addTo(target, 4)).toBe(7);
    expect(await node.ref(Relay, relay).getFrom(target)).toBe(7);
    // ...and the other way round.
    const relay1 = idOn(node, Relay, 1, 'relay');
    const target0 = idOn(node, Counter, 0, 'target');
    expect(await node.ref(Relay, relay1).addTo(target0, 9)).toBe(9);
    expect(await node.ref(Counter, target0).get()).toBe(9);
    expect(await node.ref(Counter, target).get()).toBe(7);
  });

  test('an actor asks an actor on the same worker', async () => {
    const relay = idOn(node, Relay, 1, 'relay');
    const target = idOn(node, Counter, 1, 'target');
    expect(await node.ref(Relay, relay).addTo(target, 6)).toBe(6);
    expect(await node.ref(Relay, relay).getFrom(target)).toBe(6);
    expect(await node.ref(Relay, relay).thread()).toBe(await node.ref(Counter, target).thread());
  });

  test('a chain of asks hops between the workers and back', async () => {
    const r0 = idsOn(node, Relay, 0, 2, 'hop');
    const r1 = idsOn(node, Relay, 1, 2, 'hop');
    const counter = idOn(node, Counter, 0, 'end');
    await node.ref(Counter, counter).add(42);
    const result = await node.ref(Relay, r0[0]!).hops([r1[0], r0[1], r1[1]], counter);
    expect(result.value).toBe(42);
    const [t0, t1] = [await node.ref(Relay, r0[0]!).thread(), await node.ref(Relay, r1[0]!).thread()];
    expect(result.threads).toEqual([t0, t1, t0, t1]);
  });

  test('5,000 concurrent asks over 50 ids are all answered with the right values', async () => {
    const ids = Array.from({ length: 50 }, (_, i) => `many-${i}`);
    expect(new Set(ids.map((id) => node.locate(Counter, id)))).toEqual(new Set([0, 1]));
    const asks: Promise<{ id: string; x: number }>[] = [];
    for (let i = 0; i < 5000; i++) asks.push(node.ref(Counter, ids[i % 50]!).echo(i));
    const replies = await Promise.all(asks);
    replies.forEach((reply, i) => expect(reply).toEqual({ id: ids[i % 50], x: i }));

    // Concurrent state changes: 100 adds of 1..100 to each id, so each ends at 5050.
    const adds: Promise<number>[] = [];
    for (let n = 1; n <= 100; n++) for (const id of ids) adds.push(node.ref(Counter, id).add(n));
    const sums = await Promise.all(adds);
    expect(sums.length).toBe(5000);
    const finals = await Promise.all(ids.map((id) => node.ref(Counter, id).get()));
    expect(finals).toEqual(ids.map(() => 5050));
    // Each add saw a distinct running total, so no turn was lost or doubled.
    for (const id of ids) {
      const seen = adds.map((_, k) => k).filter((k) => k % 50 === ids.indexOf(id)).map((k) => sums[k]);
      expect(new Set(seen).size).toBe(100);
    }
    expect(await noRestarts(node)).toBe(true);
  });

  test('concurrent actor-to-actor asks across workers are all answered', async () => {
    const relays = [...idsOn(node, Relay, 0, 5, 'cr'), ...idsOn(node, Relay, 1, 5, 'cr')];
    const targets = [...idsOn(node, Counter, 0, 5, 'ct'), ...idsOn(node, Counter, 1, 5, 'ct')];
    const asks: Promise<number>[] = [];
    for (let round = 0; round < 100; round++) {
      relays.forEach((relay, r) => asks.push(node.ref(Relay, relay).addTo(targets[(r + round) % targets.length]!, 1)));
    }
    await Promise.all(asks);
    const totals = await Promise.all(targets.map((t) => node.ref(Counter, t).get()));
    expect(totals).toEqual(targets.map(() => 100));
  });
});

describe('messages too large for a thread link', () => {
  test('fail their own call at once, clearly, and nothing sent beside them is lost', async () => {
    const ref = node.ref(Counter, idOn(node, Counter, 0, 'big'), { timeoutMs: 20_000 });
    const beside = ref.add(1);
    await expect(ref.echo('y'.repeat(65 * 1024 * 1024))).rejects.toMatchObject({ code: 'WADI_INVALID_ARGUMENT', message: expect.stringMatching(/larger than a thread link carries/) });
    expect(await beside).toBe(1);
    // A reply too large fails its caller the same way.
    await expect(ref.big(70)).rejects.toMatchObject({ code: 'WADI_INVALID_ARGUMENT' });
    expect(await ref.add(1)).toBe(2);
  });
});

describe('per-sender order', () => {
  test('tells from main to one actor arrive in order, before a later ask', async () => {
    for (const worker of [0, 1]) {
      const id = idOn(node, Counter, worker, 'order');
      const ref = node.ref(Counter, id);
      const n = 2000;
      for (let i = 1; i <= n; i++) ref.tell.append(i);
      expect(await ref.items()).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    }
  });

  test('asks and tells from main interleave in send order', async () => {
    const ref = node.ref(Counter, idOn(node, Counter, 1, 'mixed'));
    const asks: Promise<unknown>[] = [];
    for (let i = 1; i <= 500; i++) {
      if (i % 2 === 0) asks.push(ref.append(i));
      else ref.tell.append(i);
    }
    await Promise.all(asks);
    expect(await ref.items()).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
  });

  test('tells from an actor on one worker to an actor on the other arrive in order', async () => {
    const relay = idOn(node, Relay, 0, 'sender');
    const target = idOn(node, Counter, 1, 'receiver');
    expect(await node.ref(Relay, relay).appendMany(target, 1000)).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
    const local = idOn(node, Counter, 0, 'receiver');
    expect(await node.ref(Relay, relay).appendMany(local, 300)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
  });
});
