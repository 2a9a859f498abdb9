/**
 * Real wadi node processes on loopback for the whole-cluster tests: free ports, spawning the CLI,
 * captured output (printed when a test fails), `/status` and `/layout` over HTTP, bounded polling,
 * the "do these nodes agree" check, kills, and a cleanup that leaves no process and no temporary
 * directory behind.
 *
 * Importing this module registers the hooks of the test file that imports it: a failed test
 * prints every node's output; after the file, every process still running is SIGKILLed and the
 * data directories are removed. A last-resort `exit` handler SIGKILLs whatever is left if the
 * test process ends early.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeEach } from 'vitest';

export const CLI = fileURLToPath(new URL('../../packages/node/dist/cli.js', import.meta.url));
export const DEMO_ACTORS = fileURLToPath(new URL('../../apps/demo/dist/actors.js', import.meta.url));
export const SECRET = 'wadi-cluster-test-secret';

/** Short failure detection, so crash tests take seconds: suspect after 1 s of silence, down 0.5 s later. */
export const FAST_TIMINGS = ['--heartbeat-ms', '200', '--suspect-after-ms', '1000', '--down-after-ms', '500', '--probe-interval-ms', '200'];

// --- shapes of the HTTP surfaces --------------------------------------------------------------

export type MemberState = 'joining' | 'up' | 'suspect' | 'leaving' | 'down';

export interface Status {
  id: string;
  incarnation: number;
  url: string;
  coordinator: string | null;
  epoch: number;
  members: { id: string; url: string; state: MemberState; incarnation: number }[];
  buckets: {
    total: number;
    owned: number;
    byMember: Record<string, number>;
    handoffsPending: number;
    handoffsCompleted: number;
    rebuilt: number;
  };
  directory: { buckets: number; entries: number; droppedUpdates: number };
  sessions: { memory: number; disk: number };
  routing: { hops: Record<string, number> };
}

export interface LayoutView {
  epoch: number;
  buckets: number;
  members: { id: string; incarnation: number; url: string; workers: number }[];
  owners: number[];
  ownerIds: string[];
  coordinator: string;
  /** Backups per bucket, and `backups[b * replicas + k]`: member indexes or -1 (see docs/cluster.md). */
  replicas?: number;
  backups?: number[];
  /** Backups still receiving their copy: `[bucket, member, retiring]` (see docs/cluster.md). */
  incoming?: [number, number, number][];
}

// --- processes ------------------------------------------------------------------------------------

export interface NodeProcess {
  /** Short name for logs ("n1"). */
  readonly name: string;
  readonly port: number;
  readonly httpPort: number;
  /** The node id (default `127.0.0.1:PORT`). */
  readonly id: string;
  readonly url: string;
  readonly dataDir: string | undefined;
  readonly args: readonly string[];
  readonly child: ChildProcess;
  /** stdout and stderr, interleaved as they arrived. */
  readonly output: string[];
  /** Resolves with the exit code (or the signal's name) once the process is gone. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
}

export interface StartOptions {
  name: string;
  port?: number;
  httpPort?: number;
  seeds?: readonly NodeProcess[] | readonly string[];
  dataDir?: string;
  id?: string;
  workers?: number;
  /** More CLI flags, e.g. FAST_TIMINGS or ['--max-payload-bytes', '65536']. */
  extraArgs?: readonly string[];
  /** Environment overrides; WADI_SECRET defaults to SECRET (set it to undefined to leave it out). */
  env?: Record<string, string | undefined>;
  /** Wait for the "listening" line (default true). */
  waitReady?: boolean;
  readyTimeoutMs?: number;
}

const running = new Set<NodeProcess>();
/** Short-lived CLI runs (runCli) still going. */
const strays = new Set<{ child: ChildProcess; exited: Promise<unknown> }>();
const everyNode: NodeProcess[] = [];
const temporaryDirs = new Set<string>();
const handedOutPorts = new Set<number>();

