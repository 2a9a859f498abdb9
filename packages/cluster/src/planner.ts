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
 */
import { InvalidArgument } from '@wadi/core';

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
  /** At most this many moves of buckets whose current owner is live (draining or above its share) in this round. */
  maxMoves?: number;
}

export interface Move {
  bucket: number;
  /** The previous owner: null or a departed id for an orphaned bucket. */
  from: string | null;
  to: string;
}

export interface Plan {
  owners: string[];
  moves: Move[];
}

/** How far a share may be from an integer, relative to its size, and still count as that integer. */
const INTEGER_SHARE_TOLERANCE = 1e-9;

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
  readonly orphaned: number;
  readonly onDraining: number;
  /** Sum over eligible members of max(0, current - target). */
  readonly excess: number;
}

/** Plans the next layout; see the module header for the rules. */
export function planLayout(input: PlanInput): Plan {
  const analysis = analyse(input);
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
      if ((excessLeft[h] ?? 0) > 0) {
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
  const moves: Move[] = [];
  for (let bucket = 0; bucket < buckets; bucket++) {
    const from = owners[bucket] ?? null;
    if (moving[bucket] === 1) {
      const to = eligible[receivers.takeOne()] as string;
      result[bucket] = to;
      moves.push({ bucket, from, to });
    } else {
      // Not moving implies a live owner: orphans are always in `moving`.
      result[bucket] = from as string;
    }
  }
  return { owners: result, moves };
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

  const targets = chooseTargets(input, eligible, current);
  let excess = 0;
  current.forEach((held, i) => {
    excess += Math.max(0, held - (targets[i] ?? 0));
  });
  return { eligible, draining, holder, current, targets, orphaned, onDraining, excess };
}

/**
 * Floor of each weighted share, plus one for as many members as the remainder needs. Giving the
 * +1 to a member holding more than its floor saves one move; to anyone else it saves nothing,
 * so those members come first.
 */
function chooseTargets(input: PlanInput, eligible: readonly string[], current: Int32Array): Int32Array {
  const buckets = input.buckets;
  const given = input.weights;
  // hasOwn, so that an id such as 'constructor' does not pick up an Object.prototype member.
  let weights = eligible.map((id) => (given !== undefined && Object.hasOwn(given, id) ? (given[id] as number) : 1));
  // Summing in sorted-id order keeps the floating-point result independent of member order.
  let total = weights.reduce((sum, w) => sum + w, 0);
  if (!Number.isFinite(total)) {
    const largest = Math.max(...weights);
    weights = weights.map((w) => w / largest);
    total = weights.reduce((sum, w) => sum + w, 0);
  }

  const targets = new Int32Array(eligible.length);
  const fraction = new Float64Array(eligible.length);
  const candidates: number[] = [];
  let assigned = 0;
  weights.forEach((w, i) => {
    const share = (buckets * w) / total;
    const nearest = Math.round(share);
    if (Math.abs(share - nearest) <= INTEGER_SHARE_TOLERANCE * Math.max(1, share)) {
      // The nearest integer is the floor or the ceil of the true share either way.
      targets[i] = nearest;
    } else {
      targets[i] = Math.floor(share);
      fraction[i] = share - Math.floor(share);
      candidates.push(i);
    }
    assigned += targets[i] ?? 0;
  });

  const remainder = buckets - assigned;
  if (remainder < 0 || remainder > candidates.length) {
    throw new Error(`layout planner: remainder ${remainder} out of range for ${candidates.length} fractional shares (bug)`);
  }
  const surplus = (i: number): number => (current[i] ?? 0) - (targets[i] ?? 0);
  candidates.sort(
    (a, b) => surplus(b) - surplus(a) || (fraction[b] ?? 0) - (fraction[a] ?? 0) || a - b,
  );
  for (let k = 0; k < remainder; k++) {
    const i = candidates[k] as number;
    targets[i] = (targets[i] ?? 0) + 1;
  }
  return targets;
}

/** Locale-independent ordering, so every node sorts ids the same way. */
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
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
}
