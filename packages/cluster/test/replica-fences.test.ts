/**
 * A replica holder's main thread acknowledging shipments itself (`ReplicaFences`, driven through
 * the `FrameRelay`): the acknowledgement leaves at once, with the worker's own rule (newer taken,
 * equal acknowledged again, older and down writers refused), and only what was taken goes on to
 * the holding worker as a `store`; a refused write is never acknowledged. A `store` from the
 * network is refused; a worker's `Replication` keeps a `store` without acknowledging it and never
 * lets an older one replace what it holds.
 */
import { describe, expect, it } from 'vitest';
import { decode, encode, type Envelope } from '@wadi/core';
import {
  Frame,
  FrameRelay,
  REPLICA_FRAME,
  Replication,
  type DeliverFrame,
  type Layout,
  type ReplicaFrame,
  type ReplicaMessage,
  type RoutedFrame,
  type ShippedState,
} from '../src/index.js';

const BUCKETS = 8;
const KEY = 'T\u0000s';
const STATE = new Uint8Array([1, 2, 3]);

/** Members a (this node), b, c; every bucket owned by b and backed up by a unless `backup` says otherwise. */
function layout(epoch: number, backup = 0, incarnations: number[] = [1, 1, 1]): Layout {
  return {
    cluster: 'c@1',
    epoch,
    buckets: BUCKETS,
    members: ['a', 'b', 'c'].map((id, i) => ({ id, incarnation: incarnations[i]!, url: `ws://${id}`, workers: 2 })),
    owners: Array.from({ length: BUCKETS }, () => 1),
    replicas: 1,
    backups: Array.from({ length: BUCKETS }, () => backup),
    coordinator: 'b',
  };
}

function harness() {
  const sent: { to: string; frame: RoutedFrame }[] = [];
  const relay = new FrameRelay(
    { node: 'a', incarnation: 1, buckets: BUCKETS, workers: 2 },
    {
      toNode: (node, value: DeliverFrame) => void sent.push({ to: node, frame: value[2] }),
      toWorker: (thread, frame) => void sent.push({ to: `worker ${thread}`, frame }),
      settle: (_envelope: Envelope) => undefined,
      now: () => 0,
      log: () => undefined,
    },
  );
  relay.setLayout(layout(1));
  return { relay, sent };
}

/** A shipment from worker 0 of node `from` (incarnation `incarnation`) for worker 1 of this node. */
function ship(from: string, items: [version: number, incarnation: number, seq: number][], incarnation = 1): DeliverFrame {
  return [Frame.Deliver, 1, [REPLICA_FRAME, 1, from, incarnation, 0, { t: 'ship', items: items.map(([v, i, s]): ShippedState => [KEY, v, i, s, STATE]) }]];
}

const message = (frame: RoutedFrame): ReplicaMessage => (frame as ReplicaFrame)[5];

