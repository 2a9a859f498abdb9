/**
 * Backup placement: which members, besides its owner, hold a copy of each bucket, and how that
 * changes when membership does. `planLayout` (planner.ts) runs it once the owners of the next
 * layout are decided; like the owner planner it is pure and deterministic (no I/O, no clock, no
 * randomness, and member order in the input does not matter).
 *
 * Model. A bucket's copies are held by its owner and its backups. A backup is *complete* once it
 * holds the whole copy, *incoming* while it is still receiving it. The owner always counts as a
 * complete copy: an owner move is a handoff, in which the previous owner keeps what it has until
 * the new one took it over (handoff.ts today, and the replication part for session copies).
 *
 * Goals, in order:
 * 1. Durability. Every bucket gets `r = min(R, eligible members other than its owner)` backups,
 *    never its owner and never one member twice. Slots lost with a member (crash, removal) or
 *    vacated by a promotion are refilled in every round, whatever `maxMoves` says.
 * 2. Add before remove. A complete copy on a live member is dropped only when the bucket keeps
 *    `min(R + 1, copies it had)` complete copies without it. A backup that moves away therefore
 *    stays on as the *retiring* partner of the incoming backup that replaces it, until the caller
 *    reports that incoming backup synced (`synced`); the next plan then drops it.
 * 3. Balance. Each eligible member holds the floor or the ceil of its weighted share of all
 *    backup slots, capped by the buckets it does not own (see apportion.ts).
 * 4. Minimal movement. A backup moves only if its slot was lost, it is on a draining member, or
 *    balance needs it; which members get the ceils is chosen to keep what they hold.
 *    `minimum` (lost slots + draining + excess over targets) is a lower bound; where the rule
 *    "never the owner, never twice" makes it unreachable, the fewest extra moves are sought (see
 *    the steps below). The property tests compare plans with an exact min-cost-flow optimum.
 *
 * Rate limiting. `maxMoves` bounds the *live* backup moves (away from a draining member or a
 * member above target) in flight: a round starts at most `maxMoves` minus those still incoming
 * from earlier rounds. Refilling lost slots is not limited, like orphaned owners.
 *
 * Steps of a round (stable rules, so plans are reproducible):
 * 1. Refill lost slots, in bucket order. A slot goes to an eligible member that is not the owner
 *    and not already a backup of the bucket, preferring: one with room under its target; then
 *    one that already holds a complete copy (the previous owner or a retiring backup: nothing to
 *    copy); then the fewest backups of buckets with the same owner (so an owner's buckets spread
 *    their backups over all the others, and a crash promotes about as many buckets onto each
 *    survivor); then the largest room; then the smallest id. If no member with room may take it,
 *    the member least over its target does, and step 3 evens that out.
 * 2. Replace backups on draining members, in turns, highest-numbered buckets first (budgeted).
 * 3. Balance: first re-target slots given in this round (no extra move), directly or along a
 *    chain of members; then hand a ceil from a member with room to a tied member over its floor;
 *    then members above target shed earlier backups (budgeted): of the owner whose buckets they
 *    back most, incoming before complete, highest-numbered first, each to the best member with
 *    room; and what no member with room may take directly goes along the cheapest chain.
 * 4. Pair each incoming backup with a retiring copy where add-before-remove needs one.
 */
import { apportion } from './apportion.js';

/** A backup still receiving its copy of `bucket`; `retiring` keeps its copy until it has it. */
export interface IncomingBackup {
  bucket: number;
  id: string;
  /** A complete backup that this one replaces and that stays until this one is synced, or null. */
  retiring: string | null;
}

/** A backup slot given to `to`: a new copy, or a complete holder taking the slot. */
export interface BackupMove {
  bucket: number;
  /** The backup it replaces: departed, draining, above its target, promoted to owner; or null for a new slot. */
  from: string | null;
  to: string;
}

