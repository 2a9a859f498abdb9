/**
 * The caller's side of session routing, driven directly: where calls go, how notices correct the
 * cache, and how a path switch holds later calls until the earlier ones are acknowledged.
 */
import { describe, expect, it } from 'vitest';
import { Kind, activationKey, bucketOf, type Envelope } from '@wadi/core';
import { CallFlag, Frame, SessionRouter, type CallFrame, type Layout, type RoutedFrame } from '../src/index.js';

const BUCKETS = 8;

function layout(owner: string): Layout {
  return {
    cluster: 'c@1',
    epoch: 1,
    buckets: BUCKETS,
    members: [
      { id: 'a', incarnation: 1, url: 'ws://a', workers: 2 },
      { id: 'b', incarnation: 1, url: 'ws://b', workers: 2 },
      { id: 'h', incarnation: 1, url: 'ws://h', workers: 2 },
    ],
    owners: Array.from({ length: BUCKETS }, () => ['a', 'b', 'h'].indexOf(owner)),
    coordinator: 'a',
  };
}

function harness(options: { unreachable?: Set<string> } = {}) {
  const sent: { node: string; thread: number; frame: CallFrame }[] = [];
  const settled: Envelope[] = [];
  let now = 0;
  const router = new SessionRouter(
    { node: 'a', incarnation: 1, thread: 0, buckets: BUCKETS },
    {
      send: (node, thread, frame: RoutedFrame) => {
        if (options.unreachable?.has(node)) throw new Error(`not connected to ${node}`);
        sent.push({ node, thread, frame: frame as CallFrame });
      },
      settle: (envelope) => settled.push(envelope),
      now: () => now,
      log: () => undefined,
    },
  );
  const tell = (id: string, n: number): void => router.send([Kind.Tell, 'T', id, 'm', [n]]);
  const notice = (id: string, node: string, version: number, seq: number): void =>
    router.receive([Frame.Notice, 0, 1, [activationKey('T', id), node, version, seq]]);
  return { router, sent, settled, tell, notice, advance: (ms: number) => (now += ms) };
}

const args = (entries: { frame: CallFrame }[]): unknown[] => entries.map(({ frame }) => frame[8][0]);

