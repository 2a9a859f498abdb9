/**
 * Cluster members in child processes for the cluster benchmarks (children/cluster-node.ts), and
 * what the benchmarks do with them: spawn, send requests over IPC, wait until a set of members
 * (child or in-process) agree on one layout with every handoff done, and kill them all.
 *
 * Every child spawned here is SIGKILLed by `killChildNodes()` (each benchmark calls it in a
 * `finally`) and, as a last resort, when the bench process exits.
 */
import { fork, type ChildProcess } from 'node:child_process';
import type { NodeStatus, WadiNode } from '@wadi/node';
import type { BenchResult } from './harness.js';
import type { ChildMessage, ChildNodeConfig, ChildRequest, ChildRequestBody } from './children/cluster-node.js';

const CHILD = new URL('./children/cluster-node.js', import.meta.url);
/** Upper bound for any one wait or request; longer fails the benchmark. */
export const WAIT_MS = 60_000;

/**
 * Worker threads per node in the benchmarks that run a cluster: none (`workers: 0`), so each
 * node's sessions run on its main thread, beside its sockets. Every such benchmark runs two to
 * six nodes and the bench process on this machine's two cores, so a node gets a core's share at
 * most, and a worker thread would only add a hop and two thread wake-ups to every call. That is
 * the configuration wadi recommends for nodes of one core or less (several nodes on a small
 * machine, one-CPU containers); nodes with more cores keep the default, a worker per CPU.
 * The figures the issues set targets on are measured with a worker thread per node as well
 * (`NODE_WORKERS_THREADED`), and reported beside them as `<name>.workerThread`, without a target.
 */
export const NODE_WORKERS = 0;

/** Worker threads per node of the `<name>.workerThread` figures. */
export const NODE_WORKERS_THREADED = 1;

/** The name of the figure `name` measured with `NODE_WORKERS_THREADED` worker threads per node. */
export const workerThreadFigure = (name: string): string => `${name}.workerThread`;

/**
 * The rows `measure` gives with `NODE_WORKERS` worker threads per node, then those it gives with
 * `NODE_WORKERS_THREADED`, renamed (`workerThreadFigure`) and without their targets.
 */
export async function withAndWithoutWorkers(measure: (workers: number) => Promise<BenchResult[]>): Promise<BenchResult[]> {
  const inline = await measure(NODE_WORKERS);
  const threaded = await measure(NODE_WORKERS_THREADED);
  return [...inline, ...threaded.map((row) => ({ ...row, name: workerThreadFigure(row.name), target: null }))];
}

/** What a benchmark needs of a member, wherever it runs. */
export interface Member {
  readonly name: string;
  readonly id: string;
  readonly url: string;
  status(): Promise<NodeStatus>;
}

type Pending = { resolve: (value: unknown) => void; reject: (error: Error) => void };

export class ChildNode implements Member {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  gone = false;
  readonly #child: ChildProcess;
  readonly #output: string[];
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;

  private constructor(
    readonly name: string,
    readonly id: string,
    readonly url: string,
    child: ChildProcess,
    output: string[],
    exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
  ) {
    this.#child = child;
    this.#output = output;
    this.exited = exited;
    child.on('message', (message: ChildMessage) => {
      if (!('id' in message)) return;
      const pending = this.#pending.get(message.id);
      this.#pending.delete(message.id);
      if (pending === undefined) return;
      if ('error' in message) pending.reject(new Error(`${this.name}: ${message.error}`));
      else pending.resolve(message.value);
    });
    void exited.then(({ code, signal }) => {
      this.gone = true;
      for (const pending of this.#pending.values()) pending.reject(new Error(`${this.name} exited (${signal ?? code}) before answering\n${this.tail()}`));
      this.#pending.clear();
    });
  }

  /** Spawns a member and waits until it has joined (or formed, without seeds) a cluster. */
  static async spawn(name: string, config: ChildNodeConfig): Promise<ChildNode> {
    const child = fork(CHILD, [JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
    const output: string[] = [];
    child.stdout!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    spawned.add(child);
    void exited.then(() => spawned.delete(child));
    let timer: NodeJS.Timeout | undefined;
    const ready = await new Promise<{ id: string; url: string }>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`${name} did not start within ${WAIT_MS} ms`)), WAIT_MS);
      child.on('message', (message: ChildMessage) => {
        if ('ready' in message) resolve(message.ready);
        else if ('failed' in message) reject(new Error(`${name} did not start: ${message.failed}`));
      });
      void exited.then(({ code, signal }) => reject(new Error(`${name} exited (${signal ?? code}) while starting:\n${output.join('')}`)));
    }).finally(() => clearTimeout(timer));
    return new ChildNode(name, ready.id, ready.url, child, output, exited);
  }

  request<T>(request: ChildRequestBody, timeoutMs = WAIT_MS): Promise<T> {
    if (this.gone) return Promise.reject(new Error(`${this.name} has exited`));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${this.name} did not answer ${request.op} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.#child.send({ ...request, id } satisfies ChildRequest);
    });
  }

  status(): Promise<NodeStatus> {
    return this.request<NodeStatus>({ op: 'status' });
  }

  /** Calls `count` sessions from this member so they are placed here; resolves with the milliseconds it took. */
  createSessions(prefix: string, count: number, options: { bytes?: number; window?: number; timeoutMs?: number } = {}): Promise<number> {
    return this.request<number>({ op: 'create', prefix, count, bytes: options.bytes ?? 0, window: options.window ?? 256 }, options.timeoutMs);
  }

  kill(signal: NodeJS.Signals): void {
    this.#child.kill(signal);
  }

  /** The last lines the child printed, for error messages. */
  tail(): string {
    return `--- ${this.name} ---\n${this.#output.join('').split('\n').slice(-30).join('\n')}`;
  }
}

