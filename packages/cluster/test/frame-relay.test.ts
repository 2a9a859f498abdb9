/**
 * A node's main thread relaying session frames, driven directly: frames for a member it has not
 * been connected to yet wait (in order, bounded) instead of being lost or failed, and a frame that
 * cannot reach its node is rerouted, returned or failed.
 */
import { describe, expect, it } from 'vitest';
import { Kind, bucketOf, type Envelope } from '@wadi/core';
import { CallFlag, Frame, FrameRelay, type CallFrame, type DeliverFrame, type Layout, type ResultFrame, type RoutedFrame } from '../src/index.js';

const BUCKETS = 8;
const TIMEOUT_MS = 5000;

function layout(owner: string, members = ['a', 'b', 'c']): Layout {
  return {
    cluster: 'c@1',
    epoch: 1,
    buckets: BUCKETS,
    members: members.map((id) => ({ id, incarnation: 1, url: `ws://${id}`, workers: 2 })),
    owners: Array.from({ length: BUCKETS }, () => members.indexOf(owner)),
    coordinator: members[0]!,
  };
}

function harness() {
  const connected = new Set<string>();
  const toNodes: { node: string; frame: RoutedFrame }[] = [];
  const toWorkers: { thread: number; frame: RoutedFrame }[] = [];
  const settled: Envelope[] = [];
  let now = 0;
  const relay = new FrameRelay(
    { node: 'a', incarnation: 1, buckets: BUCKETS, workers: 2, firstConnectionTimeoutMs: TIMEOUT_MS },
    {
      toNode: (node, value: DeliverFrame) => {
        if (!connected.has(node)) throw new Error(`not connected to ${node}`);
        toNodes.push({ node, frame: value[2] });
      },
      toWorker: (thread, frame) => void toWorkers.push({ thread, frame }),
      settle: (envelope) => settled.push(envelope),
      now: () => now,
      log: () => undefined,
    },
  );
  const connect = (id: string): void => {
    connected.add(id);
    relay.connected({ id, incarnation: 1 });
  };
  return { relay, connected, connect, toNodes, toWorkers, settled, advance: (ms: number) => (now += ms) };
}

/** A call from thread 0 of node `from` to session 's' (a tell unless `requestId`). */
function call(n: number, options: { from?: string; requestId?: number; flags?: number } = {}): CallFrame {
  return [Frame.Call, options.requestId ?? 0, options.from ?? 'a', 1, 0, 'T', 's', 'm', [n], 0, n, options.flags ?? 0, 1, '', '', 0];
}

const numbers = (list: { frame: RoutedFrame }[]): unknown[] => list.map(({ frame }) => (frame as CallFrame)[8][0]);
const thread = bucketOf('s', BUCKETS) % 2;

