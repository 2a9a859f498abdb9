/**
 * Acceptance tests of issue 7 over real node processes on loopback: a crashed or paused node
 * loses no acknowledged write and applies nothing twice.
 *
 * Each test starts its own cluster of 3 nodes (R = 1, short failure detection) and 3 clients,
 * each attached to a different node. Every client appends its own increasing values
 * (`<client>:<seq>`, unique across the test) to every session, one call at a time per session per
 * client; a call that fails is never retried with its value (the next call takes a new one).
 * Mid-load one node is SIGKILLed (a node that is not the coordinator, then the coordinator) or
 * SIGSTOPped for longer than the failure timeout and then SIGCONTed. The load goes on while a
 * prober measures how long until every session answers again. Then every session is read through
 * every client, and:
 *
 * - every acknowledged append is in its session exactly once (sync), or, for an `async` type,
 *   every one missing was acknowledged at most `ASYNC_LOSS_WINDOW_MS` before the kill;
 * - no value appears twice anywhere, nor in a session it was not sent to, nor was it never sent;
 * - each client's values appear in each session in the order the client sent them;
 * - every client reads the same values (one activation per session);
 * - every session answered again within RECOVERY_BOUND_MS of the fault, and no call was still
 *   waiting on the failed node STUCK_AFTER_RECOVERY_MS after that (it ends with `HostLost` or an
 *   answer, not at its ask deadline);
 * - sessions that lived on the failed node took new writes after recovery;
 * - a continued node rejoins or exits by itself (fenced) within 20 s.
 *
 * A failed call may or may not have been applied: its value may be present (once, in order) or
 * absent. The workload's random choices (session order per client, when the fault strikes) come
 * from WADI_FAILOVER_SEED (default 1); every failure message names the seed.
 */
import { ASYNC_LOSS_WINDOW_MS } from '@wadi/cluster';
import { describe, expect, it } from 'vitest';
import { bucketOf, connect, type WadiClient } from 'wadi';
import { AsyncAppender, SyncAppender } from './fixtures/appenders.mjs';
import {
  FAST_TIMINGS,
  SECRET,
  agree,
  killNode,
  layout,
  sleep,
  startNode,
  waitFor,
  waitForAgreement,
  type LayoutView,
  type NodeProcess,
} from './helpers.js';

const ACTORS = new URL('./fixtures/appenders.mjs', import.meta.url).pathname;
const SEED = Number(process.env['WADI_FAILOVER_SEED'] ?? 1);
const SESSIONS = 240;
/** Concurrent call loops per client; each owns a fixed share of the sessions. */
const LANES = 6;
/** Default deadline of the clients' asks: longer than the pause, so a call a paused node holds is still awaited when it wakes. */
const ASK_TIMEOUT_MS = 10_000;
/** How long a paused node stays stopped: well past the failure timeout of FAST_TIMINGS (1 s suspect + 0.5 s down). */
const PAUSE_MS = 4_000;
/** A lane waits this long after a failed call, so a lane whose sessions are all unreachable does not spin. */
const FAILURE_PAUSE_MS = 25;
/** Deadline of one probe read, and the pause between probes of a session that did not answer. */
const PROBE_TIMEOUT_MS = 1_000;
const PROBE_INTERVAL_MS = 100;
/**
 * The bound on "every session answers again", from the fault. The issue's target (5 s) is
 * measured by `pnpm bench` (failover.recovery.seconds); this bound catches hangs and recovery
 * storms with room for a noisy 2-core CI machine.
 */
const RECOVERY_BOUND_MS = 15_000;
/**
 * After every session answered again, the load goes on until each session of the failed node has
 * acknowledged an append made after that (so restored sessions take new writes after what they
 * held), at most this long: a lane may first have to wait out a call stuck on the failed node.
 */
const RESTORED_WRITES_BOUND_MS = ASK_TIMEOUT_MS + 10_000;
/**
 * The load goes on through a failure: a call waiting on a node that went down ends (answered, or
 * failed with `HostLost`) once the cluster has failed over, rather than at its ask deadline. Calls
 * still waiting this long after every session answered again count as stuck.
 */
const STUCK_AFTER_RECOVERY_MS = 3_000;
/** A test's own bound: every wait inside it is bounded well below it. */
const TEST_TIMEOUT_MS = 100_000;

const sessionId = (i: number): string => `failover-${i}`;

type Appender = typeof SyncAppender | typeof AsyncAppender;