/** A port that was free a moment ago: bind port 0 on loopback, read it, release it. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.unref();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        const chosen = typeof address === 'object' && address !== null ? address.port : 0;
        server.close(() => resolve(chosen));
      });
    });
    if (port > 0 && !handedOutPorts.has(port)) {
      handedOutPorts.add(port);
      return port;
    }
  }
  throw new Error('no free port found in 20 attempts');
}

export function tempDir(prefix = 'wadi-cluster-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temporaryDirs.add(dir);
  return dir;
}

/** The command-line flags of a node (without `node`/the CLI path). */
export function nodeArgs(options: Omit<StartOptions, 'name'> & { port: number; httpPort: number }): string[] {
  const args = ['node', '--port', String(options.port), '--http-port', String(options.httpPort), '--workers', String(options.workers ?? 1)];
  const seeds = (options.seeds ?? []).map((seed) => (typeof seed === 'string' ? seed : seed.url));
  if (seeds.length > 0) args.push('--seeds', seeds.join(','));
  if (options.dataDir !== undefined) args.push('--data', options.dataDir);
  if (options.id !== undefined) args.push('--id', options.id);
  args.push(...(options.extraArgs ?? []));
  return args;
}

/** Spawns the CLI with raw arguments; used directly by the bad-input tests. */
export function spawnCli(args: readonly string[], env: Record<string, string | undefined> = {}): {
  child: ChildProcess;
  output: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
} {
  const fullEnv: Record<string, string | undefined> = { ...process.env, WADI_SECRET: SECRET, ...env };
  for (const key of Object.keys(fullEnv)) if (fullEnv[key] === undefined) delete fullEnv[key];
  const child = spawn(process.execPath, [CLI, ...args], { env: fullEnv as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const collect = (stream: 'out' | 'err') => (chunk: Buffer) => {
    output.push(stream === 'err' ? chunk.toString().replace(/^(?=.)/gm, '! ') : chunk.toString());
  };
  child.stdout!.on('data', collect('out'));
  child.stderr!.on('data', collect('err'));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', (error) => {
      output.push(`! spawn error: ${error.message}\n`);
      resolve({ code: null, signal: null });
    });
  });
  return { child, output, exited };
}

/** Runs the CLI to its end (SIGKILLed after `timeoutMs`): for command lines that must fail fast. */
export async function runCli(args: readonly string[], env: Record<string, string | undefined> = {}, timeoutMs = 15_000): Promise<{ code: number | null; output: string }> {
  const { child, output, exited } = spawnCli(args, env);
  const handle = { child, exited };
  strays.add(handle);
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([exited, new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)))]);
  clearTimeout(timer);
  strays.delete(handle);
  if (result === 'timeout') {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`wadi ${args.join(' ')} did not exit within ${timeoutMs} ms:\n${output.join('')}`);
  }
  return { code: result.code, output: output.join('') };
}

/**
 * Starts a node and (by default) waits until it prints that it listens. Fresh ports are picked
 * unless given; if a picked port was taken in the meantime (EADDRINUSE), it retries with others.
 */
export async function startNode(options: StartOptions): Promise<NodeProcess> {
  const fixedPorts = options.port !== undefined || options.httpPort !== undefined;
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await freePort());
    const httpPort = options.httpPort ?? (await freePort());
    const node = launch(options, port, httpPort);
    if (options.waitReady === false) return node;
    try {
      await waitReady(node, options.readyTimeoutMs ?? 20_000);
      return node;
    } catch (error) {
      const text = logs(node);
      if (!fixedPorts && attempt < 3 && /EADDRINUSE/.test(text)) continue;
      throw error;
    }
  }
}

function launch(options: StartOptions, port: number, httpPort: number): NodeProcess {
  const args = nodeArgs({ ...options, port, httpPort });
  const { child, output, exited } = spawnCli(args, options.env);
  const node: NodeProcess = {
    name: options.name,
    port,
    httpPort,
    id: options.id ?? `127.0.0.1:${port}`,
    url: `ws://127.0.0.1:${port}`,
    dataDir: options.dataDir,
    args,
    child,
    output,
    exited,
    exit: undefined,
  };
  running.add(node);
  everyNode.push(node);
  void exited.then((result) => {
    node.exit = result;
    running.delete(node);
  });
  return node;
}

async function waitReady(node: NodeProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (/^wadi node .* listening on /m.test(logs(node))) return;
    if (node.exit !== undefined) throw new Error(`${node.name} exited (${describeExit(node.exit)}) before it was ready:\n${logs(node)}`);
    await sleep(25);
  }
  throw new Error(`${node.name} did not print its listening line within ${timeoutMs} ms:\n${logs(node)}`);
}

/** A respawn of a stopped node with the same arguments (same ports, id, data directory). */
export async function restartNode(node: NodeProcess, name = node.name, extraArgs: readonly string[] = []): Promise<NodeProcess> {
  if (node.exit === undefined) throw new Error(`${node.name} is still running`);
  const { child, output, exited } = spawnCli([...node.args, ...extraArgs]);
  const restarted: NodeProcess = { ...node, name, args: [...node.args, ...extraArgs], child, output, exited, exit: undefined };
  running.add(restarted);
  everyNode.push(restarted);
  void exited.then((result) => {
    restarted.exit = result;
    running.delete(restarted);
  });
  await waitReady(restarted, 20_000);
  return restarted;
}

