/**
 * Layout planner: given the current `bucket -> owner` table and the membership, decides the next
 * table. The coordinator calls it whenever membership changes; everything that executes the
 * moves (handoffs, fencing, epochs) lives elsewhere. It is pure and deterministic: no I/O, no
 * clock, no randomness, and the same input gives the same plan whatever the order of `members`,
 * so any elected coordinator computes the same layout from the same committed state.
 *
 * Goals, in order:
 * 1. Availability. A bucket whose owner is null or not a member ("orphaned": never assigned,
 *    departed or crashed) is reassigned in every round, whatever `maxMoves` says: it has no live
 *    owner, so delaying it only prolongs unavailability.
 * 2. Balance. Each eligible member (members minus draining) ends up with the floor or the ceil of
 *    its weighted share `buckets * w / sum(w)`, exactly the share when that is an integer.
 * 3. Minimal movement. A bucket moves only if it is orphaned, on a draining member, or on a
 *    member above its target; which members get the ceil is chosen to minimise the moves, so the
 *    move count equals `minimumMoves(input)`.
 *
 * Rate limiting (`maxMoves`) bounds only the moves away from a live owner, because those are
 * the handoffs that cost work on a running node. Draining members are emptied first (a leaving
 * node is waiting on them), then members above target. A rate-limited plan may therefore leave
 * buckets on draining members and leave the layout unbalanced; calling the planner again with
 * the new owners continues where the round stopped. Every planned move removes exactly one unit
 * from `minimumMoves`, so the rounds together move exactly `minimumMoves` of the first input.
 * (Which member gets a ceil may change between rounds when shares tie, so the rounds may end on a
 * different, equally balanced layout than one unlimited plan would have picked.)
 *
 * Rules for which buckets move and where (stable rules, so plans are reproducible):
 * - A member above target gives up its highest-numbered buckets.
 * - Under a `maxMoves` budget, sources take turns (round-robin by id, draining members first),
 *   each giving its highest-numbered remaining bucket, so the handoff work is spread over nodes.
 * - Moving buckets are taken in ascending bucket order; each goes to the receiver with the
 *   largest remaining deficit (ties: smallest id). This interleaves receivers and, under a
 *   budget, fills the emptiest members first.
 * - The remainder's ceils go first to members holding the most above their floor (each such
 *   ceil saves a move), then to the larger fractional share, then to the smallest id.
 * - Moves are listed by ascending bucket.
 *
 * Shares are floating-point; a share within a relative 1e-9 of an integer counts as that
 * integer, so weights such as 0.1/0.2/0.3 still give exact integer targets.
 *
 * Backups (`replicas` > 0). Before the owners are planned, an orphaned bucket with a complete
 * backup on an eligible member is *promoted*: that backup becomes its owner, since it already
 * holds the bucket's copy (when several could, the one furthest below its owner target, then the
 * smallest id). Promotions count as that member's holdings and are never taken back in the same
 * round, so the goals above apply to the promoted table: the owner moves are the promotions plus
 * `minimumMoves` of the promoted table, and balance is exact unless a member received more
 * promotions than its target (the next round, with no orphans, balances it). The backups are then
 * placed by `planBackups` (backups.ts) around the owners this plan chose.
 */
import { InvalidArgument } from '@wadi/core';
import { apportion, compareIds } from './apportion.js';
import { planBackups, type BackupMove, type BackupPlan, type IncomingBackup } from './backups.js';
import { MAX_REPLICAS } from './layout.js';

export type { BackupMove, IncomingBackup } from './backups.js';

