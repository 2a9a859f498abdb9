/**
 * The split-brain gate at a node's entry points (lesson 5 of DESIGN.md): a node that cannot show
 * that a majority of the committed layout's members heard from it lately serves no session: it
 * activates none and runs no turn. It has three states:
 *
 * - `serving`: it holds the lease (below).
 * - `renewing`: the lease lapsed less than a grace ago (half a grace if members it is connected
 *   to are suspect), or the node is still joining: as far as it can tell yet, a late
 *   acknowledgement (a slow peer, a short pause, a busy event loop) rather than a partition.
 *   Calls and turns wait, in order, without running.
 * - `minority`: the lease lapsed longer ago than that, fewer members than a majority are connected
 *   at all, or the cluster declared the node down. Every call and every waiting turn fails with
 *   `NoQuorum`, at once, until a majority hears from it again.
 *
 * The evidence is a lease, not a count of open connections. Gossip carries its sender's clock, and
 * the recipient echoes it back (`ClusterMember`). An echo of time `t` from member M proves that M
 * heard this node at `t` or later. M therefore still counts this node reachable until
 * `t + suspectAfterMs`, and no majority can declare this node down (and fail its sessions over)
 * without M's vote (majorities intersect). So with a majority of echoes no older than
 * `quorumGraceMs < suspectAfterMs`, this node stops before anyone can take its sessions. This
 * holds whatever the network does one way or the other, and however long the process was stopped:
 * stale frames read after a pause carry echoes of stamps from before it. (A leaver the layout
 * dropped has no vote: it needs echoes from enough members to meet every majority, `acksNeeded`.)
 *
 * `QuorumView` is what the lease is computed from. The main thread's `ClusterMember` holds it; a
 * worker thread gets a copy on an absolute clock and computes the same lease itself. `QuorumGate`
 * answers "may a call or a turn run now" at one entry point, counts refusals and notes when the
 * lease was lost and regained.
 */
import { NoQuorum } from '@wadi/core';

/**
 * What a lease is computed from: when each member of the committed layout this node is connected
 * to last acknowledged it (this node itself: Infinity), on one clock, and how many members the
 * layout has. No acks at all: the node may serve nothing (it was declared down). `reachable`:
 * whether its connections reach a majority (connected, not suspect).
 */
export interface QuorumView {
  acks: readonly number[];
  members: number;
  graceMs: number;
  reachable: boolean;
  /** Still joining (restarted with a layout, not admitted yet): it waits to find out, it is not known to be cut off. */
  joining?: boolean;
  /**
   * Not a member of the layout (it is leaving, and the layout dropped it while it still hands
   * off what it owed): it has no vote of its own, and its lease needs acknowledgements from
   * enough members that every majority of them includes one (see `acksNeeded`).
   */
  outside?: boolean;
}

export type GateState = 'serving' | 'renewing' | 'minority';

/** Until when the node may serve (its clock), and how many of the layout's members it reached within the grace. */
export interface QuorumLease {
  until: number;
  reached: number;
  members: number;
}

/** Serving with no layout, alone, or after a completed leave: nothing to fence against. */
export const UNFENCED: QuorumView = { acks: [Infinity], members: 1, graceMs: 1, reachable: true };

export function majorityOf(members: number): number {
  return Math.floor(members / 2) + 1;
}

/**
 * How many acknowledgements (a member's own counts as one) a lease needs: enough that no majority
 * of the layout's members can be found that did not hear from this node lately, so none can have
 * declared it down. For a member, itself and others, that is a majority; for a node outside the
 * layout, `members - majority + 1` others, which is one fewer when the member count is even.
 */
export function acksNeeded(view: QuorumView): number {
  const majority = majorityOf(view.members);
  return view.outside === true ? view.members - majority + 1 : majority;
}

export function leaseOf(view: QuorumView, now: number): QuorumLease {
  const needed = acksNeeded(view);
  const acks = [...view.acks].sort((a, b) => b - a);
  const reached = acks.filter((at) => at + view.graceMs > now).length;
  const until = acks.length >= needed ? acks[needed - 1]! + view.graceMs : -Infinity;
  return { until, reached, members: view.members };
}

/** The gate's state under `view` at `now` (see the module comment). */
export function gateState(view: QuorumView, now: number): GateState {
  const lease = leaseOf(view, now);
  if (now < lease.until) return 'serving';
  if (view.acks.length === 0) return 'minority';
  if (view.joining === true) return 'renewing';
  return now - lease.until < (view.reachable ? view.graceMs : view.graceMs / 2) ? 'renewing' : 'minority';
}

