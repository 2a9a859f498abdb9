/**
 * session.migrate.perSecond: sessions with 1 KiB of state moved from node B to node A per second
 * by `routing: 'migrate'` calls, two cluster members in two OS processes on loopback, sessions on
 * each node's main thread (`NODE_WORKERS`, as ask.crossNode.*). No raw baseline: an absolute figure, reported without a target.
 *
 * Each round, B creates SESSIONS fresh sessions by calling them itself (so they live on B) and
 * fills each with 1 KiB; then A calls every one of them with `migrate`, WINDOW calls in flight,
 * and the round's figure is SESSIONS / the seconds until the last call returned. Each session is
 * its own group, so a call moves exactly one session. A's first call to a session goes through
 * its bucket's owner, as a migrating caller's first call does. Every call returns the payload's
 * size, which must be the 1 KiB B put there, and at the end A's and B's migration counters and
 * session counts must say that every session moved, once.
 *
 * WINDOW is a capacity setting: each migration is a few round trips between the nodes,
 * so with few in flight the figure measures latency (about 2,000/s with one at a time on the
 * 2-core machine the figures were first taken on) rather than how many sessions the nodes can
 * move. The first round only warms up (it runs at about half speed while the code compiles); the
 * median over the ROUNDS after it is reported.
 */
import { startNode, type WadiNode } from '@wadi/node';
import { ChildNode, NODE_WORKERS, inProcess, killChildNodes, pipelined, settled } from '../child-nodes.js';
import { median, result, type BenchResult, type Benchmark } from '../harness.js';
import { SESSION_MODULE, Session } from './session.js';

const SECRET = 'wadi-bench-migrate-secret';
const BUCKETS = 1024;
const STATE_BYTES = 1024;
const SESSIONS = 10_000;
/** Migrations in flight at once: enough to keep both nodes busy, few enough not to flood one. */
const WINDOW = 256;
const ROUNDS = 5;

async function run(): Promise<BenchResult[]> {
  let a: WadiNode | undefined;
  try {
    const b = await ChildNode.spawn('B', { seeds: [], secret: SECRET, workers: NODE_WORKERS, buckets: BUCKETS });
    a = await startNode({ actors: [SESSION_MODULE], workers: NODE_WORKERS, buckets: BUCKETS, cluster: { port: 0, seeds: [b.url], secret: SECRET, log: () => undefined } });
    const node = a;
    await settled([inProcess('A', node), b]);
    const perSecond: number[] = [];
    for (let round = 0; round <= ROUNDS; round++) {
      const prefix = `migrate-${round}-`;
      await b.createSessions(prefix, SESSIONS, { bytes: STATE_BYTES });
      const start = performance.now();
      await pipelined(SESSIONS, WINDOW, async (i) => {
        const size = await node.ref(Session, `${prefix}${i}`, { routing: 'migrate' }).size();
        if (size !== STATE_BYTES) throw new Error(`session ${prefix}${i} arrived with ${size} bytes of payload, expected ${STATE_BYTES}`);
      });
      if (round > 0) perSecond.push(SESSIONS / ((performance.now() - start) / 1000));
    }
    const [onA, onB] = await Promise.all([node.cluster!.status(), b.status()]);
    const moved = SESSIONS * (ROUNDS + 1);
    if (onA.routing['migratedIn'] !== moved || onB.routing['migratedOut'] !== moved || onA.sessions.memory !== moved || onB.sessions.memory !== 0) {
      throw new Error(
        `expected ${moved} sessions moved from B to A; A: migratedIn ${String(onA.routing['migratedIn'])}, hosts ${onA.sessions.memory}; ` +
          `B: migratedOut ${String(onB.routing['migratedOut'])}, hosts ${onB.sessions.memory}`,
      );
    }
    return [result({ name: 'session.migrate.perSecond', value: median(perSecond), unit: 'sessions/s', better: 'higher', samples: perSecond })];
  } finally {
    await a?.cluster?.close();
    await a?.stop({ timeoutMs: 1000 });
    await killChildNodes();
  }
}

export const sessionMigrate: Benchmark = {
  title: 'session migration',
  names: ['session.migrate.perSecond'],
  run,
};