export interface PlanInput {
  /** Number of buckets B (integer >= 1). */
  buckets: number;
  /** owners[i] = node id currently owning bucket i, or null. Length must equal buckets. */
  owners: readonly (string | null)[];
  /** Live members (node ids), eligible to own buckets unless draining. Order is irrelevant to the result. */
  members: readonly string[];
  /** Members that must end up owning nothing (leaving gracefully). Ids that are not members are ignored. */
  draining?: readonly string[];
  /** Positive finite weights per member (default 1). Weights of non-members are validated and ignored. */
  weights?: Readonly<Record<string, number>>;
  /**
   * At most this many moves of buckets whose current owner is live (draining or above its share)
   * in this round; with backups, also at most this many live backup moves in flight.
   */
  maxMoves?: number;
  /** R: backups per bucket, besides its owner (default 0: owners only). At most MAX_REPLICAS. */
  replicas?: number;
  /**
   * backups[b]: the ids that are, or are becoming, bucket b's backups, as the current layout
   * lists them (departed ids allowed; never the bucket's owner; no id twice). Default: none.
   */
  backups?: readonly (readonly string[])[];
  /** The backups still receiving their copy, as the current layout lists them (each in `backups`). */
  incoming?: readonly IncomingBackup[];
  /**
   * Whether incoming backup `id` of `bucket` has received its whole copy (default: none has). A
   * synced backup counts as complete, and the backup it replaced is dropped.
   */
  synced?: (bucket: number, id: string) => boolean;
}

export interface Move {
  bucket: number;
  /** The previous owner: null or a departed id for an orphaned bucket. */
  from: string | null;
  to: string;
}

export interface Plan {
  owners: string[];
  /** Owner moves, by ascending bucket (promotions included: from the lost owner to the backup). */
  moves: Move[];
  /** backups[b]: the ids that are, or are becoming, bucket b's backups (all empty with no replicas). */
  backups: string[][];
  /** The backups still receiving their copy, by ascending bucket. */
  incoming: IncomingBackup[];
  /** Backup slots given in this plan, by ascending bucket. */
  backupMoves: BackupMove[];
}

const ORPHANED = -1;

/** The input digested once: who may own, who holds what, and the targets. */
interface Analysis {
  /** Eligible member ids, sorted. Indices below refer to this array. */
  readonly eligible: readonly string[];
  /** Members that are draining, sorted. */
  readonly draining: readonly string[];
  /**
   * Who holds each bucket, looked up once: an eligible index `i >= 0`, a draining index `d`
   * stored as `-2 - d`, or ORPHANED.
   */
  readonly holder: Int32Array;
  /** Buckets held now by each eligible member. */
  readonly current: Int32Array;
  readonly targets: Int32Array;
  /** Weight of each eligible member. */
  readonly weights: readonly number[];
  readonly orphaned: number;
  readonly onDraining: number;
  /** Sum over eligible members of max(0, current - target). */
  readonly excess: number;
}

/** Plans the next layout; see the module header for the rules. */
export function planLayout(input: PlanInput): Plan {
  return planAll(input).plan;
}

/** Owners and backups, with what the backup step computed on the way. */
function planAll(input: PlanInput): { plan: Plan; backups: BackupPlan; eligible: readonly string[] } {
  const first = analyse(input);
  const { owners, pinned } = promote(input, first);
  // The promoted table lists promoted backups as owners: its backup fields are not checked again.
  const promotedInput: PlanInput = pinned === undefined ? input : { ...input, owners, backups: undefined, incoming: undefined };
  const analysis = pinned === undefined ? first : analyse(promotedInput);
  const result = assignOwners(promotedInput, analysis, pinned);
  const moves: Move[] = [];
  for (let bucket = 0; bucket < input.buckets; bucket++) {
    const from = input.owners[bucket] ?? null;
    const to = result[bucket] as string;
    if (from !== to) moves.push({ bucket, from, to });
  }
  const backups = planBackups({
    buckets: input.buckets,
    replicas: input.replicas ?? 0,
    eligible: analysis.eligible,
    draining: analysis.draining,
    weights: analysis.weights,
    previousOwners: input.owners,
    owners: result,
    backups: input.backups,
    incoming: input.incoming ?? [],
    synced: input.synced ?? (() => false),
    maxMoves: input.maxMoves ?? Number.POSITIVE_INFINITY,
  });
  return {
    plan: { owners: result, moves, backups: backups.backups, incoming: backups.incoming, backupMoves: backups.moves },
    backups,
    eligible: analysis.eligible,
  };
}

/**
 * The owners with each orphan that has a complete backup on an eligible member given to one of
 * them, and which buckets were so promoted (undefined when none was).
 */