/** Shifts a view's times by `offset` (from one thread's clock to an absolute one, or back). */
export function shiftView(view: QuorumView, offset: number): QuorumView {
  return { ...view, acks: view.acks.map((at) => at + offset) };
}

export interface QuorumGateStatus {
  state: GateState;
  /** Whether calls and turns run here now. */
  serving: boolean;
  /** Members of the layout reached within the grace (this node included), of `members`. */
  reached: number;
  members: number;
  /** Since when (this gate's clock) the lease has been lost, or null while serving. */
  lostAt: number | null;
  /** How many times the lease was lost since the start. */
  losses: number;
  /** Calls and turns refused with `NoQuorum` here. */
  refused: number;
}

export class QuorumGate {
  refused = 0;
  losses = 0;
  readonly #node: string;
  readonly #view: () => QuorumView;
  readonly #now: () => number;
  readonly #log: ((level: 'info' | 'warn', message: string) => void) | undefined;
  #lostAt: number | undefined;
  #minority = false;
  /** The last view seen and its lease's end: a worker's view changes a few times a second, its turns far more often. */
  #seen: QuorumView | undefined;
  #seenUntil = -Infinity;

  constructor(node: string, view: () => QuorumView, now: () => number, log?: (level: 'info' | 'warn', message: string) => void) {
    this.#node = node;
    this.#view = view;
    this.#now = now;
    this.#log = log;
  }

  /** The lease now. */
  lease(): QuorumLease {
    return leaseOf(this.#view(), this.#now());
  }

  /**
   * May a turn run now: undefined (yes), 'wait' (renewing: hold it and ask again), or the
   * `NoQuorum` to fail it with (minority; counted as a refusal).
   */
  check(): NoQuorum | 'wait' | undefined {
    const view = this.#view();
    const now = this.#now();
    if (view !== this.#seen) {
      this.#seen = view;
      this.#seenUntil = leaseOf(view, now).until;
    }
    // The common case, on every turn: the lease holds.
    if (now < this.#seenUntil && this.#lostAt === undefined) return undefined;
    const state = gateState(view, now);
    if (state === 'serving') return undefined;
    const lease = leaseOf(view, now);
    this.#note(lease, state);
    if (state === 'renewing') return 'wait';
    this.refused++;
    return new NoQuorum(this.#node, lease.reached, lease.members);
  }

  /**
   * Whether a call may be routed on now: a `NoQuorum` (counted) only while in a minority. A call
   * passed on while the lease is being renewed waits at the turn gate of whoever runs it.
   */
  refusal(): NoQuorum | undefined {
    const answer = this.check();
    return answer === 'wait' ? undefined : answer;
  }

  /** Whether calls are served now (the lease holds), without noting anything: for observers. */
  serving(): boolean {
    return gateState(this.#view(), this.#now()) === 'serving';
  }

  /** Notes a loss or a recovery of the lease (call it regularly: the lease runs out with time alone). */
  tick(): void {
    const view = this.#view();
    const now = this.#now();
    this.#note(leaseOf(view, now), gateState(view, now));
  }

  status(): QuorumGateStatus {
    const view = this.#view();
    const now = this.#now();
    const lease = leaseOf(view, now);
    const state = gateState(view, now);
    this.#note(lease, state);
    return { state, serving: state === 'serving', reached: lease.reached, members: lease.members, lostAt: this.#lostAt ?? null, losses: this.losses, refused: this.refused };
  }

  #note(lease: QuorumLease, state: GateState): void {
    const now = this.#now();
    if (state !== 'serving' && this.#lostAt === undefined) {
      this.#lostAt = now;
      this.losses++;
    }
    if (state === 'minority' && !this.#minority) {
      this.#minority = true;
      this.#log?.('warn', `no quorum: reaching ${lease.reached} of ${lease.members} layout members; refusing every call (NoQuorum) until a majority answers`);
    }
    if (state === 'serving' && this.#lostAt !== undefined) {
      if (this.#minority) this.#log?.('info', `quorum regained after ${Math.round(now - this.#lostAt)} ms: serving sessions again (${this.refused} calls refused so far)`);
      this.#lostAt = undefined;
      this.#minority = false;
    }
  }
}
