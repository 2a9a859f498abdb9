/**
 * cluster.*: membership over real node processes on loopback (the `wadi node` CLI, one worker
 * each, 1024 buckets, default failure-detection timings). No raw baseline: these are absolute
 * figures (the rows have no baseline, like memory.perActor).
 *
 * - cluster.join.seconds: three nodes agree on a layout; a fourth is spawned; time from its spawn
 *   until all four report the same epoch, coordinator and owner table with the newcomer in it.
 * - cluster.join.moves: buckets that changed owner in that join, divided by the planner's
 *   `minimumMoves` for it (1.0 = minimal; lower is better, below 1 is impossible).
 * - cluster.failover.seconds: three nodes agree; a non-coordinator is SIGKILLed; time from the
 *   kill until the two survivors agree on a layout without it. Target: <= 5 s.
 *
 * Each is measured ROUNDS times on fresh clusters and the median reported. Every process is
 * SIGKILLed at the end of each round, also on error.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { get as httpGet } from 'node:http';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
// @wadi/cluster is not a dependency of the bench: use its build (built before the bench by turbo).
import { minimumMoves } from '@wadi/cluster';
import { waitFor as poll } from '../child-nodes.js';
import { median, result, type Benchmark } from '../harness.js';

const CLI = fileURLToPath(new URL('../../../../packages/node/dist/cli.js', import.meta.url));
const SECRET = 'wadi-bench-cluster-secret';
const BUCKETS = 1024;
const ROUNDS = 3;
/** Upper bound for any one wait; a round that needs longer fails the benchmark. */
const WAIT_MS = 30_000;

interface Node {
  readonly name: string;
  readonly id: string;
  readonly url: string;
  readonly httpPort: number;
  readonly child: ChildProcess;
  readonly output: string[];
  readonly exited: Promise<void>;
  gone: boolean;
}

interface Status {
  epoch: number;
  coordinator: string | null;
  members: { id: string; state: string }[];
}

interface LayoutView {
  epoch: number;
  members: { id: string }[];
  ownerIds: string[];
}

const live = new Set<Node>();

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