function promote(input: PlanInput, analysis: Analysis): { owners: readonly (string | null)[]; pinned: Uint8Array | undefined } {
  const backups = input.backups;
  if (backups === undefined || analysis.orphaned === 0) return { owners: input.owners, pinned: undefined };
  const eligibleIndex = new Map(analysis.eligible.map((id, i) => [id, i]));
  const room = Int32Array.from(analysis.targets, (target, i) => target - (analysis.current[i] ?? 0));
  const incoming = new Map<number, Map<string, string | null>>();
  for (const entry of input.incoming ?? []) {
    let map = incoming.get(entry.bucket);
    if (map === undefined) incoming.set(entry.bucket, (map = new Map()));
    map.set(entry.id, entry.retiring);
  }
  const synced = input.synced ?? (() => false);
  let owners: (string | null)[] | undefined;
  let pinned: Uint8Array | undefined;
  for (let bucket = 0; bucket < input.buckets; bucket++) {
    if (analysis.holder[bucket] !== ORPHANED) continue;
    const pending = incoming.get(bucket);
    const complete = (backups[bucket] ?? []).filter((id) => pending?.has(id) !== true || synced(bucket, id));
    for (const retiring of pending?.values() ?? []) if (retiring !== null) complete.push(retiring);
    let best = -1;
    for (const id of complete) {
      const i = eligibleIndex.get(id);
      if (i !== undefined && (best < 0 || (room[i] ?? 0) > (room[best] ?? 0) || ((room[i] ?? 0) === (room[best] ?? 0) && i < best))) best = i;
    }
    if (best < 0) continue;
    room[best] = (room[best] ?? 0) - 1;
    owners ??= [...input.owners];
    pinned ??= new Uint8Array(input.buckets);
    owners[bucket] = analysis.eligible[best] as string;
    pinned[bucket] = 1;
  }
  return { owners: owners ?? input.owners, pinned };
}

/** The owner of every bucket after this round (see the module header); pinned buckets stay put. */
function assignOwners(input: PlanInput, analysis: Analysis, pinned: Uint8Array | undefined): string[] {
  const { eligible, draining, holder, current, targets } = analysis;
  const buckets = input.buckets;
  const owners = input.owners;

  // Candidate buckets per live source, highest-numbered first: all of a draining member's
  // buckets, and the top `current - target` of an eligible member above target.
  const drainingSources: number[][] = draining.map(() => []);
  const excessSources: number[][] = eligible.map(() => []);
  const excessLeft = Int32Array.from(current, (held, i) => Math.max(0, held - (targets[i] ?? 0)));
  const moving = new Uint8Array(buckets);
  for (let bucket = buckets - 1; bucket >= 0; bucket--) {
    const h = holder[bucket] ?? ORPHANED;
    if (h >= 0) {
      if ((excessLeft[h] ?? 0) > 0 && pinned?.[bucket] !== 1) {
        excessLeft[h] = (excessLeft[h] ?? 0) - 1;
        excessSources[h]?.push(bucket);
      }
    } else if (h === ORPHANED) {
      moving[bucket] = 1;
    } else {
      drainingSources[-2 - h]?.push(bucket);
    }
  }

  let budget = input.maxMoves ?? Number.POSITIVE_INFINITY;
  budget -= takeRoundRobin(drainingSources, budget, moving);
  takeRoundRobin(excessSources, budget, moving);

  const receivers = new DeficitHeap(
    Int32Array.from(targets, (target, i) => Math.max(0, target - (current[i] ?? 0))),
  );
  const result: string[] = new Array<string>(buckets);
  for (let bucket = 0; bucket < buckets; bucket++) {
    if (moving[bucket] === 1) {
      result[bucket] = eligible[receivers.takeOne()] as string;
    } else {
      // Not moving implies a live owner: orphans are always in `moving`.
      result[bucket] = owners[bucket] as string;
    }
  }
  return result;
}

/** The minimum number of moves that reaches balance from `input` (ignoring maxMoves). */
export function minimumMoves(input: PlanInput): number {
  const analysis = analyse(input);
  return analysis.orphaned + analysis.onDraining + analysis.excess;
}

