/**
 * The checks on a simulated run's real sessions (see sessions.ts for the sessions and the ledger).
 *
 * `checkSessions`, once a run has settled:
 * - waits until every sent message was applied or its ask failed (or a deadline passes), and
 *   until the cluster has converged again with every pair of running nodes connected;
 * - probes: every thread of every running node asks every session twice (the first warms its
 *   location cache); the second round must take at most 2 node-to-node hops per call and every
 *   probe must be answered;
 * - reads every session's state from the node hosting it, and checks: exactly one activation of
 *   each session across the nodes; per sender, each message applied at most once and in the order
 *   sent; and, when the schedule cannot lose calls (no crash, partition, cut, long pause or
 *   connection reset: migrations, handoffs, joins and graceful leaves only), every message that a
 *   member (not a node still joining) sent and that is still running applied exactly once, and
 *   every ask answered with what was applied.
 */
import { MAIN_THREAD, compareWrites } from '@wadi/cluster';
import { convergence } from './invariants.js';
import { LOG_TYPE, type AppendReply, type LogState, type SentMessage } from './sessions.js';
import type { SimNode } from './sim-node.js';
import type { Simulation } from './simulation.js';

export interface SessionCheckOptions {
  /** The schedule cannot lose calls (see `losesCalls`): every message must be applied exactly once. */
  lossless: boolean;
  /** How long to wait for the calls in flight, and for each probe round (simulated ms, default 60 s). */
  waitMs?: number;
  /**
   * Replication must have kept every acknowledged ask (at most R nodes crashed at once): each ask
   * answered ok is in its session's log where its answer said; and every replica held anywhere is
   * one its session's host wrote (never newer than the host's last write, and the same state when
   * of the same version).
   */
  acknowledged?: boolean;
}

export interface SessionReport {
  sessions: number;
  senders: number;
  asks: number;
  tells: number;
  applications: number;
  /** Calls of the second probe round (warm caches, stable layout) by node-to-node hops taken. */
  probeHops: Record<string, number>;
}

/**
 * The checks on the real sessions once a run has settled (see the module comment). Violations go
 * to the simulation's monitor; the report says what was checked.
 */
export async function checkSessions(simulation: Simulation, options: SessionCheckOptions): Promise<SessionReport> {
  const ledger = simulation.ledger;
  const waitMs = options.waitMs ?? 60_000;
  const violation = (property: string, detail: string): void => simulation.monitor.violation(simulation.now, property, detail);

  // Whatever is still in flight arrives (or its ask fails) first, and the directories catch up.
  await simulation.runUntil(() => simulation.now >= simulation.callsUntil && ledger.unresolved === 0, waitMs);
  const settled = (): string[] => [...convergence(simulation), ...disconnected(simulation)];
  if ((await simulation.runUntil(() => settled().length === 0, waitMs)) === undefined) {
    violation('liveness', `not settled after the calls: ${settled().slice(0, 5).join('; ')}`);
    return report(simulation, {});
  }

  // Probes: every thread of every node asks every session, twice; the second round runs on warm caches.
  const sessions = [...ledger.sent.keys()].sort();
  const probe = async (): Promise<SentMessage[]> => {
    const sent: SentMessage[] = [];
    for (const node of simulation.running()) {
      for (const thread of [...node.threads.map((worker) => worker.index), MAIN_THREAD]) {
        for (const session of sessions) sent.push(simulation.send(node, thread, session, { ask: true }));
      }
    }
    if ((await simulation.runUntil(() => sent.every((message) => message.outcome !== undefined), waitMs, 10)) === undefined) {
      violation('probes answered', `${sent.filter((message) => message.outcome === undefined).length} of ${sent.length} probes not answered in ${waitMs / 1000} s`);
    }
    for (const message of sent) {
      if (message.outcome === 'failed') violation('probes answered', `${describeMessage(message)} failed on a settled cluster: ${describeError(message.reply)}`);
    }
    return sent;
  };
  await probe();
  const before = hopCounts(simulation);
  await probe();
  const probeHops = subtract(hopCounts(simulation), before);
  const far = Object.entries(probeHops).filter(([hops, calls]) => Number(hops) > 2 && calls > 0);
  if (far.length > 0) violation('at most 2 hops', `on a stable layout with warm caches, calls took ${far.map(([hops, calls]) => `${hops} hops (${calls} calls)`).join(', ')}`);

  // Where each session is, and what it applied.
  const copies = new Map<string, { node: SimNode; worker: number }[]>();
  for (const node of simulation.running()) {
    for (const { id, worker } of node.realSessions()) {
      let list = copies.get(id);
      if (list === undefined) copies.set(id, (list = []));
      list.push({ node, worker });
    }
  }
  const states = new Map<string, LogState>();
  for (const [id, places] of copies) {
    const { node, worker } = places[0]!;
    const thread = node.threads[worker]!;
    thread.system.deliverRouted(LOG_TYPE, id, 'read', [], { settle: (ok, value) => ok && states.set(id, structuredClone(value as LogState)) });
  }
  await simulation.flush();

  for (const session of sessions) {
    const places = copies.get(session) ?? [];
    if (places.length !== 1) {
      violation('one activation', `${session} is hosted ${places.length === 0 ? 'nowhere' : `${places.length} times: ${places.map(({ node, worker }) => `${node.id}/${worker}`).join(', ')}`}`);
      if (places.length === 0) continue;
    }
    const state = states.get(session);
    if (state === undefined) {
      violation('sessions settle', `${session} on ${places[0]!.node.id}/${places[0]!.worker} did not answer a read (frozen by a migration that never ended?)`);
      continue;
    }
    checkLog(simulation, session, state, options.lossless, options.acknowledged === true, violation);
  }
  if (options.acknowledged === true) checkReplicas(simulation, copies, violation);
  return report(simulation, probeHops);
}

