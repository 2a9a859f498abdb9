/**
 * Errors across threads: application errors keep name, message and code (and the state is rolled
 * back); wadi's typed errors arrive as the same classes; bad setups fail startNode clearly; and
 * none of it crashes a worker.
 */
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { pathToFileURL } from 'node:url';
import { startNode, type WadiNode } from '@wadi/node';
import {
  ActorSystem,
  InvalidArgument,
  NotSerializable,
  Overloaded,
  Stopped,
  Timeout,
  UnknownActorType,
  UnknownMethod,
  WadiError,
  defineActor,
} from '@wadi/core';
import { Counter, Gate, PaymentError, Relay, Slow } from './fixtures/actors.mjs';
import { ACTORS, NO_ACTORS, eventually, idOn, noRestarts, rejection } from './helpers.js';

describe('with a running node', () => {
  let node: WadiNode;

  beforeEach(async () => {
    node = await startNode({ workers: 2, actors: [ACTORS] });
  });

  afterEach(async () => {
    expect(await noRestarts(node)).toBe(true);
    await node.stop();
  });

  test('a thrown Error subclass keeps name, message, code and data, and the state rolls back', async () => {
    for (const worker of [0, 1]) {
      const ref = node.ref(Counter, idOn(node, Counter, worker, 'pay'));
      await ref.add(10);
      await ref.append('kept');

      const error = await rejection(ref.addThenFail(5));
      expect(error).toBeInstanceOf(Error);
      expect(error.name).toBe('PaymentError');
      expect(error.message).toBe('card declined for 5');
      expect(error.code).toBe('E_DECLINED');
      expect((error as unknown as { amount: number }).amount).toBe(5);
      expect(error).not.toBeInstanceOf(WadiError);
      expect(await ref.get()).toBe(10);
      expect(await ref.items()).toEqual(['kept']);

      const asyncError = await rejection(ref.addThenReject(7));
      expect(asyncError.name).toBe('PaymentError');
      expect(asyncError.message).toBe('async decline for 7');
      expect(asyncError.code).toBe('E_ASYNC_DECLINED');
      expect(await ref.get()).toBe(10);
      expect(await ref.items()).toEqual(['kept']);

      // The actor goes on working after its failed turns.
      expect(await ref.add(1)).toBe(11);
    }
    const stats = await node.stats();
    expect(stats.workers.map((w) => w.failedTurns)).toEqual([2, 2]);
  });

  test('a thrown non-Error value rejects with an Error describing it', async () => {
    const ref = node.ref(Counter, idOn(node, Counter, 1, 'odd'));
    const error = await rejection(ref.throwString());
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('Error');
    expect(error.message).toContain('not an Error');
    expect(await ref.add(1)).toBe(1);
  });

  test('an error from an actor on another worker passes through the calling actor to main', async () => {
    const relay = idOn(node, Relay, 0, 'relay');
    const target = idOn(node, Counter, 1, 'target');
    await node.ref(Counter, target).add(3);
    const error = await rejection(node.ref(Relay, relay).addThenFailAt(target, 4));
    expect(error.name).toBe('PaymentError');
    expect(error.message).toBe('card declined for 4');
    expect(error.code).toBe('E_DECLINED');
    expect(await node.ref(Counter, target).get()).toBe(3);
  });

  test('a full mailbox in a worker rejects with Overloaded, as the same class', async () => {
    const ref = node.ref(Slow, idOn(node, Slow, 1, 'slow'));
    const outcomes = await Promise.allSettled(Array.from({ length: 10 }, () => ref.block(200)));
    const accepted = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(accepted.length).toBeGreaterThanOrEqual(1);
    expect(accepted.length).toBeLessThanOrEqual(3); // capacity 2, plus at most the running turn
    expect(refused.length).toBe(10 - accepted.length);
    for (const o of accepted) expect(o.value).toBe(200);
    for (const { reason } of refused) {
      expect(reason).toBeInstanceOf(Overloaded);
      expect(reason).toBeInstanceOf(WadiError);
      expect(reason.name).toBe('Overloaded');
      expect(reason.code).toBe('WADI_OVERLOADED');
      expect(reason.message).toMatch(/mailbox of Slow .* is full/);
    }
    // Refused messages never ran; the actor still works.
    expect(await ref.done()).toBe(accepted.length);
  });

  test('Overloaded from a full actor on one worker reaches main through an actor on the other', async () => {
    const slow = idOn(node, Slow, 1, 'slow');
    const relays = Array.from({ length: 10 }, (_, i) => idOn(node, Relay, 0, `caller-${i}`));
    const outcomes = await Promise.allSettled(relays.map((relay) => node.ref(Relay, relay).blockAt(slow, 200)));
    const accepted = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(accepted.length).toBeGreaterThanOrEqual(1);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    for (const o of accepted) expect(o.value).toBe(200);
    for (const { reason } of refused) {
      expect(reason).toBeInstanceOf(Overloaded);
      expect(reason.code).toBe('WADI_OVERLOADED');
    }
    expect(await node.ref(Slow, slow).done()).toBe(accepted.length);
  });

  test('asking a type no loaded module defines rejects with UnknownActorType', async () => {
    const Ghost = defineActor('Ghost', { state: () => ({}), handlers: { hello: () => 'hi' } });
    for (const worker of [0, 1]) {
      const error = await rejection(node.ref(Ghost, idOn(node, Ghost, worker, 'ghost')).hello());
      expect(error).toBeInstanceOf(UnknownActorType);
      expect(error.code).toBe('WADI_UNKNOWN_ACTOR_TYPE');
      expect(error.name).toBe('UnknownActorType');
      expect((error as UnknownActorType).actorType).toBe('Ghost');
    }
    // A stateless type nobody loaded fails the same way (it is resolved on the main thread).
    const GhostPool = defineActor('GhostPool', { stateless: true, handlers: { run: () => 1 } });
    const error = await rejection(node.ref(GhostPool, 'x').run());
    expect(error).toBeInstanceOf(UnknownActorType);
    expect(error.code).toBe('WADI_UNKNOWN_ACTOR_TYPE');
  });

  test('a method the loaded type lacks rejects with UnknownMethod from the worker', async () => {
    // A stale copy of `Counter` with a handler the loaded module does not have.
    const StaleCounter = defineActor('Counter', { state: () => ({}), handlers: { reset: () => 0 } });
    const error = await rejection(node.ref(StaleCounter, idOn(node, Counter, 0, 'stale')).reset());
    expect(error).toBeInstanceOf(UnknownMethod);
    expect(error.code).toBe('WADI_UNKNOWN_METHOD');
  });

  test('a function argument rejects with NotSerializable, and later messages still go through', async () => {
    for (const worker of [0, 1]) {
      const id = idOn(node, Counter, worker, 'ns');
      const ref = node.ref(Counter, id);
      const error = await rejection(ref.echo({ callback: () => 1 }));
      expect(error).toBeInstanceOf(NotSerializable);
      expect(error.code).toBe('WADI_NOT_SERIALIZABLE');
      // The error names the call and the argument, in the same words whatever crossed the thread.
      expect(error.message).toBe(`Counter.echo on '${id}', argument 1: cannot send or store function callback`);
      const bare = await rejection(ref.add((() => 2) as unknown as number));
      expect(bare).toBeInstanceOf(NotSerializable);
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      expect((await rejection(ref.echo(cyclic))).message).toBe(`Counter.echo on '${id}', argument 1: value is cyclic or nested too deeply to send or store`);
      expect(() => ref.tell.echo(Symbol('s'))).toThrow(`Counter.echo on '${id}', argument 1: cannot send or store Symbol(s)`);

      // Nothing half-encoded was sent: the actor saw none of these and the link still works.
      expect(await ref.get()).toBe(0);
      expect(await ref.echo({ ok: [1, 2, 3] })).toEqual({ id: id, x: { ok: [1, 2, 3] } });
      const many = await Promise.all(Array.from({ length: 200 }, (_, i) => ref.echo(i)));
      expect(many.map((r) => r.x)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    }
  });

  test('a reply that cannot cross the thread rejects with NotSerializable', async () => {
    const error = await rejection(node.ref(Counter, idOn(node, Counter, 1, 'fn')).returnFunction());
    expect(error).toBeInstanceOf(NotSerializable);
    expect(error.code).toBe('WADI_NOT_SERIALIZABLE');
  });

  test('an ask with no reply before its deadline rejects with Timeout', async () => {
    const gate = idOn(node, Gate, 1, 'gate');
    const opener = idOn(node, Gate, 1, 'opener');
    const error = await rejection(node.ref(Gate, gate, { timeoutMs: 100 }).wait('never-in-time'));
    expect(error).toBeInstanceOf(Timeout);
    expect(error.code).toBe('WADI_TIMEOUT');
    // Let the turn finish; its late reply is dropped and the gate works again.
    expect(await node.ref(Gate, opener).open('never-in-time', 'late')).toBe(true);
    const waiting = node.ref(Gate, gate).wait('second');
    await eventually(() => node.ref(Gate, opener).waiting(), (labels) => labels.includes('second'));
    expect(await node.ref(Gate, opener).open('second', 'on time')).toBe(true);
    expect(await waiting).toBe('on time');
  });

  test('a message to a stopped node rejects with Stopped', async () => {
    const ref = node.ref(Counter, idOn(node, Counter, 0, 'late'));
    expect(await ref.add(1)).toBe(1);
    await node.stop();
    const error = await rejection(ref.add(1));
    expect(error).toBeInstanceOf(Stopped);
    expect(error.code).toBe('WADI_STOPPED');
    expect(await rejection(node.ref(Counter, 'fresh-ref').get())).toBeInstanceOf(Stopped);
    expect(() => ref.tell.add(1)).toThrow(Stopped);
    // The workers were stopped, not crashed.
    const stats = await node.stats();
    expect(stats.workers.map((w) => [w.state, w.restarts])).toEqual([
      ['stopped', 0],
      ['stopped', 0],
    ]);
  });
});

describe('startNode with bad actor modules', () => {
  test('a module path that does not exist rejects with InvalidArgument naming it', async () => {
    const missing = new URL('./fixtures/does-not-exist.mjs', import.meta.url);
    const error = await rejection(startNode({ workers: 1, actors: [missing] }));
    expect(error).toBeInstanceOf(InvalidArgument);
    expect(error.code).toBe('WADI_INVALID_ARGUMENT');
    expect(error.message).toContain('does-not-exist.mjs');
    expect(error.message).toMatch(/cannot load actor module/);

    // The same as a plain path string.
    const asPath = await rejection(startNode({ workers: 1, actors: ['/no/such/dir/actors.mjs'] }));
    expect(asPath).toBeInstanceOf(InvalidArgument);
    expect(asPath.message).toContain(pathToFileURL('/no/such/dir/actors.mjs').href);
  });

  test('a module that exports no actors rejects with InvalidArgument', async () => {
    const error = await rejection(startNode({ workers: 1, actors: [ACTORS, NO_ACTORS] }));
    expect(error).toBeInstanceOf(InvalidArgument);
    expect(error.message).toContain('no-actors.mjs');
    expect(error.message).toMatch(/exports no actor definitions/);
  });

  test('bad options reject with InvalidArgument', async () => {
    expect(await rejection(startNode({ workers: -1, actors: [ACTORS] }))).toBeInstanceOf(InvalidArgument);
    expect(await rejection(startNode({ workers: 1.5, actors: [ACTORS] }))).toBeInstanceOf(InvalidArgument);
    expect(await rejection(startNode({ workers: 257, actors: [ACTORS] }))).toBeInstanceOf(InvalidArgument);
    expect(await rejection(startNode({ workers: 1, buckets: 0, actors: [ACTORS] }))).toBeInstanceOf(InvalidArgument);
    expect(await rejection(startNode({ workers: 1, askTimeoutMs: -1, actors: [ACTORS] }))).toBeInstanceOf(InvalidArgument);
    expect(await rejection(startNode({ workers: 1, actors: [''] }))).toBeInstanceOf(InvalidArgument);
    expect((await rejection(startNode({ worker: 1, actors: [ACTORS] } as never))).message).toMatch(/unknown option 'worker' \(did you mean 'workers'\?\)/);
    expect((await rejection(startNode({ workers: 1, actors: [ACTORS], store: { idleMS: 5 } } as never))).message).toMatch(/store: unknown option 'idleMS'/);
    expect((await rejection(startNode({ workers: 1, actors: 'actors.mjs' } as never))).message).toMatch(/actors must be an array/);
    expect((await rejection(startNode(null as never))).message).toMatch(/startNode\(\) needs options/);
    expect((await rejection(startNode({ workers: 1, actors: [ACTORS], store: { disk: '' } }))).message).toMatch(/store.disk must be a path, got ""/);
    expect((await rejection(startNode({ workers: 1, actors: [ACTORS], cluster: { dataDir: ' ', secret: 'x' } }))).message).toMatch(/cluster.dataDir must be a path/);
  });

  test('bad cluster options reject at start, naming the option', async () => {
    const cluster = (extra: object) => startNode({ workers: 1, actors: [ACTORS], cluster: { port: 0, seeds: [], secret: 'bad-cluster-options', log: () => undefined, ...extra } });
    const cases: [object, RegExp][] = [
      [{ maxMovesPerLayout: -1 }, /maxMovesPerLayout must be an integer >= 0/],
      [{ maxMovesPerLayout: 1.5 }, /maxMovesPerLayout/],
      [{ tickMs: 0 }, /cluster.tickMs must be a positive number/],
      [{ maxHandoffs: 0 }, /maxHandoffs must be an integer >= 1/],
      [{ handoffTimeoutMs: Number.NaN }, /handoffTimeoutMs must be a positive number/],
      [{ timings: { downAfterMs: -5 } }, /timings.downAfterMs must be a positive number/],
      [{ timings: { heartbeatMs: 3000 } }, /heartbeatMs \(3000\) must be below suspectAfterMs/],
      [{ timings: { hearbeatMs: 100 } }, /timings.hearbeatMs is not a timing/],
      [{ election: 'oldest' }, /election must be an ElectionPolicy/],
      [{ seed: ['ws://127.0.0.1:1'] }, /cluster: unknown option 'seed' \(did you mean 'seeds'\?\)/],
      [{ advertisedUrl: 'garbage' }, /advertisedUrl must be a ws:\/\/ or wss:\/\/ URL/],
    ];
    for (const [extra, message] of cases) {
      const error = await rejection(cluster(extra));
      expect(error, JSON.stringify(extra)).toBeInstanceOf(InvalidArgument);
      expect(error.message).toMatch(message);
    }
  });

  test('a short cluster secret is reported as weak when the node starts', async () => {
    const logs: string[] = [];
    const node = await startNode({ workers: 1, actors: [ACTORS], cluster: { port: 0, seeds: [], secret: 'short', log: (level, message) => logs.push(`${level}: ${message}`) } });
    try {
      expect(logs).toContainEqual(expect.stringMatching(/^warn: the cluster secret has 5 characters: use at least 16/));
    } finally {
      await node.cluster!.close();
      await node.stop();
    }
  });

  test('deadlines that a timer cannot wait are refused when the ref is made', () => {
    const system = new ActorSystem();
    system.registry.add(Counter);
    for (const timeoutMs of ['5000', -1, 0, Number.NaN, Infinity, 2 ** 31]) {
      expect(() => system.ref(Counter, 'x', { timeoutMs: timeoutMs as number })).toThrow(/timeoutMs must be a number of milliseconds/);
    }
    expect(() => system.ref(Counter, 'x', { timeoutMs: 2 ** 31 - 1 })).not.toThrow();
  });
});