describe('SessionRouter', () => {
  it('keeps calls made before the first layout, then sends them to the owner', () => {
    const { router, sent, tell } = harness();
    tell('s', 1);
    expect(sent).toEqual([]);
    router.setLayout(layout('b'));
    expect(sent.map(({ node }) => node)).toEqual(['b']);
    expect(sent[0]!.thread).toBe(bucketOf('s', BUCKETS) % 2);
  });

  it('goes to the owner first, then straight to where a notice says the session is', () => {
    const { router, sent, tell, notice } = harness();
    router.setLayout(layout('b'));
    tell('s', 1);
    expect(sent[0]!.node).toBe('b');
    expect(sent[0]!.frame[11] & CallFlag.Direct).toBe(0);
    notice('s', 'h', 1, 1);
    tell('s', 2);
    expect(sent[1]!.node).toBe('h');
    expect(sent[1]!.frame[11] & CallFlag.Direct).toBe(CallFlag.Direct);
    // Sent as to the session's host, at the location version the notice gave.
    expect([sent[0]!.frame[11] & CallFlag.Located, sent[1]!.frame[11] & CallFlag.Located, sent[1]!.frame[12]]).toEqual([0, CallFlag.Located, 1]);
    expect(sent.map(({ frame }) => frame[10])).toEqual([1, 2]);
  });

  it('holds calls on a path switch until every call on the old path is acknowledged', () => {
    const { router, sent, tell, notice } = harness();
    router.setLayout(layout('b'));
    for (let n = 1; n <= 3; n++) tell('s', n);
    notice('s', 'h', 1, 1);
    tell('s', 4);
    tell('s', 5);
    // 2 and 3 are still on their way through the owner: 4 and 5 must not overtake them.
    expect(args(sent)).toEqual([1, 2, 3]);
    expect(router.stats().held).toBe(2);
    notice('s', 'h', 1, 2);
    expect(args(sent)).toEqual([1, 2, 3]);
    notice('s', 'h', 1, 3);
    expect(args(sent)).toEqual([1, 2, 3, 4, 5]);
    expect(sent.slice(3).map(({ node }) => node)).toEqual(['h', 'h']);
  });

  it('a call delivered to this very thread says where it arrived before the calls held behind it go (a session migrating here)', () => {
    const { router, sent, tell, notice } = harness();
    router.setLayout(layout('b'));
    for (let n = 1; n <= 3; n++) tell('s', n);
    notice('s', 'h', 1, 1);
    tell('s', 4);
    expect(router.stats().held).toBe(1);
    // Call 3 reached the session here, on this thread, where a migration brings it at version 2.
    router.delivered(activationKey('T', 's'), 3, [activationKey('T', 's'), 'a', 2, 3]);
    expect(router.stats().held).toBe(0);
    expect([sent[3]!.node, sent[3]!.frame[12], args([sent[3]!])]).toEqual(['a', 2, [4]]);
  });

  it('follows a session that moved, holding until the calls forwarded by its old host are acknowledged', () => {
    const { router, sent, tell, notice } = harness();
    router.setLayout(layout('b'));
    tell('s', 1);
    notice('s', 'h', 1, 1);
    tell('s', 2);
    tell('s', 3);
    // The session moved to b; h forwards 2 and 3 there, and b's notice for 2 arrives first.
    notice('s', 'b', 2, 2);
    tell('s', 4);
    expect(args(sent)).toEqual([1, 2, 3]);
    notice('s', 'b', 2, 3);
    expect(sent.at(-1)).toMatchObject({ node: 'b' });
    expect(args(sent)).toEqual([1, 2, 3, 4]);
    // An older location heard late does not win.
    notice('s', 'h', 1, 3);
    tell('s', 5);
    expect(sent.at(-1)).toMatchObject({ node: 'b' });
  });

  it('holds on a switch from a node as the owner to the same node as the session\'s host (the owner may have sent earlier calls elsewhere)', () => {
    const { router, sent, tell, notice } = harness();
    router.setLayout(layout('b'));
    tell('s', 1);
    tell('s', 2);
    // The owner b placed the session on itself: 1 is acknowledged there, 2 is still on its way.
    notice('s', 'b', 2, 1);
    tell('s', 3);
    expect(args(sent)).toEqual([1, 2]);
    notice('s', 'b', 2, 2);
    expect(args(sent)).toEqual([1, 2, 3]);
    expect(sent[2]!.frame[11] & CallFlag.Direct).toBe(CallFlag.Direct);
  });

  it("takes a later call's notice over a cached location of a higher version (a session lost with its node starts again lower)", () => {
    const { router, sent, tell, notice } = harness();
    router.setLayout(layout('b'));
    tell('s', 1);
    notice('s', 'h', 3, 1);
    tell('s', 2);
    // h lost it; the owner placed it anew on a, at version 1; the notice for 2 says so.
    notice('s', 'a', 1, 2);
    // An older call's notice does not take it back.
    notice('s', 'h', 3, 1);
    tell('s', 3);
    expect(sent.map(({ node }) => node)).toEqual(['b', 'h', 'a']);
  });

  it('releases a hold whose acknowledgement never comes after its timeout', () => {
    const { router, sent, tell, notice, advance } = harness();
    router.setLayout(layout('b'));
    tell('s', 1);
    tell('s', 2);
    notice('s', 'h', 1, 1);
    tell('s', 3);
    expect(args(sent)).toEqual([1, 2]);
    advance(1999);
    router.tick();
    expect(args(sent)).toEqual([1, 2]);
    advance(1);
    router.tick();
    expect(args(sent)).toEqual([1, 2, 3]);
  });

  it('keeps holding while the calls it waits for are reported waiting on their way, then times out once the reports stop', () => {
    const { router, sent, tell, notice, advance } = harness();
    router.setLayout(layout('b'));
    tell('s', 1);
    tell('s', 2);
    notice('s', 'h', 1, 1);
    tell('s', 3);
    // 2 waits at the owner for a handoff, longer than the hold timeout; the owner says so each second.
    for (let second = 0; second < 5; second++) {
      advance(1000);
      router.receive([Frame.Pending, 0, 1, activationKey('T', 's'), 2]);
      router.tick();
      expect(args(sent)).toEqual([1, 2]);
    }
    advance(2000);
    router.tick();
    expect(args(sent)).toEqual([1, 2, 3]);
  });

  it('goes back through the owner when the cached node cannot be reached, without holding', () => {
    const unreachable = new Set<string>();
    const { router, sent, tell, notice } = harness({ unreachable });
    router.setLayout(layout('b'));
    tell('s', 1);
    notice('s', 'h', 1, 1);
    tell('s', 2);
    unreachable.add('h');
    tell('s', 3);
    expect(sent.map(({ node }) => node)).toEqual(['b', 'h', 'b']);
    expect(sent[2]!.frame[11] & CallFlag.Direct).toBe(0);
    expect(router.stats().rerouted).toBe(1);
  });

  it('forgets the locations on a node that is gone; calls go through the owner once those sent there are acknowledged', () => {
    const { router, sent, tell, notice } = harness();
    router.setLayout(layout('b'));
    tell('s', 1);
    notice('s', 'h', 1, 1);
    tell('s', 2);
    router.nodeGone('h');
    // 2 may still be forwarded by h (a node that leaves passes its calls on): 3 must not overtake it.
    tell('s', 3);
    expect(sent.map(({ node }) => node)).toEqual(['b', 'h']);
    notice('s', 'x', 2, 2);
    expect(sent.map(({ node }) => node)).toEqual(['b', 'h', 'x']);
  });

  it('settles an ask with its result and fails one that cannot be sent anywhere', () => {
    const { router, settled } = harness({ unreachable: new Set(['b']) });
    router.setLayout(layout('b'));
    router.send([Kind.Ask, 7, 0, 'T', 's', 'm', []]);
    expect(settled[0]![0]).toBe(Kind.Failure);
    expect(settled[0]![1]).toBe(7);
    router.receive([Frame.Result, 0, 1, 8, true, 'value', null]);
    expect(settled[1]).toEqual([Kind.Reply, 8, 'value']);
  });

  it('fails an ask sent to a node declared down with HostLost, once, and never sends it again', () => {
    const { router, sent, settled, notice } = harness();
    router.setLayout(layout('b'));
    router.send([Kind.Tell, 'T', 's', 'm', [0]]);
    notice('s', 'h', 1, 1);
    router.send([Kind.Ask, 7, 0, 'T', 's', 'm', [1]]);
    router.send([Kind.Ask, 8, 0, 'T', 'other', 'm', [2]]);
    expect(sent.map(({ node }) => node)).toEqual(['b', 'h', 'b']);
    // A node that left passes on what it was sent: nothing fails.
    router.nodeGone('h');
    expect(settled).toHaveLength(0);
    router.nodeGone('h', true);
    expect(settled).toHaveLength(1);
    const [kind, requestId, error] = settled[0]! as [Kind, number, { code: string }];
    expect([kind, requestId, error.code]).toEqual([Kind.Failure, 7, 'WADI_HOST_LOST']);
    // Not re-sent anywhere, and not failed twice.
    expect(sent).toHaveLength(3);
    router.nodeGone('h', true);
    expect(settled).toHaveLength(1);
    // An answered ask is forgotten: its node going down fails nothing.
    router.receive([Frame.Result, 0, 1, 8, true, 'done', null]);
    router.nodeGone('b', true);
    expect(settled.map((envelope) => envelope[1])).toEqual([7, 8]);
  });

  it("settles a sync ask on its result from every replica target of the write, once, in the targets' epoch only", () => {
    const { router, settled } = harness();
    router.setLayout(layout('b'));
    const replicated = (requestId: number, from: string, holderEpoch: number, targets: string[]): RoutedFrame => [Frame.ReplicatedResult, 0, 1, requestId, `v${requestId}`, null, from, holderEpoch, 1, targets];
    router.send([Kind.Ask, 7, 0, 'T', 's', 'm', []]);
    router.send([Kind.Ask, 8, 0, 'T', 's', 'm', []]);
    router.send([Kind.Ask, 9, 0, 'T', 's', 'm', []]);
    // 7: two targets; the first alone (twice) settles nothing.
    router.receive(replicated(7, 'h', 1, ['h', 'x']) as never);
    router.receive(replicated(7, 'h', 1, ['h', 'x']) as never);
    expect(settled).toEqual([]);
    router.receive(replicated(7, 'x', 1, ['h', 'x']) as never);
    expect(settled).toEqual([[Kind.Reply, 7, 'v7']]);
    // 8: the holder judged by another layout than the write's targets were chosen by: the host's result settles it.
    router.receive(replicated(8, 'h', 2, ['h']) as never);
    expect(settled).toHaveLength(1);
    router.receive([Frame.Result, 0, 1, 8, true, 'host', null]);
    expect(settled[1]).toEqual([Kind.Reply, 8, 'host']);
    // 9: settled by its replica; the host's result that may follow, and the host going down, change nothing.
    router.receive(replicated(9, 'h', 1, ['h']) as never);
    router.nodeGone('b', true);
    expect(settled.slice(2)).toEqual([[Kind.Reply, 9, 'v9']]);
  });

  it('a path switch does not wait for calls sent straight to the host that were answered', () => {
    const { router, sent, notice } = harness();
    router.setLayout(layout('b'));
    router.send([Kind.Tell, 'T', 's', 'm', [0]]);
    notice('s', 'h', 1, 1);
    router.send([Kind.Ask, 9, 0, 'T', 's', 'm', [1]]);
    router.receive([Frame.Result, 0, 1, 9, true, 'ok', null]);
    router.nodeGone('h', true);
    router.send([Kind.Ask, 10, 0, 'T', 's', 'm', [2]]);
    // Sent to the owner at once: nothing sent to h is unanswered.
    expect(sent.map(({ node }) => node)).toEqual(['b', 'h', 'b']);
  });
});
