/**
 * A node's main thread holding its workers' `sync` replies (held-replies.ts), driven through the
 * `FrameRelay`: a reply goes as soon as every target acknowledged its write, before the
 * acknowledgement goes on to the worker; otherwise (a refusal, a layout change, a target that went
 * down, a write not acknowledged yet) only the worker's word lets it go, once; the worker's word
 * after an early release sends nothing more. A reply every target delivered to the caller itself
 * (`ReplicatedResult`), in the layout epoch the targets were chosen by, is dropped instead; the
 * replica holder's side: it delivers the results shipped with the writes it takes, before it
 * acknowledges them to the writer.
 */
import { describe, expect, it } from 'vitest';
import { errorToShape, Fenced, type Envelope } from '@wadi/core';
import {
  Frame,
  FrameRelay,
  HeldReplies,
  HELD_REPLY_EXPIRES_MS,
  MAIN_THREAD,
  REPLICA_FRAME,
  type DeliverFrame,
  type HeldFrame,
  type Layout,
  type ReplicaFrame,
  type ResultFrame,
  type RoutedFrame,
} from '../src/index.js';

const BUCKETS = 8;
const KEY = 'T\u0000s';

function layout(epoch: number): Layout {
  const members = ['a', 'b', 'c'];
  return {
    cluster: 'c@1',
    epoch,
    buckets: BUCKETS,
    members: members.map((id) => ({ id, incarnation: 1, url: `ws://${id}`, workers: 2 })),
    owners: Array.from({ length: BUCKETS }, () => 0),
    coordinator: 'a',
  };
}

function harness() {
  const sent: { to: string; frame: RoutedFrame }[] = [];
  let now = 0;
  const relay = new FrameRelay(
    { node: 'a', incarnation: 3, buckets: BUCKETS, workers: 2 },
    {
      toNode: (node, value: DeliverFrame) => void sent.push({ to: node, frame: value[2] }),
      toWorker: (thread, frame) => void sent.push({ to: `worker ${thread}`, frame }),
      settle: (_envelope: Envelope) => undefined,
      now: () => now,
      log: () => undefined,
    },
  );
  relay.setLayout(layout(1));
  sent.length = 0;
  return { relay, sent, advance: (ms: number) => (now += ms) };
}

/** Worker 1's sync result for request `requestId` of thread 0 of client '~x', waiting for write `seq` at version 5 on `targets` (chosen in layout 1). */
function held(id: number, seq: number, targets: string[], requestId = id): HeldFrame {
  const result: ResultFrame = [Frame.Result, 0, 9, requestId, true, `r${requestId}`, null];
  return [Frame.Held, 1, id, KEY, 5, seq, targets, '~x', result, 1];
}

/** `told`: the holder delivered these requests' results to thread 0 of '~x', in layout `toldEpoch` (default 1). */
function ack(from: string, seq: number, options: { version?: number; incarnation?: number; refused?: boolean; told?: number[]; toldEpoch?: number } = {}): DeliverFrame {
  const write = [KEY, options.version ?? 5, options.incarnation ?? 3, seq] as const;
  const message: ReplicaFrame[5] = options.refused === true ? { t: 'ack', items: [], refused: [[...write, 'a newer write is held', 'older']] } : { t: 'ack', items: [[...write]], refused: [] };
  if (options.told !== undefined && message.t === 'ack') {
    message.told = options.told.map((requestId) => ['~x', 0, requestId]);
    message.epoch = options.toldEpoch ?? 1;
  }
  return [Frame.Deliver, 1, [REPLICA_FRAME, 1, from, 1, 1, message]];
}

const kinds = (sent: { to: string; frame: RoutedFrame }[]): string[] => sent.map(({ to, frame }) => (frame[0] === Frame.Result ? `${to} result ${String(frame[3])} ${frame[4] ? 'ok' : 'failed'}` : `${to} ${frame[0] === Frame.Replica ? 'ack' : frame[0]}`));