// --- seeded choices ------------------------------------------------------------------------------

/** mulberry32: a small seeded generator, so a run's choices can be replayed from its seed. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [copy[i], copy[j]] = [copy[j]!, copy[i]!];
  }
  return copy;
}

// --- the workload --------------------------------------------------------------------------------

interface Call {
  client: number;
  seq: number;
  session: number;
  value: string;
  /** performance.now() when the call was made and when it settled. */
  startedAt: number;
  settledAt: number;
  acknowledged: boolean;
  error?: string;
}

const valueOf = (client: number, seq: number): string => `${client}:${seq}`;

function parseValue(value: string): { client: number; seq: number } | undefined {
  const match = /^(\d+):(\d+)$/.exec(value);
  return match === null ? undefined : { client: Number(match[1]), seq: Number(match[2]) };
}

/**
 * Every client runs LANES loops; lane k of a client calls the sessions i with i % LANES == k, in
 * an order of its own, one call at a time, so no client ever has two calls in flight to one
 * session. Each call takes the client's next sequence number; a failed one is recorded and its
 * value never sent again.
 */
class AppendWorkload {
  readonly calls: Call[] = [];
  readonly #lanes: Promise<void>[] = [];
  #stopped = false;

  constructor(clients: readonly WadiClient[], def: Appender, random: () => number) {
    const deadline = performance.now() + TEST_TIMEOUT_MS;
    clients.forEach((client, c) => {
      let seq = 0;
      for (let lane = 0; lane < LANES; lane++) {
        const mine = shuffled(
          Array.from({ length: SESSIONS }, (_, i) => i).filter((i) => i % LANES === lane),
          random,
        );
        this.#lanes.push(
          (async () => {
            for (let n = 0; !this.#stopped && n < 1_000_000 && performance.now() < deadline; n++) {
              const session = mine[n % mine.length]!;
              const call: Call = { client: c, seq: ++seq, session, value: '', startedAt: performance.now(), settledAt: 0, acknowledged: false };
              call.value = valueOf(c, call.seq);
              this.calls.push(call);
              try {
                await client.ref(def, sessionId(session)).append(call.value);
                call.acknowledged = true;
              } catch (error) {
                call.error = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
              }
              call.settledAt = performance.now();
              if (!call.acknowledged) await sleep(FAILURE_PAUSE_MS);
            }
          })(),
        );
      }
    });
  }

  acknowledged(): Call[] {
    return this.calls.filter((call) => call.acknowledged);
  }

  /** Sessions with at least one acknowledged append. */
  sessionsAcknowledged(): number {
    return new Set(this.acknowledged().map((call) => call.session)).size;
  }

  /** Stops starting calls and waits for those in flight (each bounded by its ask deadline). */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#lanes);
  }
}

// --- probing and reading -------------------------------------------------------------------------

/**
 * From `since`, reads every session (rotating through the clients, PROBE_TIMEOUT_MS each) until
 * each has answered once; resolves with how long after `since` the last one answered. Sessions
 * still silent after RECOVERY_BOUND_MS + a margin are reported instead.
 */
async function timeUntilEveryoneAnswers(clients: readonly WadiClient[], def: Appender, since: number): Promise<{ ms: number; silent: number[] }> {
  const giveUpAt = since + RECOVERY_BOUND_MS + 5_000;
  let last = since;
  const silent: number[] = [];
  await Promise.all(
    Array.from({ length: SESSIONS }, async (_, i) => {
      for (let attempt = 0; performance.now() < giveUpAt; attempt++) {
        try {
          await clients[(i + attempt) % clients.length]!.ref(def, sessionId(i), { timeoutMs: PROBE_TIMEOUT_MS }).values();
          last = Math.max(last, performance.now());
          return;
        } catch {
          await sleep(PROBE_INTERVAL_MS);
        }
      }
      silent.push(i);
    }),
  );
  return { ms: last - since, silent };
}

/**
 * Every session's values as every client reads them (each read retried, bounded). A session
 * whose clients disagree is reported: two activations, or a stale one answering.
 */
