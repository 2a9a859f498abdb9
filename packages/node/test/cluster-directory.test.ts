/**
 * Bucket directories over real nodes in one process (real worker threads, real WebSockets on
 * loopback): sessions register with their bucket's owner wherever it is, and the directories
 * survive a join (handoff), a graceful leave (handoff) and a crash (rebuild from the survivors).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { bucketOf } from '@wadi/core';
import { startNode, type WadiNode } from '@wadi/node';
import { Counter } from './fixtures/actors.mjs';
import { ACTORS as FIXTURES, waitFor } from './helpers.js';

const until = (probe: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> => waitFor('the cluster to settle', probe, timeoutMs, 20);

const BUCKETS = 64;
const started: WadiNode[] = [];

afterEach(async () => {
  await Promise.all(started.splice(0).map((node) => node.cluster!.close().then(() => node.stop({ timeoutMs: 1000 }))));
});

async function start(seeds: string[] = []): Promise<WadiNode> {
  const node = await startNode({
    actors: [FIXTURES],
    workers: 2,
    buckets: BUCKETS,
    cluster: {
      port: 0,
      seeds,
      secret: 'directory-test',
      timings: { heartbeatMs: 100, suspectAfterMs: 600, downAfterMs: 300, probeIntervalMs: 100, settleMs: 20 },
      tickMs: 20,
      handoffTimeoutMs: 500,
      log: process.env.DEBUG_CLUSTER ? (l, m, f) => console.log(performance.now().toFixed(0), l, m, JSON.stringify(f ?? {})) : () => undefined,
    },
  });
  started.push(node);
  return node;
}

async function agreed(nodes: WadiNode[], members: number): Promise<void> {
  await until(async () => {
    const layouts = nodes.map((node) => node.cluster!.layout());
    const epochs = new Set(layouts.map((layout) => layout?.epoch));
    const statuses = await Promise.all(nodes.map((node) => node.cluster!.status()));
    return (
      epochs.size === 1 &&
      layouts[0]?.members.length === members &&
      statuses.every((status) => status.buckets.handoffsPending === 0)
    );
  }, 15_000);
}

/** Each session's entry, read from the node that owns its bucket. */
async function entries(nodes: WadiNode[], ids: string[]): Promise<Map<string, string | undefined>> {
  const found = new Map<string, string | undefined>();
  for (const id of ids) {
    for (const node of nodes) {
      const entry = await node.cluster!.lookup('Counter', id);
      if (entry === 'not-owner') continue;
      found.set(id, entry?.node);
    }
  }
  return found;
}

async function totalEntries(nodes: WadiNode[]): Promise<number> {
  const statuses = await Promise.all(nodes.map((node) => node.cluster!.status()));
  return statuses.reduce((sum, status) => sum + status.directory.entries, 0);
}

describe('bucket directories in a cluster', () => {
  it('register every session with its owner, and keep them through a join, a leave and a crash', async () => {
    const a = await start();
    const b = await start([a.cluster!.url]);
    const c = await start([a.cluster!.url]);
    await agreed([a, b, c], 3);

    // Sessions live on the node that called them (routing across nodes is not built yet).
    const homes = new Map<string, WadiNode>();
    const ids: string[] = [];
    for (let i = 0; i < 90; i++) {
      const node = [a, b, c][i % 3]!;
      const id = `user${i}/counter`;
      await node.ref(Counter, id).add(i);
      homes.set(id, node);
      ids.push(id);
    }
    const expected = (): Map<string, string> => new Map(ids.map((id) => [id, homes.get(id)!.cluster!.id]));
    await until(async () => (await totalEntries([a, b, c])) === ids.length, 10_000);
    expect(await entries([a, b, c], ids)).toEqual(expected());

    // A join moves directories, not sessions: every entry still points where the session is.
    const d = await start([b.cluster!.url]);
    await agreed([a, b, c, d], 4);
    expect(d.cluster!.layout()!.members.map((member) => member.id)).toContain(d.cluster!.id);
    expect((await d.cluster!.status()).buckets.handoffsCompleted).toBeGreaterThan(0);
    expect(await totalEntries([a, b, c, d])).toBe(ids.length);
    expect(await entries([a, b, c, d], ids)).toEqual(expected());
    // Sessions stay where they are (and in memory) after the join.
    for (const id of ids.slice(0, 10)) expect(await homes.get(id)!.ref(Counter, id).get()).toBe(Number(id.slice(4, id.indexOf('/'))));

    // A graceful leave of a node that hosts no sessions hands its directories off.
    await d.cluster!.leave();
    await d.cluster!.close();
    await agreed([a, b, c], 3);
    expect(await totalEntries([a, b, c])).toBe(ids.length);
    expect(await entries([a, b, c], ids)).toEqual(expected());

    // A crash: the survivors rebuild the crashed node's buckets from what each of them hosts, and
    // the sessions the crashed node hosted are adopted by a survivor from their replicas (R = 1).
    await c.cluster!.close();
    await c.stop({ timeoutMs: 0 });
    started.splice(started.indexOf(c), 1);
    await agreed([a, b], 2);
    const survivors = ids.filter((id) => homes.get(id) !== c);
    const lost = ids.filter((id) => homes.get(id) === c);
    const found = await entries([a, b], ids);
    for (const id of survivors) expect(found.get(id)).toBe(homes.get(id)!.cluster!.id);
    await until(async () => (await totalEntries([a, b])) === ids.length, 10_000);
    const adopted = await entries([a, b], lost);
    for (const id of lost) expect([a.cluster!.id, b.cluster!.id]).toContain(adopted.get(id));
    for (const id of lost) expect(await a.ref(Counter, id).get()).toBe(Number(id.slice(4, id.indexOf('/'))));
  }, 60_000);

  it('loses no registration made while a join hands buckets off', async () => {
    const a = await start();
    const b = await start([a.cluster!.url]);
    await agreed([a, b], 2);
    const homes = new Map<string, string>();
    let stop = false;
    let made = 0;
    // Keep activating sessions on both nodes while a third joins and pulls a third of the buckets.
    const load = (node: WadiNode, prefix: string): Promise<void> =>
      (async () => {
        for (let i = 0; !stop && i < 5000; i++) {
          const id = `${prefix}${i}/s`;
          await node.ref(Counter, id).add(1);
          homes.set(id, node.cluster!.id);
          made++;
        }
      })();
    const loads = [load(a, 'a'), load(b, 'b')];
    await until(() => made >= 50, 10_000);
    const c = await start([a.cluster!.url]);
    await agreed([a, b, c], 3);
    const afterJoin = made;
    await until(() => made >= afterJoin + 50, 10_000);
    stop = true;
    await Promise.all(loads);
    const ids = [...homes.keys()];
    await until(async () => (await totalEntries([a, b, c])) === ids.length, 10_000);
    const found = await entries([a, b, c], ids);
    for (const id of ids) expect(found.get(id)).toBe(homes.get(id));
    expect((await c.cluster!.status()).buckets.handoffsCompleted).toBeGreaterThan(0);
  }, 60_000);

  it('places each bucket directory on worker b % W of its owner', async () => {
    const a = await start();
    await agreed([a], 1);
    const id = 'somebody/cart';
    await a.ref(Counter, id).add(1);
    const bucket = bucketOf(id, BUCKETS);
    await until(async () => (await a.cluster!.lookup('Counter', id)) !== undefined, 5000);
    expect(await a.cluster!.lookup('Counter', id)).toEqual({ node: a.cluster!.id, worker: a.locate(Counter, id), tier: 'memory' });
    expect(bucket % 2).toBe(a.locate(Counter, id));
  });
});