/** What the owner step hands over (all ids already validated; `eligible` and `draining` sorted). */
export interface BackupPlanInput {
  buckets: number;
  replicas: number;
  eligible: readonly string[];
  draining: readonly string[];
  /** Weight per eligible member, in `eligible` order. */
  weights: readonly number[];
  /** The owners before this plan (null or departed for orphans). */
  previousOwners: readonly (string | null)[];
  /** The owners this plan decided: each eligible or draining. */
  owners: readonly string[];
  backups: readonly (readonly string[])[] | undefined;
  incoming: readonly IncomingBackup[];
  synced: (bucket: number, id: string) => boolean;
  maxMoves: number;
}

export interface BackupPlan {
  /** backups[b]: the member ids that are, or are becoming, bucket b's backups. */
  backups: string[][];
  /** The backups among them still receiving their copy, by bucket, in slot order. */
  incoming: IncomingBackup[];
  moves: BackupMove[];
  /** Target backup count per eligible member, in `eligible` order. */
  targets: Int32Array;
  /**
   * Lower bound on `moves.length` with no `maxMoves`: lost slots, backups on draining members and
   * members' excess over their targets. A plan moves exactly this many unless the placement rules
   * force a detour (a slot only over-target members may take); see the module header.
   */
  minimum: number;
}

/** Distance of a member the repair search has not reached. */
const UNREACHED = 2 ** 31 - 1;

/** One backup slot of a bucket while planning. Members are indexes: eligible first, then draining. */
interface Slot {
  m: number;
  complete: boolean;
  /** Given in this round (a move). */
  fresh: boolean;
  /** The backup id this slot replaced, for the move's `from`. */
  replaces: string | null;
  /** The slot from the input that this one replaced, if any: giving it back undoes the move. */
  original?: Slot;
}

