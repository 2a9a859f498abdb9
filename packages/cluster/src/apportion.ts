/**
 * Apportionment: splits an integer total among members in proportion to their weights, each
 * member getting the floor or the ceil of its share, and no member more than its cap. Both
 * planners use it (owners: B buckets, no caps; backups: B x R slots, capped because a member
 * never backs up a bucket it owns), so "balanced" means the same thing for both.
 *
 * Which members get the ceils is chosen to save moves: first those holding the most above their
 * floor (each such ceil is a bucket that need not move), then the larger fractional share, then
 * the lower index. That choice is the planners' hysteresis: a member inside its floor..ceil band
 * keeps what it holds.
 */

/** How far a share may be from an integer, relative to its size, and still count as that integer. */
export const INTEGER_SHARE_TOLERANCE = 1e-9;

/** Locale-independent ordering, so every node sorts ids the same way. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export interface Apportionment {
  /** Per member, summing to the total. */
  targets: Int32Array;
  /** Per member, the floor of its share; `targets[i]` is `floors[i]` or, if `fractional[i]`, one more. */
  floors: Int32Array;
  fractional: Uint8Array;
}

/**
 * Targets per member (index order of `weights`) summing to `total`.
 *
 * - `weights`: positive finite numbers (their sum may overflow; they are then rescaled).
 * - `current`: what each member holds now; only used to choose the ceils.
 * - `caps`: the most each member may hold (integers, default unbounded). The caller guarantees
 *   `total <= sum(caps)`. A member whose weighted share exceeds its cap gets exactly its cap, and
 *   the rest is shared among the others by weight (water-filling), so shares stay proportional
 *   wherever the caps allow.
 *
 * Shares are floating-point; a share within a relative 1e-9 of an integer counts as that integer,
 * so weights such as 0.1/0.2/0.3 still give exact integer targets.
 */
export function apportion(
  total: number,
  weights: readonly number[],
  current: ArrayLike<number>,
  caps?: ArrayLike<number>,
): Apportionment {
  const n = weights.length;
  let w = [...weights];
  let weightSum = w.reduce((sum, x) => sum + x, 0);
  if (!Number.isFinite(weightSum)) {
    const largest = Math.max(...w);
    w = w.map((x) => x / largest);
    weightSum = w.reduce((sum, x) => sum + x, 0);
  }
  const cap = (i: number): number => (caps === undefined ? Number.POSITIVE_INFINITY : (caps[i] ?? 0));

  // Water-filling: capping a member frees share for the others, which can only push more of them
  // over their caps, so at most n rounds settle who is capped.
  const capped = new Uint8Array(n);
  let rest = total;
  let restWeight = weightSum;
  for (let round = 0; round <= n; round++) {
    let changed = false;
    for (let i = 0; i < n; i++) {
      if (capped[i] === 1) continue;
      const c = cap(i);
      if (c === Number.POSITIVE_INFINITY) continue;
      const share = restWeight > 0 ? (rest * (w[i] as number)) / restWeight : 0;
      if (share >= c - INTEGER_SHARE_TOLERANCE * Math.max(1, c)) {
        capped[i] = 1;
        rest -= c;
        restWeight -= w[i] as number;
        changed = true;
      }
    }
    if (!changed) break;
  }
  // Summing the remaining weights afresh keeps the result independent of the capping order.
  restWeight = 0;
  for (let i = 0; i < n; i++) if (capped[i] === 0) restWeight += w[i] as number;

  const targets = new Int32Array(n);
  const fractional = new Uint8Array(n);
  const fraction = new Float64Array(n);
  const candidates: number[] = [];
  let assigned = 0;
  for (let i = 0; i < n; i++) {
    if (capped[i] === 1) {
      targets[i] = cap(i);
    } else {
      const share = restWeight > 0 ? (rest * (w[i] as number)) / restWeight : 0;
      const nearest = Math.round(share);
      if (Math.abs(share - nearest) <= INTEGER_SHARE_TOLERANCE * Math.max(1, share)) {
        // The nearest integer is the floor or the ceil of the true share either way.
        targets[i] = nearest;
      } else {
        targets[i] = Math.floor(share);
        fraction[i] = share - Math.floor(share);
        fractional[i] = 1;
        candidates.push(i);
      }
    }
    assigned += targets[i] ?? 0;
  }

  const remainder = total - assigned;
  if (remainder < 0 || remainder > candidates.length) {
    throw new Error(`apportion: remainder ${remainder} out of range for ${candidates.length} fractional shares (bug)`);
  }
  const floors = Int32Array.from(targets);
  const surplus = (i: number): number => (current[i] ?? 0) - (targets[i] ?? 0);
  candidates.sort((a, b) => surplus(b) - surplus(a) || (fraction[b] ?? 0) - (fraction[a] ?? 0) || a - b);
  for (let k = 0; k < remainder; k++) {
    const i = candidates[k] as number;
    targets[i] = (targets[i] ?? 0) + 1;
  }
  return { targets, floors, fractional };
}