/**
 * Target bucket count per eligible member (sums to buckets; each the floor or ceil of the
 * weighted share), chosen to minimise moves. Keys are in ascending id order.
 */
export function targetCounts(input: PlanInput): Map<string, number> {
  const { eligible, targets } = analyse(input);
  const result = new Map<string, number>();
  eligible.forEach((id, i) => result.set(id, targets[i] ?? 0));
  return result;
}

/**
 * Target backup count per eligible member for the owners this plan picks (keys in ascending id
 * order; all 0 with no replicas): the floor or ceil of each weighted share of the backup slots,
 * capped by the buckets the member does not own.
 */
export function backupTargets(input: PlanInput): Map<string, number> {
  const { backups, eligible } = planAll(input);
  const result = new Map<string, number>();
  eligible.forEach((id, i) => result.set(id, backups.targets[i] ?? 0));
  return result;
}

/**
 * Lower bound on the backup moves of an unlimited plan from `input`: slots lost with departed
 * members or to promotions, backups on draining members, and members' excess over their backup
 * targets. `planLayout` moves exactly this many unless the rule that a member never backs up a
 * bucket twice or its own bucket forces a detour (see backups.ts).
 */
export function minimumBackupMoves(input: PlanInput): number {
  return planAll({ ...input, maxMoves: undefined }).backups.minimum;
}

/**
 * Marks up to `budget` buckets from `sources` as moving, one per source per turn, and returns
 * how many it marked. Sources are visited in index order (sorted ids), each list already in the
 * order its buckets should go.
 */
function takeRoundRobin(sources: readonly number[][], budget: number, moving: Uint8Array): number {
  let taken = 0;
  let active = sources.filter((list) => list.length > 0);
  for (let turn = 0; active.length > 0 && taken < budget; turn++) {
    for (const list of active) {
      if (taken >= budget) break;
      moving[list[turn] as number] = 1;
      taken++;
    }
    active = active.filter((list) => list.length > turn + 1);
  }
  return taken;
}

/**
 * Receivers ordered by remaining deficit (largest first), then by index (smallest first). A
 * binary heap keeps each assignment O(log members).
 */
class DeficitHeap {
  private readonly deficit: Int32Array;
  private readonly heap: number[];

  constructor(deficit: Int32Array) {
    this.deficit = deficit;
    this.heap = [];
    deficit.forEach((d, i) => {
      if (d > 0) this.push(i);
    });
  }

  /** Gives one bucket to the neediest receiver and returns its index. */
  takeOne(): number {
    const top = this.heap[0];
    // The deficits sum to at least the number of moving buckets (see analyse), so this holds.
    if (top === undefined) throw new Error('layout planner: more moving buckets than deficits (bug)');
    this.deficit[top] = (this.deficit[top] ?? 0) - 1;
    if ((this.deficit[top] ?? 0) > 0) {
      this.siftDown(0);
    } else {
      const last = this.heap.pop() as number;
      if (this.heap.length > 0) {
        this.heap[0] = last;
        this.siftDown(0);
      }
    }
    return top;
  }

  private before(a: number, b: number): boolean {
    const da = this.deficit[a] ?? 0;
    const db = this.deficit[b] ?? 0;
    return da !== db ? da > db : a < b;
  }

  private push(i: number): void {
    const heap = this.heap;
    heap.push(i);
    let at = heap.length - 1;
    while (at > 0) {
      const parent = (at - 1) >> 1;
      const p = heap[parent] as number;
      if (!this.before(i, p)) break;
      heap[at] = p;
      at = parent;
    }
    heap[at] = i;
  }

  private siftDown(start: number): void {
    const heap = this.heap;
    const item = heap[start] as number;
    let at = start;
    for (;;) {
      const left = 2 * at + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      let child = left;
      if (right < heap.length && this.before(heap[right] as number, heap[left] as number)) child = right;
      const c = heap[child] as number;
      if (!this.before(c, item)) break;
      heap[at] = c;
      at = child;
    }
    heap[at] = item;
  }
}