describe('FrameRelay', () => {
  it('holds frames for a member it was never connected to, and sends them in order once the connection is up', () => {
    const { relay, connect, toNodes } = harness();
    relay.setLayout(layout('b'));
    relay.fromWorker('b', thread, call(1));
    relay.fromWorker('b', thread, call(2));
    expect(toNodes).toEqual([]);
    expect(relay.stats().waitingForConnection).toBe(2);
    connect('b');
    relay.fromWorker('b', thread, call(3));
    expect(toNodes.map(({ node }) => node)).toEqual(['b', 'b', 'b']);
    expect(numbers(toNodes)).toEqual([1, 2, 3]);
    expect(relay.stats().waitingForConnection).toBe(0);
  });

  it("sends what waits on a tick once the connection takes it, though its 'connected' was not seen", () => {
    const { relay, connected, toNodes } = harness();
    relay.setLayout(layout('b'));
    relay.fromWorker('b', thread, call(1));
    connected.add('b');
    relay.tick();
    expect(numbers(toNodes)).toEqual([1]);
  });

  it("the main thread's own calls wait too instead of failing", () => {
    const { relay, connect, toNodes, settled } = harness();
    relay.setLayout(layout('b'));
    relay.router.send([Kind.Ask, 7, 0, 'T', 's', 'm', [1]]);
    expect(settled).toEqual([]);
    connect('b');
    expect(toNodes.map(({ node }) => node)).toEqual(['b']);
  });

  it('gives up after the timeout: a call goes to the owner, and later frames for that member are not held again', () => {
    const { relay, connect, toNodes, advance } = harness();
    relay.setLayout(layout('b'));
    connect('b');
    relay.fromWorker('c', thread, call(1));
    advance(TIMEOUT_MS);
    relay.tick();
    expect(toNodes.map(({ node }) => node)).toEqual(['b']);
    expect((toNodes[0]!.frame as CallFrame)[11] & CallFlag.Direct).toBe(0);
    relay.fromWorker('c', thread, call(2));
    expect(toNodes.map(({ node }) => node)).toEqual(['b', 'b']);
  });

  it('does not wait for a member whose connection was up once: a call for it goes to the owner at once', () => {
    const { relay, connect, connected, toNodes } = harness();
    relay.setLayout(layout('b'));
    connect('b');
    connect('c');
    connected.delete('c');
    relay.fromWorker('c', thread, call(1));
    expect(toNodes.map(({ node }) => node)).toEqual(['b']);
  });

  it('fails an ask back to its caller when neither its node nor the owner can be reached', () => {
    const { relay, connect, connected, toWorkers } = harness();
    relay.setLayout(layout('c'));
    connect('c');
    connected.delete('c');
    relay.fromWorker('c', thread, call(1, { requestId: 10 }));
    expect(toWorkers.map(({ frame }) => frame[0])).toEqual([Frame.Result]);
    const failure = toWorkers[0]!.frame as ResultFrame;
    expect([failure[3], failure[4]]).toEqual([10, false]);
  });

  it("returns the owner's grant that cannot reach the node it placed the session on to the owner's worker, which activates it", () => {
    const { relay, toWorkers, advance } = harness();
    relay.setLayout(layout('a'));
    relay.fromWorker('c', thread, call(1, { from: 'c', requestId: 3, flags: CallFlag.Grant }));
    expect(toWorkers).toEqual([]);
    advance(TIMEOUT_MS);
    relay.tick();
    expect(toWorkers.map(({ thread: to }) => to)).toEqual([thread]);
    expect((toWorkers[0]!.frame as CallFrame)[11] & CallFlag.Grant).toBe(CallFlag.Grant);
  });

  it("hands a call a cache sent to an unreachable node to this node's own bucket actor when it owns the bucket; one that bucket actor sent fails", () => {
    const { relay, connect, connected, toWorkers } = harness();
    relay.setLayout(layout('a'));
    connect('c');
    connected.delete('c');
    relay.fromWorker('c', thread, call(1, { requestId: 5, flags: CallFlag.Direct }));
    expect(toWorkers.map(({ frame }) => [frame[0], (frame as CallFrame)[11] & CallFlag.Direct])).toEqual([[Frame.Call, 0]]);
    relay.fromWorker('c', thread, call(2, { requestId: 6 }));
    expect(toWorkers.map(({ frame }) => frame[0])).toEqual([Frame.Call, Frame.Result]);
  });

  it('stops waiting for a node that leaves the layout', () => {
    const { relay, connect, toNodes } = harness();
    relay.setLayout(layout('b'));
    connect('b');
    relay.fromWorker('c', thread, call(1));
    relay.setLayout(layout('b', ['a', 'b']));
    expect(toNodes.map(({ node }) => node)).toEqual(['b']);
    expect(relay.stats().waitingForConnection).toBe(0);
  });

  it('refuses a malformed frame from another node', () => {
    const { relay, toWorkers } = harness();
    relay.fromNode('b', [Frame.Deliver, 0, [Frame.Call, 1]]);
    expect(relay.stats().refusedFrames).toBe(1);
    expect(toWorkers).toEqual([]);
  });
});
