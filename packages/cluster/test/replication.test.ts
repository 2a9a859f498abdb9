import { describe, expect, it } from 'vitest';
import { Fenced, Kind, bucketOf, decode, defineActor, encode, type TellEnvelope } from '@wadi/core';
import {
  ASYNC_LOSS_WINDOW_MS,
  BUCKET_ACTOR,
  BucketHost,
  PROMPT_FLUSH_MAX_UNACKED,
  REPLICA_FRAME,
  Replication,
  parseFrame,
  placementFloor,
  replicaEntry,
  replicaTargets,
  type Layout,
  type ReplicaFrame,
  type ReplicaMessage,
  type WaitingCaller,
} from '../src/index.js';

const BUCKETS = 4;
const Counter = defineActor('Counter', { state: () => ({ n: 0 }), handlers: { add: (state: { n: number }, k: number) => (state.n += k) } });
const Loose = defineActor('Loose', { state: () => ({ n: 0 }), replication: 'async', handlers: { add: (state: { n: number }, k: number) => (state.n += k) } });

/** Members n1..n4; bucket b owned by owners[b], backed up by backups[b] (R = 1 unless given). */
function layoutOf(owners: number[], backups: number[], options: { epoch?: number; replicas?: number; incoming?: [number, number, number][]; members?: number } = {}): Layout {
  const count = options.members ?? 4;
  return {
    cluster: 'c@1',
    epoch: options.epoch ?? 1,
    buckets: BUCKETS,
    members: Array.from({ length: count }, (_, i) => ({ id: `n${i + 1}`, incarnation: 1, url: `ws://n${i + 1}`, workers: 1 })),
    owners,
    replicas: options.replicas ?? 1,
    backups,
    ...(options.incoming === undefined ? {} : { incoming: options.incoming }),
    coordinator: 'n1',
  };
}

/** Replication instances of single-worker nodes joined by an in-memory network that delivers when told. */
class Net {
  readonly nodes = new Map<string, { replication: Replication; adopted: [string, string, Uint8Array, number][]; deferred: (() => void)[]; soon: (() => void)[]; stale: string[] }>();
  queue: { to: string; frame: ReplicaFrame }[] = [];
  now = 0;
  down = new Set<string>();

  /** `prompt`: the node's IO has `soon` (a real node's microtask), kept apart from `defer` so a test can tell which ran. */
  add(id: string, incarnation = 1, prompt = false): Replication {
    const self = { replication: undefined as unknown as Replication, adopted: [] as [string, string, Uint8Array, number][], deferred: [] as (() => void)[], soon: [] as (() => void)[], stale: [] as string[] };
    self.replication = new Replication(
      { node: id, incarnation, thread: 0, buckets: BUCKETS },
      {
        send: (node, _thread, frame) => {
          if (this.down.has(node)) throw new Error(`${node} is down`);
          // As a real link does: the frame crosses as a copy, checked on the way in.
          this.queue.push({ to: node, frame: parseFrame(decode(encode(frame)), BUCKETS) as ReplicaFrame });
        },
        now: () => this.now,
        defer: (callback) => self.deferred.push(callback),
        ...(prompt ? { soon: (callback: () => void) => self.soon.push(callback) } : {}),
        log: () => undefined,
        threadFor: () => 0,
        versionOf: () => 1,
        adopt: (type, id2, state, version) => {
          self.adopted.push([type, id2, state, version]);
          return true;
        },
        stale: (key) => self.stale.push(key),
      },
    );
    this.nodes.set(id, self);
    return self.replication;
  }

  /** Runs deferred flushes, then delivers frames until none is left (bounded). */
  settle(): void {
    for (let round = 0; round < 100; round++) {
      for (const node of this.nodes.values()) {
        const deferred = [...node.soon.splice(0), ...node.deferred.splice(0)];
        for (const callback of deferred) callback();
      }
      if (this.queue.length === 0) return;
      const queue = this.queue;
      this.queue = [];
      for (const { to, frame } of queue) {
        if (!this.down.has(to)) this.nodes.get(to)?.replication.receive(frame, (type) => (type === 'Loose' ? 'async' : 'sync'));
      }
    }
    throw new Error('the network did not settle');
  }

