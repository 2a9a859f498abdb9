import type { AnyActorDef } from '@wadi/core';
import type { WadiNode } from '@wadi/node';

export const ACTORS = new URL('./fixtures/actors.mjs', import.meta.url);
export const NO_ACTORS = new URL('./fixtures/no-actors.mjs', import.meta.url);

/** The first `count` ids `${prefix}-0`, `${prefix}-1`, ... that `node` places on `worker`. */
export function idsOn(node: WadiNode, def: AnyActorDef, worker: number, count: number, prefix = 'id'): string[] {
  const ids: string[] = [];
  for (let i = 0; ids.length < count; i++) {
    if (i > 100_000) throw new Error(`no ${count} ids on worker ${worker}`);
    const id = `${prefix}-${i}`;
    if (node.locate(def, id) === worker) ids.push(id);
  }
  return ids;
}

export function idOn(node: WadiNode, def: AnyActorDef, worker: number, prefix = 'id'): string {
  return idsOn(node, def, worker, 1, prefix)[0]!;
}

/**
 * Polls `probe` until it returns a value that `done` accepts, and returns that value. Bounded
 * only by the test's own timeout: the tests assert what happens, never how fast.
 */
export async function eventually<T>(probe: () => Promise<T> | T, done: (value: T) => boolean, pollMs = 20): Promise<T> {
  for (;;) {
    const value = await probe();
    if (done(value)) return value;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** The error a promise rejects with (fails the test if it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<Error & { code?: unknown }> {
  const outcome = await promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
  if (outcome.ok) throw new Error(`expected a rejection, got ${JSON.stringify(outcome.value)}`);
  return outcome.error as Error & { code?: unknown };
}

/** True when no worker of `node` ever crashed (or was given up). */
export async function noRestarts(node: WadiNode): Promise<boolean> {
  const stats = await node.stats();
  return stats.workers.every((w) => w.restarts === 0 && w.state !== 'failed' && w.state !== 'restarting');
}

/** Polls `condition` (sync or async) until it holds; fails naming `what` after `timeoutMs`. */
export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, pollMs = 5): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
