/**
 * The quorum lease and the split-brain gate (quorum-gate.ts, `ClusterMember.quorumView`): the
 * lease's arithmetic, the gate's refusals and what it reports, and, on the deterministic test
 * network, that a minority side stops before the majority can declare it down, that a paused
 * node serves nothing after it wakes until a majority answered it again, and that the grace is
 * checked against the failure detector's timings.
 */
import { NoQuorum, Unavailable, InvalidArgument, errorToShape, shapeToError } from '@wadi/core';
import { describe, expect, it } from 'vitest';
import { ClusterMember, QuorumGate, UNFENCED, acksNeeded, defaultQuorumGrace, gateState, leaseOf, parseClusterMessage, shiftView, DEFAULT_TIMINGS, type ClusterIO, type QuorumView } from '../src/index.js';
import { TestNetwork, type TestNode } from './network.js';

const url = TestNetwork.url;

function formCluster(net: TestNetwork, n: number): void {
  net.start('n1', []);
  for (let i = 2; i <= n; i++) net.start(`n${i}`, [url('n1')]);
  net.until(() => net.agreed() && net.live().every((node) => node.member.committed!.members.length === n && (node.member.committed!.incoming ?? []).length === 0));
}

function serving(node: TestNode, now: number): boolean {
  return now < node.member.quorumLease().until;
}

function stateOf(observer: TestNode, id: string): string | undefined {
  return observer.member.status().members.find((member) => member.id === id)?.state;
}