  flushOnly(): ReplicaMessage[] {
    for (const node of this.nodes.values()) for (const callback of [...node.soon.splice(0), ...node.deferred.splice(0)]) callback();
    return this.queue.map(({ frame }) => frame[5]);
  }
}

/** Host n3 and its backup n2 on one network, both in the usual layout (bucket 0 owned by n1, backed up by n2). */
function hostAndBackup(promptHost = false): { net: Net; host: Replication; backup: Replication; layout: Layout } {
  const net = new Net();
  const host = net.add('n3', 1, promptHost);
  const backup = net.add('n2');
  const layout = layoutOf([0, 1, 2, 3], [1, 2, 3, 0]);
  host.setLayout(layout);
  backup.setLayout(layout);
  return { net, host, backup, layout };
}

/** A session id in bucket `bucket`. */
function idIn(bucket: number): string {
  for (let i = 0; i < 10_000; i++) {
    const id = `s${i}`;
    if (bucketOfId(id) === bucket) return id;
  }
  throw new Error('no id');
}
const bucketOfId = (id: string): number => bucketOf(id, BUCKETS);

function holdState(hold: ReturnType<Replication['committed']>): { released: boolean; error: unknown } {
  const result = { released: false, error: undefined as unknown };
  hold?.wait((error) => {
    result.released = true;
    result.error = error;
  });
  return result;
}

describe('replicaTargets', () => {
  it('is the backups, then the owner, without the host, R of them', () => {
    const layout = layoutOf([0, 1, 2, 3], [1, 2, 3, 0]);
    expect(replicaTargets(layout, 0, 'n3')).toEqual(['n2']);
    // Hosted on its bucket's backup: the owner holds the copy.
    expect(replicaTargets(layout, 0, 'n2')).toEqual(['n1']);
    expect(replicaTargets(layout, 0, 'n1')).toEqual(['n2']);
    expect(replicaTargets(layoutOf([0, 1, 2, 3], [1, 2, 3, 0], { replicas: 0 }), 0, 'n3')).toEqual([]);
  });

  it('adds a retiring member: it keeps receiving changes until its successor has them', () => {
    const layout = layoutOf([0, 1, 2, 3], [2, 2, 3, 0], { incoming: [[0, 2, 1]] });
    expect(replicaTargets(layout, 0, 'n4')).toEqual(['n3', 'n2']);
  });
});