export function logs(node: { output: readonly string[] }): string {
  return node.output.join('');
}

function describeExit(exit: { code: number | null; signal: NodeJS.Signals | null }): string {
  return exit.signal === null ? `code ${exit.code}` : `signal ${exit.signal}`;
}

/** Waits for the process to exit, at most `timeoutMs`; then SIGKILLs it and throws. */
export async function waitExit(node: NodeProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
  const result = await Promise.race([node.exited, timeout]);
  clearTimeout(timer);
  if (result === 'timeout') {
    node.child.kill('SIGKILL');
    await node.exited;
    throw new Error(`${node.name} did not exit within ${timeoutMs} ms (SIGKILLed it)`);
  }
  return result;
}

/** A crash: SIGKILL and wait until the process is gone. */
export async function killNode(node: NodeProcess): Promise<void> {
  if (node.exit === undefined) node.child.kill('SIGKILL');
  await waitExit(node, 10_000);
}

/** A graceful leave: SIGTERM, then the exit code (the process is SIGKILLed if it hangs past `timeoutMs`). */
export async function stopNode(node: NodeProcess, timeoutMs = 45_000): Promise<number | null> {
  if (node.exit === undefined) node.child.kill('SIGTERM');
  const exit = await waitExit(node, timeoutMs);
  return exit.code;
}

// --- HTTP -----------------------------------------------------------------------------------------

