/**
 * The properties a simulated run is checked against.
 *
 * `SafetyMonitor` watches every commit, install and protocol message as it happens:
 * - every committed layout gives each bucket exactly one owner, and one epoch of one cluster never
 *   has two different layouts (so no two nodes own a bucket in the same epoch);
 * - no node's committed epoch ever goes backwards, across its restarts;
 * - a layout is only chosen once a majority of the previous layout's members accepted it (so a
 *   minority side of a partition chooses none), and no node accepts a proposal below the epoch
 *   it already committed (a stale node's vote never counts);
 * - each chosen layout moves the minimum number of buckets from the layout it was planned from,
 *   given its promotions: a bucket whose owner is gone goes to a member that held a complete copy
 *   of it (a backup that was not incoming, or a retiring one) whenever such a member still owns
 *   buckets, and only what those promotions unbalance moves besides;
 * - a bucket's directory is only installed by its owner in the epoch it is installed for.
 *
 * `convergence` lists what keeps a settled cluster from its end state: every running node a
 * member, all agreeing on one layout of exactly the running nodes, balanced (owners and backups:
 * each bucket min(R, members - 1) backups, none still incoming), no handoff pending,
 * every session's directory entry pointing where the session really is (and no entry for a
 * session that is gone), and no session hosted twice. For abstract sessions, where they are is
 * what the simulation's model says; for real ones (`Log` actors), where the nodes' actor systems
 * host them, which must be one place each.
 */
import { backupCounts, backupsOf, copyHolders, ownedCounts, replicasOf, targetCounts, validateLayout, type ClusterMessage, type Layout } from '@wadi/cluster';
import { activationKey, bucketOf } from '@wadi/core';
import { LOG_TYPE } from './sessions.js';
import { SESSION_TYPE } from './sim-node.js';
import type { Simulation } from './simulation.js';

export interface Violation {
  at: number;
  property: string;
  detail: string;
}

interface Chosen {
  layout: Layout;
  key: string;
  by: string;
}

export class SafetyMonitor {
  readonly violations: Violation[] = [];
  /** `cluster/epoch` -> the layout chosen for it. */
  readonly #chosen = new Map<string, Chosen>();
  /** Highest epoch each node id committed, across incarnations. */
  readonly #highest = new Map<string, number>();
  /** `coordinator/epoch` -> the layout it proposed. */
  readonly #proposals = new Map<string, Layout>();
  /** `coordinator/epoch` -> who sent it an accept. */
  readonly #accepts = new Map<string, Set<string>>();
  /** `id@incarnation` of members gossiped as leaving: their buckets are drained, not lost. */
  readonly #leaving = new Set<string>();
  readonly #buckets: number;
  readonly #trace: (at: number, kind: string, detail: string) => void;

  constructor(buckets: number, trace: (at: number, kind: string, detail: string) => void) {
    this.#buckets = buckets;
    this.#trace = trace;
  }

  violation(at: number, property: string, detail: string): void {
    this.violations.push({ at, property, detail });
    this.#trace(at, 'VIOLATION', `${property}: ${detail}`);
  }

  /** A protocol message a node sent, with the epoch it had committed when it sent it. */
  sent(at: number, from: string, committedEpoch: number, to: string, message: ClusterMessage): void {
    if (message.t === 'gossip') {
      for (const entry of message.members) if (entry.state === 'leaving') this.#leaving.add(`${entry.id}@${entry.incarnation}`);
    } else if (message.t === 'propose') {
      this.#proposals.set(`${from}/${message.layout.epoch}`, message.layout);
    } else if (message.t === 'accept') {
      // Accepting again the proposal it committed (a duplicate) is idempotent; anything older is stale.
      if (message.epoch < committedEpoch) this.violation(at, 'stale accept', `${from} accepted epoch ${message.epoch} having committed epoch ${committedEpoch}`);
      const key = `${to}/${message.epoch}`;
      let accepters = this.#accepts.get(key);
      if (accepters === undefined) this.#accepts.set(key, (accepters = new Set()));
      accepters.add(from);
    }
  }

