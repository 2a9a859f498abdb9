/**
 * failover.*: a node SIGKILLed under load, with R = 1 and `sync` sessions. No raw baseline: these
 * are absolute figures.
 *
 * Each round starts a fresh cluster of three `wadi node` processes on loopback (cli-nodes.ts:
 * `NODE_WORKERS` worker threads each, default failure-detection timings, `--replicas 1`) and three clients in this
 * process, each seeded with a different node. Every client appends its own increasing values to
 * SESSIONS `AppendLog` sessions (`replication: 'sync'`), LANES calls in flight, one call at a time
 * per session per client; a failed call is not retried. Once every session holds acknowledged
 * values, a node that is not the coordinator is SIGKILLed; the load goes on.
 *
 * - failover.recovery.seconds: from the SIGKILL until every session has answered a read again
 *   (each session is probed until it answers, PROBE_TIMEOUT_MS per probe). Median over ROUNDS.
 *   Issue target: <= 5 s.
 * - failover.lostAcknowledged: acknowledged appends missing from their session once the load has
 *   stopped and every session is read back, summed over the ROUNDS rounds (the samples are per
 *   round). Issue target: 0.
 *
 * Values applied twice, in the wrong session or out of their client's order are not figures; a
 * round that finds any prints them as a warning (the acceptance tests fail on them).
 *
 * Every process is SIGKILLed after each round, also on error.
 */
import { connect, type WadiClient } from '@wadi/node';
import { formThree, killCliNodes, tail, waitForAgreement, type CliNode } from '../cli-nodes.js';
import { NODE_WORKERS, sleep, waitFor } from '../child-nodes.js';
import { median, result, type Benchmark } from '../harness.js';
import { AppendLog, REPLICATED_ACTORS } from './replicated-actors.js';

const SECRET = 'wadi-bench-failover-secret';
const ROUNDS = 3;
const SESSIONS = 300;
/** Call loops per client; lane k calls the sessions i with i % LANES == k. */
const LANES = 8;
const ASK_TIMEOUT_MS = 10_000;
const PROBE_TIMEOUT_MS = 1_000;
const PROBE_INTERVAL_MS = 50;
/** Longest a round waits for every session to answer again. */
const RECOVERY_LIMIT_MS = 60_000;

interface Call {
  session: number;
  value: string;
  acknowledged: boolean;
}

const sessionId = (i: number): string => `failover-${i}`;

class Load {
  readonly calls: Call[] = [];
  readonly #lanes: Promise<void>[] = [];
  #stopped = false;

  constructor(clients: readonly WadiClient[]) {
    const deadline = performance.now() + 300_000;
    clients.forEach((client, c) => {
      let seq = 0;
      for (let lane = 0; lane < LANES; lane++) {
        const mine = Array.from({ length: SESSIONS }, (_, i) => i).filter((i) => i % LANES === lane);
        // Each client walks its share from a different starting point.
        const offset = Math.floor((c * mine.length) / clients.length);
        this.#lanes.push(
          (async () => {
            for (let n = 0; !this.#stopped && n < 10_000_000 && performance.now() < deadline; n++) {
              const call: Call = { session: mine[(n + offset) % mine.length]!, value: `${c}:${++seq}`, acknowledged: false };
              this.calls.push(call);
              try {
                await client.ref(AppendLog, sessionId(call.session)).append(call.value);
                call.acknowledged = true;
              } catch {
                await sleep(20);
              }
            }
          })(),
        );
      }
    });
  }

  sessionsAcknowledged(): number {
    return new Set(this.calls.filter((call) => call.acknowledged).map((call) => call.session)).size;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#lanes);
  }
}

/** Milliseconds from `since` until every session has answered a read. */
async function timeUntilEveryoneAnswers(clients: readonly WadiClient[], since: number): Promise<number> {
  let last = since;
  await Promise.all(
    Array.from({ length: SESSIONS }, async (_, i) => {
      for (let attempt = 0; ; attempt++) {
        if (performance.now() - since > RECOVERY_LIMIT_MS) throw new Error(`${sessionId(i)} did not answer within ${RECOVERY_LIMIT_MS} ms of the kill`);
        try {
          await clients[(i + attempt) % clients.length]!.ref(AppendLog, sessionId(i), { timeoutMs: PROBE_TIMEOUT_MS }).values();
          last = Math.max(last, performance.now());
          return;
        } catch {
          await sleep(PROBE_INTERVAL_MS);
        }
      }
    }),
  );
  return last - since;
}