async function getJson<T>(node: NodeProcess, path: string): Promise<T> {
  const response = await fetch(`http://127.0.0.1:${node.httpPort}${path}`, { signal: AbortSignal.timeout(3000) });
  if (!response.ok) throw new Error(`GET ${path} on ${node.name}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

export function status(node: NodeProcess): Promise<Status> {
  return getJson<Status>(node, '/status');
}

export function layout(node: NodeProcess): Promise<LayoutView | null> {
  return getJson<LayoutView | null>(node, '/layout');
}

// --- waiting ---------------------------------------------------------------------------------------

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** What is being waited for, for the error message. */
  what?: string;
}

/**
 * Polls `predicate` until it returns a truthy value (which is returned) or the deadline passes
 * (which throws, with the last value or error seen). A throwing predicate counts as "not yet".
 */
export type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;

export async function waitFor<T>(predicate: () => T | Promise<T>, options: WaitOptions = {}): Promise<Truthy<T>> {
  const timeoutMs = options.timeoutMs ?? 20_000;
  const intervalMs = options.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await predicate();
      if (value) return value as Truthy<T>;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) break;
    await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())));
  }
  const detail = last instanceof Error ? last.message : JSON.stringify(last);
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${options.what ?? 'a condition'} (last: ${detail})`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface Agreement {
  epoch: number;
  coordinator: string;
  ownerIds: string[];
  layout: LayoutView;
  statuses: Map<NodeProcess, Status>;
}

/** Why the nodes do not agree (for messages), set by the last `agree` call that returned undefined. */
export let lastDisagreement = '';

/**
 * Whether `nodes` agree: the same epoch > 0, the same coordinator (one of them), identical
 * `/layout` owner tables whose members are exactly these nodes, and every one of these nodes
 * listed as 'up' in every node's status. Returns the agreed view, or undefined.
 */
export async function agree(nodes: readonly NodeProcess[]): Promise<Agreement | undefined> {
  const ids = new Set(nodes.map((node) => node.id));
  const disagree = (why: string): undefined => {
    lastDisagreement = why;
    return undefined;
  };
  const views = await Promise.all(nodes.map(async (node) => ({ node, status: await status(node), layout: await layout(node) })));
  const first = views[0]!;
  if (first.layout === null) return disagree(`${first.node.name} has no layout`);
  for (const { node, status: s, layout: l } of views) {
    if (s.epoch <= 0) return disagree(`${node.name} is at epoch ${s.epoch}`);
    if (s.epoch !== first.status.epoch) return disagree(`${node.name} at epoch ${s.epoch}, ${first.node.name} at ${first.status.epoch}`);
    if (s.coordinator === null || s.coordinator !== first.status.coordinator) {
      return disagree(`${node.name} has coordinator ${s.coordinator}, ${first.node.name} ${first.status.coordinator}`);
    }
    if (l === null || l.epoch !== s.epoch) return disagree(`${node.name}'s /layout is at epoch ${l?.epoch} while /status says ${s.epoch}`);
    // Backups still receiving their copy: the coordinator commits the layout that completes them
    // next (at once while nothing copies state), so this one is not where the cluster settles.
    if ((l.incoming ?? []).length > 0) return disagree(`${node.name}'s layout ${l.epoch} still has ${l.incoming!.length} incoming backups`);
    if (l.ownerIds.length !== first.layout.ownerIds.length || l.ownerIds.some((owner, bucket) => owner !== first.layout!.ownerIds[bucket])) {
      return disagree(`${node.name}'s owner table differs from ${first.node.name}'s`);
    }
    for (const id of ids) {
      const entry = s.members.find((member) => member.id === id);
      if (entry?.state !== 'up') return disagree(`${node.name} sees ${id} as ${entry?.state ?? 'absent'}`);
    }
  }
  if (!ids.has(first.status.coordinator!)) return disagree(`the coordinator ${first.status.coordinator} is not one of the nodes`);
  const layoutIds = new Set(first.layout.members.map((member) => member.id));
  if (layoutIds.size !== ids.size || [...ids].some((id) => !layoutIds.has(id))) {
    return disagree(`the layout's members are ${[...layoutIds].join(', ')}, not ${[...ids].join(', ')}`);
  }
  return {
    epoch: first.status.epoch,
    coordinator: first.status.coordinator!,
    ownerIds: first.layout.ownerIds,
    layout: first.layout,
    statuses: new Map(views.map((view) => [view.node, view.status])),
  };
}

/** Waits until `nodes` agree (see `agree`) and returns the agreed view. */
export function waitForAgreement(nodes: readonly NodeProcess[], timeoutMs = 30_000): Promise<Agreement> {
  return waitFor(() => agree(nodes), {
    timeoutMs,
    intervalMs: 100,
    what: `${nodes.map((node) => node.name).join(', ')} to agree`,
  }).catch((error: Error) => {
    throw new Error(`${error.message}; last disagreement: ${lastDisagreement}`);
  });
}

/** Buckets per owner in an owner table. */
export function countOwners(ownerIds: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const owner of ownerIds) counts.set(owner, (counts.get(owner) ?? 0) + 1);
  return counts;
}

/** Buckets whose owner differs between two owner tables. */
export function movedBuckets(before: readonly string[], after: readonly string[]): number[] {
  const moved: number[] = [];
  for (let bucket = 0; bucket < after.length; bucket++) if (before[bucket] !== after[bucket]) moved.push(bucket);
  return moved;
}

// --- cleanup ---------------------------------------------------------------------------------------

/** SIGKILLs every node process still running and waits for them to be gone. */
export async function killAll(): Promise<void> {
  const processes = [...running, ...strays];
  for (const process of processes) process.child.kill('SIGKILL');
  // An unref'd bound, so a wait that is not needed does not hold the process open.
  await Promise.all(processes.map((process) => Promise.race([process.exited, new Promise<void>((resolve) => setTimeout(resolve, 10_000).unref())])));
}

export function removeTempDirs(): void {
  for (const dir of temporaryDirs) rmSync(dir, { recursive: true, force: true });
  temporaryDirs.clear();
}

/** Prints the output of every node of this file (the last 150 lines of each, or WADI_TEST_LOG_LINES). */
export function dumpLogs(reason: string): void {
  const keep = Number(process.env['WADI_TEST_LOG_LINES'] ?? 150);
  const parts = everyNode.map((node) => {
    const lines = logs(node).split('\n');
    const tail = lines.length > keep ? [`... (${lines.length - keep} earlier lines)`, ...lines.slice(-keep)] : lines;
    const state = node.exit === undefined ? 'running' : describeExit(node.exit);
    return `----- ${node.name} (${node.id}, ${state}) -----\n${tail.join('\n')}`;
  });
  console.log(`===== node output (${reason}) =====\n${parts.join('\n')}`);
}

beforeEach((context) => {
  context.onTestFailed(() => dumpLogs(`'${context.task.name}' failed`));
});

afterAll(async () => {
  // WADI_TEST_LOGS=1 prints every node's output even when all tests pass.
  if (process.env['WADI_TEST_LOGS']) dumpLogs('WADI_TEST_LOGS is set');
  await killAll();
  removeTempDirs();
});

process.once('exit', () => {
  for (const entry of [...running, ...strays]) {
    try {
      entry.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
});
