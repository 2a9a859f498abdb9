/**
 * Real sessions in the simulator, on hand-written schedules: a migration under a stream of calls
 * from three senders, a graceful leave under load, a join under load (no session moves), hops on
 * a settled cluster, replay, that the session checks do catch a lost message, and that an ask
 * forwarded to a host that is then lost fails with `HostLost` well before its deadline.
 */
import { describe, expect, it } from 'vitest';
import { bucketOf } from '@wadi/core';
import { checkSessions, describeFailure, runSchedule, sessionName, Simulation, threeNodesFormed, type RunResult, type Schedule, type SimNode, type Step } from '../src/index.js';

const formed = threeNodesFormed(500, 5000);

const options = (seed: number, extra: Partial<Schedule['options']> = {}): Schedule['options'] => ({ seed, buckets: 64, seeds: ['n1', 'n2', 'n3'], ...extra });

async function run(schedule: Schedule): Promise<RunResult> {
  const result = await runSchedule(schedule);
  if (result.violations.length > 0) throw new Error(describeFailure(schedule, result));
  expect(result.settledAfterMs).toBeDefined();
  expect(result.sessions).toBeDefined();
  return result;
}

/** Nodes where `session` applied messages, in the order it first did on each. */
function appliedOn(result: RunResult, session: string): string[] {
  const nodes: string[] = [];
  for (const entry of result.simulation.trace.entries) {
    if (entry.kind === 'applied' && entry.detail.includes(` ${session} <- `) && nodes.at(-1) !== entry.node) nodes.push(entry.node);
  }
  return nodes;
}

function migrated(nodes: Iterable<SimNode>): { out: number; in: number } {
  let out = 0;
  let into = 0;
  for (const node of nodes) {
    for (const thread of node.threads) {
      out += thread.host.stats().migratedOut;
      into += thread.host.stats().migratedIn;
    }
  }
  return { out, in: into };
}

/** Every message each sender sent to `session`, applied once, in order (what the checks verified, spelled out). */
function expectLogged(result: RunResult, session: string): void {
  const sent = result.simulation.ledger.sent.get(session)!;
  for (const [sender, messages] of sent) {
    for (const message of messages) expect(message.applied, `${sender} #${message.n} to ${session}`).toBe(1);
  }
}