describe('the quorum lease', () => {
  it('lasts the grace past the majority-th freshest acknowledgement, and counts who acknowledged within it', () => {
    const view: QuorumView = { acks: [1000, Infinity, 500], members: 3, graceMs: 800, reachable: true };
    expect(leaseOf(view, 1200)).toEqual({ until: 1800, reached: 3, members: 3 });
    expect(leaseOf(view, 1400)).toEqual({ until: 1800, reached: 2, members: 3 });
    expect(leaseOf(view, 1900)).toEqual({ until: 1800, reached: 1, members: 3 });
    // Five members need three: itself and the two freshest.
    expect(leaseOf({ acks: [Infinity, 100, 900, 300, 700], members: 5, graceMs: 1000, reachable: true }, 1000).until).toBe(1700);
    // Fewer connected members than a majority: no lease at all.
    expect(leaseOf({ acks: [Infinity], members: 3, graceMs: 800, reachable: false }, 0).until).toBe(-Infinity);
    // Declared down: no acknowledgement counts, not even its own.
    expect(leaseOf({ acks: [], members: 3, graceMs: 800, reachable: false }, 0).until).toBe(-Infinity);
    expect(leaseOf(UNFENCED, 1e12).until).toBe(Infinity);
    expect(shiftView(view, 10).acks).toEqual([1010, Infinity, 510]);
  });

  it('a leaver the layout dropped has no vote: it needs acknowledgements from enough members that every majority includes one', () => {
    // Two members: either one that heard from it lately is in every majority (both), so one suffices.
    const two: QuorumView = { acks: [1000], members: 2, graceMs: 800, reachable: false, outside: true };
    expect(acksNeeded(two)).toBe(1);
    expect(leaseOf(two, 1200)).toEqual({ until: 1800, reached: 1, members: 2 });
    expect(gateState(two, 1200)).toBe('serving');
    // A member of two needs both (itself and the other): that is a majority of two.
    expect(acksNeeded({ ...two, outside: false })).toBe(2);
    expect(gateState({ ...two, acks: [Infinity, 1000], outside: false }, 1200)).toBe('serving');
    expect(gateState({ ...two, acks: [1000], outside: false }, 1200)).toBe('minority');
    // Odd member counts need a majority either way (three of five), even ones one fewer from outside (two of four).
    expect(acksNeeded({ ...two, members: 5 })).toBe(3);
    expect(acksNeeded({ ...two, members: 5, outside: false })).toBe(3);
    expect(acksNeeded({ ...two, members: 4 })).toBe(2);
    expect(acksNeeded({ ...two, members: 4, outside: false })).toBe(3);
    // Nobody acknowledged it lately: no lease.
    expect(gateState({ ...two, acks: [] }, 0)).toBe('minority');
  });

  it('serving under the lease; renewing (turns wait) for a grace after it lapsed while a majority is connected; then a minority', () => {
    const view: QuorumView = { acks: [Infinity, 0], members: 3, graceMs: 1000, reachable: true };
    expect(gateState(view, 999)).toBe('serving');
    expect(gateState(view, 1000)).toBe('renewing');
    expect(gateState(view, 1999)).toBe('renewing');
    expect(gateState(view, 2000)).toBe('minority');
    // Members suspect: a minority after half a grace.
    expect(gateState({ ...view, reachable: false }, 999)).toBe('serving');
    expect(gateState({ ...view, reachable: false }, 1499)).toBe('renewing');
    expect(gateState({ ...view, reachable: false }, 1500)).toBe('minority');
    // Fewer members connected than a majority: a minority at once; declared down: the same.
    expect(gateState({ ...view, acks: [Infinity], reachable: false }, 0)).toBe('minority');
    expect(gateState({ ...view, acks: [] }, 0)).toBe('minority');
    // Joining (restarted with a layout): it waits to find out.
    expect(gateState({ ...view, acks: [Infinity], joining: true }, 5000)).toBe('renewing');
  });

  it('the gate holds, then refuses with NoQuorum, counts refusals, and notes when it was lost and regained', () => {
    let now = 0;
    let view: QuorumView = { acks: [Infinity, 0], members: 3, graceMs: 1000, reachable: true };
    const logged: string[] = [];
    const gate = new QuorumGate('n1', () => view, () => now, (level, message) => logged.push(`${level}: ${message}`));
    now = 999;
    expect(gate.serving()).toBe(true);
    expect(gate.check()).toBeUndefined();
    // serving() only looks: the loss is noted (and logged) by check, refusal, tick or status.
    now = 2000;
    expect(gate.serving()).toBe(false);
    expect([gate.losses, logged]).toEqual([0, []]);
    now = 999;
    now = 1000;
    expect(gate.check()).toBe('wait');
    // Routing on is not refused while renewing: whoever runs the call holds it.
    expect(gate.refusal()).toBeUndefined();
    expect(gate.refused).toBe(0);
    now = 2000;
    const refusal = gate.refusal();
    expect(refusal).toBeInstanceOf(NoQuorum);
    expect(refusal).toBeInstanceOf(Unavailable);
    expect(refusal!.code).toBe('WADI_NO_QUORUM');
    expect(refusal!.message).toContain('node n1 reaches 1 of the 3 members');
    expect([refusal!.node, refusal!.reached, refusal!.members]).toEqual(['n1', 1, 3]);
    expect(gate.check()).toBeInstanceOf(NoQuorum);
    expect(gate.status()).toEqual({ state: 'minority', serving: false, reached: 1, members: 3, lostAt: 1000, losses: 1, refused: 2 });
    now = 2500;
    view = { acks: [Infinity, 2400], members: 3, graceMs: 1000, reachable: true };
    gate.tick();
    expect(gate.status()).toEqual({ state: 'serving', serving: true, reached: 2, members: 3, lostAt: null, losses: 1, refused: 2 });
    expect(logged.map((line) => line.split(':')[0])).toEqual(['warn', 'info']);
  });

  it('NoQuorum crosses a thread or a node as itself, with who refused and how many members it reached', () => {
    const rebuilt = shapeToError(structuredClone(errorToShape(new NoQuorum('n2', 1, 3))));
    expect(rebuilt).toBeInstanceOf(NoQuorum);
    expect(rebuilt).toBeInstanceOf(Unavailable);
    expect(rebuilt).toMatchObject({ code: 'WADI_NO_QUORUM', node: 'n2', reached: 1, members: 3 });
  });

  it('gossip stamps are checked on arrival', () => {
    const gossip = { t: 'gossip', members: [], epoch: 1, buckets: 8, cluster: 'c' };
    expect(parseClusterMessage({ ...gossip, at: 12.5, echo: 10, answer: true }, 8)).toMatchObject({ at: 12.5, echo: 10, answer: true });
    expect(parseClusterMessage(gossip, 8)).toEqual(gossip);
    expect(() => parseClusterMessage({ ...gossip, at: 'soon' }, 8)).toThrow(InvalidArgument);
    expect(() => parseClusterMessage({ ...gossip, echo: Number.NaN }, 8)).toThrow(InvalidArgument);
    expect(() => parseClusterMessage({ ...gossip, answer: 1 }, 8)).toThrow(InvalidArgument);
  });

  it('the grace defaults to a heartbeat below suspectAfterMs, and must stay below it', () => {
    expect(defaultQuorumGrace(DEFAULT_TIMINGS)).toBe(1500);
    expect(defaultQuorumGrace({ ...DEFAULT_TIMINGS, heartbeatMs: 100, suspectAfterMs: 600 })).toBe(500);
    const io: ClusterIO = { send() {}, dial() {}, forget() {}, persist() {}, committed() {}, removed() {}, left() {}, log() {} };
    const make = (timings: Record<string, number>): ClusterMember =>
      new ClusterMember({ self: { id: 'n1', incarnation: 1, url: url('n1'), workers: 1 }, buckets: 8, seeds: [], timings }, io);
    expect(make({}).timings.quorumGraceMs).toBe(1500);
    expect(make({ suspectAfterMs: 1000, heartbeatMs: 200 }).timings.quorumGraceMs).toBe(800);
    expect(() => make({ quorumGraceMs: 2000 })).toThrow(InvalidArgument);
    expect(() => make({ quorumGraceMs: 0 })).toThrow(InvalidArgument);
  });
});