describe("a replica holder's main thread", () => {
  it('acknowledges a newer write at once, then hands its state to the worker; an equal one is acknowledged again and not handed on', () => {
    const { relay, sent } = harness();
    relay.fromNode('b', ship('b', [[1, 1, 1]]));
    expect(sent.map(({ to }) => to)).toEqual(['b', 'worker 1']);
    expect(sent[0]!.frame.slice(0, 5)).toEqual([REPLICA_FRAME, 0, 'a', 1, 1]);
    expect(message(sent[0]!.frame)).toEqual({ t: 'ack', items: [[KEY, 1, 1, 1]], refused: [] });
    expect(message(sent[1]!.frame)).toEqual({ t: 'store', items: [[KEY, 1, 1, 1, STATE]] });
    expect((sent[1]!.frame as ReplicaFrame).slice(0, 5)).toEqual([REPLICA_FRAME, 1, 'b', 1, 0]);
    sent.length = 0;
    relay.fromNode('b', ship('b', [[1, 1, 1]]));
    expect(sent.map(({ to }) => to)).toEqual(['b']);
    expect(message(sent[0]!.frame)).toEqual({ t: 'ack', items: [[KEY, 1, 1, 1]], refused: [] });
  });

  it('refuses an older write, and every write of a writer declared down, without acknowledging them', () => {
    const { relay, sent } = harness();
    relay.fromNode('b', ship('b', [[2, 1, 5]]));
    sent.length = 0;
    relay.fromNode('c', ship('c', [[1, 1, 9]]));
    expect(sent.map(({ to }) => to)).toEqual(['c']);
    const older = message(sent[0]!.frame) as Extract<ReplicaMessage, { t: 'ack' }>;
    expect(older.items).toEqual([]);
    expect(older.refused.map((line) => line[5])).toEqual(['older']);
    sent.length = 0;
    relay.memberGone('b', true);
    relay.fromNode('b', ship('b', [[2, 1, 6]]));
    const fenced = message(sent[0]!.frame) as Extract<ReplicaMessage, { t: 'ack' }>;
    expect(fenced.items).toEqual([]);
    expect(fenced.refused.map((line) => line[5])).toEqual(['fenced']);
    expect(sent).toHaveLength(1);
    expect(relay.fences.refused).toBe(2);
    // Its next incarnation, once in the layout, writes again.
    relay.setLayout(layout(2, 0, [1, 2, 1]));
    sent.length = 0;
    relay.fromNode('b', ship('b', [[2, 2, 1]], 2));
    expect(message(sent[0]!.frame)).toEqual({ t: 'ack', items: [[KEY, 2, 2, 1]], refused: [] });
  });

  it('refuses the earlier incarnations of a restarted writer only', () => {
    const { relay, sent } = harness();
    relay.memberGone('b', true, 2);
    relay.fromNode('b', ship('b', [[1, 1, 1]]));
    relay.fromNode('b', ship('b', [[1, 2, 1]], 2));
    expect((message(sent[0]!.frame) as Extract<ReplicaMessage, { t: 'ack' }>).refused.map((line) => line[5])).toEqual(['fenced']);
    expect(message(sent[1]!.frame)).toEqual({ t: 'ack', items: [[KEY, 1, 2, 1]], refused: [] });
  });

  it("forgets a session on its host's drop and on a layout where this node copies no more, so its writes start over", () => {
    const { relay, sent } = harness();
    relay.fromNode('b', ship('b', [[1, 1, 7]]));
    relay.fromNode('b', [Frame.Deliver, 1, [REPLICA_FRAME, 1, 'b', 1, 0, { t: 'drop', items: [[KEY, 1, 1]] }]]);
    expect(sent.map(({ to }) => to)).toEqual(['b', 'worker 1', 'worker 1']);
    sent.length = 0;
    relay.fromNode('b', ship('b', [[1, 1, 1]]));
    expect(message(sent[0]!.frame)).toEqual({ t: 'ack', items: [[KEY, 1, 1, 1]], refused: [] });
    relay.setLayout(layout(2, 2));
    expect(relay.fences.size).toBe(0);
  });

  it('refuses a store from another node', () => {
    const { relay, sent } = harness();
    relay.fromNode('b', [Frame.Deliver, 1, [REPLICA_FRAME, 1, 'b', 1, 0, { t: 'store', items: [[KEY, 1, 1, 1, STATE]] }]]);
    expect(sent).toEqual([]);
    expect(relay.stats().refusedFrames).toBe(1);
  });
});

describe('a worker given a store', () => {
  it('keeps it without acknowledging, and never replaces what it holds by an older write', () => {
    const sent: ReplicaFrame[] = [];
    const replication = new Replication(
      { node: 'a', incarnation: 1, thread: 1, buckets: BUCKETS },
      {
        send: (_node, _thread, frame) => void sent.push(decode(encode(frame)) as ReplicaFrame),
        now: () => 0,
        defer: () => undefined,
        log: () => undefined,
        threadFor: () => 1,
        versionOf: () => 0,
        stale: () => undefined,
        adopt: () => false,
      },
    );
    replication.setLayout(layout(1));
    const store = (seq: number, state: Uint8Array): void => replication.receive([REPLICA_FRAME, 1, 'b', 1, 0, { t: 'store', items: [[KEY, 1, 1, seq, state]] }], () => 'sync');
    store(3, STATE);
    store(2, new Uint8Array([9]));
    expect(sent).toEqual([]);
    expect(replication.replicaOf(KEY)).toEqual({ version: [1, 1, 3], writer: 'b', state: STATE });
    expect(replication.stats()).toMatchObject({ replicasHeld: 1, bytesHeld: 3 });
  });
});