/** Every child process spawned, until it exits. */
const spawned = new Set<ChildProcess>();

process.once('exit', () => {
  for (const child of spawned) child.kill('SIGKILL');
});

/** SIGKILLs every child member still running and waits (boundedly) for them to exit. */
export async function killChildNodes(): Promise<void> {
  const children = [...spawned];
  for (const child of children) child.kill('SIGKILL');
  await Promise.all(
    children.map((child) =>
      child.exitCode !== null || child.signalCode !== null
        ? undefined
        : Promise.race([new Promise<void>((resolve) => child.once('exit', () => resolve())), new Promise<void>((resolve) => setTimeout(resolve, 5000).unref())]),
    ),
  );
}

/** A member in this process, seen through the same interface as a child. */
export function inProcess(name: string, node: WadiNode): Member {
  const cluster = node.cluster!;
  return { name, id: cluster.id, url: cluster.url, status: () => cluster.status() };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface WaitOptions {
  intervalMs?: number;
  timeoutMs?: number;
  /** Runs every round; throws to give up at once (a process the wait depends on exited). */
  check?: () => void;
  /** More words for the timeout error (the processes' last output). */
  context?: () => string;
}

/** Polls until `predicate` returns a value; throws after the timeout. A throwing predicate means "not yet". */
export async function waitFor<T>(what: string, predicate: () => Promise<T | undefined>, options: WaitOptions = {}): Promise<T> {
  const { intervalMs = 50, timeoutMs = WAIT_MS, check, context } = options;
  const deadline = performance.now() + timeoutMs;
  let last: unknown;
  while (performance.now() < deadline) {
    try {
      const value = await predicate();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    check?.();
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? ` (${last.message})` : ''}${context === undefined ? '' : `\n${context()}`}`);
}

/**
 * Waits until `members` agree: one epoch, a layout of exactly these members, each of them up in
 * every view, and no bucket handoff pending anywhere. Returns their statuses.
 */
export function settled(members: readonly Member[]): Promise<NodeStatus[]> {
  const ids = new Set(members.map((member) => member.id));
  return waitFor(`${members.map((member) => member.name).join(', ')} to agree on a layout`, async () => {
    for (const member of members) if (member instanceof ChildNode && member.gone) throw new Error(`${member.name} exited\n${member.tail()}`);
    const statuses = await Promise.all(members.map((member) => member.status()));
    const first = statuses[0]!;
    for (const status of statuses) {
      if (status.epoch <= 0 || status.epoch !== first.epoch || status.buckets.handoffsPending !== 0) return undefined;
      const owners = Object.keys(status.buckets.byMember);
      if (owners.length !== ids.size || owners.some((id) => !ids.has(id))) return undefined;
      for (const id of ids) if (status.members.find((member) => member.id === id)?.state !== 'up') return undefined;
    }
    return statuses;
  });
}

/** Runs `call(i)` for i in [0, count), keeping `window` calls in flight; resolves when all have. */
export function pipelined(count: number, window: number, call: (i: number) => Promise<unknown>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (count <= 0) return resolve();
    let sent = 0;
    let done = 0;
    const next = (): void => {
      const i = sent++;
      call(i).then(() => {
        done++;
        if (sent < count) next();
        else if (done === count) resolve();
      }, reject);
    };
    while (sent < Math.min(window, count)) next();
  });
}
