/**
 * http.session.throughput and http.session.p99: HTTP requests that each read and update their
 * session (`POST /hit`: `req.session.hits++`), against a 3-node wadi cluster behind
 * `httpSessions`, beside the usual way to share sessions between Node processes:
 * express-session with a connect-redis store on one Redis server (Debian's `redis-server`,
 * started here). Both stacks run in the same 3 processes (children/http-node.ts), Express 5 on
 * both, the same handler. wadi runs with its defaults, so it does more than the baseline: every
 * session has a copy on a backup node (R = 1; HTTP sessions replicate `async`, shipped once per
 * worker tick), where the baseline keeps each session once, in the one Redis server.
 *
 * Load: USERS simulated browsers in this process, each with its own session cookie, sending one
 * request after another (closed loop). Each browser sticks to one of the 3 processes (browser i
 * to process i mod 3), as behind a load balancer with sticky sessions; with wadi the session then
 * lives where its requests arrive (a new session is placed on the node that first calls it).
 * Every browser makes one request before measuring, so measured requests find their session.
 * Rounds alternate between the stacks, which take turns going first (wadi then Redis, then Redis
 * then wadi, ...), so both see the same machine and neither always follows the other's garbage;
 * each figure is the median of its rounds: requests/s over the round, and the p99 of the round's
 * latencies. A round's p99 rests on a few garbage collections in the node processes: with 7
 * rounds the p99 ratio swung by 10% between runs of the same code, hence 11.
 * Measured twice, each time in 3 fresh processes with the baseline beside it: with no worker
 * threads (`NODE_WORKERS`, child-nodes.ts: sessions on each node's main thread; these figures
 * carry the targets) and with one worker thread per node (`<name>.workerThread`, reported
 * without a target).
 * At the end every browser's counter must equal the number of requests it made: no update lost.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Agent } from 'node:http';
import type { NodeStatus } from '@wadi/node';
import { Histogram } from '@wadi/demo/histogram';
import { HttpUser } from '@wadi/demo/http-user';
import { settled, withAndWithoutWorkers, workerThreadFigure, type Member } from '../child-nodes.js';
import { median, result, type BenchResult, type Benchmark } from '../harness.js';
import type { HttpNodeConfig, HttpNodeMessage } from '../children/http-node.js';
import { startRedis } from '../redis-server.js';

const CHILD = new URL('../children/http-node.js', import.meta.url);
const NODES = 3;
const USERS = 48;
const BUCKETS = 1024;
const WARMUP_MS = 2_000;
const ROUND_MS = 2_000;
const ROUNDS = 11;
const START_TIMEOUT_MS = 60_000;

export const HTTP_BASELINE = 'express-session+connect-redis';

interface Child extends Member {
  process: ChildProcess;
  wadi: string;
  redis: string;
}

async function spawnChild(name: string, config: HttpNodeConfig): Promise<Child> {
  const child = fork(CHILD, [JSON.stringify(config)], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const pending = new Map<number, (value: unknown) => void>();
  let nextId = 1;
  const ready = await new Promise<{ id: string; url: string; wadi: string; redis: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not start in ${START_TIMEOUT_MS} ms: ${stderr}`)), START_TIMEOUT_MS);
    child.on('message', (message: HttpNodeMessage) => {
      if ('ready' in message) {
        clearTimeout(timer);
        resolve(message.ready);
      } else if ('failed' in message) {
        clearTimeout(timer);
        reject(new Error(`${name} failed to start: ${message.failed}`));
      } else if ('id' in message) {
        pending.get(message.id)?.('value' in message ? message.value : undefined);
        pending.delete(message.id);
      }
    });
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}): ${stderr}`)));
  });
  return {
    name,
    id: ready.id,
    url: ready.url,
    wadi: ready.wadi,
    redis: ready.redis,
    process: child,
    status: () =>
      new Promise<NodeStatus>((resolve) => {
        const id = nextId++;
        pending.set(id, (value) => resolve(value as NodeStatus));
        child.send({ id, op: 'status' });
      }),
  };
}

interface Browser {
  user: HttpUser;
  requests: number;
  hits: number;
}

/** Each browser of `browsers` sends requests one after another for `ms`; returns requests/s and p99. */
async function drive(browsers: Browser[], ms: number): Promise<{ perSec: number; p99: number }> {
  const histogram = new Histogram();
  const deadline = performance.now() + ms;
  let requests = 0;
  const started = performance.now();
  await Promise.all(
    browsers.map(async (browser) => {
      while (performance.now() < deadline) {
        const t0 = performance.now();
        const reply = await browser.user.request('POST', '/hit');
        histogram.record(performance.now() - t0);
        if (reply.status !== 200) throw new Error(`POST /hit answered ${reply.status}: ${JSON.stringify(reply.body)}`);
        browser.requests++;
        browser.hits = Number((reply.body as { hits: number }).hits);
        requests++;
      }
    }),
  );
  return { perSec: (requests * 1000) / (performance.now() - started), p99: histogram.percentile(0.99) };
}