async function readAll(clients: readonly WadiClient[], def: Appender): Promise<{ values: string[][]; problems: string[] }> {
  const deadline = performance.now() + 30_000;
  const problems: string[] = [];
  const values: string[][] = [];
  const readOnce = async (client: WadiClient, i: number): Promise<string[]> => {
    let lastError: unknown;
    while (performance.now() < deadline) {
      try {
        return await client.ref(def, sessionId(i), { timeoutMs: 3_000 }).values();
      } catch (error) {
        lastError = error;
        await sleep(200);
      }
    }
    throw new Error(`${sessionId(i)} did not answer a read within 30 s: ${String(lastError)}`);
  };
  for (let start = 0; start < SESSIONS; start += 40) {
    const batch = Array.from({ length: Math.min(40, SESSIONS - start) }, (_, k) => start + k);
    await Promise.all(
      batch.map(async (i) => {
        const seen = await Promise.all(clients.map((client) => readOnce(client, i)));
        values[i] = seen[0]!;
        for (let c = 1; c < seen.length; c++) {
          if (JSON.stringify(seen[c]) !== JSON.stringify(seen[0])) {
            problems.push(`${sessionId(i)}: client ${c} reads ${seen[c]!.length} values [..${seen[c]!.slice(-3).join(' ')}], client 0 reads ${seen[0]!.length} [..${seen[0]!.slice(-3).join(' ')}]`);
          }
        }
      }),
    );
  }
  return { values, problems };
}

// --- the checks ----------------------------------------------------------------------------------

interface Findings {
  /** Acknowledged appends missing from their session. */
  lost: Call[];
  /** Values applied twice, in a session they were not sent to, never sent, or out of their client's order. */
  problems: string[];
  /** Failed calls whose value was applied anyway (allowed: the reply was lost, not the write). */
  failedButApplied: number;
}

function check(calls: readonly Call[], sessions: readonly string[][]): Findings {
  const byValue = new Map(calls.map((call) => [call.value, call]));
  const problems: string[] = [];
  let failedButApplied = 0;
  const present = new Set<string>();
  sessions.forEach((values, s) => {
    const seen = new Set<string>();
    const lastSeq = new Map<number, number>();
    for (const [position, value] of values.entries()) {
      const call = byValue.get(value);
      const parsed = parseValue(value);
      if (call === undefined || parsed === undefined) {
        problems.push(`${sessionId(s)}[${position}]: ${JSON.stringify(value)} was never sent`);
        continue;
      }
      if (call.session !== s) problems.push(`${sessionId(s)}[${position}]: ${value} was sent to ${sessionId(call.session)}`);
      if (seen.has(value)) problems.push(`${sessionId(s)}[${position}]: ${value} applied twice`);
      seen.add(value);
      present.add(value);
      const before = lastSeq.get(parsed.client);
      if (before !== undefined && parsed.seq <= before) problems.push(`${sessionId(s)}[${position}]: client ${parsed.client}'s ${value} after its seq ${before}`);
      lastSeq.set(parsed.client, Math.max(before ?? -1, parsed.seq));
      if (!call.acknowledged) failedButApplied++;
    }
  });
  const lost = calls.filter((call) => call.acknowledged && !present.has(call.value));
  return { lost, problems, failedButApplied };
}

// --- the cluster ---------------------------------------------------------------------------------

interface Cluster {
  nodes: NodeProcess[];
  clients: WadiClient[];
  coordinator: string;
  view: LayoutView;
}

/** Whether every bucket has its R = 1 backup in place and none is still receiving its copy. */
function backupsComplete(view: LayoutView | null): boolean {
  if (view === null || view.replicas !== 1 || view.backups === undefined) return false;
  const incoming = (view as LayoutView & { incoming?: unknown[] }).incoming ?? [];
  return view.backups.length === view.buckets && view.backups.every((member) => member >= 0) && incoming.length === 0;
}

/** `workers`: worker threads per node; 0 puts each node's sessions on its main thread. */
async function startCluster(workers = 2): Promise<Cluster> {
  const options = { workers, extraArgs: [...FAST_TIMINGS, '--replicas', '1', '--actors', ACTORS] };
  const n1 = await startNode({ name: 'n1', ...options });
  // One at a time, so n1 is the oldest member (the coordinator) and n2 the next oldest.
  const n2 = await startNode({ name: 'n2', seeds: [n1], ...options });
  await waitForAgreement([n1, n2]);
  const n3 = await startNode({ name: 'n3', seeds: [n1], ...options });
  const nodes = [n1, n2, n3];
  const agreed = await waitForAgreement(nodes);
  const view = await waitFor(async () => {
    const current = await layout(n1);
    return backupsComplete(current) && (await agree(nodes)) !== undefined ? current : undefined;
  }, { timeoutMs: 20_000, what: 'every bucket to have its backup' });
  const clients: WadiClient[] = [];
  for (const node of nodes) clients.push(await connect({ seeds: [node.url], secret: SECRET, askTimeoutMs: ASK_TIMEOUT_MS }));
  return { nodes, clients, coordinator: agreed.coordinator, view };
}

