/**
 * A worker that dies mid-load: every ask settles (with the right value or a wadi typed error),
 * the other worker keeps serving, the node replaces the worker, and the dead worker's actors
 * come back on next use with fresh state.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { once } from 'node:events';
import { startNode, type WadiNode } from '@wadi/node';
import { Overloaded, Unavailable, WadiError, WorkerCrashed } from '@wadi/core';
import { Counter, Crash, Gate, Relay } from './fixtures/actors.mjs';
import { ACTORS, eventually, idOn, idsOn, rejection } from './helpers.js';

const WADI_ERRORS_OF_A_CRASH = ['WADI_WORKER_CRASHED', 'WADI_UNAVAILABLE', 'WADI_TIMEOUT'];

let node: WadiNode | undefined;

afterEach(async () => {
  await node?.stop();
  node = undefined;
});

type Outcome = { ok: true; value: unknown } | { ok: false; error: Error & { code?: unknown } };

interface Sent {
  worker: number;
  kind: string;
  outcome: Promise<Outcome>;
  expected: unknown;
}

/** Handles the ask at once (no unhandled rejection while the load is still being sent). */
function settle(promise: Promise<unknown>): Promise<Outcome> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: Error) => ({ ok: false as const, error }),
  );
}

function recordEvents(n: WadiNode): { name: string; event: Record<string, unknown> }[] {
  const events: { name: string; event: Record<string, unknown> }[] = [];
  for (const name of ['worker-crashed', 'worker-restarted', 'worker-failed']) {
    n.events.on(name, (event: Record<string, unknown>) => events.push({ name, event }));
  }
  return events;
}