function browsersFor(urls: string[], agent: Agent): Browser[] {
  return Array.from({ length: USERS }, (_, i) => {
    const url = urls[i % urls.length]!;
    return { user: new HttpUser(agent, { pick: () => url, refused: () => undefined }), requests: 0, hits: 0 };
  });
}

/** Both figures, with the targets, on 3 processes whose nodes have `workers` worker threads (the baseline in the same processes). */
async function measureWith(workers: number): Promise<BenchResult[]> {
  const redis = await startRedis();
  const children: Child[] = [];
  const agents = [new Agent({ keepAlive: true, maxSockets: USERS }), new Agent({ keepAlive: true, maxSockets: USERS })];
  try {
    const base = { secret: randomBytes(16).toString('hex'), cookieSecret: randomBytes(16).toString('hex'), workers, buckets: BUCKETS, redisUrl: redis.url };
    children.push(await spawnChild('h1', { ...base, seeds: [] }));
    for (let i = 1; i < NODES; i++) children.push(await spawnChild(`h${i + 1}`, { ...base, seeds: [children[0]!.url] }));
    await settled(children);

    const stacks = {
      wadi: browsersFor(children.map((child) => child.wadi), agents[0]!),
      redis: browsersFor(children.map((child) => child.redis), agents[1]!),
    };
    // Every browser gets its session, then both stacks warm up.
    for (const browsers of Object.values(stacks)) {
      await Promise.all(
        browsers.map(async (browser) => {
          const reply = await browser.user.request('POST', '/hit');
          browser.requests++;
          browser.hits = Number((reply.body as { hits: number }).hits);
        }),
      );
    }
    for (const browsers of Object.values(stacks)) await drive(browsers, WARMUP_MS);
    const samples = { wadi: { perSec: [] as number[], p99: [] as number[] }, redis: { perSec: [] as number[], p99: [] as number[] } };
    for (let round = 0; round < ROUNDS; round++) {
      for (const stack of round % 2 === 0 ? (['wadi', 'redis'] as const) : (['redis', 'wadi'] as const)) {
        const figure = await drive(stacks[stack], ROUND_MS);
        samples[stack].perSec.push(figure.perSec);
        samples[stack].p99.push(figure.p99);
      }
    }
    for (const [stack, browsers] of Object.entries(stacks)) {
      const lost = browsers.filter((browser) => browser.hits !== browser.requests);
      if (lost.length > 0) throw new Error(`${stack}: ${lost.length} browsers' counters disagree with their requests (e.g. ${lost[0]!.hits} hits after ${lost[0]!.requests} requests)`);
    }
    const throughput = median(samples.wadi.perSec);
    const p99 = median(samples.wadi.p99);
    return [
      result({
        name: 'http.session.throughput',
        value: throughput,
        unit: 'requests/s',
        better: 'higher',
        baseline: { name: `${HTTP_BASELINE}.throughput`, value: median(samples.redis.perSec) },
        target: { on: 'ratio', op: '>=', threshold: 1.0 },
        samples: samples.wadi.perSec,
      }),
      result({
        name: 'http.session.p99',
        value: p99,
        unit: 'ms',
        better: 'lower',
        baseline: { name: `${HTTP_BASELINE}.p99`, value: median(samples.redis.p99) },
        target: { on: 'ratio', op: '<=', threshold: 1.0 },
        samples: samples.wadi.p99,
      }),
    ];
  } finally {
    for (const agent of agents) agent.destroy();
    for (const child of children) child.process.kill('SIGKILL');
    await Promise.all(children.map((child) => (child.process.exitCode !== null || child.process.signalCode !== null ? undefined : new Promise((resolve) => child.process.once('exit', resolve)))));
    await redis.stop();
  }
}

function run(): Promise<BenchResult[]> {
  return withAndWithoutWorkers(measureWith);
}

export const httpSession: Benchmark = {
  title: 'http sessions',
  names: ['http.session.throughput', 'http.session.p99', workerThreadFigure('http.session.throughput'), workerThreadFigure('http.session.p99')],
  run,
};