async function stopCluster(cluster: Cluster | undefined): Promise<void> {
  if (cluster === undefined) return;
  await Promise.all(cluster.clients.map((client) => client.close().catch(() => undefined)));
  for (const node of cluster.nodes) {
    if (node.exit !== undefined) continue;
    // A node left stopped (a failed pause test) cannot die until it is continued.
    node.child.kill('SIGCONT');
    await killNode(node);
  }
}

// --- one run -------------------------------------------------------------------------------------

type Fault = 'kill' | 'pause';

interface Run {
  seed: number;
  workload: AppendWorkload;
  /** performance.now() of the SIGKILL or SIGSTOP. */
  faultAt: number;
  victim: NodeProcess;
  /** Sessions whose bucket the victim owned when the fault struck: where clients had placed them. */
  victimSessions: number[];
  recovery: { ms: number; silent: number[] };
  /** performance.now() when every session had answered again. */
  recoveredAt: number;
  final: { values: string[][]; problems: string[] };
  findings: Findings;
  /** For a pause: how the paused node ended up. */
  pausedNode?: 'rejoined' | `exited ${string}`;
}

function describeRun(run: Run, fault: string): string {
  const acks = run.workload.acknowledged();
  const acknowledged = acks.length;
  const failed = run.workload.calls.length - acknowledged;
  const inFlight = run.workload.calls.filter((call) => call.startedAt < run.faultAt && call.settledAt > run.faultAt);
  const stuckMs = Math.max(0, ...inFlight.map((call) => call.settledAt - run.faultAt));
  const errors = new Map<string, number>();
  for (const call of run.workload.calls) if (call.error !== undefined) errors.set(call.error.split(':')[0]!, (errors.get(call.error.split(':')[0]!) ?? 0) + 1);
  return (
    `seed ${run.seed} (WADI_FAILOVER_SEED), ${fault} of ${run.victim.name} (${run.victim.id}): ` +
    `${run.workload.calls.length} calls, ${acknowledged} acknowledged ` +
    `(${acks.filter((call) => call.startedAt < run.faultAt).length} sent before the fault, ` +
    `${acks.filter((call) => call.startedAt >= run.faultAt && call.startedAt < run.recoveredAt).length} until recovery, ` +
    `${acks.filter((call) => call.startedAt >= run.recoveredAt).length} after), ${failed} failed (${run.findings.failedButApplied} of them applied; ` +
    `${[...errors].map(([name, count]) => `${count} ${name}`).join(', ') || 'no errors'}), ` +
    `${run.findings.lost.length} acknowledged lost, ${run.findings.problems.length + run.final.problems.length} other problems; ` +
    `every session answered ${(run.recovery.ms / 1000).toFixed(2)} s after the fault; ` +
    `the ${inFlight.length} calls in flight at the fault settled within ${(stuckMs / 1000).toFixed(2)} s; ` +
    `${restoredWithoutNewWrites(run.workload, run.victimSessions, run.recoveredAt).length} of the failed node's ${run.victimSessions.length} sessions took no append after recovery` +
    (run.pausedNode === undefined ? '' : `; the paused node ${run.pausedNode}`)
  );
}

function describeCall(call: Call, faultAt: number): string {
  const at = (t: number): string => `${t - faultAt >= 0 ? '+' : ''}${Math.round(t - faultAt)} ms`;
  return `${call.value} -> ${sessionId(call.session)} (sent ${at(call.startedAt)}, ${call.acknowledged ? 'acknowledged' : 'failed'} ${at(call.settledAt)} from the fault)`;
}

