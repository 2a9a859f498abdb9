/**
 * The load generator: many simulated shoppers, each a cookie-keeping `HttpUser` that sends its
 * requests one after another to whichever node comes next, viewing the shop (`GET /api/me`),
 * adding to and removing from its cart. Every second it reports requests per second, latency
 * percentiles and failures.
 *
 * Each shopper also knows what its cart must hold, so a reply that disagrees (an update lost, or
 * a session that started over) counts as a mismatch. Joins and graceful leaves must cause
 * neither failures nor mismatches; a SIGKILLed node loses the requests it was running (failures)
 * and, without replication, the sessions it held (mismatches).
 */
import { Agent } from 'node:http';
import { Histogram } from './histogram.js';
import { HttpUser, type Targets } from './http-user.js';

const SKUS = ['apple', 'bread', 'cheese', 'dates', 'eggs', 'figs'];

export interface LoadOptions {
  users: number;
  /** 0: until `signal` aborts. */
  seconds: number;
  targets: Targets;
  /** Pause between one shopper's requests (default 0). */
  thinkMs?: number;
  progressMs?: number;
  onProgress?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
}

export interface LoadProgress {
  elapsedSec: number;
  users: number;
  requests: number;
  failures: number;
  mismatches: number;
  /** Requests sent again to another node after a refused connection, and redirects followed. */
  retried: number;
  redirects: number;
  /** Over the last interval. */
  perSec: number;
  p50: number;
  p95: number;
  p99: number;
  /** Over the whole run. */
  total: { perSec: number; p50: number; p95: number; p99: number; max: number };
  /** Failures by cause (HTTP status or error code). */
  errors: Record<string, number>;
  done: boolean;
}

class Counters {
  requests = 0;
  failures = 0;
  mismatches = 0;
  retried = 0;
  redirects = 0;
  errors: Record<string, number> = {};
  readonly interval = new Histogram();
  readonly total = new Histogram();

  fail(cause: string): void {
    this.failures++;
    this.errors[cause] = (this.errors[cause] ?? 0) + 1;
  }
}

export async function runLoad(options: LoadOptions): Promise<LoadProgress> {
  const agent = new Agent({ keepAlive: true, maxSockets: Math.max(1, options.users) });
  const counters = new Counters();
  const started = performance.now();
  const deadline = options.seconds > 0 ? started + options.seconds * 1000 : Infinity;
  const stopped = (): boolean => performance.now() >= deadline || options.signal?.aborted === true;
  let intervalStarted = started;
  let intervalRequests = 0;
  const progress = (done: boolean): LoadProgress => {
    const now = performance.now();
    const snapshot: LoadProgress = {
      elapsedSec: (now - started) / 1000,
      users: options.users,
      requests: counters.requests,
      failures: counters.failures,
      mismatches: counters.mismatches,
      retried: counters.retried,
      redirects: counters.redirects,
      perSec: ((counters.requests - intervalRequests) * 1000) / Math.max(1, now - intervalStarted),
      p50: counters.interval.percentile(0.5),
      p95: counters.interval.percentile(0.95),
      p99: counters.interval.percentile(0.99),
      total: {
        perSec: (counters.requests * 1000) / Math.max(1, now - started),
        p50: counters.total.percentile(0.5),
        p95: counters.total.percentile(0.95),
        p99: counters.total.percentile(0.99),
        max: counters.total.max,
      },
      errors: { ...counters.errors },
      done,
    };
    counters.interval.reset();
    intervalStarted = now;
    intervalRequests = counters.requests;
    return snapshot;
  };
  const timer = setInterval(() => options.onProgress?.(progress(false)), options.progressMs ?? 1000);
  try {
    await Promise.all(Array.from({ length: options.users }, (_, i) => shopper(new HttpUser(agent, options.targets), i, counters, stopped, options.thinkMs ?? 0)));
  } finally {
    clearInterval(timer);
    agent.destroy();
  }
  const last = progress(true);
  options.onProgress?.(last);
  return last;
}

/** One shopper's session: requests one at a time until the run stops. */
async function shopper(user: HttpUser, seed: number, counters: Counters, stopped: () => boolean, thinkMs: number): Promise<void> {
  const random = seeded(seed + 1);
  /** What the cart must hold; undefined after a failure left it unknown (learnt again from the next view). */
  let expected: Map<string, number> | undefined = new Map();
  let first = true;
  while (!stopped()) {
    const dice = random();
    const sku = SKUS[Math.floor(random() * SKUS.length)]!;
    const view = first || dice < 0.5;
    const add = !view && dice < 0.85;
    const method = view ? 'GET' : add ? 'POST' : 'DELETE';
    const path = view ? '/api/me' : add ? '/api/cart' : `/api/cart/${sku}`;
    const quantity = 1 + Math.floor(random() * 3);
    const t0 = performance.now();
    try {
      const reply = await user.request(method, path, add ? { sku, quantity } : undefined);
      const ms = performance.now() - t0;
      counters.requests++;
      counters.retried += reply.retries;
      counters.redirects += reply.redirects;
      counters.interval.record(ms);
      counters.total.record(ms);
      if (reply.status !== 200) {
        counters.fail(`HTTP ${reply.status}`);
        expected = undefined;
      } else {
        const body = reply.body as Record<string, unknown>;
        if (view) {
          const cart = new Map(Object.entries((body['cart'] ?? {}) as Record<string, number>));
          if (expected !== undefined && !sameCart(expected, cart)) counters.mismatches++;
          expected = cart;
        } else if (add) {
          const had = expected?.get(sku) ?? 0;
          if (expected !== undefined && body['quantity'] !== had + quantity) counters.mismatches++;
          expected?.set(sku, Number(body['quantity']));
        } else {
          if (expected !== undefined && body['removed'] !== expected.has(sku)) counters.mismatches++;
          expected?.delete(sku);
        }
      }
      first = false;
    } catch (error) {
      counters.requests++;
      counters.fail(String((error as NodeJS.ErrnoException).code ?? (error as Error).message));
      expected = undefined;
      // Do not spin on a cluster that is not there.
      await sleep(50);
    }
    if (thinkMs > 0) await sleep(thinkMs);
  }
}

function sameCart(a: Map<string, number>, b: Map<string, number>): boolean {
  if (a.size !== b.size) return false;
  for (const [sku, quantity] of a) if (b.get(sku) !== quantity) return false;
  return true;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/** One line for a terminal: `12.0 s  50 users  1,234 req/s  p50 1.20 ms ...`. */
export function formatProgress(p: LoadProgress): string {
  const ms = (value: number): string => (Number.isNaN(value) ? '-' : value < 10 ? value.toFixed(2) : value.toFixed(1));
  const rate = p.done ? p.total.perSec : p.perSec;
  const [p50, p95, p99] = p.done ? [p.total.p50, p.total.p95, p.total.p99] : [p.p50, p.p95, p.p99];
  return `${p.elapsedSec.toFixed(1).padStart(6)} s  ${p.users} users  ${Math.round(rate).toLocaleString('en-US').padStart(6)} req/s  p50 ${ms(p50)} ms  p95 ${ms(p95)} ms  p99 ${ms(p99)} ms  requests ${p.requests.toLocaleString('en-US')}  failures ${p.failures}  mismatches ${p.mismatches}  retried ${p.retried}`;
}
