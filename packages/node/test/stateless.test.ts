/**
 * Stateless actor types run on the pool, away from the session workers: results are right,
 * errors keep name and code, many calls at once succeed, from main and from inside actors.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { threadId } from 'node:worker_threads';
import { startNode, type WadiNode } from '@wadi/node';
import { NotSerializable, UnknownMethod, defineActor } from '@wadi/core';
import { Compute, Counter, Relay } from './fixtures/actors.mjs';
import { ACTORS, idOn, noRestarts, rejection } from './helpers.js';

let node: WadiNode;

beforeAll(async () => {
  node = await startNode({ workers: 2, actors: [ACTORS], statelessThreads: 2 });
});

afterAll(async () => {
  await node.stop();
});

describe('stateless actor types', () => {
  test('are located on the main thread side, not on a session worker', () => {
    expect(Compute.stateless).toBe(true);
    expect(node.locate(Compute, 'a')).toBe('main');
    expect(node.locate(Compute, 'b')).toBe('main');
  });

  test('return correct results, sync and async, whatever the id', async () => {
    expect(await node.ref(Compute, 'a').square(12)).toBe(144);
    expect(await node.ref(Compute, 'b').fib(30)).toBe(832040);
    expect(await node.ref(Compute, 'c').sum([1, 2, 3, 4.5])).toBe(10.5);
  });

  test('run on pool threads, neither on main nor on a session worker', async () => {
    const poolThread = await node.ref(Compute, 'x').thread();
    const sessionThreads = await Promise.all([0, 1].map((w) => node.ref(Counter, idOn(node, Counter, w, 'where')).thread()));
    expect(poolThread).not.toBe(threadId);
    expect(sessionThreads).not.toContain(poolThread);
  });

  test('errors keep name, message, code and data', async () => {
    const error = await rejection(node.ref(Compute, 'e').fail('E_POOL'));
    expect(error.name).toBe('PaymentError');
    expect(error.message).toBe('stateless failure E_POOL');
    expect(error.code).toBe('E_POOL');
    expect((error as unknown as { amount: number }).amount).toBe(7);
    // The pool keeps working after a failed call.
    expect(await node.ref(Compute, 'e').square(3)).toBe(9);
  });

  test('wadi errors on the way in are typed', async () => {
    expect(await rejection(node.ref(Compute, 'x').square((() => 1) as unknown as number))).toBeInstanceOf(NotSerializable);
    const StaleCompute = defineActor('Compute', { stateless: true, handlers: { missing: () => 0 } });
    const error = await rejection(node.ref(StaleCompute, 'x').missing());
    expect(error).toBeInstanceOf(UnknownMethod);
    expect(error.code).toBe('WADI_UNKNOWN_METHOD');
  });

  test('2,000 concurrent calls all succeed with the right values', async () => {
    const calls = Array.from({ length: 2000 }, (_, i) => node.ref(Compute, `c-${i % 37}`).square(i));
    const results = await Promise.all(calls);
    expect(results).toEqual(Array.from({ length: 2000 }, (_, i) => i * i));
  });

  test('actors on the workers call stateless types and get results and errors', async () => {
    for (const worker of [0, 1]) {
      const relay = node.ref(Relay, idOn(node, Relay, worker, 'caller'));
      expect(await relay.callStateless(7)).toBe(49);
      const error = await rejection(relay.failStateless('E_FROM_ACTOR'));
      expect(error.name).toBe('PaymentError');
      expect(error.code).toBe('E_FROM_ACTOR');
      expect(error.message).toBe('stateless failure E_FROM_ACTOR');
    }
    const relays = [...Array.from({ length: 4 }, (_, i) => idOn(node, Relay, 0, `many-${i}`)), ...Array.from({ length: 4 }, (_, i) => idOn(node, Relay, 1, `many-${i}`))];
    const results = await Promise.all(Array.from({ length: 400 }, (_, i) => node.ref(Relay, relays[i % relays.length]!).callStateless(i)));
    expect(results).toEqual(Array.from({ length: 400 }, (_, i) => i * i));
    expect(await noRestarts(node)).toBe(true);
  });
});
