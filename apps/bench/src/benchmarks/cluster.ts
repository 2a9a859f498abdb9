/**
 * cluster.*: membership over real node processes on loopback (the `wadi node` CLI,
 * `NODE_WORKERS` worker threads each, 1024 buckets, default failure-detection timings). No raw baseline: these are absolute
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
// @wadi/cluster is not a dependency of the bench: use its build (built before the bench by turbo).
import { minimumMoves } from '@wadi/cluster';
import { BUCKETS, killCliNodes, spawnCliNode, status, layout, waitForNodes, type CliNode, type ClusterSpec, type LayoutView } from '../cli-nodes.js';
import { NODE_WORKERS } from '../child-nodes.js';
import { median, result, type Benchmark } from '../harness.js';

const ROUNDS = 3;
/** The CLI's defaults (one backup per bucket), no actor module: membership only. */
const SPEC: ClusterSpec = { name: 'c', secret: 'wadi-bench-cluster-secret', clusterName: 'wadi-bench-cluster', replicas: 1, workers: NODE_WORKERS };

function spawnNode(name: string, seeds: readonly CliNode[]): Promise<CliNode> {
  return spawnCliNode(SPEC, name, seeds);
}

function waitFor<T>(what: string, nodes: readonly CliNode[], predicate: () => Promise<T | undefined>, intervalMs = 25): Promise<T> {
  return waitForNodes(what, nodes, predicate, { intervalMs });
}

/**
 * The owner table if `nodes` agree: the same epoch > 0 and coordinator, identical owner tables
 * whose members are exactly these nodes, and all of them 'up' in every node's view.
 */
async function agreement(nodes: readonly CliNode[]): Promise<LayoutView | undefined> {
  const ids = new Set(nodes.map((node) => node.id));
  const views = await Promise.all(nodes.map(async (node) => ({ status: await status(node), layout: await layout(node) })));
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

function waitForAgreement(nodes: readonly CliNode[]): Promise<LayoutView> {
  return waitFor(`${nodes.map((node) => node.name).join(', ')} to agree`, nodes, () => agreement(nodes));
}

/** Three nodes that agree: the first forms the cluster, the other two join through it. */
async function formThree(): Promise<{ nodes: CliNode[]; layout: LayoutView }> {
  const first = await spawnNode('n1', []);
  await waitFor('n1 to form a cluster', [first], async () => ((await status(first)).epoch > 0 ? true : undefined));
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
    await killCliNodes();
  }
}

async function failoverRound(): Promise<number> {
  try {
    const { nodes } = await formThree();
    const coordinator = (await status(nodes[0]!)).coordinator;
    const victim = nodes.find((node) => node.id !== coordinator)!;
    const survivors = nodes.filter((node) => node !== victim);
    const start = performance.now();
    victim.child.kill('SIGKILL');
    await waitFor('the survivors to agree without the killed node', survivors, () => agreement(survivors), 10);
    return (performance.now() - start) / 1000;
  } finally {
    await killCliNodes();
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