function analyse(input: PlanInput): Analysis {
  validate(input);
  const memberSet = new Set(input.members);
  const drainingSet = new Set((input.draining ?? []).filter((id) => memberSet.has(id)));
  const eligible = [...memberSet].filter((id) => !drainingSet.has(id)).sort(compareIds);
  if (eligible.length === 0) {
    throw new InvalidArgument(
      input.members.length === 0
        ? 'layout: members is empty; at least one member that is not draining is needed to own buckets'
        : 'layout: every member is draining; at least one member that is not draining is needed to own buckets',
    );
  }
  const draining = [...drainingSet].sort(compareIds);
  const eligibleIndex = new Map(eligible.map((id, i) => [id, i]));
  const drainingIndex = new Map(draining.map((id, d) => [id, d]));

  const holder = new Int32Array(input.buckets);
  const current = new Int32Array(eligible.length);
  let orphaned = 0;
  let onDraining = 0;
  input.owners.forEach((owner, bucket) => {
    const e = owner === null ? undefined : eligibleIndex.get(owner);
    const d = owner === null || e !== undefined ? undefined : drainingIndex.get(owner);
    if (e !== undefined) {
      holder[bucket] = e;
      current[e] = (current[e] ?? 0) + 1;
    } else if (d !== undefined) {
      holder[bucket] = -2 - d;
      onDraining++;
    } else {
      holder[bucket] = ORPHANED;
      orphaned++;
    }
  });

  const { weights, targets } = chooseTargets(input, eligible, current);
  let excess = 0;
  current.forEach((held, i) => {
    excess += Math.max(0, held - (targets[i] ?? 0));
  });
  return { eligible, draining, holder, current, targets, weights, orphaned, onDraining, excess };
}

/**
 * Each eligible member's weight (default 1) and target: the floor or ceil of its weighted share of
 * the buckets, the ceils going where they save moves (apportion.ts).
 */
function chooseTargets(input: PlanInput, eligible: readonly string[], current: Int32Array): { weights: number[]; targets: Int32Array } {
  const given = input.weights;
  // hasOwn, so that an id such as 'constructor' does not pick up an Object.prototype member.
  const weights = eligible.map((id) => (given !== undefined && Object.hasOwn(given, id) ? (given[id] as number) : 1));
  return { weights, targets: apportion(input.buckets, weights, current).targets };
}

function validate(input: PlanInput): void {
  const { buckets, owners, members, draining, weights, maxMoves } = input;
  if (typeof buckets !== 'number' || !Number.isInteger(buckets) || buckets < 1) {
    throw new InvalidArgument(`layout: buckets must be an integer >= 1, got ${String(buckets)}`);
  }
  if (!Array.isArray(owners)) {
    throw new InvalidArgument(`layout: owners must be an array, got ${typeof owners}`);
  }
  if (owners.length !== buckets) {
    throw new InvalidArgument(`layout: owners must have one entry per bucket (${buckets}), got ${owners.length}`);
  }
  for (let bucket = 0; bucket < owners.length; bucket++) {
    const owner: unknown = owners[bucket];
    if (owner !== null && typeof owner !== 'string') {
      throw new InvalidArgument(`layout: owners[${bucket}] must be a node id or null, got ${typeof owner}`);
    }
  }
  if (!Array.isArray(members)) {
    throw new InvalidArgument(`layout: members must be an array, got ${typeof members}`);
  }
  const seen = new Set<string>();
  for (const id of members as readonly unknown[]) {
    if (typeof id !== 'string' || id.length === 0) {
      throw new InvalidArgument(`layout: members must be non-empty strings, got ${JSON.stringify(id) ?? String(id)}`);
    }
    if (seen.has(id)) throw new InvalidArgument(`layout: members lists ${JSON.stringify(id)} twice`);
    seen.add(id);
  }
  if (draining !== undefined) {
    if (!Array.isArray(draining)) {
      throw new InvalidArgument(`layout: draining must be an array, got ${typeof draining}`);
    }
    for (const id of draining as readonly unknown[]) {
      if (typeof id !== 'string') {
        throw new InvalidArgument(`layout: draining must contain node ids, got ${typeof id}`);
      }
    }
  }
  if (weights !== undefined) {
    if (weights === null || typeof weights !== 'object') {
      throw new InvalidArgument(`layout: weights must be an object of id -> weight, got ${String(weights)}`);
    }
    for (const [id, w] of Object.entries(weights)) {
      if (typeof w !== 'number' || !Number.isFinite(w) || w <= 0) {
        throw new InvalidArgument(
          `layout: weights[${JSON.stringify(id)}] must be a positive finite number, got ${String(w)}`,
        );
      }
    }
  }
  if (maxMoves !== undefined && (typeof maxMoves !== 'number' || !Number.isInteger(maxMoves) || maxMoves < 0)) {
    throw new InvalidArgument(`layout: maxMoves must be an integer >= 0, got ${String(maxMoves)}`);
  }
  validateBackups(input);
}