async function readAll(client: WadiClient): Promise<string[][]> {
  const values: string[][] = [];
  for (let start = 0; start < SESSIONS; start += 50) {
    await Promise.all(
      Array.from({ length: Math.min(50, SESSIONS - start) }, async (_, k) => {
        const i = start + k;
        values[i] = await waitFor(`${sessionId(i)} to answer a read`, () => client.ref(AppendLog, sessionId(i), { timeoutMs: 3_000 }).values(), { intervalMs: 200, timeoutMs: 30_000 });
      }),
    );
  }
  return values;
}

/** Acknowledged values missing from their session, and descriptions of values applied twice, misplaced or out of order. */
function compare(calls: readonly Call[], sessions: readonly string[][]): { lost: number; anomalies: string[] } {
  const sent = new Map(calls.map((call) => [call.value, call]));
  const present = new Set<string>();
  const anomalies: string[] = [];
  sessions.forEach((values, s) => {
    const lastSeq = new Map<string, number>();
    for (const value of values) {
      const call = sent.get(value);
      if (call === undefined || call.session !== s) anomalies.push(`${sessionId(s)}: ${value} was not sent to it`);
      if (present.has(value)) anomalies.push(`${sessionId(s)}: ${value} applied twice`);
      present.add(value);
      const [client = '', seq = '0'] = value.split(':');
      if ((lastSeq.get(client) ?? 0) >= Number(seq)) anomalies.push(`${sessionId(s)}: ${value} out of client ${client}'s order`);
      lastSeq.set(client, Math.max(lastSeq.get(client) ?? 0, Number(seq)));
    }
  });
  const lost = calls.filter((call) => call.acknowledged && !present.has(call.value)).length;
  return { lost, anomalies };
}

async function round(index: number): Promise<{ seconds: number; lost: number }> {
  const clients: WadiClient[] = [];
  let load: Load | undefined;
  let nodes: CliNode[] = [];
  try {
    const formed = await formThree({ name: `f${index}`, secret: SECRET, clusterName: 'bench-failover', replicas: 1, workers: NODE_WORKERS, actors: REPLICATED_ACTORS });
    nodes = formed.nodes;
    for (const node of nodes) clients.push(await connect({ seeds: [node.url], secret: SECRET, clusterName: 'bench-failover', askTimeoutMs: ASK_TIMEOUT_MS, log: () => undefined }));
    load = new Load(clients);
    await waitFor('every session to take an append', async () => (load!.sessionsAcknowledged() === SESSIONS ? true : undefined), { timeoutMs: 30_000 });
    await sleep(500);

    const victim = nodes.find((node) => node.id !== formed.layout.coordinator && node !== nodes[0])!;
    const survivors = nodes.filter((node) => node !== victim);
    const killedAt = performance.now();
    victim.child.kill('SIGKILL');
    const ms = await timeUntilEveryoneAnswers(clients, killedAt);
    await waitForAgreement(survivors, 1);
    await sleep(500);
    await load.stop();

    const { lost, anomalies } = compare(load.calls, await readAll(clients[0]!));
    if (anomalies.length > 0) {
      console.error(`failover round ${index}: ${anomalies.length} values applied twice, misplaced or out of order, e.g.\n  ${anomalies.slice(0, 10).join('\n  ')}`);
    }
    return { seconds: ms / 1000, lost };
  } catch (error) {
    throw new Error(`failover round ${index}: ${(error as Error).message}\n${nodes.map((node) => tail(node)).join('\n')}`);
  } finally {
    await load?.stop();
    await Promise.all(clients.map((client) => client.close().catch(() => undefined)));
    await killCliNodes();
  }
}

export const failover: Benchmark = {
  title: 'failover',
  names: ['failover.recovery.seconds', 'failover.lostAcknowledged'],
  async run() {
    const rounds: { seconds: number; lost: number }[] = [];
    for (let i = 0; i < ROUNDS; i++) rounds.push(await round(i));
    return [
      result({
        name: 'failover.recovery.seconds',
        value: median(rounds.map((r) => r.seconds)),
        unit: 's',
        better: 'lower',
        target: { on: 'value', op: '<=', threshold: 5 },
        samples: rounds.map((r) => r.seconds),
      }),
      result({
        name: 'failover.lostAcknowledged',
        value: rounds.reduce((sum, r) => sum + r.lost, 0),
        unit: 'writes',
        better: 'lower',
        // A sum, not a median: no per-round spread to show.
        target: { on: 'value', op: '<=', threshold: 0 },
      }),
    ];
  },
};