describe('a minority side and a paused node', () => {
  it('every member of a settled cluster holds the lease', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    net.run(3000, () => {
      for (const node of net.live()) expect(serving(node, net.now)).toBe(true);
    });
    expect(net.node('n1').member.quorumLease()).toMatchObject({ reached: 3, members: 3 });
  });

  it('a node cut off from the others stops serving before they can declare it down, and the majority keeps serving', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const n1 = net.node('n1');
    // One way first: n1 still hears the others, they no longer hear it, so nothing it receives
    // is an acknowledgement. Then the way back too.
    const cutAt = net.now;
    net.filter = ({ from }) => from !== 'n1';
    let stoppedAt: number | undefined;
    let downAt: number | undefined;
    net.until(
      () => downAt !== undefined,
      30_000,
      () => {
        if (stoppedAt === undefined && !serving(n1, net.now)) stoppedAt = net.now;
        if (downAt === undefined && stateOf(net.node('n2'), 'n1') === 'down') downAt = net.now;
        expect(serving(net.node('n2'), net.now)).toBe(true);
        expect(serving(net.node('n3'), net.now)).toBe(true);
      },
    );
    expect(stoppedAt).toBeDefined();
    expect(stoppedAt!).toBeLessThan(downAt!);
    expect(stoppedAt! - cutAt).toBeLessThanOrEqual(n1.member.timings.quorumGraceMs + net.tickMs);
    // Declared down: it learns so from the others' gossip (which still reaches it), and refuses everything from then on.
    net.until(() => n1.removed !== undefined);
    const refusal = new QuorumGate('n1', () => n1.member.quorumView(), () => net.now).check();
    expect(refusal).toBeInstanceOf(NoQuorum);
    expect((refusal as NoQuorum).reached).toBe(0);
    net.filter = undefined;
    net.run(2000, () => expect(serving(n1, net.now)).toBe(false));
  });

  it('a partitioned minority of two out of five stops; on heal it is removed, the majority never stopped', () => {
    const net = new TestNetwork(64);
    formCluster(net, 5);
    net.partition(['n1', 'n2'], ['n3', 'n4', 'n5']);
    const grace = net.node('n1').member.timings.quorumGraceMs;
    net.run(grace + net.tickMs, () => {
      for (const id of ['n3', 'n4', 'n5']) expect(serving(net.node(id), net.now)).toBe(true);
    });
    expect(serving(net.node('n1'), net.now)).toBe(false);
    expect(serving(net.node('n2'), net.now)).toBe(false);
    // Its connections to the majority closed: it knows it is a minority, and says so at once.
    expect(gateState(net.node('n1').member.quorumView(), net.now)).toBe('minority');
    expect(net.node('n1').member.quorumLease()).toMatchObject({ reached: 2, members: 5 });
    net.until(() => net.agreed(['n3', 'n4', 'n5']) && net.node('n3').member.committed!.members.length === 3);
    net.heal();
    net.until(() => net.node('n1').removed !== undefined && net.node('n2').removed !== undefined);
  });

  it('a node paused past the failure timeout detects the stall and serves nothing until it is removed', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const n3 = net.node('n3');
    net.pause('n3');
    net.until(() => stateOf(net.node('n1'), 'n3') === 'down' && net.node('n1').member.committed!.members.length === 2);
    net.resume('n3');
    // Everything that waited for it (gossip from before it was declared down among it) is handled now.
    net.until(
      () => n3.removed !== undefined,
      30_000,
      () => expect(serving(n3, net.now)).toBe(false),
    );
    expect(n3.member.status().stalls).toBe(1);
    expect(n3.member.status().lastStallMs).toBeGreaterThanOrEqual(3000);
  });

  it('a short pause is no stall: the lease holds on', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const n3 = net.node('n3');
    net.pause('n3');
    net.run(n3.member.timings.quorumGraceMs / 2);
    net.resume('n3');
    net.run(3000);
    expect(n3.member.status().stalls).toBe(0);
    expect(serving(n3, net.now)).toBe(true);
  });

  it('after a stall the lease comes back only with acknowledgements of gossip sent after it', () => {
    const net = new TestNetwork(64);
    formCluster(net, 3);
    const n3 = net.node('n3');
    const grace = n3.member.timings.quorumGraceMs;
    // Stall without anyone noticing: the others hear nothing for less than the failure timeout.
    net.pause('n3');
    net.run(grace + 100);
    net.resume('n3');
    net.run(1);
    let regainedAt: number | undefined;
    const resumedAt = net.now;
    net.until(() => regainedAt !== undefined, 10_000, () => {
      if (regainedAt === undefined && serving(n3, net.now)) regainedAt = net.now;
    });
    expect(n3.member.status().stalls).toBe(1);
    expect(regainedAt!).toBeGreaterThan(resumedAt);
    expect(n3.removed).toBeUndefined();
  });
});