function validateBackups(input: PlanInput): void {
  const { buckets, owners, replicas, backups, incoming, synced } = input;
  if (replicas !== undefined && (typeof replicas !== 'number' || !Number.isInteger(replicas) || replicas < 0 || replicas > MAX_REPLICAS)) {
    throw new InvalidArgument(`layout: replicas must be an integer from 0 to ${MAX_REPLICAS}, got ${String(replicas)}`);
  }
  if (synced !== undefined && typeof synced !== 'function') {
    throw new InvalidArgument(`layout: synced must be a function, got ${typeof synced}`);
  }
  if (backups === undefined) {
    if (incoming !== undefined && (!Array.isArray(incoming) || incoming.length > 0)) {
      throw new InvalidArgument('layout: incoming backups given without backups');
    }
    return;
  }
  if (!Array.isArray(backups) || backups.length !== buckets) {
    throw new InvalidArgument(`layout: backups must have one list per bucket (${buckets}), got ${Array.isArray(backups) ? backups.length : typeof backups}`);
  }
  for (let bucket = 0; bucket < buckets; bucket++) {
    const list: unknown = backups[bucket];
    if (!Array.isArray(list)) throw new InvalidArgument(`layout: backups[${bucket}] must be an array of node ids`);
    const seen = new Set<string>();
    for (const id of list as unknown[]) {
      if (typeof id !== 'string' || id.length === 0) throw new InvalidArgument(`layout: backups[${bucket}] must contain node ids, got ${JSON.stringify(id) ?? String(id)}`);
      if (seen.has(id)) throw new InvalidArgument(`layout: backups[${bucket}] lists ${JSON.stringify(id)} twice`);
      if (id === owners[bucket]) throw new InvalidArgument(`layout: backups[${bucket}] lists its owner ${JSON.stringify(id)}`);
      seen.add(id);
    }
  }
  if (incoming === undefined) return;
  if (!Array.isArray(incoming)) throw new InvalidArgument(`layout: incoming must be an array, got ${typeof incoming}`);
  const pairs = new Set<string>();
  const retirees = new Set<string>();
  for (const entry of incoming as readonly IncomingBackup[]) {
    const { bucket, id, retiring } = (entry ?? {}) as Partial<IncomingBackup>;
    if (typeof bucket !== 'number' || !Number.isInteger(bucket) || bucket < 0 || bucket >= buckets) {
      throw new InvalidArgument(`layout: incoming bucket ${String(bucket)} is out of range`);
    }
    const list = backups[bucket] as readonly string[];
    if (typeof id !== 'string' || !list.includes(id)) throw new InvalidArgument(`layout: incoming ${String(id)} is not a backup of bucket ${bucket}`);
    if (pairs.has(`${bucket}\0${id}`)) throw new InvalidArgument(`layout: incoming lists ${JSON.stringify(id)} twice for bucket ${bucket}`);
    pairs.add(`${bucket}\0${id}`);
    if (retiring === null) continue;
    if (typeof retiring !== 'string' || retiring.length === 0 || list.includes(retiring) || retiring === owners[bucket]) {
      throw new InvalidArgument(`layout: incoming retiring ${JSON.stringify(retiring) ?? String(retiring)} of bucket ${bucket} must be a node id that is neither its owner nor a backup`);
    }
    if (retirees.has(`${bucket}\0${retiring}`)) throw new InvalidArgument(`layout: bucket ${bucket} retires ${JSON.stringify(retiring)} twice`);
    retirees.add(`${bucket}\0${retiring}`);
  }
}
