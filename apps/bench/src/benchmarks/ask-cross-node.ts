/**
 * ask.crossNode.*: asks from node A to sessions on node B, two cluster members in two OS
 * processes on loopback, each measured alternately with the raw WebSocket echo between two
 * processes it is compared to (same window; the echo's client is this process too).
 *
 * - Node A is this process (`startNode`, so the asks can be timed here), node B a child process
 *   (children/cluster-node.ts).
 * - The sessions are created by B's own calls, so they live on B. A then calls each once before
 *   anything is timed: a first call goes through the bucket's owner, and from then on A's cache
 *   sends calls straight to B (checked at the end: B's hop counts say how calls arrived).
 * - pipelined: `DEFAULT_ECHO_WINDOW` asks in flight over SESSIONS sessions, a new one as each
 *   completes, against the echo with as many WebSocket messages in flight, one per message. The
 *   transport batches what a tick sends to one peer into one frame; the echo does not.
 * - latency: one ask at a time to one session, against one echo round trip at a time. Without
 *   worker threads an ask wakes two threads per round trip (B's main thread, then A's), like the
 *   echo. With a worker thread per node it wakes four (B's main thread, B's worker, B's main
 *   thread, A), and on a VM a wake-up costs as much as the work: an echo that passes each
 *   message through a worker thread and back, with no wadi code at all, already takes 1.65-1.8x
 *   the plain echo on the 2-core VM these figures were first taken on (1.85-1.95x with other
 *   processes busy on it), so that is the floor. Where the time goes (perf, per thread, per ask):
 *   most of each thread's CPU is kernel time (wake-ups, and an extra futex sleep per hop: Node's
 *   postMessage wakes the receiving thread while holding the lock that thread then takes first),
 *   the same in the floor; what wadi adds on top is a few microseconds per thread (routing, the
 *   codec, the transport), spread thin. Measured not to help: flushing the transport after the
 *   current callback's microtasks rather than at the check phase, and copying a thread batch
 *   rather than transferring its buffer.
 *
 * Each figure is measured twice, each time on a fresh pair of nodes: with no worker threads
 * (`NODE_WORKERS`, child-nodes.ts: sessions on each node's main thread, beside its sockets; these
 * carry the targets) and with one worker thread per node (`<name>.workerThread`, reported).
 *
 * Both nodes run with `replicas: 0`: the bench's session changes its state on every ask, and
 * with a backup per bucket each ask would also ship that state to the other node and (sync, the
 * default) wait for its acknowledgement. These figures measure routing (issue 5); what
 * replication costs is measured by `replication.*` against R = 0.
 *
 * Issue targets: pipelined ratio >= 1.0 (higher better); latency ratio <= 2.0 (lower better).
 */
import { startNode, type WadiNode } from '@wadi/node';
import { DEFAULT_ECHO_WINDOW, RAW_WS_LATENCY, RAW_WS_PIPELINED, withWsEcho } from '../baselines.js';
import { ChildNode, inProcess, killChildNodes, pipelined, settled, withAndWithoutWorkers, workerThreadFigure } from '../child-nodes.js';
import { measureAll, result, type BenchResult, type Benchmark, type Op, type Timing } from '../harness.js';
import { SESSION_MODULE, Session } from './session.js';

const SECRET = 'wadi-bench-cross-node-secret';
const BUCKETS = 1024;
const SESSIONS = 16;

interface Figures {
  throughput: { asks: Timing; echo: Timing };
  latency: { asks: Timing; echo: Timing };
}

/** Both figures, and the echo they are compared to, with `workers` worker threads per node. */
async function measure(workers: number): Promise<Figures> {
  let a: WadiNode | undefined;
  try {
    const b = await ChildNode.spawn('B', { seeds: [], secret: SECRET, workers, buckets: BUCKETS, replicas: 0 });
    a = await startNode({ actors: [SESSION_MODULE], workers, buckets: BUCKETS, cluster: { port: 0, seeds: [b.url], secret: SECRET, replicas: 0, log: () => undefined } });
    const node = a;
    await settled([inProcess('A', node), b]);
    await b.createSessions('cross-', SESSIONS);
    const refs = Array.from({ length: SESSIONS }, (_, i) => node.ref(Session, `cross-${i}`));
    // Teach A where the sessions are (the first call of each goes through its bucket's owner).
    await Promise.all(refs.map((ref) => ref.add(1)));
    const before = await b.status();
    if (before.sessions.memory !== SESSIONS) throw new Error(`B hosts ${before.sessions.memory} sessions, expected ${SESSIONS}`);

    const pipelinedAsks: Op = (n) => pipelined(n, DEFAULT_ECHO_WINDOW, (i) => refs[i % SESSIONS]!.add(1));
    const sequentialAsks: Op = async (n) => {
      const ref = refs[0]!;
      for (let i = 0; i < n; i++) await ref.add(1);
    };
    const figures = await withWsEcho(async (echo) => ({
      throughput: await measureAll({ asks: pipelinedAsks, echo: echo.pipelined(DEFAULT_ECHO_WINDOW) }, { warmupMs: 800, roundMs: 300, rounds: 7 }),
      latency: await measureAll({ asks: sequentialAsks, echo: echo.roundTrips() }, { warmupMs: 500, roundMs: 250, rounds: 7 }),
    }));

    // The figures are for direct calls: nearly every timed ask must have reached B in one hop.
    const after = await b.status();
    const arrivals = (status: typeof after, hops: string): number => status.routing.hops[hops] ?? 0;
    const direct = arrivals(after, '1') - arrivals(before, '1');
    const indirect = arrivals(after, '2') - arrivals(before, '2');
    if (after.sessions.memory !== SESSIONS || indirect > direct / 1000) {
      throw new Error(`asks did not go straight to B: ${direct} arrived in one hop, ${indirect} in two; B hosts ${after.sessions.memory} sessions`);
    }
    return figures;
  } finally {
    // A closes at once (a graceful leave would only wait for B to take its buckets); B is killed.
    await a?.cluster?.close();
    await a?.stop({ timeoutMs: 1000 });
    await killChildNodes();
  }
}

function rows({ throughput, latency }: Figures): BenchResult[] {
  return [
    result({
      name: 'ask.crossNode.pipelined',
      value: throughput.asks.opsPerSec,
      unit: 'calls/s',
      better: 'higher',
      baseline: { name: RAW_WS_PIPELINED, value: throughput.echo.opsPerSec },
      target: { on: 'ratio', op: '>=', threshold: 1.0 },
      samples: throughput.asks.samples,
    }),
    result({
      name: 'ask.crossNode.latency',
      value: latency.asks.usPerOp,
      unit: 'us',
      better: 'lower',
      baseline: { name: RAW_WS_LATENCY, value: latency.echo.usPerOp },
      target: { on: 'ratio', op: '<=', threshold: 2.0 },
      samples: latency.asks.samples.map((perSec) => 1e6 / perSec),
    }),
  ];
}

function run(): Promise<BenchResult[]> {
  return withAndWithoutWorkers(async (workers) => rows(await measure(workers)));
}

export const askCrossNode: Benchmark = {
  title: 'ask across nodes',
  names: ['ask.crossNode.pipelined', 'ask.crossNode.latency', workerThreadFigure('ask.crossNode.pipelined'), workerThreadFigure('ask.crossNode.latency')],
  run,
};