async function runFailover(cluster: Cluster, def: Appender, target: 'member' | 'coordinator', fault: Fault): Promise<Run> {
  const random = generator(SEED);
  const { nodes, clients } = cluster;
  const candidates = nodes.filter((node) => (target === 'coordinator') === (node.id === cluster.coordinator));
  const victim = candidates[Math.floor(random() * candidates.length)]!;
  const survivors = nodes.filter((node) => node !== victim);

  const workload = new AppendWorkload(clients, def, random);
  try {
    // Mid-load: every session holds acknowledged values, then a little more.
    await waitFor(() => workload.sessionsAcknowledged() === SESSIONS, { timeoutMs: 20_000, what: 'every session to take an append' });
    await sleep(300 + Math.floor(random() * 700));
    const view = (await layout(victim)) ?? cluster.view;
    const victimSessions = Array.from({ length: SESSIONS }, (_, i) => i).filter((i) => view.ownerIds[bucketOf(sessionId(i), view.buckets)] === victim.id);

    const faultAt = performance.now();
    victim.child.kill(fault === 'kill' ? 'SIGKILL' : 'SIGSTOP');
    const recoveryDone = timeUntilEveryoneAnswers(clients, def, faultAt);
    let pausedNode: Run['pausedNode'];
    let exitedAfterMs: number | undefined;
    if (fault === 'kill') {
      await victim.exited;
      await waitForAgreement(survivors);
    } else {
      await sleep(PAUSE_MS);
      victim.child.kill('SIGCONT');
      const continuedAt = performance.now();
      void victim.exited.then(() => (exitedAfterMs = performance.now() - continuedAt));
      // It must either come back as a member (all three agree) or exit, fenced (the README: a
      // node the others declared down exits 1). Either way the survivors agree.
      await waitFor(async () => victim.exit !== undefined || (await agree(nodes)) !== undefined, {
        timeoutMs: 20_000,
        what: `${victim.name} to rejoin or exit after SIGCONT`,
      });
      pausedNode =
        victim.exit === undefined ? 'rejoined' : `exited ${victim.exit.signal ?? `with code ${victim.exit.code}`} ${((exitedAfterMs ?? 0) / 1000).toFixed(2)} s after SIGCONT`;
      await waitForAgreement(victim.exit === undefined ? nodes : survivors);
    }
    const recovery = await recoveryDone;
    const recoveredAt = faultAt + recovery.ms;
    await waitFor(() => restoredWithoutNewWrites(workload, victimSessions, recoveredAt).length === 0, {
      timeoutMs: RESTORED_WRITES_BOUND_MS,
      what: 'every session of the failed node to take an append after recovery',
    }).catch(() => undefined); // expectSafe reports the sessions that did not
    await workload.stop();

    const final = await readAll(clients, def);
    const findings = check(workload.calls, final.values);
    return { seed: SEED, workload, faultAt, victim, victimSessions, recovery, recoveredAt, final, findings, ...(pausedNode === undefined ? {} : { pausedNode }) };
  } finally {
    await workload.stop();
  }
}

/** Sessions of `victimSessions` with no acknowledged append made after `since`. */
function restoredWithoutNewWrites(workload: AppendWorkload, victimSessions: readonly number[], since: number): number[] {
  const written = new Set(workload.acknowledged().filter((call) => call.startedAt > since).map((call) => call.session));
  return victimSessions.filter((session) => !written.has(session));
}

/** The checks every run must pass, sync or async. */
function expectSafe(run: Run, fault: string): void {
  const summary = describeRun(run, fault);
  console.log(`failover: ${summary}`);
  expect(run.final.problems.slice(0, 20), `${summary}: sessions read differently by different clients`).toEqual([]);
  expect(run.findings.problems.slice(0, 20), `${summary}: duplicated, misplaced or reordered values`).toEqual([]);
  expect(run.recovery.silent.map(sessionId), `${summary}: sessions that never answered again`).toEqual([]);
  expect(run.recovery.ms, `${summary}: ms until every session answered again`).toBeLessThanOrEqual(RECOVERY_BOUND_MS);
  const stuck = run.workload.calls.filter((call) => call.startedAt < run.recoveredAt && call.settledAt > run.recoveredAt + STUCK_AFTER_RECOVERY_MS);
  expect(
    stuck.slice(0, 10).map((call) => `${describeCall(call, run.faultAt)}${call.error === undefined ? '' : `: ${call.error}`}`),
    `${summary}: calls (${stuck.length}) still waiting ${STUCK_AFTER_RECOVERY_MS} ms after every session answered again`,
  ).toEqual([]);
  // Not vacuous: the victim held sessions that had taken writes, and the load went on.
  expect(run.victimSessions.length, summary).toBeGreaterThan(0);
  const afterFault = run.workload.acknowledged().filter((call) => call.startedAt > run.faultAt);
  expect(afterFault.length, `${summary}: acknowledged appends after the fault`).toBeGreaterThan(0);
  expect(
    restoredWithoutNewWrites(run.workload, run.victimSessions, run.recoveredAt).map(sessionId),
    `${summary}: sessions of the failed node that acknowledged no append made after recovery (within ${RESTORED_WRITES_BOUND_MS} ms)`,
  ).toEqual([]);
}

