/**
 * `wadi node` processes for the membership, replication and failover benchmarks: spawn the CLI
 * with a replica count, worker threads and an actor module (1024 buckets, default failure-detection timings), read
 * `/status` and `/layout`, wait until a set of nodes agree on a layout whose backups are all in
 * place, and SIGKILL every node at the end.
 *
 * The nodes are CLI processes rather than in-process members so that a benchmark can SIGKILL any
 * of them, and so that the bench process is only a client (`connect()`): the caller is then never
 * the node holding a session or its backup.
 *
 * Every node spawned here is SIGKILLed by `killCliNodes()` (each benchmark calls it in a
 * `finally`) and, as a last resort, when the bench process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { get as httpGet } from 'node:http';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { NodeStatus } from '@wadi/node';
import { waitFor as poll, WAIT_MS } from './child-nodes.js';

const CLI = fileURLToPath(new URL('../../../packages/node/dist/cli.js', import.meta.url));
export const BUCKETS = 1024;

/** What `/layout` answers (see docs/cluster.md, "Backups"). */
export interface LayoutView {
  epoch: number;
  buckets: number;
  members: { id: string }[];
  ownerIds: string[];
  coordinator: string;
  replicas?: number;
  backups?: number[];
  incoming?: unknown[];
}

export interface ClusterSpec {
  /** Prefix of the node names in messages ("r1" gives r1-n1, r1-n2, ...). */
  name: string;
  secret: string;
  /** Distinct per cluster, so two clusters running side by side never mix. */
  clusterName: string;
  replicas: number;
  /** Worker threads per node (`--workers`; 0: sessions on each node's main thread). */
  workers: number;
  /** Path of the actor module every node loads (none: the nodes only host bucket directories). */
  actors?: string;
}

export interface CliNode {
  readonly name: string;
  readonly id: string;
  readonly url: string;
  readonly httpPort: number;
  readonly child: ChildProcess;
  readonly output: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  gone: boolean;
}

const live = new Set<CliNode>();