describe('Replication', () => {
  it('a changed turn ships its state and holds a sync reply until the target acknowledged it; an unchanged one does neither', () => {
    const { net, host, backup } = hostAndBackup();
    const id = idIn(0);
    const key = `Counter\u0000${id}`;
    const first = holdState(host.committed(Counter, id, key, { n: 1 }));
    expect(first.released).toBe(false);
    expect(net.flushOnly().map((message) => message.t)).toEqual(['ship']);
    net.settle();
    expect(first).toEqual({ released: true, error: undefined });
    expect(decode(backup.replicaOf(key)!.state)).toEqual({ n: 1 });

    // The same state again: nothing to ship, nothing to wait for.
    expect(host.committed(Counter, id, key, { n: 1 })).toBeUndefined();
    expect(net.flushOnly()).toEqual([]);
    expect(host.stats()).toMatchObject({ shipped: 1, acked: 1, pendingSyncAcks: 0 });
  });

  it('ships a write few others wait beside at once, naming its caller, and one behind many at the end of the turn, without callers', () => {
    const { net, host, layout } = hostAndBackup(true);
    const ids = Array.from({ length: 400 }, (_, i) => `s${i}`)
      .filter((id) => bucketOfId(id) === 0)
      .slice(0, PROMPT_FLUSH_MAX_UNACKED + 1);
    expect(ids).toHaveLength(PROMPT_FLUSH_MAX_UNACKED + 1);
    const caller = (requestId: number): WaitingCaller => ['~c', 1, 0, requestId, `r${requestId}`, null, layout.epoch, ['n2']];
    const order: string[] = [];
    const waitingOf = (messages: ReplicaMessage[]): string[] =>
      messages.flatMap((message) => (message.t === 'ship' ? message.items : [])).map((item) => `${item[0]} ${JSON.stringify(item[5]?.map((waiting) => waiting[3]) ?? null)}`);
    // Writes of other sessions unacknowledged (the previous call's, its acknowledgement still on the
    // way): each still goes on the prompt path (`soon`), its caller named in the shipment, its reply after it.
    for (let n = 1; n <= PROMPT_FLUSH_MAX_UNACKED; n++) {
      const id = ids[n - 1]!;
      const hold = host.committed(Counter, id, `Counter\u0000${id}`, { n: 1 })!;
      host.notifyOnAck(hold, caller(n), () => order.push(`held ${n}`));
      expect([net.nodes.get('n3')!.soon.length, net.nodes.get('n3')!.deferred.length, order.length]).toEqual([1, 0, n - 1]);
      expect(new Set(waitingOf(net.flushOnly()))).toEqual(new Set([`Counter\u0000${id} [${n}]`]));
      expect(order.at(-1)).toBe(`held ${n}`);
      net.queue = [];
    }
    // One more while that many are unacknowledged (load): at the end of the turn, its reply at once, no caller named.
    const last = ids.at(-1)!;
    const hold = host.committed(Counter, last, `Counter\u0000${last}`, { n: 1 })!;
    host.notifyOnAck(hold, caller(99), () => order.push('held 99'));
    expect([net.nodes.get('n3')!.soon.length, net.nodes.get('n3')!.deferred.length, order.at(-1)]).toEqual([0, 1, 'held 99']);
    expect(new Set(waitingOf(net.flushOnly()))).toEqual(new Set([`Counter\u0000${last} null`]));
  });

  it('ships what one event-loop turn changed in one frame per target', () => {
    const net = new Net();
    const host = net.add('n3');
    net.add('n2').setLayout(layoutOf([0, 0, 0, 0], [1, 1, 1, 1]));
    host.setLayout(layoutOf([0, 0, 0, 0], [1, 1, 1, 1]));
    for (let b = 0; b < BUCKETS; b++) host.committed(Counter, idIn(b), `Counter\u0000${idIn(b)}`, { n: b + 1 });
    const messages = net.flushOnly();
    expect(messages).toHaveLength(1);
    expect(messages[0]!.t === 'ship' && messages[0]!.items.length).toBe(BUCKETS);
  });

  it('an async reply goes at once, and its state follows on the next tick, changes in between shipped once', () => {
    const { net, host, backup } = hostAndBackup();
    const id = idIn(0);
    const key = `Loose\u0000${id}`;
    expect(host.committed(Loose, id, key, { n: 5 })).toBeUndefined();
    expect(host.committed(Loose, id, key, { n: 6 })).toBeUndefined();
    net.settle();
    expect(backup.replicaOf(key)).toBeUndefined();
    host.tick();
    net.settle();
    expect(decode(backup.replicaOf(key)!.state)).toEqual({ n: 6 });
    expect(host.stats().shipped).toBe(1);
  });

  it('an async session changed without pause never waits while its replica keeps up, and waits like a sync one once it falls behind', () => {
    const { net, host, backup } = hostAndBackup();
    const id = idIn(0);
    const key = `Loose\u0000${id}`;
    let n = 0;
    // Three seconds of a change every 10 ms, the replica acknowledging each tick's shipment when
    // the next change has been made already: some change is always unacknowledged, none for long.
    for (net.now = 0; net.now < 3000; net.now += 10) {
      expect(host.committed(Loose, id, key, { n: ++n })).toBeUndefined();
      if (net.now % 250 === 0) host.tick();
      if (net.now % 250 === 10) net.settle();
    }
    expect(decode(backup.replicaOf(key)!.state)).toMatchObject({ n: expect.any(Number) });
    // The replica stops answering: once the oldest unacknowledged change is older than half the
    // loss window, replies wait for the replica, and go as soon as it has caught up.
    net.down.add('n2');
    host.tick();
    net.now += ASYNC_LOSS_WINDOW_MS / 2 + 10;
    const held = holdState(host.committed(Loose, id, key, { n: ++n }));
    expect(held.released).toBe(false);
    net.down.delete('n2');
    net.now += 600;
    host.tick(); // ships again what the replica has not acknowledged
    net.settle();
    expect(held).toEqual({ released: true, error: undefined });
    expect(decode(backup.replicaOf(key)!.state)).toEqual({ n });
    expect(host.committed(Loose, id, key, { n: ++n })).toBeUndefined();
  });

  it('with no target (R = 0, or no other member) a sync reply goes at once', () => {
    const net = new Net();
    const host = net.add('n1');
    host.setLayout(layoutOf([0, 0, 0, 0], [], { replicas: 0, members: 1 }));
    expect(host.committed(Counter, 's', 'Counter\u0000s', { n: 1 })).toBeUndefined();
    expect(net.flushOnly()).toEqual([]);
  });

  it('a replica refuses a write not newer than what it holds, and the sync caller gets Fenced', () => {
    const net = new Net();
    const backup = net.add('n2');
    const layout = layoutOf([0, 1, 2, 3], [1, 2, 3, 0]);
    backup.setLayout(layout);
    const id = idIn(0);
    const key = `Counter\u0000${id}`;
    // A newer activation (location version 5) wrote first.
    backup.receive([REPLICA_FRAME, 0, 'n4', 1, 0, { t: 'ship', items: [[key, 5, 1, 1, encode({ n: 100 })]] }], () => 'sync');
    const stale = net.add('n3');
    stale.setLayout(layout);
    const reply = holdState(stale.committed(Counter, id, key, { n: 1 }));
    net.settle();
    expect(reply.released).toBe(true);
    expect(reply.error).toBeInstanceOf(Fenced);
    expect(decode(backup.replicaOf(key)!.state)).toEqual({ n: 100 });
    expect(backup.stats().refused).toBe(1);
    // The stale activation is to be dropped.
    expect(net.nodes.get('n3')!.stale).toEqual([key]);
  });

  it('a writer declared down is fenced off, until a new incarnation of it is in a layout', () => {
    const net = new Net();
    const backup = net.add('n2');
    const layout = layoutOf([0, 1, 2, 3], [1, 2, 3, 0]);
    backup.setLayout(layout);
    const paused = net.add('n3');
    paused.setLayout(layout);
    backup.nodeDown('n3', ['n1', 'n2', 'n3', 'n4'], () => undefined);
    const id = idIn(0);
    const reply = holdState(paused.committed(Counter, id, `Counter\u0000${id}`, { n: 1 }));
    net.settle();
    expect(reply.error).toBeInstanceOf(Fenced);
    expect(backup.replicaOf(`Counter\u0000${id}`)).toBeUndefined();
  });

  it('a new target gets the whole state; the old one is told to drop its replica', () => {
    const net = new Net();
    const host = net.add('n3');
    const oldBackup = net.add('n2');
    const newBackup = net.add('n4');
    const before = layoutOf([0, 1, 2, 3], [1, 2, 3, 0], { epoch: 1 });
    for (const node of [host, oldBackup, newBackup]) node.setLayout(before);
    const id = idIn(0);
    const key = `Counter\u0000${id}`;
    host.committed(Counter, id, key, { n: 7 });
    net.settle();
    expect(oldBackup.replicaOf(key)).toBeDefined();
    // Bucket 0's backup moves to n4 (n2 still its retiring copy, so it is shipped to as well), then n2 retires.
    const moving = layoutOf([0, 1, 2, 3], [3, 2, 3, 0], { epoch: 2, incoming: [[0, 3, 1]] });
    for (const node of [host, oldBackup, newBackup]) node.setLayout(moving);
    net.settle();
    expect(decode(newBackup.replicaOf(key)!.state)).toEqual({ n: 7 });
    expect(host.caughtUp(0, 'n4')).toBe(true);
    const after = layoutOf([0, 1, 2, 3], [3, 2, 3, 0], { epoch: 3 });
    for (const node of [host, oldBackup, newBackup]) node.setLayout(after);
    net.settle();
    expect(oldBackup.replicaOf(key)).toBeUndefined();
    expect(newBackup.replicaOf(key)).toBeDefined();
  });

  it('a sync reply waiting on a target that died is released by the next layout\'s target', () => {
    const net = new Net();
    const host = net.add('n3');
    net.add('n2');
    const replacement = net.add('n4');
    const layout = layoutOf([0, 1, 2, 3], [1, 2, 3, 0]);
    for (const id of ['n3', 'n2', 'n4']) net.nodes.get(id)!.replication.setLayout(layout);
    net.down.add('n2');
    const id = idIn(0);
    const reply = holdState(host.committed(Counter, id, `Counter\u0000${id}`, { n: 1 }));
    net.settle();
    expect(reply.released).toBe(false);
    host.nodeDown('n2', layout.owners.map((o) => `n${o + 1}`), () => undefined);
    const next = layoutOf([0, 3, 2, 3], [3, 2, 3, 0], { epoch: 2 });
    host.setLayout(next);
    replacement.setLayout(next);
    net.settle();
    expect(reply).toEqual({ released: true, error: undefined });
  });

  it('adopts a replica when the bucket owner says so, and re-replicates it to its targets', () => {
    const net = new Net();
    const holder = net.add('n2');
    const other = net.add('n4');
    const layout = layoutOf([0, 1, 2, 3], [1, 2, 3, 0]);
    holder.setLayout(layout);
    other.setLayout(layout);
    const id = idIn(0);
    const key = `Counter\u0000${id}`;
    holder.receive([REPLICA_FRAME, 0, 'n3', 1, 0, { t: 'ship', items: [[key, 1, 1, 3, encode({ n: 3 })]] }], () => 'sync');
    net.queue = [];
    // n3 died; the layout without it; bucket 0's owner (n1) places the session on n2.
    const after = layoutOf([0, 1, 0, 2], [1, 2, 1, 0], { epoch: 2, members: 4 });
    holder.setLayout(after);
    other.setLayout(after);
    const version = placementFloor(2);
    holder.receive([REPLICA_FRAME, 0, 'n1', 1, 0, { t: 'adopt', items: [[key, version]] }], () => 'sync');
    const adopted = net.nodes.get('n2')!.adopted;
    expect(adopted.map(([type, id2, state, v]) => [type, id2, decode(state), v])).toEqual([['Counter', id, { n: 3 }, version]]);
    expect(holder.replicaOf(key)).toBeUndefined();
    // Hosted on its bucket's backup: re-replicated to the owner (n1), not held here.
    expect(net.flushOnly()).toEqual([]);
    const owner = net.add('n1');
    owner.setLayout(after);
    holder.tick();
    net.settle();
    expect(decode(owner.replicaOf(key)!.state)).toEqual({ n: 3 });
    expect(holder.stats()).toMatchObject({ adopted: 1 });
  });
});