function expectNothingLost(run: Run, fault: string): void {
  const lost = run.findings.lost;
  expect(
    lost.slice(0, 20).map((call) => describeCall(call, run.faultAt)),
    `${describeRun(run, fault)}: acknowledged appends missing (${lost.length}); their sessions hold e.g. ` +
      lost
        .slice(0, 3)
        .map((call) => `${sessionId(call.session)} = [..${(run.final.values[call.session] ?? []).slice(-5).join(' ')}]`)
        .join(', '),
  ).toEqual([]);
}

// --- the tests -----------------------------------------------------------------------------------

describe('failover: a crashed or paused node loses no acknowledged write (3 nodes, R = 1)', () => {
  it('sync: SIGKILL of a node that is not the coordinator, mid-load', { timeout: TEST_TIMEOUT_MS }, async () => {
    let cluster: Cluster | undefined;
    try {
      cluster = await startCluster();
      const run = await runFailover(cluster, SyncAppender, 'member', 'kill');
      expectNothingLost(run, 'SIGKILL');
      expectSafe(run, 'SIGKILL');
    } finally {
      await stopCluster(cluster);
    }
  });

  it('sync, sessions on each node\'s main thread (--workers 0): SIGKILL of a node that is not the coordinator, mid-load', { timeout: TEST_TIMEOUT_MS }, async () => {
    let cluster: Cluster | undefined;
    try {
      cluster = await startCluster(0);
      const run = await runFailover(cluster, SyncAppender, 'member', 'kill');
      expectNothingLost(run, 'SIGKILL (--workers 0)');
      expectSafe(run, 'SIGKILL (--workers 0)');
    } finally {
      await stopCluster(cluster);
    }
  });

  it('sync: SIGKILL of the coordinator, mid-load', { timeout: TEST_TIMEOUT_MS }, async () => {
    let cluster: Cluster | undefined;
    try {
      cluster = await startCluster();
      const run = await runFailover(cluster, SyncAppender, 'coordinator', 'kill');
      expect(run.victim.id).toBe(cluster.coordinator);
      expectNothingLost(run, 'SIGKILL');
      expectSafe(run, 'SIGKILL');
    } finally {
      await stopCluster(cluster);
    }
  });

  it(`sync: SIGSTOP of a node for ${PAUSE_MS / 1000} s (past the failure timeout), then SIGCONT: it rejoins or is fenced`, { timeout: TEST_TIMEOUT_MS }, async () => {
    let cluster: Cluster | undefined;
    try {
      cluster = await startCluster();
      const run = await runFailover(cluster, SyncAppender, 'member', 'pause');
      // Fenced means it exits by itself (code 1, as documented), not that it crashed on a signal.
      if (run.pausedNode !== 'rejoined') expect(run.victim.exit?.signal ?? null, describeRun(run, 'SIGSTOP/SIGCONT')).toBeNull();
      expectNothingLost(run, 'SIGSTOP/SIGCONT');
      expectSafe(run, 'SIGSTOP/SIGCONT');
    } finally {
      await stopCluster(cluster);
    }
  });

  it('async: SIGKILL loses only writes acknowledged within ASYNC_LOSS_WINDOW_MS before the kill', { timeout: TEST_TIMEOUT_MS }, async () => {
    const windowMs = ASYNC_LOSS_WINDOW_MS;
    let cluster: Cluster | undefined;
    try {
      cluster = await startCluster();
      const run = await runFailover(cluster, AsyncAppender, 'member', 'kill');
      const lost = run.findings.lost;
      console.log(`failover (async): ${lost.length} acknowledged appends lost, ASYNC_LOSS_WINDOW_MS = ${windowMs}`);
      // A lost write was made before the kill (no survivor may lose one) and acknowledged at most
      // the window before it (an ack seen here is never earlier than the node sent it).
      const outside = lost.filter((call) => !(call.startedAt < run.faultAt && run.faultAt - call.settledAt <= windowMs));
      expect(
        outside.slice(0, 20).map((call) => describeCall(call, run.faultAt)),
        `${describeRun(run, 'SIGKILL (async)')}: lost appends outside the ${windowMs} ms window before the kill (${outside.length})`,
      ).toEqual([]);
      expectSafe(run, 'SIGKILL (async)');
    } finally {
      await stopCluster(cluster);
    }
  });
});
