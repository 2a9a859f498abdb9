/**
 * A fault schedule: the plain-data script of a simulated run (what happens, in order), which with
 * the seed determines the run completely. Properties generate and shrink schedules; a failing one
 * is printed as JSON and replayed from it.
 *
 * Two kinds of sessions: abstract ones (`create`, `move`, `destroy`: directory entries the model
 * moves itself) and real ones (`call`, `migrate`: `Log` actors the nodes' session routers, hosts
 * and migrations move; see sessions.ts).
 */
import type { ClusterTimings } from '@wadi/cluster';
import type { LinkFaults } from './network.js';
import { sessionName } from './sessions.js';

export type Step =
  /** Starts node `node`: it joins the first time, and restarts as a new incarnation with its disk after that. */
  | { op: 'start'; node: string }
  /**
   * Graceful leave: the node's abstract sessions move to the other members at once (the model's
   * evacuation); its real ones move once it owns no bucket (its workers evacuate them); then it exits.
   */
  | { op: 'leave'; node: string }
  /** The process dies at once (SIGKILL): its memory and sessions are gone, its disk stays. */
  | { op: 'crash'; node: string }
  /** The process stalls for `ms` (longer than the failure detector's timeout, typically), then resumes. */
  | { op: 'pause'; node: string; ms: number }
  /** Cuts `side` off from every other node, both ways. */
  | { op: 'partition'; side: string[] }
  /** Cuts one way: nothing `from` sends reaches `to`. */
  | { op: 'cut'; from: string[]; to: string[] }
  | { op: 'heal' }
  /** Creates `count` sessions on `node` (skipped unless `node` is a member of its layout: wadi places sessions on members only). */
  | { op: 'create'; node: string; count: number }
  /** Moves the session chosen by `pick` (an index into the sessions, modulo their number) to `to` (a member, as for `create`). */
  | { op: 'move'; pick: number; to: string }
  | { op: 'destroy'; pick: number }
  /**
   * `count` messages (asks and tells) from thread `thread` of `node` (a worker index, or -2 for the
   * main thread) to real session `session` (an index into a pool of 8, see `sessionName`), one
   * every `everyMs` (default 0: all at once). Each sender numbers its messages to a session 1, 2, 3...
   */
  | { op: 'call'; node: string; thread: number; session: number; count: number; everyMs?: number }
  /** One ask with the `migrate` routing policy from thread `thread` of `node`: the session (and its group) moves there. */
  | { op: 'migrate'; node: string; thread: number; session: number }
  /** Lets simulated time pass. */
  | { op: 'run'; ms: number };

export interface SimulationOptions {
  /** Determines every random choice of the run. */
  seed: number;
  buckets?: number;
  workers?: number;
  /** Nodes whose URLs every node is started with (the first forms the cluster). Default: the first three started. */
  seeds?: string[];
  timings?: Partial<ClusterTimings>;
  faults?: Partial<LinkFaults>;
  /** How often each node's state machines tick (ms, default 100 as in a real node). */
  tickMs?: number;
  handoffTimeoutMs?: number;
  maxHandoffs?: number;
  /** Backups per bucket, the coordinators' `replicas` (default 1, as in a real node); 0: no replication. */
  replicas?: number;
  /** Ask deadline of the nodes' actor systems (ms, default 30 s as in a real node). */
  askTimeoutMs?: number;
  /**
   * Whether a worker delivers a call to a session it hosts itself straight to its actor system,
   * as packages/node's worker.ts does (default true); false sends it through the worker's session
   * router like any other call.
   */
  localShortcut?: boolean;
  /** Traces every session frame a thread receives (long traces, for debugging a failure). */
  traceFrames?: boolean;
}

export interface Schedule {
  options: SimulationOptions;
  steps: Step[];
}

const OPS = new Set(['start', 'leave', 'crash', 'pause', 'partition', 'cut', 'heal', 'create', 'move', 'destroy', 'call', 'migrate', 'run']);

/**
 * Nodes n1, n2 and n3 start half a second apart, then the simulation runs for each of `settle`
 * (milliseconds) in turn: how the hand-written schedules start, with the cluster formed.
 */
export function threeNodesFormed(...settle: number[]): Step[] {
  return [
    { op: 'start', node: 'n1' },
    { op: 'run', ms: 500 },
    { op: 'start', node: 'n2' },
    { op: 'run', ms: 500 },
    { op: 'start', node: 'n3' },
    ...settle.map((ms): Step => ({ op: 'run', ms })),
  ];
}