  /** A node persisted an accepted layout (even one it never sent anywhere): a coordinator may plan from it. */
  accepted(layout: Layout): void {
    this.#proposals.set(`${layout.coordinator}/${layout.epoch}`, layout);
  }

  committed(at: number, node: string, incarnation: number, layout: Layout): void {
    try {
      validateLayout(layout, this.#buckets);
    } catch (error) {
      this.violation(at, 'one owner per bucket', `${node}#${incarnation} committed a malformed layout: ${(error as Error).message}`);
    }
    const highest = this.#highest.get(node) ?? 0;
    if (layout.epoch <= highest) this.violation(at, 'epochs never go backwards', `${node}#${incarnation} committed epoch ${layout.epoch} after epoch ${highest}`);
    this.#highest.set(node, Math.max(highest, layout.epoch));
    const slot = `${layout.cluster}/${layout.epoch}`;
    const key = layoutKey(layout);
    const chosen = this.#chosen.get(slot);
    if (chosen !== undefined) {
      if (chosen.key !== key) {
        this.violation(at, 'one layout per epoch', `epoch ${layout.epoch}: ${node}#${incarnation} committed ${describeOwners(layout)}, ${chosen.by} committed ${describeOwners(chosen.layout)}`);
      }
      return;
    }
    this.#chosen.set(slot, { layout, key, by: `${node}#${incarnation}` });
    this.#checkMajority(at, layout);
    this.#checkMinimalMoves(at, layout);
  }

  installed(at: number, node: string, incarnation: number, bucket: number, epoch: number, entries: number): void {
    const chosen = [...this.#chosen.values()].find((entry) => entry.layout.epoch === epoch && entry.layout.members[entry.layout.owners[bucket]!]?.id === node);
    if (chosen === undefined) {
      this.violation(at, 'installs are fenced by epoch', `${node}#${incarnation} installed bucket ${bucket} (${entries} entries) for epoch ${epoch}, which gives it to another node or was never chosen`);
    }
  }

  /** Every layout chosen so far, by cluster and epoch. */
  chosenLayouts(): Layout[] {
    return [...this.#chosen.values()].map((entry) => entry.layout).sort((a, b) => a.epoch - b.epoch);
  }

  /** The newest layout chosen anywhere. */
  latestChosen(): Layout | undefined {
    let best: Layout | undefined;
    for (const { layout } of this.#chosen.values()) if (best === undefined || layout.epoch > best.epoch) best = layout;
    return best;
  }

  /** The layout chosen for the epoch right before `layout`'s, in its cluster. */
  previousChosen(layout: Layout): Layout | undefined {
    let best: Layout | undefined;
    for (const { layout: other } of this.#chosen.values()) {
      if (other.cluster === layout.cluster && other.epoch < layout.epoch && (best === undefined || other.epoch > best.epoch)) best = other;
    }
    return best;
  }

  #checkMajority(at: number, layout: Layout): void {
    const previous = this.previousChosen(layout);
    if (previous === undefined) return;
    const accepters = new Set(this.#accepts.get(`${layout.coordinator}/${layout.epoch}`) ?? []);
    accepters.add(layout.coordinator);
    const voters = previous.members.map((member) => member.id);
    const yes = voters.filter((id) => accepters.has(id));
    if (yes.length * 2 <= voters.length) {
      this.violation(at, 'majority commit', `epoch ${layout.epoch} chosen with accepts from [${yes.join(',')}] of the ${voters.length} members of epoch ${previous.epoch} [${voters.join(',')}]`);
    }
  }

  /**
   * A coordinator plans from the newest layout it knows (chosen, or accepted by some member), so
   * the moves are minimal from one of those: the previous chosen layout or a proposal since.
   */
  #checkMinimalMoves(at: number, layout: Layout): void {
    const previous = this.previousChosen(layout);
    if (previous === undefined) return;
    const bases = [previous];
    for (const proposal of this.#proposals.values()) {
      if (proposal.cluster === layout.cluster && proposal.epoch > previous.epoch && proposal.epoch < layout.epoch) bases.push(proposal);
    }
    // A leaver that crashed before its drain finished left orphans that were promoted: either
    // reading of its buckets may hold.
    const results = bases.map((base) => ({ base, moves: moves(base, layout), minimum: minimumFrom(base, layout, this.#leaving), promoted: minimumFrom(base, layout, new Set()) }));
    if (!results.some((result) => result.moves === result.minimum || result.moves === result.promoted)) {
      const detail = results.map((result) => `from epoch ${result.base.epoch}: ${result.moves} moves, minimum ${result.minimum}`).join('; ');
      this.violation(at, 'minimal moves', `epoch ${layout.epoch}: ${detail}`);
    }
    const unpromoted = bases.map((base) => unpromotedBuckets(base, layout, this.#leaving));
    if (!unpromoted.some((buckets) => buckets.length === 0)) {
      this.violation(at, 'lost owners go to their backups', `epoch ${layout.epoch}: buckets ${unpromoted[0]!.slice(0, 10).join(',')} went elsewhere though a complete copy survived`);
    }
  }
}

/** What keeps the simulated cluster from having converged (empty when it has). */
export function convergence(simulation: Simulation): string[] {
  const problems: string[] = [];
  // A node that stopped without completing a leave is restarted by its supervisor once the faults stop.
  for (const [id, node] of simulation.nodes) if (!node.running && !simulation.left.has(id)) problems.push(`${id} is down`);
  const running = simulation.running();
  if (running.length === 0) return problems;
  for (const node of running) {
    if (node.paused) problems.push(`${node.id} is paused`);
    if (node.protocol.member.phase !== 'member') problems.push(`${node.id} is ${node.protocol.member.phase}`);
    if (node.protocol.handoffsPending > 0) problems.push(`${node.id} has ${node.protocol.handoffsPending} handoffs pending`);
    // A node whose quorum lease lapsed refuses every call until it hears from a majority again.
    if (!node.protocol.quorum.serving()) problems.push(`${node.id} has not renewed its quorum lease`);
    // A running node some member declared down is on its way out (it learns so, exits, restarts).
    for (const other of running) {
      if (other !== node && node.protocol.member.isGone(other.id, other.incarnation)) problems.push(`${node.id} holds ${other.id} (incarnation ${other.incarnation}) down`);
    }
  }
  const layouts = new Map(running.map((node) => [node.id, node.protocol.layout]));
  const first = layouts.get(running[0]!.id) ?? null;
  if (first === null) return [...problems, `${running[0]!.id} has no layout`];
  const key = layoutKey(first);
  for (const [id, layout] of layouts) {
    if (layout === null || layoutKey(layout) !== key) problems.push(`${id} is at epoch ${layout?.epoch ?? 'none'}, ${running[0]!.id} at ${first.epoch}`);
  }
  if (problems.length > 0) return problems;
  const members = first.members.map((member) => `${member.id}#${member.incarnation}`).sort();
  const expected = running.map((node) => `${node.id}#${node.incarnation}`).sort();
  if (members.join() !== expected.join()) problems.push(`layout ${first.epoch} has members [${members.join(',')}], running are [${expected.join(',')}]`);
  const counts = [...ownedCounts(first).values()];
  if (Math.max(...counts) - Math.min(...counts) > 1) problems.push(`layout ${first.epoch} is unbalanced: ${describeOwners(first)}`);
  problems.push(...backupProblems(first));
  if (problems.length > 0) return problems;
  problems.push(...directoryProblems(simulation, first));
  return problems;
}

function directoryProblems(simulation: Simulation, layout: Layout): string[] {
  const problems: string[] = [];
  const buckets = simulation.options.buckets;
  const expected = new Map<number, Map<string, string>>();
  for (const [id, place] of simulation.sessions) {
    const bucket = bucketOf(id, buckets);
    let entries = expected.get(bucket);
    if (entries === undefined) expected.set(bucket, (entries = new Map()));
    entries.set(activationKey(SESSION_TYPE, id), `${place.node}/${place.worker}`);
  }
  // Real sessions are where the actor systems host them (a second copy is reported below).
  const real = new Map<string, string>();
  for (const node of simulation.running()) {
    for (const { id, worker } of node.realSessions()) {
      const place = `${node.id}/${worker}`;
      if (real.has(id)) {
        problems.push(`session ${id} is hosted twice: on ${real.get(id)} and on ${place}`);
        continue;
      }
      real.set(id, place);
      const bucket = bucketOf(id, buckets);
      let entries = expected.get(bucket);
      if (entries === undefined) expected.set(bucket, (entries = new Map()));
      entries.set(activationKey(LOG_TYPE, id), place);
    }
  }
  for (let bucket = 0; bucket < buckets; bucket++) {
    const owner = simulation.node(layout.members[layout.owners[bucket]!]!.id)!;
    const held = owner.directory(bucket);
    const want = expected.get(bucket) ?? new Map<string, string>();
    if (held === undefined) {
      if (want.size > 0) problems.push(`bucket ${bucket}: owner ${owner.id} holds no directory, ${want.size} sessions expected`);
      continue;
    }
    const have = new Map(held.map(([key, node, worker]) => [key, `${node}/${worker}`]));
    for (const [key, place] of want) {
      const found = have.get(key);
      if (found !== place) problems.push(`bucket ${bucket}: session ${key.split('\0').pop()} is on ${place}, its directory says ${found ?? 'nothing'}`);
    }
    for (const [key, place] of have) {
      if (!want.has(key)) problems.push(`bucket ${bucket}: directory has ${key.split('\0').pop()} on ${place}, which hosts no such session`);
    }
  }
  // What the nodes host must be what the simulation put there (no session lost or duplicated).
  const hosted = new Map<string, string>();
  for (const node of simulation.running()) {
    for (const { key, worker } of node.sessions()) {
      const id = key.split('\0').pop()!;
      if (hosted.has(id)) problems.push(`session ${id} is hosted twice`);
      hosted.set(id, `${node.id}/${worker}`);
    }
  }
  for (const [id, place] of simulation.sessions) {
    if (hosted.get(id) !== `${place.node}/${place.worker}`) problems.push(`session ${id} should be on ${place.node}/${place.worker}, is on ${hosted.get(id) ?? 'no node'}`);
  }
  return problems;
}

export function layoutKey(layout: Layout): string {
  return JSON.stringify([layout.cluster, layout.epoch, layout.members.map((member) => `${member.id}@${member.incarnation}`), layout.owners, replicasOf(layout), layout.backups ?? [], layout.incoming ?? []]);
}

/** A settled layout's backups: each bucket min(R, members - 1) of them, none incoming, balanced. */
function backupProblems(layout: Layout): string[] {
  const want = Math.min(replicasOf(layout), layout.members.length - 1);
  const short = layout.owners.map((_, bucket) => bucket).filter((bucket) => backupsOf(layout, bucket).length !== want);
  const problems: string[] = [];
  if (short.length > 0) problems.push(`layout ${layout.epoch}: buckets ${short.slice(0, 10).join(',')} do not have ${want} backups`);
  if ((layout.incoming ?? []).length > 0) problems.push(`layout ${layout.epoch}: ${layout.incoming!.length} backups still incoming`);
  const counts = [...backupCounts(layout).values()];
  if (want > 0 && Math.max(...counts) - Math.min(...counts) > 1) problems.push(`layout ${layout.epoch} has unbalanced backups: ${[...backupCounts(layout)].map(([id, n]) => `${id}:${n}`).join(' ')}`);
  return problems;
}

function describeOwners(layout: Layout): string {
  return `[${[...ownedCounts(layout)].map(([id, count]) => `${id}:${count}`).join(' ')}] by ${layout.coordinator}`;
}

function memberKey(layout: Layout, bucket: number): string {
  const member = layout.members[layout.owners[bucket]!]!;
  return `${member.id}@${member.incarnation}`;
}

function moves(from: Layout, to: Layout): number {
  let count = 0;
  for (let bucket = 0; bucket < to.owners.length; bucket++) if (memberKey(from, bucket) !== memberKey(to, bucket)) count++;
  return count;
}

/** The members that own buckets in `layout` (a layout also lists members that only hold backups). */
function ownerKeys(layout: Layout): Set<string> {
  return new Set(layout.owners.map((_, bucket) => memberKey(layout, bucket)));
}

/**
 * The fewest owner moves from `base` over `layout`'s owners, once the buckets whose owner is gone
 * (crashed, not leaving) and that went to a member holding a complete copy of them count as
 * promoted. The planner gives those no choice: promotions come first and are not taken back in
 * the same layout, then members above their targets shed what else they hold, so a member that
 * got more promotions than its target sheds only its other buckets (the next layout balances).
 */
function minimumFrom(base: Layout, layout: Layout, leaving: ReadonlySet<string>): number {
  const members = ownerKeys(layout);
  const owners = base.owners.map((_, bucket) => memberKey(base, bucket));
  const pinned = new Set<number>();
  for (let bucket = 0; bucket < owners.length; bucket++) {
    if (members.has(owners[bucket]!) || leaving.has(owners[bucket]!)) continue;
    const to = memberKey(layout, bucket);
    if (holderKeys(base, bucket).includes(to)) {
      owners[bucket] = to;
      pinned.add(bucket);
    }
  }
  const targets = targetCounts({ buckets: owners.length, owners, members: [...members] });
  const held = new Map<string, number>();
  const unpinned = new Map<string, number>();
  let orphans = 0;
  owners.forEach((owner, bucket) => {
    if (!members.has(owner)) orphans++;
    held.set(owner, (held.get(owner) ?? 0) + 1);
    if (!pinned.has(bucket)) unpinned.set(owner, (unpinned.get(owner) ?? 0) + 1);
  });
  let shed = 0;
  for (const [id, target] of targets) shed += Math.min(Math.max(0, (held.get(id) ?? 0) - target), unpinned.get(id) ?? 0);
  return pinned.size + orphans + shed;
}

/** The members holding a complete copy of `bucket` besides its owner: complete backups and retiring members. */
function completeHolderKeys(layout: Layout, bucket: number): string[] {
  return copyHolders(layout, bucket)
    .slice(1)
    .map((index) => `${layout.members[index]!.id}@${layout.members[index]!.incarnation}`);
}

/**
 * Members holding a copy of `bucket` in `layout` that the next plan may promote, besides its
 * owner: its backups and retiring members. Incoming backups count here (a promotion to one the
 * coordinator knows is synced is a promotion), but a lost owner's bucket need only go to a
 * complete copy (`completeHolderKeys`): the simulated nodes replicate, and an incoming backup is
 * synced only once every member reported it caught up.
 */
function holderKeys(layout: Layout, bucket: number): string[] {
  const holders = new Set([...copyHolders(layout, bucket).slice(1), ...backupsOf(layout, bucket)]);
  return [...holders].map((index) => `${layout.members[index]!.id}@${layout.members[index]!.incarnation}`);
}

/**
 * Buckets whose owner is gone (not a leaver: a leaver's buckets are drained by balance), that a
 * surviving complete copy could have taken, and that went elsewhere.
 */
function unpromotedBuckets(base: Layout, layout: Layout, leaving: ReadonlySet<string>): number[] {
  const members = ownerKeys(layout);
  const result: number[] = [];
  for (let bucket = 0; bucket < base.owners.length; bucket++) {
    if (members.has(memberKey(base, bucket)) || leaving.has(memberKey(base, bucket))) continue;
    // Only a complete copy must take it, but an incoming backup may too: once the coordinator
    // knows it caught up (replication's `backupSynced`), which this monitor cannot see, it counts.
    const complete = completeHolderKeys(base, bucket).filter((key) => members.has(key));
    if (complete.length > 0 && !holderKeys(base, bucket).includes(memberKey(layout, bucket))) result.push(bucket);
  }
  return result;
}