export function planBackups(input: BackupPlanInput): BackupPlan {
  const { buckets, replicas, eligible, draining } = input;
  const E = eligible.length;
  const ids = [...eligible, ...draining];
  const index = new Map<string, number>(ids.map((id, i) => [id, i]));
  const indexOf = (id: string | null | undefined): number => (id === null || id === undefined ? -1 : (index.get(id) ?? -1));

  const incomingBy = new Map<number, Map<string, string | null>>();
  for (const entry of input.incoming) {
    let map = incomingBy.get(entry.bucket);
    if (map === undefined) incomingBy.set(entry.bucket, (map = new Map()));
    map.set(entry.id, entry.retiring);
  }

  const owner = new Int32Array(buckets);
  const needed = new Int32Array(buckets);
  const before = new Int32Array(buckets);
  const slots: Slot[][] = new Array<Slot[]>(buckets);
  /** Live members holding a complete copy in the input (owner, complete backups, retiring), per bucket. */
  const holders: number[][] = new Array<number[]>(buckets);
  /** Retiring members in the input, per bucket: incoming id -> retiring index. */
  const partners: (Map<number, number> | undefined)[] = new Array<Map<number, number> | undefined>(buckets);
  /** Ids whose slot this round must refill (departed, promoted), for the moves' `from`. */
  const vacated: string[][] = new Array<string[]>(buckets);
  const ownedBy = new Int32Array(ids.length);
  let inFlight = 0;

  for (let b = 0; b < buckets; b++) {
    const o = indexOf(input.owners[b]);
    owner[b] = o;
    ownedBy[o] = (ownedBy[o] ?? 0) + 1;
    const hold: number[] = [];
    const addHolder = (m: number): void => {
      if (m >= 0 && !hold.includes(m)) hold.push(m);
    };
    addHolder(indexOf(input.previousOwners[b]));
    const pending = incomingBy.get(b);
    const list: Slot[] = [];
    const lost: string[] = [];
    let pairs: Map<number, number> | undefined;
    for (const id of input.backups?.[b] ?? []) {
      const m = indexOf(id);
      const incoming = pending?.has(id) === true;
      const complete = !incoming || input.synced(b, id);
      if (m >= 0 && complete) addHolder(m);
      if (m < 0 || m === o) {
        lost.push(id);
        continue;
      }
      list.push({ m, complete, fresh: false, replaces: null });
      const retiring = incoming && !complete ? indexOf(pending.get(id)) : -1;
      if (retiring >= 0) {
        (pairs ??= new Map()).set(m, retiring);
        inFlight++;
      }
    }
    for (const retiring of pending?.values() ?? []) addHolder(indexOf(retiring));
    before[b] = hold.length;
    holders[b] = hold;
    partners[b] = pairs;

    const r = Math.min(replicas, E - (o < E ? 1 : 0));
    needed[b] = r;
    if (list.length > r) {
      // R was lowered, or fewer members may hold backups: keep complete eligible ones first.
      const rank = (slot: Slot): number => (slot.m < E ? 0 : 2) + (slot.complete ? 0 : 1);
      const keep = new Set([...list].sort((x, y) => rank(x) - rank(y)).slice(0, r));
      slots[b] = list.filter((slot) => keep.has(slot));
    } else {
      slots[b] = list;
    }
    vacated[b] = lost;
  }

  // Loads, caps and targets of the eligible members.
  const load = new Int32Array(E);
  const caps = new Int32Array(E);
  const pair = new Int32Array(ids.length * Math.max(1, E));
  let total = 0;
  let missing = 0;
  let onDraining = 0;
  for (let b = 0; b < buckets; b++) {
    total += needed[b] ?? 0;
    const list = slots[b] as Slot[];
    missing += (needed[b] ?? 0) - list.length;
    for (const slot of list) {
      if (slot.m < E) {
        load[slot.m] = (load[slot.m] ?? 0) + 1;
        pair[(owner[b] ?? 0) * E + slot.m] = (pair[(owner[b] ?? 0) * E + slot.m] ?? 0) + 1;
      } else {
        onDraining++;
      }
    }
  }
  for (let m = 0; m < E; m++) caps[m] = buckets - (ownedBy[m] ?? 0);
  const { targets, floors, fractional } = apportion(total, input.weights, load, caps);
  let excess = 0;
  for (let m = 0; m < E; m++) excess += Math.max(0, (load[m] ?? 0) - (targets[m] ?? 0));
  const minimum = missing + onDraining + excess;

  const room = (m: number): number => (targets[m] ?? 0) - (load[m] ?? 0);
  const holds = (b: number, m: number): boolean => (holders[b] as number[]).includes(m);
  const inBucket = (b: number, m: number): boolean => (slots[b] as Slot[]).some((slot) => slot.m === m);

  /** The member that should take a slot of bucket `b` (see the header), or -1 if none may. */
  const receiver = (b: number, needRoom: boolean): number => {
    const o = owner[b] as number;
    let best = -1;
    for (let m = 0; m < E; m++) {
      if (m === o || inBucket(b, m)) continue;
      if (needRoom && room(m) <= 0) continue;
      if (best < 0 || better(b, m, best)) best = m;
    }
    return best;
  };
  const better = (b: number, m: number, than: number): boolean => {
    const hasRoom = room(m) > 0;
    if (hasRoom !== room(than) > 0) return hasRoom;
    // Without room anywhere, the member least over its target (the shedding step evens it out).
    if (!hasRoom && room(m) !== room(than)) return room(m) > room(than);
    const filler = holds(b, m);
    if (filler !== holds(b, than)) return filler;
    const o = owner[b] as number;
    const pm = pair[o * E + m] ?? 0;
    const pt = pair[o * E + than] ?? 0;
    if (pm !== pt) return pm < pt;
    if (room(m) !== room(than)) return room(m) > room(than);
    return m < than;
  };
  const give = (b: number, at: number, m: number, replaces: string | null): void => {
    const list = slots[b] as Slot[];
    const o = owner[b] as number;
    const old = list[at];
    if (old !== undefined && old.m < E) {
      load[old.m] = (load[old.m] ?? 0) - 1;
      pair[o * E + old.m] = (pair[o * E + old.m] ?? 0) - 1;
    }
    // Re-targeting a slot given in this round is still one move, from what it replaced; handing
    // it back to the member that held it before this round is no move at all.
    const original = old?.fresh === true ? old.original : old;
    list[at] =
      original !== undefined && original.m === m
        ? original
        : { m, complete: holds(b, m), fresh: true, replaces: old?.fresh === true ? old.replaces : replaces, ...(original === undefined ? {} : { original }) };
    load[m] = (load[m] ?? 0) + 1;
    pair[o * E + m] = (pair[o * E + m] ?? 0) + 1;
  };

  /** What moving slot `at` of bucket `b` costs against the budget: 0 if it was given this round. */
  const cost = (b: number, at: number): number => ((slots[b] as Slot[])[at]!.fresh ? 0 : 1);

  /**
   * Members above target give one backup each per turn to the best member with room that may
   * take it: of the owner whose buckets they back most; within that, slots given this round
   * first (re-targeting costs no move; only those if `freshOnly`), then incoming ones (nothing
   * copied yet), then the highest-numbered buckets. Returns the budget used.
   */
  const shed = (limit: number, freshOnly: boolean): number => {
    let used = 0;
    // Per source, its candidates grouped by the bucket's owner: it gives up first a bucket of the
    // owner whose buckets it backs most, so that each owner's backups stay spread out.
    const sources: { m: number; groups: Map<number, { list: [number, number][]; next: number }> }[] = [];
    for (let m = 0; m < E; m++) if (room(m) < 0) sources.push({ m, groups: new Map() });
    if (sources.length === 0) return 0;
    const byMember = new Map(sources.map((source) => [source.m, source]));
    for (let b = buckets - 1; b >= 0; b--) {
      (slots[b] as Slot[]).forEach((slot, at) => {
        const source = byMember.get(slot.m);
        if (source === undefined || (freshOnly && !slot.fresh)) return;
        const o = owner[b] as number;
        let group = source.groups.get(o);
        if (group === undefined) source.groups.set(o, (group = { list: [], next: 0 }));
        group.list.push([b, at]);
      });
    }
    const order = (b: number, at: number): number => {
      const slot = (slots[b] as Slot[])[at]!;
      return slot.fresh ? 0 : slot.complete ? 2 : 1;
    };
    for (const source of sources) {
      // The sort is stable, so highest-numbered buckets stay first within each kind.
      for (const group of source.groups.values()) group.list.sort(([b1, a1], [b2, a2]) => order(b1, a1) - order(b2, a2));
    }
    /** Gives one of the source's backups to a member with room; false when none can go. */
    const giveOne = (source: (typeof sources)[number]): boolean => {
      for (;;) {
        let best: number | undefined;
        for (const o of source.groups.keys()) {
          if (best === undefined || (pair[o * E + source.m] ?? 0) > (pair[best * E + source.m] ?? 0) || ((pair[o * E + source.m] ?? 0) === (pair[best * E + source.m] ?? 0) && o < best)) best = o;
        }
        if (best === undefined) return false;
        const group = source.groups.get(best)!;
        // A candidate no member with room may take now never becomes takeable: rooms only shrink.
        for (; group.next < group.list.length; group.next++) {
          const [b, at] = group.list[group.next]!;
          if ((slots[b] as Slot[])[at]?.m !== source.m || used + cost(b, at) > limit) continue;
          const m = receiver(b, true);
          if (m < 0) continue;
          used += cost(b, at);
          give(b, at, m, ids[source.m] as string);
          group.next++;
          return true;
        }
        source.groups.delete(best);
      }
    };
    let active = sources;
    for (let turn = 0; active.length > 0 && turn < buckets * Math.max(1, replicas); turn++) {
      active = active.filter((source) => room(source.m) < 0 && giveOne(source));
    }
    return used;
  };

  /**
   * Which members get a ceil is a tie-break (apportion.ts) blind to who may take which backup. A
   * member left with room on a ceil while another sits one over a floor it could have had as a
   * ceil: the ceil passes to the latter, balanced either way, and no backup has to move for it.
   */
  const canTakeCeil = (y: number): boolean => fractional[y] === 1 && targets[y] === floors[y];
  /** A member with room whose target is a ceil it could give up, or -1. */
  const ceilToGive = (): number => {
    for (let x = 0; x < E; x++) if (room(x) > 0 && (targets[x] ?? 0) > (floors[x] ?? 0)) return x;
    return -1;
  };
  const handOverCeils = (): void => {
    for (let y = 0; y < E; y++) {
      if (room(y) >= 0 || !canTakeCeil(y)) continue;
      const x = ceilToGive();
      if (x < 0) return;
      targets[x] = (targets[x] ?? 0) - 1;
      targets[y] = (targets[y] ?? 0) + 1;
    }
  };

  /**
   * What shedding could not place directly: a member above target whose every backup is of a
   * bucket that each member with room owns or already backs. Moves along the cheapest chain
   * x -> y -> ... -> z (z has room; each step hands one backup on to a member that may take it,
   * or hands a ceil back: a member on a floor it could have as a ceil takes the ceil of another,
   * who then passes a backup on), found by a shortest-path search over the members where
   * re-targeting a slot given this round costs nothing and moving an earlier backup costs one
   * move. Each step stays legal applied in order: a bucket met twice on a shortest chain is met
   * at members it does not hold at that point.
   */
  const repair = (limit: number): void => {
    let used = 0;
    for (let round = 0; round < buckets * Math.max(1, replicas); round++) {
      const sources: number[] = [];
      for (let m = 0; m < E; m++) if (room(m) < 0) sources.push(m);
      if (sources.length === 0) return;
      const held: [number, number][][] = Array.from({ length: E }, () => []);
      for (let b = 0; b < buckets; b++) (slots[b] as Slot[]).forEach((slot, at) => slot.m < E && held[slot.m]?.push([b, at]));
      const dist = new Int32Array(E).fill(UNREACHED);
      const via: ([from: number, b: number, at: number] | undefined)[] = new Array(E);
      const done = new Uint8Array(E);
      const queue: number[] = [];
      for (const m of sources) {
        dist[m] = 0;
        queue.push(m);
      }
      let target = -1;
      // Dijkstra over 0/1 weights with a sorted frontier: E is small, each pop scans it once.
      while (queue.length > 0) {
        queue.sort((a, b) => (dist[a] ?? 0) - (dist[b] ?? 0) || a - b);
        const x = queue.shift() as number;
        if (done[x] === 1) continue;
        done[x] = 1;
        if (room(x) > 0) {
          target = x;
          break;
        }
        // x at a floor it could have as a ceil takes one over from y, who passes the unit on.
        if (canTakeCeil(x)) {
          for (let y = 0; y < E; y++) {
            if (done[y] === 1 || (targets[y] ?? 0) <= (floors[y] ?? 0) || (dist[x] ?? 0) >= (dist[y] ?? 0)) continue;
            dist[y] = dist[x] ?? 0;
            via[y] = [x, -1, -1];
            queue.push(y);
          }
        }
        for (const [b, at] of held[x] ?? []) {
          const step = (dist[x] ?? 0) + cost(b, at);
          const o = owner[b] as number;
          for (let y = 0; y < E; y++) {
            if (done[y] === 1 || y === o || inBucket(b, y) || step >= (dist[y] ?? 0)) continue;
            dist[y] = step;
            via[y] = [x, b, at];
            queue.push(y);
          }
        }
      }
      if (target < 0) return;
      // The chain from its source: sources have no `via`, and a shortest chain visits each member
      // once, so E steps bound it.
      const chain: [from: number, b: number, at: number, to: number][] = [];
      for (let y = target; via[y] !== undefined && chain.length < E; y = via[y]![0]) chain.unshift([...via[y]!, y]);
      // Applied from its source, each step stays legal too. Under a budget too small for the whole
      // chain, its first steps still go (the member they leave above target continues it in a
      // later round), so rate-limited rounds always make progress.
      for (const [x, b, at, y] of chain) {
        if (b < 0) {
          targets[x] = (targets[x] ?? 0) + 1;
          targets[y] = (targets[y] ?? 0) - 1;
          continue;
        }
        if (used + cost(b, at) > limit) return;
        used += cost(b, at);
        give(b, at, y, ids[x] as string);
      }
    }
  };

  // 1. Refill lost slots: not rate limited, a bucket below its count is at risk.
  for (let b = 0; b < buckets; b++) {
    const list = slots[b] as Slot[];
    const lost = vacated[b] as string[];
    for (let k = 0; list.length < (needed[b] ?? 0) && k <= replicas; k++) {
      let m = receiver(b, true);
      if (m < 0) m = receiver(b, false);
      if (m < 0) throw new Error(`backup planner: no member may back up bucket ${b} (bug)`);
      give(b, list.length, m, lost.shift() ?? null);
    }
  }

  let budget = Math.max(0, input.maxMoves - inFlight);

  // 2. Replace backups on draining members, in turns, highest-numbered buckets first.
  const drainingSources: [number, number][][] = draining.map(() => []);
  for (let b = buckets - 1; b >= 0; b--) {
    (slots[b] as Slot[]).forEach((slot, at) => {
      if (slot.m >= E) drainingSources[slot.m - E]?.push([b, at]);
    });
  }
  for (let turn = 0; budget > 0; turn++) {
    let any = false;
    for (const list of drainingSources) {
      const next = list[turn];
      if (next === undefined || budget <= 0) continue;
      any = true;
      const [b, at] = next;
      let m = receiver(b, true);
      if (m < 0) m = receiver(b, false);
      // A draining member's slot always has a taker: it is not eligible, so at least r eligible
      // non-owners exist and at most r - 1 of them are in the bucket.
      if (m < 0) throw new Error(`backup planner: no member may take bucket ${b}'s backup from a draining member (bug)`);
      give(b, at, m, ids[(slots[b] as Slot[])[at]!.m] as string);
      budget--;
    }
    if (!any) break;
  }

  // 3. Members above target shed to members with room: directly where a member with room may
  // take one of their backups, else along the cheapest chain (repair).
  // Re-targeting slots given this round costs nothing, so that goes first, chains included;
  // only then do earlier backups move.
  shed(0, true);
  repair(0);
  handOverCeils();
  budget -= shed(budget, false);
  repair(budget);

  // 4. Retiring partners: keep complete copies that leave until their replacements are synced.
  const backups: string[][] = new Array<string[]>(buckets);
  const incoming: IncomingBackup[] = [];
  const moves: BackupMove[] = [];
  for (let b = 0; b < buckets; b++) {
    const list = slots[b] as Slot[];
    backups[b] = list.map((slot) => ids[slot.m] as string);
    for (const slot of list) if (slot.fresh) moves.push({ bucket: b, from: slot.replaces, to: ids[slot.m] as string });
    const waiting = list.filter((slot) => !slot.complete);
    if (waiting.length === 0) continue;
    const o = owner[b] as number;
    const completeCount = list.length - waiting.length;
    let need = Math.min(before[b] ?? 0, (needed[b] ?? 0) + 1) - (1 + completeCount);
    const staying = new Set(list.filter((slot) => slot.complete).map((slot) => slot.m));
    const earlier = partners[b];
    const leaving = (holders[b] as number[])
      .filter((m) => m !== o && !staying.has(m))
      .sort((x, y) => Number([...(earlier?.values() ?? [])].includes(y)) - Number([...(earlier?.values() ?? [])].includes(x)) || x - y);
    const partnerOf = new Map<Slot, number>();
    const take = (slot: Slot, m: number): void => {
      if (need <= 0 || partnerOf.has(slot) || [...partnerOf.values()].includes(m) || !leaving.includes(m)) return;
      partnerOf.set(slot, m);
      need--;
    };
    // Keep earlier pairings, then pair a move with the backup it replaces, then the rest in order.
    for (const slot of waiting) if (!slot.fresh && earlier?.has(slot.m) === true) take(slot, earlier.get(slot.m) as number);
    for (const slot of waiting) if (slot.fresh && slot.replaces !== null) take(slot, indexOf(slot.replaces));
    for (const slot of waiting) for (const m of leaving) take(slot, m);
    for (const slot of waiting) {
      const partner = partnerOf.get(slot);
      incoming.push({ bucket: b, id: ids[slot.m] as string, retiring: partner === undefined ? null : (ids[partner] as string) });
    }
  }
  return { backups, incoming, moves, targets, minimum };
}