describe('real sessions in the simulator', () => {
  it('a session migrates three times under a stream of calls from three senders: each message applied once, in each sender’s order', async () => {
    const session = sessionName(1);
    const result = await run({
      options: options(3),
      steps: [
        ...formed,
        { op: 'call', node: 'n1', thread: 0, session: 1, count: 60, everyMs: 5 },
        { op: 'call', node: 'n2', thread: -2, session: 1, count: 60, everyMs: 7 },
        { op: 'call', node: 'n3', thread: 1, session: 1, count: 60, everyMs: 6 },
        { op: 'run', ms: 40 },
        { op: 'migrate', node: 'n2', thread: 0, session: 1 },
        { op: 'run', ms: 60 },
        { op: 'migrate', node: 'n3', thread: 1, session: 1 },
        { op: 'run', ms: 60 },
        { op: 'migrate', node: 'n1', thread: -2, session: 1 },
        { op: 'run', ms: 500 },
      ],
    });
    expect(appliedOn(result, session).slice(0, 4)).toEqual(['n1', 'n2', 'n3', 'n1']);
    expect(migrated(result.simulation.nodes.values()).out).toBeGreaterThanOrEqual(3);
    expectLogged(result, session);
    expect(result.simulation.ledger.sent.get(session)!.get('n1#1/0')).toHaveLength(60 + 2); // and the two probes
  });

  it('a graceful leave under load: the leaver’s sessions evacuate, no message is lost, it exits hosting none', async () => {
    const steps: Step[] = [...formed];
    // Four sessions placed on n1 (the caller's node), then streams to them from n2 and n3.
    for (let session = 0; session < 4; session++) steps.push({ op: 'call', node: 'n1', thread: 0, session, count: 1 });
    steps.push({ op: 'run', ms: 200 });
    for (let session = 0; session < 4; session++) {
      steps.push({ op: 'call', node: 'n2', thread: session % 2, session, count: 40, everyMs: 10 });
      steps.push({ op: 'call', node: 'n3', thread: -2, session, count: 40, everyMs: 9 });
    }
    steps.push({ op: 'run', ms: 100 }, { op: 'leave', node: 'n1' }, { op: 'run', ms: 3000 });
    const result = await run({ options: options(5), steps });
    const sim = result.simulation;
    expect(sim.left.has('n1')).toBe(true);
    expect(sim.node('n1')!.running).toBe(false);
    for (let session = 0; session < 4; session++) {
      const nodes = appliedOn(result, sessionName(session));
      expect(nodes[0]).toBe('n1');
      expect(nodes.slice(1).every((node) => node !== 'n1')).toBe(true);
      expectLogged(result, sessionName(session));
    }
    expect(migrated([sim.node('n1')!]).out).toBe(4);
  });

  it('a join under load moves no session and fails no call', async () => {
    const steps: Step[] = [...formed];
    for (let session = 0; session < 6; session++) steps.push({ op: 'call', node: `n${(session % 3) + 1}`, thread: session % 2, session, count: 1 });
    steps.push({ op: 'run', ms: 200 });
    for (let session = 0; session < 6; session++) steps.push({ op: 'call', node: `n${((session + 1) % 3) + 1}`, thread: -2, session, count: 60, everyMs: 20 });
    steps.push({ op: 'run', ms: 100 }, { op: 'start', node: 'n4' }, { op: 'run', ms: 300 }, { op: 'start', node: 'n5' }, { op: 'run', ms: 2000 });
    const result = await run({ options: options(7), steps });
    const sim = result.simulation;
    expect(sim.node('n4')!.protocol.layout!.members.map((member) => member.id).sort()).toEqual(['n1', 'n2', 'n3', 'n4', 'n5']);
    expect(migrated(sim.nodes.values())).toEqual({ out: 0, in: 0 });
    for (let session = 0; session < 6; session++) {
      expect(appliedOn(result, sessionName(session))).toHaveLength(1);
      expectLogged(result, sessionName(session));
    }
    for (const message of sim.ledger.messages()) if (message.ask) expect(message.outcome).toBe('ok');
  });

  it('on a settled cluster every call takes at most 2 hops, and 1 once the caller knows where the session is', async () => {
    const steps: Step[] = [...formed];
    for (let session = 0; session < 8; session++) steps.push({ op: 'call', node: `n${(session % 3) + 1}`, thread: -2, session, count: 3 });
    const result = await run({ options: options(9), steps });
    const hops = Object.keys(result.sessions!.probeHops).map(Number);
    expect(Math.max(...hops)).toBeLessThanOrEqual(1);
    // Every host's count over the whole run, first calls included.
    let most = 0;
    for (const node of result.simulation.running()) for (const thread of node.threads) for (const count of Object.keys(thread.host.stats().hops)) most = Math.max(most, Number(count));
    expect(most).toBeLessThanOrEqual(2);
  });

  it('replays a session schedule byte for byte', async () => {
    const schedule: Schedule = {
      options: options(11, { faults: { latencyMs: [1, 10], jitterMs: 30, loss: 0.03, duplicate: 0.03, reorder: true, reset: 0 }, localShortcut: false }),
      steps: [
        ...formed,
        { op: 'call', node: 'n1', thread: 0, session: 2, count: 30, everyMs: 3 },
        { op: 'call', node: 'n2', thread: 1, session: 3, count: 30, everyMs: 4 },
        { op: 'migrate', node: 'n3', thread: -2, session: 2 },
        { op: 'start', node: 'n4' },
        { op: 'run', ms: 300 },
        { op: 'leave', node: 'n2' },
        { op: 'run', ms: 3000 },
      ],
    };
    const first = await run(schedule);
    const second = await run(structuredClone(schedule));
    expect(second.digest).toBe(first.digest);
    expect(second.sessions).toEqual(first.sessions);
  });

  it('an ask forwarded by the bucket owner to a host that is then lost fails with HostLost, not at its deadline', async () => {
    const sim = new Simulation(options(21));
    for (const step of formed) await sim.apply(step);
    const [n1, n2, n3] = ['n1', 'n2', 'n3'].map((id) => sim.node(id)!);
    const layout = n2!.protocol.layout!;
    const ownerOf = (session: string): string => layout.members[layout.owners[bucketOf(session, layout.buckets)]!]!.id;
    const session = Array.from({ length: 16 }, (_, pick) => sessionName(pick)).find((name) => ownerOf(name) === 'n2')!;
    expect(session).toBeDefined();
    // Placed on n3, its first caller (a member: the session goes to the caller's node).
    sim.send(n3!, 0, session, { ask: true });
    await sim.apply({ op: 'run', ms: 500 });
    // n3 goes silent (what it sends is lost), then n1 calls the session for the first time: the
    // call goes to the owner n2, which forwards it to n3, and its result never comes back.
    await sim.apply({ op: 'cut', from: ['n3'], to: ['n1', 'n2'] });
    const sentAt = sim.now;
    const ask = sim.send(n1!, 0, session, { ask: true });
    await sim.apply({ op: 'run', ms: 15_000 });
    expect(ask.outcome).toBe('failed');
    expect((ask.reply as Error).name).toBe('HostLost');
    const failed = sim.trace.entries.find((entry) => entry.kind === 'call' && entry.detail.startsWith(`${ask.sender} -> ${session} #${ask.n} failed`))!;
    // Once the cluster declared n3 down (seconds), not at the 30 s deadline.
    expect(failed.at - sentAt).toBeLessThan(15_000);
  });

  it('the checks catch a lost message: a crash loses what its sessions applied (without replication)', async () => {
    const sim = new Simulation(options(13, { replicas: 0 }));
    for (const step of [...formed, { op: 'call', node: 'n2', thread: 0, session: 4, count: 5 } as Step, { op: 'run', ms: 100 } as Step, { op: 'crash', node: 'n2' } as Step]) await sim.apply(step);
    expect(await sim.settle()).toBeDefined();
    // Checked as if the schedule could not lose calls: the answered asks are not in the new log.
    await checkSessions(sim, { lossless: true });
    expect(sim.violations.map((violation) => violation.property)).toContain('no lost message');
    expect(sim.violations.every((violation) => violation.property === 'no lost message')).toBe(true);
  });
});