/** Spawns a node (default timings, one worker) without waiting for it. */
async function spawnNode(name: string, seeds: readonly Node[]): Promise<Node> {
  const port = await freePort();
  const httpPort = await freePort();
  const args = [CLI, 'node', '--port', String(port), '--http-port', String(httpPort), '--workers', '1', '--buckets', String(BUCKETS)];
  if (seeds.length > 0) args.push('--seeds', seeds.map((seed) => seed.url).join(','));
  const child = spawn(process.execPath, args, { env: { ...process.env, WADI_SECRET: SECRET }, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  child.stdout!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const node: Node = {
    name,
    id: `127.0.0.1:${port}`,
    url: `ws://127.0.0.1:${port}`,
    httpPort,
    child,
    output,
    exited: new Promise<void>((resolve) => child.once('exit', () => resolve())),
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
function getJson<T>(node: Node, path: string): Promise<T> {
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

/** Polls until `predicate` returns a value; gives up at once if one of `nodes` exits. */
function waitFor<T>(what: string, nodes: readonly Node[], predicate: () => Promise<T | undefined>, intervalMs = 25): Promise<T> {
  return poll(what, predicate, {
    intervalMs,
    timeoutMs: WAIT_MS,
    check: () => {
      for (const node of nodes) if (node.gone) throw new Error(`${node.name} exited while waiting for ${what}:\n${tail(node)}`);
    },
    context: () => nodes.map(tail).join('\n'),
  });
}

function tail(node: Node): string {
  return `--- ${node.name} ---\n${node.output.join('').split('\n').slice(-30).join('\n')}`;
}

/**
 * The owner table if `nodes` agree: the same epoch > 0 and coordinator, identical owner tables
 * whose members are exactly these nodes, and all of them 'up' in every node's view.
 */
async function agreement(nodes: readonly Node[]): Promise<LayoutView | undefined> {
  const ids = new Set(nodes.map((node) => node.id));
  const views = await Promise.all(nodes.map(async (node) => ({ status: await getJson<Status>(node, '/status'), layout: await getJson<LayoutView | null>(node, '/layout') })));
  const first = views[0]!;
  if (first.layout === null || first.status.epoch <= 0 || first.status.coordinator === null || !ids.has(first.status.coordinator)) return undefined;
  const layoutIds = new Set(first.layout.members.map((member) => member.id));
  if (layoutIds.size !== ids.size || [...ids].some((id) => !layoutIds.has(id))) return undefined;
  for (const { status, layout } of views) {
    if (status.epoch !== first.status.epoch || status.coordinator !== first.status.coordinator) return undefined;
    if (layout === null || layout.epoch !== status.epoch || layout.ownerIds.some((owner, bucket) => owner !== first.layout!.ownerIds[bucket])) return undefined;
    for (const id of ids) if (status.members.find((member) => member.id === id)?.state !== 'up') return undefined;
  }
  return first.layout;
}

function waitForAgreement(nodes: readonly Node[]): Promise<LayoutView> {
  return waitFor(`${nodes.map((node) => node.name).join(', ')} to agree`, nodes, () => agreement(nodes));
}

async function killAll(): Promise<void> {
  const nodes = [...live];
  for (const node of nodes) node.child.kill('SIGKILL');
  // An unref'd bound, so a wait that is not needed does not hold the process open.
  await Promise.all(nodes.map((node) => Promise.race([node.exited, new Promise<void>((resolve) => setTimeout(resolve, 5000).unref())])));
}

/** Three nodes that agree: the first forms the cluster, the other two join through it. */
async function formThree(): Promise<{ nodes: Node[]; layout: LayoutView }> {
  const first = await spawnNode('n1', []);
  await waitFor('n1 to form a cluster', [first], async () => ((await getJson<Status>(first, '/status')).epoch > 0 ? true : undefined));
  const others = await Promise.all([spawnNode('n2', [first]), spawnNode('n3', [first])]);
  const nodes = [first, ...others];
  return { nodes, layout: await waitForAgreement(nodes) };
}

async function joinRound(): Promise<{ seconds: number; movesRatio: number }> {
  try {
    const { nodes, layout: before } = await formThree();
    const start = performance.now();
    const newcomer = await spawnNode('n4', [nodes[0]!]);
    const all = [...nodes, newcomer];
    const after = await waitFor('the four nodes to agree', all, () => agreement(all), 10);
    const seconds = (performance.now() - start) / 1000;
    let moved = 0;
    for (let bucket = 0; bucket < BUCKETS; bucket++) if (before.ownerIds[bucket] !== after.ownerIds[bucket]) moved++;
    const minimum = minimumMoves({ buckets: BUCKETS, owners: before.ownerIds, members: all.map((node) => node.id) });
    return { seconds, movesRatio: moved / minimum };
  } finally {
    await killAll();
  }
}

async function failoverRound(): Promise<number> {
  try {
    const { nodes } = await formThree();
    const coordinator = (await getJson<Status>(nodes[0]!, '/status')).coordinator;
    const victim = nodes.find((node) => node.id !== coordinator)!;
    const survivors = nodes.filter((node) => node !== victim);
    const start = performance.now();
    victim.child.kill('SIGKILL');
    await waitFor('the survivors to agree without the killed node', survivors, () => agreement(survivors), 10);
    return (performance.now() - start) / 1000;
  } finally {
    await killAll();
  }
}

export const clusterMembership: Benchmark = {
  title: 'cluster membership',
  names: ['cluster.join.seconds', 'cluster.join.moves', 'cluster.failover.seconds'],
  async run() {
    const joinSeconds: number[] = [];
    const joinMoves: number[] = [];
    const failoverSeconds: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const join = await joinRound();
      joinSeconds.push(join.seconds);
      joinMoves.push(join.movesRatio);
      failoverSeconds.push(await failoverRound());
    }
    return [
      result({ name: 'cluster.join.seconds', value: median(joinSeconds), unit: 's', better: 'lower', target: { on: 'value', op: '<=', threshold: 2 }, samples: joinSeconds }),
      result({
        name: 'cluster.join.moves',
        value: median(joinMoves),
        unit: 'x minimum',
        better: 'lower',
        target: { on: 'value', op: '<=', threshold: 1 },
        samples: joinMoves,
      }),
      result({
        name: 'cluster.failover.seconds',
        value: median(failoverSeconds),
        unit: 's',
        better: 'lower',
        target: { on: 'value', op: '<=', threshold: 5 },
        samples: failoverSeconds,
      }),
    ];
  },
};