/** Checks a schedule read from a file or the command line; throws naming what is wrong. */
export function parseSchedule(value: unknown): Schedule {
  if (typeof value !== 'object' || value === null) throw new TypeError('a schedule is an object { options, steps }');
  const { options, steps } = value as { options?: unknown; steps?: unknown };
  if (typeof options !== 'object' || options === null || !Number.isSafeInteger((options as { seed?: unknown }).seed)) {
    throw new TypeError('schedule.options.seed must be an integer');
  }
  if (!Array.isArray(steps)) throw new TypeError('schedule.steps must be an array');
  steps.forEach((step: unknown, index) => {
    if (typeof step !== 'object' || step === null || !OPS.has((step as { op?: unknown }).op as string)) {
      throw new TypeError(`schedule.steps[${index}]: unknown step ${JSON.stringify(step)}`);
    }
  });
  return { options: options as SimulationOptions, steps: steps as Step[] };
}

export function describeStep(step: Step): string {
  switch (step.op) {
    case 'start':
    case 'leave':
    case 'crash':
      return `${step.op} ${step.node}`;
    case 'pause':
      return `pause ${step.node} for ${step.ms} ms`;
    case 'partition':
      return `partition [${step.side.join(',')}] from the rest`;
    case 'cut':
      return `cut [${step.from.join(',')}] -> [${step.to.join(',')}]`;
    case 'heal':
      return 'heal';
    case 'create':
      return `create ${step.count} sessions on ${step.node}`;
    case 'move':
      return `move session #${step.pick} to ${step.to}`;
    case 'destroy':
      return `destroy session #${step.pick}`;
    case 'call':
      return `call ${sessionName(step.session)} ${step.count}x from ${step.node}/${threadName(step.thread)}${step.everyMs ? ` every ${step.everyMs} ms` : ''}`;
    case 'migrate':
      return `migrate ${sessionName(step.session)} to ${step.node}/${threadName(step.thread)}`;
    case 'run':
      return `run ${step.ms} ms`;
  }
}

function threadName(thread: number): string {
  return thread >= 0 ? String(thread) : 'main';
}

/**
 * Whether a schedule can lose calls: only crashes, partitions, one-way cuts, pauses long enough
 * for a connection to be given up (2 s) and connection resets break the connections frames travel
 * on. Without them (migrations, handoffs, joins, graceful leaves, short pauses, and the loss,
 * duplication and reordering of protocol messages), every message must be applied exactly once.
 */
/**
 * Whether replication (R = 1, sync sessions) must keep every acknowledged ask of this schedule:
 * crashes only (no partition, cut, long pause or connection reset), never two nodes down at once.
 */
export function keepsAcknowledged(schedule: Schedule): boolean {
  if ((schedule.options.faults?.reset ?? 0) > 0) return false;
  const down = new Set<string>();
  for (const step of schedule.steps) {
    if (step.op === 'partition' || step.op === 'cut' || (step.op === 'pause' && step.ms >= 1500)) return false;
    if (step.op === 'crash') down.add(step.node);
    if (step.op === 'start') down.delete(step.node);
    if (down.size > 1) return false;
  }
  return true;
}

/**
 * Whether calls of this schedule may fail or be lost: a crash, a partition, a cut, a connection
 * reset, a long pause, or pauses of several nodes at once (a majority of the layout may be
 * unreachable then, and the nodes that see so refuse calls with `NoQuorum`, as they must).
 */
export function losesCalls(schedule: Schedule): boolean {
  if ((schedule.options.faults?.reset ?? 0) > 0) return true;
  if (schedule.steps.some((step) => step.op === 'crash' || step.op === 'partition' || step.op === 'cut' || (step.op === 'pause' && step.ms >= 1500))) return true;
  return pausesOverlap(schedule);
}

/** Whether two nodes are paused at the same time (steps take no time but `run`). */
function pausesOverlap(schedule: Schedule): boolean {
  const pauses: { node: string; from: number; to: number }[] = [];
  let now = 0;
  for (const step of schedule.steps) {
    if (step.op === 'run') now += step.ms;
    else if (step.op === 'pause') {
      const pause = { node: step.node, from: now, to: now + step.ms };
      if (pauses.some((other) => other.node !== pause.node && other.from < pause.to && pause.from < other.to)) return true;
      pauses.push(pause);
    }
  }
  return false;
}