describe('held sync replies', () => {
  it('lets a reply go when its only target acknowledges its write, before the acknowledgement goes on', () => {
    const { relay, sent } = harness();
    relay.fromWorker('a', MAIN_THREAD, held(1, 4, ['b']));
    expect(sent).toEqual([]);
    relay.fromNode('b', ack('b', 3));
    expect(kinds(sent)).toEqual(['worker 1 ack']);
    relay.fromNode('b', ack('b', 4));
    expect(kinds(sent)).toEqual(['worker 1 ack', '~x result 1 ok', 'worker 1 ack']);
    expect((sent[1]!.frame as ResultFrame)[5]).toBe('r1');
    // The acknowledgement that let it go tells the worker so; the one before did not.
    expect((sent[0]!.frame as ReplicaFrame)[5]).not.toHaveProperty('released');
    expect((sent[2]!.frame as ReplicaFrame)[5]).toMatchObject({ t: 'ack', released: [1] });
    // The worker's word comes later: nothing more goes.
    relay.fromWorker('a', MAIN_THREAD, [Frame.HeldOutcome, 1, 1, null]);
    expect(sent).toHaveLength(3);
    expect(relay.stats()).toMatchObject({ heldReplies: 0, heldRepliesReleasedEarly: 1 });
  });

  it('waits for every target, and takes a later write of the same version as acknowledging an earlier one', () => {
    const { relay, sent } = harness();
    relay.fromWorker('a', MAIN_THREAD, held(1, 4, ['b', 'c']));
    relay.fromWorker('a', MAIN_THREAD, held(2, 5, ['b', 'c']));
    relay.fromNode('b', ack('b', 5));
    relay.fromNode('c', ack('c', 4, { version: 4 }));
    relay.fromNode('c', ack('c', 4, { incarnation: 2 }));
    expect(kinds(sent)).toEqual(['worker 1 ack', 'worker 1 ack', 'worker 1 ack']);
    sent.length = 0;
    relay.fromNode('c', ack('c', 5));
    expect(kinds(sent)).toEqual(['~x result 1 ok', '~x result 2 ok', 'worker 1 ack']);
  });

  it('leaves a reply to the worker once a target refused a write of its session, and sends the failure the worker names', () => {
    const { relay, sent } = harness();
    relay.fromWorker('a', MAIN_THREAD, held(1, 4, ['b']));
    relay.fromNode('b', ack('b', 4, { refused: true }));
    relay.fromNode('b', ack('b', 5));
    expect(kinds(sent)).toEqual(['worker 1 ack', 'worker 1 ack']);
    sent.length = 0;
    const error = errorToShape(new Fenced('refused'));
    relay.fromWorker('a', MAIN_THREAD, [Frame.HeldOutcome, 1, 1, error]);
    expect(kinds(sent)).toEqual(['~x result 1 failed']);
    expect((sent[0]!.frame as ResultFrame)[5]).toEqual(error);
    relay.fromWorker('a', MAIN_THREAD, [Frame.HeldOutcome, 1, 1, null]);
    expect(sent).toHaveLength(1);
  });

  it('leaves what is held to the workers after a layout change or when a target goes down', () => {
    const { relay, sent } = harness();
    relay.fromWorker('a', MAIN_THREAD, held(1, 4, ['b']));
    relay.setLayout(layout(2));
    relay.fromWorker('a', MAIN_THREAD, held(2, 5, ['b']));
    relay.fromWorker('a', MAIN_THREAD, held(3, 6, ['c']));
    relay.memberGone('c', true);
    relay.fromNode('b', ack('b', 6));
    relay.fromNode('c', ack('c', 6));
    // Only the reply held after the layout change, on a target still up, went early.
    expect(kinds(sent)).toEqual(['~x result 2 ok', 'worker 1 ack', 'worker 1 ack']);
    sent.length = 0;
    relay.fromWorker('a', MAIN_THREAD, [Frame.HeldOutcome, 1, 3, null]);
    relay.fromWorker('a', MAIN_THREAD, [Frame.HeldOutcome, 1, 1, null]);
    expect(kinds(sent)).toEqual(['~x result 3 ok', '~x result 1 ok']);
    expect(relay.stats().heldReplies).toBe(0);
  });

  it('drops the replies of a worker that is gone, and those held too long', () => {
    const { relay, sent, advance } = harness();
    relay.fromWorker('a', MAIN_THREAD, held(1, 4, ['b']));
    relay.workerGone(1);
    relay.fromNode('b', ack('b', 4));
    expect(kinds(sent)).toEqual(['worker 1 ack']);
    relay.fromWorker('a', MAIN_THREAD, held(2, 5, ['b']));
    advance(HELD_REPLY_EXPIRES_MS);
    relay.tick();
    expect(relay.stats().heldReplies).toBe(0);
    relay.fromWorker('a', MAIN_THREAD, [Frame.HeldOutcome, 1, 2, null]);
    expect(kinds(sent)).toEqual(['worker 1 ack']);
  });

  it('never releases a reply held with no targets on acknowledgements', () => {
    const replies = new HeldReplies(3);
    replies.hold(0, 1, KEY, 5, 1, [], 1, '~x', [Frame.Result, 0, 9, 1, true, 'r', null], 0);
    expect(replies.acked('b', 0, { t: 'ack', items: [[KEY, 5, 3, 9]], refused: [] })).toEqual([]);
    expect(replies.outcome(0, 1, null)?.[1]?.[5]).toBe('r');
  });

  it('sends nothing for a reply every target delivered in the epoch of its write, and the reply itself otherwise', () => {
    const { relay, sent } = harness();
    relay.fromWorker('a', MAIN_THREAD, held(1, 4, ['b', 'c']));
    relay.fromWorker('a', MAIN_THREAD, held(2, 5, ['b', 'c']));
    relay.fromWorker('a', MAIN_THREAD, held(3, 6, ['b']));
    // 1: both targets delivered it. 2: c did not (it could not reach the caller). 3: b judged by layout 2.
    relay.fromNode('b', ack('b', 5, { told: [1, 2] }));
    relay.fromNode('c', ack('c', 5, { told: [1] }));
    relay.fromNode('b', ack('b', 6, { told: [3], toldEpoch: 2 }));
    expect(kinds(sent)).toEqual(['worker 1 ack', '~x result 2 ok', 'worker 1 ack', '~x result 3 ok', 'worker 1 ack']);
    // All three were let go here: the worker is told so, and its word sends nothing more.
    expect((sent[2]!.frame as ReplicaFrame)[5]).toMatchObject({ released: [1, 2] });
    relay.fromWorker('a', MAIN_THREAD, [Frame.HeldOutcome, 1, 1, null]);
    expect(sent).toHaveLength(5);
    expect(relay.stats()).toMatchObject({ heldReplies: 0, heldRepliesReleasedEarly: 3 });
  });

  it('delivers the results shipped with the writes it takes to their callers, before it acknowledges them to the writer', () => {
    const { relay, sent } = harness();
    const state = new Uint8Array([1, 2, 3]);
    const caller = (requestId: number, writeEpoch = 1): [string, number, number, number, unknown, null, number, string[]] => ['~y', 4, 0, requestId, `v${requestId}`, null, writeEpoch, ['a']];
    relay.fromNode('b', [
      Frame.Deliver,
      0,
      [REPLICA_FRAME, 0, 'b', 2, 1, { t: 'ship', items: [[KEY, 5, 2, 7, state, [caller(11), caller(12)]], ['T\u0000other', 1, 2, 1, state]] }],
    ]);
    expect(sent.map(({ to, frame }) => `${to} ${frame[0] === Frame.ReplicatedResult ? `result ${frame[3]}` : frame[0] === Frame.Replica ? frame[5].t : frame[0]}`)).toEqual([
      '~y result 11',
      '~y result 12',
      'b ack',
      'worker 0 store',
    ]);
    expect(sent[0]!.frame).toEqual([Frame.ReplicatedResult, 0, 4, 11, 'v11', null, 'a', 1, 1, ['a']]);
    expect((sent[2]!.frame as ReplicaFrame)[5]).toMatchObject({ t: 'ack', told: [['~y', 0, 11], ['~y', 0, 12]], epoch: 1 });
    // A write it refuses (not newer than what it holds) delivers nothing.
    sent.length = 0;
    relay.fromNode('b', [Frame.Deliver, 0, [REPLICA_FRAME, 0, 'b', 2, 1, { t: 'ship', items: [[KEY, 5, 2, 6, state, [caller(13)]]] }]]);
    expect(sent.map(({ to, frame }) => `${to} ${frame[0] === Frame.Replica ? frame[5].t : frame[0]}`)).toEqual(['b ack']);
    expect((sent[0]!.frame as ReplicaFrame)[5]).not.toHaveProperty('told');
  });

  it('never passes on what another node says was released', () => {
    const { relay, sent } = harness();
    const forged = ack('b', 4);
    (forged[2] as ReplicaFrame)[5] = { t: 'ack', items: [], refused: [], released: [7] };
    relay.fromNode('b', forged);
    expect((sent[0]!.frame as ReplicaFrame)[5]).toEqual({ t: 'ack', items: [], refused: [] });
  });

  it('refuses held frames from another node', () => {
    const { relay, sent } = harness();
    relay.fromNode('b', [Frame.Deliver, MAIN_THREAD, held(1, 4, ['b'])]);
    expect(sent).toEqual([]);
    expect(relay.stats()).toMatchObject({ refusedFrames: 1, heldReplies: 0 });
  });
});