describe('BucketHost failover', () => {
  function bucketHost(self: string, adoptions: [string, number, [string, number][]][], recovered: number[], claims: TellEnvelope[]): BucketHost {
    const host = new BucketHost(0, 1, BUCKETS, {
      toWorker: () => undefined,
      toNode: (envelope) => claims.push(envelope),
      hosted: () => [],
      log: () => undefined,
    });
    host.attachReplication({
      replicaEntries: () => [],
      nodeDown: (_node, owners, claim) => {
        for (let b = 0; b < BUCKETS; b++) if (owners[b] === self) claim(b, []);
      },
      liveMembers: () => ['n1', 'n2', 'n3'],
      replicating: true,
      adopt: (node, _worker, bucket, items) => adoptions.push([node, bucket, items]),
      recovered: (bucket) => recovered.push(bucket),
      placementFloor: () => placementFloor(3),
      now: () => 0,
    });
    return host;
  }

  it('after a node went down, an owned bucket waits for every live member\'s claims, then places replica-only sessions on their freshest holder', () => {
    const adoptions: [string, number, [string, number][]][] = [];
    const recovered: number[] = [];
    const host = bucketHost('n1', adoptions, recovered, []);
    host.setLayout('n1', 3, ['n1', 'n1', 'n1', 'n1']);
    for (let b = 0; b < BUCKETS; b++) host.install(b, 3, []);
    host.forgetNode('n3');
    expect(host.ownership(0)).toBe('awaiting');
    const claim = (from: string, items: [string, number, number, number][]): void =>
      void host.receive([Kind.Tell, BUCKET_ACTOR, '0', 'claim', [items, from, 0, 0, 'n3']]);
    // n1's own (empty) claim came at once; bucket 0 waits for n2's.
    claim('n2', [['Counter\u0000a', 4, 1, 9]]);
    expect(recovered).toEqual([0]);
    expect(host.ownership(0)).toBe('serving');
    // The other buckets wait for n2's claims until their time is up.
    expect(host.ownership(1)).toBe('awaiting');
    host.expireRecoveries(10_000);
    expect(recovered).toEqual([0, 1, 2, 3]);
    expect(host.ownership(1)).toBe('serving');
    expect(adoptions).toEqual([['n2', 0, [['Counter\u0000a', placementFloor(3)]]]]);
    expect(host.locate(0, 'Counter\u0000a')).toMatchObject({ node: 'n2', version: placementFloor(3), confirmed: false });
  });

  it('a rebuild uses the replica lines of the reports for sessions nobody reported hosting', () => {
    const adoptions: [string, number, [string, number][]][] = [];
    const host = bucketHost('n1', adoptions, [], []);
    host.setLayout('n1', 5, ['n1', 'n1', 'n1', 'n1']);
    host.install(1, 5, [
      ['Counter\u0000live', 'n2', 0, 7],
      replicaEntry('Counter\u0000live', 'n3', 0, [6, 1, 1]),
      replicaEntry('Counter\u0000lost', 'n2', 0, [3, 1, 4]),
      replicaEntry('Counter\u0000lost', 'n3', 0, [3, 1, 5]),
    ]);
    expect(adoptions).toEqual([['n3', 1, [['Counter\u0000lost', placementFloor(3)]]]]);
    expect(host.locate(1, 'Counter\u0000live')).toMatchObject({ node: 'n2', version: 7 });
  });

  it('after a restart the cluster did not declare down, a claimed replica replaces the old location on the lost incarnation, not a newer one', () => {
    const adoptions: [string, number, [string, number][]][] = [];
    const host = bucketHost('n1', adoptions, [], []);
    host.setLayout('n1', 4, ['n1', 'n1', 'n1', 'n1']);
    host.install(0, 4, [
      ['Counter\u0000old', 'n3', 0, 5],
      ['Counter\u0000placed-anew', 'n3', 0, placementFloor(4)],
    ]);
    host.nodeRestarted('n3', 2);
    const claim = (from: string, items: [string, number, number, number][]): void =>
      void host.receive([Kind.Tell, BUCKET_ACTOR, '0', 'claim', [items, from, 0, 0, 'n3']]);
    claim('n2', [
      ['Counter\u0000old', 5, 1, 7],
      ['Counter\u0000placed-anew', 5, 1, 2],
    ]);
    expect(adoptions).toEqual([['n2', 0, [['Counter\u0000old', placementFloor(3)]]]]);
    expect(host.locate(0, 'Counter\u0000old')).toMatchObject({ node: 'n2', version: placementFloor(3) });
    expect(host.locate(0, 'Counter\u0000placed-anew')).toMatchObject({ node: 'n3', version: placementFloor(4) });
  });
});