/** Every replica held on a running node is a write its session's current host made (see `SessionCheckOptions.acknowledged`). */
function checkReplicas(simulation: Simulation, copies: Map<string, { node: SimNode; worker: number }[]>, violation: (property: string, detail: string) => void): void {
  for (const holder of simulation.running()) {
    for (const thread of holder.threads) {
      for (const key of thread.host.replication.replicaKeys()) {
        const id = key.slice(key.indexOf('\u0000') + 1);
        const replica = thread.host.replication.replicaOf(key)!;
        const place = copies.get(id)?.[0];
        if (place === undefined) continue;
        const written = place.node.threads[place.worker]!.host.replication.writeOf(key);
        if (written === undefined) continue;
        const order = compareWrites(replica.version, written.version);
        if (order > 0) violation('no stale write accepted', `${holder.id}/${thread.index} holds ${id} at ${replica.version.join('.')}, newer than its host ${place.node.id} wrote (${written.version.join('.')})`);
        else if (order === 0 && !sameBytes(replica.state, written.state)) violation('no stale write accepted', `${holder.id}/${thread.index} holds ${id} at ${replica.version.join('.')} with another state than its host wrote`);
      }
    }
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && a.every((byte, index) => byte === b[index]);
}

function checkLog(simulation: Simulation, session: string, state: LogState, lossless: boolean, acknowledged: boolean, violation: (property: string, detail: string) => void): void {
  const ledger = simulation.ledger;
  const positions = new Map<string, number[]>();
  const last = new Map<string, number>();
  state.applied.forEach(([sender, n], index) => {
    const key = `${sender}#${n}`;
    let seen = positions.get(key);
    if (seen === undefined) positions.set(key, (seen = []));
    seen.push(index + 1);
    if (seen.length === 2) violation('no duplicate', `${session}'s log has ${sender} #${n} at positions ${seen.join(' and ')}`);
    const previous = last.get(sender) ?? 0;
    if (n < previous) violation('per-sender order', `${session}'s log has ${sender} #${n} after #${previous}`);
    last.set(sender, Math.max(previous, n));
  });
  if (!lossless && !acknowledged) return;
  for (const [senderKey, messages] of ledger.sent.get(session) ?? []) {
    const sender = ledger.senders.get(senderKey)!;
    const node = simulation.node(sender.node);
    const alive = node !== undefined && node.running && node.incarnation === sender.incarnation;
    for (const message of messages) {
      const at = positions.get(`${senderKey}#${message.n}`);
      if (message.ask && message.outcome === 'ok') {
        const reply = message.reply as AppendReply;
        if (at === undefined) violation('no lost message', `${describeMessage(message)} was answered ${JSON.stringify(reply)} but is not in ${session}'s log`);
        else if (reply[0] !== senderKey || reply[1] !== message.n || !at.includes(reply[2])) {
          violation('asks answered', `${describeMessage(message)} was answered ${JSON.stringify(reply)}; the log has it at ${at.join(', ')}`);
        }
        continue;
      }
      if (!lossless) continue;
      // Its sender is gone (the message may have died with it), or was not a member yet: a node
      // that is joining may not be connected to the bucket's owner, and its calls fail.
      if (!alive || !message.member) continue;
      if (message.ask && message.outcome === 'failed') violation('asks answered', `${describeMessage(message)} failed: ${describeError(message.reply)}`);
      else if (at === undefined) violation('no lost message', `${describeMessage(message)} is not in ${session}'s log (${state.applied.length} entries)`);
    }
  }
}

/** Pairs of running nodes without a connection (a call between them would fail): the network has not healed yet. */
function disconnected(simulation: Simulation): string[] {
  const nodes = simulation.running();
  const problems: string[] = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) {
      if (!simulation.network.isConnected(nodes[i]!.id, nodes[j]!.id)) problems.push(`${nodes[i]!.id} and ${nodes[j]!.id} are not connected`);
    }
  }
  return problems;
}

function describeMessage(message: SentMessage): string {
  return `${message.ask ? 'ask' : 'tell'}${message.routing === '' ? '' : ` (${message.routing})`} ${message.sender} -> ${message.session} #${message.n} sent at ${(message.sentAt / 1000).toFixed(3)}s`;
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : JSON.stringify(error);
}

/** Calls delivered to sessions, by hops, summed over every running node's hosts. */
function hopCounts(simulation: Simulation): Record<string, number> {
  const total: Record<string, number> = {};
  for (const node of simulation.running()) {
    for (const thread of node.threads) {
      for (const [hops, calls] of Object.entries(thread.host.stats().hops)) total[hops] = (total[hops] ?? 0) + calls;
    }
  }
  return total;
}

function subtract(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const result: Record<string, number> = {};
  for (const [hops, calls] of Object.entries(after)) if (calls - (before[hops] ?? 0) > 0) result[hops] = calls - (before[hops] ?? 0);
  return result;
}

function report(simulation: Simulation, probeHops: Record<string, number>): SessionReport {
  const ledger = simulation.ledger;
  return { sessions: ledger.sent.size, senders: ledger.senders.size, asks: ledger.asks, tells: ledger.tells, applications: ledger.applications, probeHops };
}