process.once('exit', () => {
  for (const node of live) node.child.kill('SIGKILL');
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Spawns one node of `spec` (joining through `seeds`) without waiting for it. */
export async function spawnCliNode(spec: ClusterSpec, name: string, seeds: readonly CliNode[]): Promise<CliNode> {
  const port = await freePort();
  const httpPort = await freePort();
  const args = [CLI, 'node', '--port', String(port), '--http-port', String(httpPort), '--workers', String(spec.workers), '--buckets', String(BUCKETS)];
  args.push('--replicas', String(spec.replicas), '--cluster-name', spec.clusterName);
  if (spec.actors !== undefined) args.push('--actors', spec.actors);
  if (seeds.length > 0) args.push('--seeds', seeds.map((seed) => seed.url).join(','));
  const child = spawn(process.execPath, args, { env: { ...process.env, WADI_SECRET: spec.secret }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  child.stdout!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const node: CliNode = {
    name: `${spec.name}-${name}`,
    id: `127.0.0.1:${port}`,
    url: `ws://127.0.0.1:${port}`,
    httpPort,
    child,
    output,
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
    gone: false,
  };
  live.add(node);
  void node.exited.then(() => {
    node.gone = true;
    live.delete(node);
  });
  return node;
}

/**
 * GET over node:http without keep-alive: fetch's pooled connections would hold the bench process
 * open for seconds after the last request.
 */
function getJson<T>(node: CliNode, path: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const request = httpGet({ host: '127.0.0.1', port: node.httpPort, path, agent: false, timeout: 3000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        if (response.statusCode !== 200) return reject(new Error(`GET ${path} on ${node.name}: HTTP ${response.statusCode}`));
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as T);
        } catch (error) {
          reject(error as Error);
        }
      });
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${path} on ${node.name}: no answer within 3 s`)));
    request.on('error', reject);
  });
}

export function status(node: CliNode): Promise<NodeStatus> {
  return getJson<NodeStatus>(node, '/status');
}

export function layout(node: CliNode): Promise<LayoutView | null> {
  return getJson<LayoutView | null>(node, '/layout');
}

export function tail(node: CliNode, lines = 30): string {
  return `--- ${node.name} (${node.id}${node.gone ? ', exited' : ''}) ---\n${node.output.join('').split('\n').slice(-lines).join('\n')}`;
}

/** Polls until `predicate` returns a value; gives up at once if one of `nodes` exits. */
export function waitForNodes<T>(what: string, nodes: readonly CliNode[], predicate: () => Promise<T | undefined>, options: { intervalMs?: number; timeoutMs?: number } = {}): Promise<T> {
  return poll(what, predicate, {
    intervalMs: options.intervalMs ?? 25,
    timeoutMs: options.timeoutMs ?? WAIT_MS,
    check: () => {
      for (const node of nodes) if (node.gone) throw new Error(`${node.name} exited while waiting for ${what}:\n${tail(node)}`);
    },
    context: () => nodes.map((node) => tail(node)).join('\n'),
  });
}

/** Whether every bucket has its `replicas` backups in place, none still receiving its copy. */
export function backupsComplete(view: LayoutView, replicas: number): boolean {
  if (replicas === 0) return (view.replicas ?? 0) === 0;
  if (view.replicas !== replicas || view.backups === undefined) return false;
  return view.backups.length === view.buckets * replicas && view.backups.every((member) => member >= 0) && (view.incoming ?? []).length === 0;
}

/**
 * The layout if `nodes` agree: one epoch and coordinator (one of them), identical owner tables
 * whose members are exactly these nodes, all of them 'up' in every view, no handoff pending, and
 * every bucket's backups in place.
 */
export async function agreement(nodes: readonly CliNode[], replicas: number): Promise<LayoutView | undefined> {
  const ids = new Set(nodes.map((node) => node.id));
  const views = await Promise.all(nodes.map(async (node) => ({ status: await status(node), layout: await layout(node) })));
  const first = views[0]!;
  if (first.layout === null || first.status.epoch <= 0 || first.status.coordinator === null || !ids.has(first.status.coordinator)) return undefined;
  const layoutIds = new Set(first.layout.members.map((member) => member.id));
  if (layoutIds.size !== ids.size || [...ids].some((id) => !layoutIds.has(id))) return undefined;
  if (!backupsComplete(first.layout, Math.min(replicas, nodes.length - 1))) return undefined;
  for (const { status: s, layout: l } of views) {
    if (s.epoch !== first.status.epoch || s.coordinator !== first.status.coordinator || s.buckets.handoffsPending !== 0) return undefined;
    if (l === null || l.epoch !== s.epoch || l.ownerIds.some((owner, bucket) => owner !== first.layout!.ownerIds[bucket])) return undefined;
    for (const id of ids) if (s.members.find((member) => member.id === id)?.state !== 'up') return undefined;
  }
  return first.layout;
}

export function waitForAgreement(nodes: readonly CliNode[], replicas: number, intervalMs = 25): Promise<LayoutView> {
  return waitForNodes(`${nodes.map((node) => node.name).join(', ')} to agree with every backup in place`, nodes, () => agreement(nodes, replicas), { intervalMs });
}

/** Three nodes of `spec` that agree: the first forms the cluster, then the others join through it one at a time (so the first is the oldest). */
export async function formThree(spec: ClusterSpec): Promise<{ nodes: CliNode[]; layout: LayoutView }> {
  const first = await spawnCliNode(spec, 'n1', []);
  await waitForNodes(`${first.name} to form a cluster`, [first], async () => ((await status(first)).epoch > 0 ? true : undefined));
  const second = await spawnCliNode(spec, 'n2', [first]);
  await waitForAgreement([first, second], spec.replicas);
  const third = await spawnCliNode(spec, 'n3', [first]);
  const nodes = [first, second, third];
  return { nodes, layout: await waitForAgreement(nodes, spec.replicas) };
}

/** SIGKILLs every node still running and waits (boundedly) until they are gone. */
export async function killCliNodes(): Promise<void> {
  const nodes = [...live];
  for (const node of nodes) node.child.kill('SIGKILL');
  // An unref'd bound, so a wait that is not needed does not hold the process open.
  await Promise.all(nodes.map((node) => Promise.race([node.exited, new Promise<void>((resolve) => setTimeout(resolve, 5000).unref())])));
}