describe('a worker killed mid-load', () => {
  test.each([
    ['process.exit(1)', 'exitSoon'],
    ['an uncaught exception', 'throwSoon'],
  ])('killed by %s: asks settle, the other worker serves, the worker is replaced', async (_how, method) => {
    const n = (node = await startNode({ workers: 2, actors: [ACTORS], askTimeoutMs: 3000 }));
    const events = recordEvents(n);
    const restarted = once(n.events, 'worker-restarted');

    const on0 = idsOn(n, Counter, 0, 20, 'w0');
    const on1 = idsOn(n, Counter, 1, 20, 'w1');
    const relays1 = idsOn(n, Relay, 1, 5, 'r1');
    const relays0 = idsOn(n, Relay, 0, 5, 'r0');
    const victim = on0[0]!;
    const survivor = on1[0]!;
    expect(await n.ref(Counter, victim).add(5)).toBe(5);
    expect(await n.ref(Counter, survivor).add(8)).toBe(8);
    const survivorThread = await n.ref(Counter, survivor).thread();

    // Asks certain to be in flight when worker 0 dies: turns held open on worker 0, one asked
    // from main and one from an actor on worker 1.
    const gate0 = idOn(n, Gate, 0, 'gate');
    const heldFromMain = settle(n.ref(Gate, gate0).wait('from-main'));
    const heldFromWorker1 = settle(n.ref(Relay, relays1[0]!).waitAt(idOn(n, Gate, 0, 'gate-b'), 'from-worker-1'));
    await eventually(() => n.ref(Gate, idOn(n, Gate, 0, 'peek')).waiting(), (labels) => labels.length === 2);

    const sent: Sent[] = [];
    const rounds = 40;
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < 60; k++) {
        const x = round * 1000 + k;
        const id = on0[k % on0.length]!;
        sent.push({ worker: 0, kind: 'main->0', outcome: settle(n.ref(Counter, id).echo(x)), expected: { id, x } });
      }
      for (let k = 0; k < 20; k++) {
        const x = round * 1000 + k;
        const id = on1[k % on1.length]!;
        sent.push({ worker: 1, kind: 'main->1', outcome: settle(n.ref(Counter, id).echo(x)), expected: { id, x } });
      }
      for (let k = 0; k < 5; k++) {
        const x = round * 1000 + k;
        const target = on0[(k + round) % on0.length]!;
        sent.push({ worker: 0, kind: '1->0', outcome: settle(n.ref(Relay, relays1[k]!).echoAt(target, x)), expected: { id: target, x } });
        const target1 = on1[(k + round) % on1.length]!;
        sent.push({ worker: 0, kind: '0->1', outcome: settle(n.ref(Relay, relays0[k]!).echoAt(target1, x)), expected: { id: target1, x } });
      }
      if (round === 10) expect(await n.ref(Crash, idOn(n, Crash, 0, 'crash'))[method as 'exitSoon'](1)).toMatch(/ing$/);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }

    // The held asks fail as WorkerCrashed, whether asked from main or relayed through worker 1.
    for (const held of [await heldFromMain, await heldFromWorker1]) {
      expect(held.ok).toBe(false);
      if (held.ok) continue;
      expect(held.error).toBeInstanceOf(WorkerCrashed);
      expect(held.error.code).toBe('WADI_WORKER_CRASHED');
    }

    // Every ask settles (askTimeoutMs is the backstop): right value or a wadi typed error.
    const outcomes = await Promise.all(sent.map((s) => s.outcome));
    let failed = 0;
    outcomes.forEach((outcome, i) => {
      const s = sent[i]!;
      if (outcome.ok) {
        expect(outcome.value, s.kind).toEqual(s.expected);
      } else {
        failed++;
        expect(s.worker, `${s.kind} failed: ${outcome.error}`).toBe(0);
        expect(outcome.error).toBeInstanceOf(WadiError);
        expect(String(outcome.error.code)).toMatch(/^WADI_/);
        expect(WADI_ERRORS_OF_A_CRASH).toContain(outcome.error.code);
      }
    });
    // Asks to worker 1 alone all succeeded.
    const toWorker1 = outcomes.filter((_, i) => sent[i]!.kind === 'main->1');
    expect(toWorker1.length).toBe(20 * 40);
    expect(toWorker1.every((o) => o.ok)).toBe(true);
    // Most of the load got through (asks sent after the restart did).
    expect(failed).toBeLessThan(sent.length);

    await restarted;
    expect(events.map((e) => [e.name, e.event.index])).toEqual([
      ['worker-crashed', 0],
      ['worker-restarted', 0],
    ]);
    expect(events[0]!.event.exitCode).toBe(1);
    expect(events[0]!.event.failedAsks).toBeGreaterThanOrEqual(2);

    // The victim reactivates on the new worker 0 with fresh state; worker 1 kept its state.
    expect(await n.ref(Counter, victim).get()).toBe(0);
    expect(await n.ref(Counter, victim).add(1)).toBe(1);
    expect(await n.ref(Counter, survivor).get()).toBe(8);
    expect(await n.ref(Counter, survivor).thread()).toBe(survivorThread);
    expect(await n.ref(Counter, victim).thread()).not.toBe(survivorThread);
    // Both directions between the workers work again.
    expect(await n.ref(Relay, relays1[1]!).echoAt(victim, 'after')).toEqual({ id: victim, x: 'after' });
    expect(await n.ref(Relay, relays0[1]!).echoAt(survivor, 'after')).toEqual({ id: survivor, x: 'after' });
    const again = await Promise.all(on0.map((id, i) => n.ref(Counter, id).echo(i)));
    expect(again).toEqual(on0.map((id, i) => ({ id, x: i })));

    const stats = await n.stats();
    expect(stats.workers.map((w) => [w.state, w.restarts])).toEqual([
      ['up', 1],
      ['up', 0],
    ]);
  });

  test('asks sent while the worker is being replaced are held and answered by its replacement', async () => {
    const n = (node = await startNode({ workers: 2, actors: [ACTORS] }));
    const ids = idsOn(n, Counter, 0, 5, 'held');
    await n.ref(Counter, ids[0]!).add(3);
    let held: Promise<unknown[]> | undefined;
    // 'worker-crashed' is emitted before the replacement starts: these asks wait for it.
    n.events.once('worker-crashed', () => {
      held = Promise.all([...Array.from({ length: 200 }, (_, i) => n.ref(Counter, ids[i % 5]!).echo(i)), n.ref(Counter, ids[0]!).add(1)]);
    });
    const restarted = once(n.events, 'worker-restarted');
    await n.ref(Crash, idOn(n, Crash, 0, 'crash')).exitSoon(1);
    await restarted;
    expect(await held).toEqual([...Array.from({ length: 200 }, (_, i) => ({ id: ids[i % 5], x: i })), 1]);
    // The add ran on the fresh activation (the 3 died with the old worker).
    expect(await n.ref(Counter, ids[0]!).get()).toBe(1);
  });

  test('past maxHeldBytes, asks for a worker being replaced are refused with Overloaded', async () => {
    const n = (node = await startNode({ workers: 2, actors: [ACTORS], maxHeldBytes: 2000 }));
    const ids = idsOn(n, Counter, 0, 5, 'held');
    let held: Promise<PromiseSettledResult<{ id: string; x: string }>[]> | undefined;
    n.events.once('worker-crashed', () => {
      held = Promise.allSettled(Array.from({ length: 100 }, (_, i) => n.ref(Counter, ids[i % 5]!).echo(`${'x'.repeat(100)}${i}`)));
    });
    const restarted = once(n.events, 'worker-restarted');
    await n.ref(Crash, idOn(n, Crash, 0, 'crash')).exitSoon(1);
    await restarted;
    const outcomes = await held!;
    const accepted = outcomes.filter((o) => o.status === 'fulfilled');
    const refused = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
    expect(accepted.length).toBeGreaterThanOrEqual(1);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    // The budget is checked in send order: a prefix is held, the rest refused.
    outcomes.forEach((o, i) => {
      if (o.status === 'fulfilled') {
        expect(i).toBeLessThan(accepted.length);
        expect(o.value).toEqual({ id: ids[i % 5], x: `${'x'.repeat(100)}${i}` });
      }
    });
    for (const { reason } of refused) {
      expect(reason).toBeInstanceOf(Overloaded);
      expect(reason.code).toBe('WADI_OVERLOADED');
    }
    expect(await n.ref(Counter, ids[1]!).echo('after')).toEqual({ id: ids[1], x: 'after' });
  });

  test('a worker that keeps crashing is given up: its actors are Unavailable, the others still work', async () => {
    const n = (node = await startNode({ workers: 2, actors: [ACTORS], askTimeoutMs: 3000, maxRestartsPerMinute: 1 }));
    const events = recordEvents(n);
    const crashId = idOn(n, Crash, 0, 'crash');
    const on0 = idOn(n, Counter, 0, 'c0');
    const on1 = idOn(n, Counter, 1, 'c1');

    const restarted = once(n.events, 'worker-restarted');
    await n.ref(Crash, crashId).exitSoon(1);
    await restarted;
    const failed = once(n.events, 'worker-failed');
    await n.ref(Crash, crashId).exitSoon(1);
    await failed;

    expect(events.map((e) => e.name)).toEqual(['worker-crashed', 'worker-restarted', 'worker-crashed', 'worker-failed']);
    const error = await rejection(n.ref(Counter, on0).get());
    expect(error).toBeInstanceOf(Unavailable);
    expect(String(error.code)).toMatch(/^WADI_/);
    expect(await n.ref(Counter, on1).add(2)).toBe(2);
    const stats = await n.stats();
    expect(stats.workers.map((w) => w.state)).toEqual(['failed', 'up']);
  });
});
