/**
 * One node's view of the cluster, as a deterministic state machine: membership (join through
 * seeds, gossip, graceful leave), failure detection with indirect confirmation, election of the
 * coordinator, and the commit of layouts by a majority of the previous layout's members.
 *
 * It does no I/O and reads no clock: the driver (a real node, or the simulator) calls `connected`,
 * `disconnected`, `receive` and `tick` with the current time, and carries out what the state
 * machine asks for through `ClusterIO`. The same code therefore runs over WebSockets and inside a
 * simulated network.
 *
 * Safety rests on three rules, not on the election:
 * - a member accepts at most one proposal per epoch and never one at or below what it committed;
 * - a layout is committed only when a majority of the previous layout's members accepted it;
 * - a new coordinator first learns the highest epoch a majority holds, and proposes above it.
 */
import { InvalidArgument } from '@wadi/core';
import { backupsOf, bucketsOf, MAX_REPLICAS, ownedCounts, type Layout, type LayoutMember } from './layout.js';
import { oldestMember, type ElectionPolicy } from './election.js';
import { MemberTable, type MemberEntry, type ObservedState } from './membership.js';
import type { ClusterMessage } from './messages.js';
import { planLayout } from './planner.js';
import { UNFENCED, leaseOf, type QuorumLease, type QuorumView } from './quorum-gate.js';

export interface ClusterTimings {
  /** Gossip (which doubles as the heartbeat) to every member this often. */
  heartbeatMs: number;
  /** A member not heard from for this long becomes suspect. */
  suspectAfterMs: number;
  /** While a member is suspect, ask others whether they can reach it this often. */
  probeIntervalMs: number;
  /** A suspect is declared down after this long, if enough others confirm they cannot reach it. */
  downAfterMs: number;
  /** Resend a proposal or a state request to members that have not answered after this long. */
  retryMs: number;
  /** Abandon a proposal that no majority accepted within this long, and plan again. */
  proposalTimeoutMs: number;
  /** The first seed forms a new cluster if no other seed answers within this long. */
  formAfterMs: number;
  /** Wait this long after a change before planning, so that a burst of joins makes one layout. */
  settleMs: number;
  /** A graceful leave gives up waiting for its handoffs after this long. */
  leaveTimeoutMs: number;
  /**
   * The quorum lease: this node serves sessions only while a majority of the committed layout's
   * members (itself included) acknowledged, within this long, gossip it sent. It must stay below
   * `suspectAfterMs`: a member acknowledging at time t still counts this node reachable until
   * t + suspectAfterMs, so no majority can declare this node down before its lease ran out.
   * Default: `suspectAfterMs - heartbeatMs` (1500 ms with the defaults).
   */
  quorumGraceMs: number;
}

export const DEFAULT_TIMINGS: ClusterTimings = {
  heartbeatMs: 500,
  suspectAfterMs: 2000,
  probeIntervalMs: 500,
  downAfterMs: 1000,
  retryMs: 500,
  proposalTimeoutMs: 5000,
  formAfterMs: 3000,
  settleMs: 100,
  leaveTimeoutMs: 60_000,
  quorumGraceMs: 1500,
};

/** The grace that fits `timings` when none is given: a heartbeat less than `suspectAfterMs` (at least half of it). */
export function defaultQuorumGrace(timings: Omit<ClusterTimings, 'quorumGraceMs'>): number {
  return Math.max(timings.suspectAfterMs - timings.heartbeatMs, timings.suspectAfterMs / 2);
}

/** What a member keeps in its data directory, so a restart (or a new coordinator) resumes from it. */
export interface PersistedClusterState {
  committed: Layout | null;
  accepted: Layout | null;
}

/** What the state machine asks its driver to do. None of these may throw into the state machine. */
export interface ClusterIO {
  /** Sends to a connected member (best effort: lost messages are retried by timers). */
  send(to: string, message: ClusterMessage): void;
  /** Keeps a connection to `url` (redialled by the transport until `forget`). */
  dial(url: string): void;
  forget(url: string): void;
  /** Must be durable before the call returns: an accept is only sent after it. */
  persist(state: PersistedClusterState): void;
  /** A layout was committed (or learned); `previous` is the one it replaces. */
  committed(layout: Layout, previous: Layout | null): void;
  /** This incarnation was declared down by the others: it must stop serving. */
  removed(reason: string): void;
  /** A graceful leave completed: the process may exit. */
  left(): void;
  /** A member was declared down (`crashed`), or left (its leave completed): its sessions are gone from directories. */
  memberDown?(id: string, crashed: boolean): void;
  log(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void;
}

export interface ClusterMemberOptions {
  self: { id: string; incarnation: number; url: string; workers: number };
  buckets: number;
  /** URLs of nodes to join through. Empty, or this node's own URL first, lets it form a cluster. */
  seeds: readonly string[];
  timings?: Partial<ClusterTimings>;
  election?: ElectionPolicy;
  persisted?: PersistedClusterState;
  /** Bucket moves per layout (default: all at once; the handoffs themselves are rate limited); also bounds live backup moves in flight. */
  maxMovesPerLayout?: number;
  /** R: backups per bucket besides its owner (default 1; 0: none). At most MAX_REPLICAS. */
  replicas?: number;
  /**
   * Whether incoming backup `member` of `bucket` holds its whole copy, so the backup it replaces
   * may go. Default: yes once a layout naming it is committed, since nothing copies session
   * state to backups yet; the replication part answers from the copies it made.
   */
  backupSynced?: (bucket: number, member: { id: string; incarnation: number }) => boolean;
  /** Whether this node finished handing off what it owned (a leave waits for it). Default: yes. */
  handoffsDone?: () => boolean;
}

export interface MemberStatus {
  id: string;
  url: string;
  incarnation: number;
  state: ObservedState;
}

export interface ClusterStatus {
  coordinator: string | undefined;
  epoch: number;
  members: MemberStatus[];
  layout: Layout | null;
  /** Whether this node reaches a majority of the committed layout's members. */
  quorum: boolean;
  /** The quorum lease (see `ClusterTimings.quorumGraceMs`): serving while `now < lease.until`. */
  lease: QuorumLease;
  /** Stalls detected (a clock jump of `quorumGraceMs` or more between two events), and the last one's length (ms). */
  stalls: number;
  lastStallMs: number;
}

interface Suspicion {
  since: number;
  round: number;
  lastProbeAt: number;
  /** Members that said, in this suspicion, that they cannot reach the suspect either. */
  confirmed: Set<string>;
  /** When a member last said it can reach the suspect. */
  refutedAt: number;
}

interface Proposal {
  layout: Layout;
  /**
   * Ids whose accepts count, in groups that each need a majority: the members of the layout it
   * was planned from and, when that one was only accepted, also those of the last committed one.
   */
  voters: Set<string>[];
  accepted: Set<string>;
  startedAt: number;
  sentAt: number;
}

interface Recovery {
  round: number;
  replies: Map<string, { committed: Layout | null; accepted: Layout | null }>;
  sentAt: number;
}

type Phase = 'joining' | 'member' | 'leaving' | 'left' | 'removed';

export class ClusterMember {
  readonly id: string;
  readonly incarnation: number;
  readonly url: string;
  readonly timings: ClusterTimings;
  readonly #options: ClusterMemberOptions;
  readonly #io: ClusterIO;
  readonly #election: ElectionPolicy;
  readonly #table: MemberTable;
  #phase: Phase = 'joining';
  #committed: Layout | null;
  #accepted: Layout | null;
  /** The cluster this node belongs to, once it formed one or learned a layout ('' before). */
  #cluster: string;
  /** Senders already reported as belonging to another cluster (reported once each). */
  readonly #foreign = new Set<string>();
  /** The highest epoch this node has seen anywhere: proposals go above it. */
  #epochFloor: number;
  readonly #connected = new Set<string>();
  readonly #lastHeard = new Map<string, number>();
  readonly #suspects = new Map<string, Suspicion>();
  #coordinator: string | undefined;
  #recovery: Recovery | undefined;
  /** The layout that planning starts from, learned by recovery (the highest a majority holds). */
  #base: Layout | null = null;
  /** The highest committed layout recovery found (the base may be a merely accepted one above it). */
  #baseCommitted: Layout | null = null;
  #recovered = false;
  #proposal: Proposal | undefined;
  #round = 0;
  #startedAt = 0;
  #lastGossipAt = -Infinity;
  #planAfter = 0;
  /**
   * What planning was last given when it found the layout unchanged (see `#planNext`). The
   * coordinator plans on every tick; a steady cluster then costs one string comparison, not a
   * plan over every bucket.
   */
  #unchangedPlanInput = '';
  #unchangedPlanBase: Layout | null = null;
  #leaveStartedAt = 0;
  #hadQuorum = true;
  #now = 0;
  /** Counts the events handled (each public event method bumps it when it is done): what was derived from the state before is stale. */
  #changes = 0;
  /**
   * The quorum lease. Gossip carries the sender's clock (`at`) and echoes the last `at` it heard
   * from the recipient (`echo`). An echo of `at` proves the member heard this node at `at` or
   * later, so it cannot count this node unreachable before `at + suspectAfterMs`.
   */
  /** Per connected member: the last `at` it sent (echoed back to it), reset with its connection. */
  readonly #stampFrom = new Map<string, number>();
  /** Per connected member: the latest own `at` it echoed back, reset with its connection. */
  readonly #acked = new Map<string, number>();
  /** When the connection to each member came up: only echoes of stamps sent since count. */
  readonly #connectedAt = new Map<string, number>();
  /** When this node last handled any event: a longer gap is a stall (the process was paused, or starved). */
  #lastEventAt: number | undefined;
  #stalls = 0;
  #lastStallMs = 0;
  /** When the last stall was noticed: for a while after it, this node declares nobody down. */
  #stalledAt = -Infinity;
  /** The leave completed by handing everything off: what is left here only forwards calls. */
  #leftCleanly = false;

  constructor(options: ClusterMemberOptions, io: ClusterIO) {
    this.#options = options;
    const replicas = options.replicas;
    if (replicas !== undefined && (!Number.isInteger(replicas) || replicas < 0 || replicas > MAX_REPLICAS)) {
      throw new InvalidArgument(`replicas must be an integer from 0 to ${MAX_REPLICAS}, got ${String(replicas)}`);
    }
    const maxMoves = options.maxMovesPerLayout;
    if (maxMoves !== undefined && (typeof maxMoves !== 'number' || !Number.isInteger(maxMoves) || maxMoves < 0)) {
      throw new InvalidArgument(`maxMovesPerLayout must be an integer >= 0, got ${JSON.stringify(maxMoves)}`);
    }
    if (options.election !== undefined && typeof options.election?.elect !== 'function') {
      throw new InvalidArgument('election must be an ElectionPolicy: an object with an elect(members) method');
    }
    this.#io = io;
    this.id = options.self.id;
    this.incarnation = options.self.incarnation;
    this.url = options.self.url;
    const timings = { ...DEFAULT_TIMINGS, ...options.timings };
    for (const [name, value] of Object.entries(options.timings ?? {})) {
      if (!(name in DEFAULT_TIMINGS)) throw new InvalidArgument(`timings.${name} is not a timing (known: ${Object.keys(DEFAULT_TIMINGS).join(', ')})`);
      if (value !== undefined && !(typeof value === 'number' && value > 0 && Number.isFinite(value))) {
        throw new InvalidArgument(`timings.${name} must be a positive number of milliseconds, got ${JSON.stringify(value)}`);
      }
    }
    if (timings.heartbeatMs >= timings.suspectAfterMs) {
      throw new InvalidArgument(`timings.heartbeatMs (${timings.heartbeatMs}) must be below suspectAfterMs (${timings.suspectAfterMs}): a member would be suspected between two heartbeats`);
    }
    if (options.timings?.quorumGraceMs === undefined) timings.quorumGraceMs = defaultQuorumGrace(timings);
    if (!(timings.quorumGraceMs > 0 && timings.quorumGraceMs < timings.suspectAfterMs)) {
      throw new InvalidArgument(
        `quorumGraceMs must be above 0 and below suspectAfterMs (${timings.suspectAfterMs}), got ${timings.quorumGraceMs}: a minority must stop before the majority can count it unreachable`,
      );
    }
    this.timings = timings;
    this.#election = options.election ?? oldestMember;
    this.#table = new MemberTable({ ...options.self, state: 'joining', upNumber: 0 });
    this.#committed = options.persisted?.committed ?? null;
    this.#accepted = options.persisted?.accepted ?? null;
    this.#cluster = this.#committed?.cluster ?? '';
    this.#epochFloor = Math.max(this.#committed?.epoch ?? 0, this.#accepted?.epoch ?? 0);
  }

  // events from the driver

  start(now: number): void {
    try {
      this.#start(now);
    } finally {
      this.#changes++;
    }
  }

  #start(now: number): void {
    this.#now = this.#startedAt = now;
    this.#lastEventAt = now;
    for (const url of this.#contacts()) this.#io.dial(url);
    if (this.#contacts().length === 0) this.#form('no seeds to join');
  }

  /** Whom to join through: the seeds, and the members of the last layout this node committed. */
  #contacts(): string[] {
    const urls = [...this.#options.seeds, ...(this.#committed?.members.map((member) => member.url) ?? [])];
    return [...new Set(urls)].filter((url) => url !== this.url);
  }

  /**
   * A node may form a cluster after `formAfterMs` without hearing of one if it is the first seed,
   * or if it was a member of the layout it remembers (a whole cluster restarting, in any order:
   * the first node back forms under the remembered cluster id, and cannot commit until a majority
   * of that layout's members have rejoined it). A joiner that only learned a layout may not.
   */
  #mayFormAfterWaiting(): boolean {
    return this.#options.seeds[0] === this.url || (this.#committed?.members.some((member) => member.id === this.id) ?? false);
  }

  connected(peer: { id: string; incarnation: number }, now: number): void {
    try {
      this.#onConnected(peer, now);
    } finally {
      this.#changes++;
    }
  }

  #onConnected(peer: { id: string; incarnation: number }, now: number): void {
    this.observe(now);
    this.#connected.add(peer.id);
    // A new connection may be a new incarnation (another clock): its stamps start afresh. The
    // member may have suspected this node when the old connection closed, so only echoes of
    // stamps sent from now on count; until the first, the lease is being renewed (calls wait).
    this.#stampFrom.delete(peer.id);
    this.#connectedAt.set(peer.id, now);
    this.#acked.set(peer.id, now - this.timings.quorumGraceMs);
    this.#heard(peer.id);
    this.#sendGossip(peer.id);
  }

  disconnected(id: string, now: number): void {
    try {
      this.#disconnected(id, now);
    } finally {
      this.#changes++;
    }
  }

  #disconnected(id: string, now: number): void {
    this.observe(now);
    this.#connected.delete(id);
    // A member whose connection closed suspects this node at once: its acknowledgement no longer counts.
    this.#stampFrom.delete(id);
    this.#acked.delete(id);
    // A closed connection is a strong hint: start confirming at once instead of waiting for silence.
    if (this.#isWatched(id)) this.#suspect(id);
  }

  receive(from: string, message: ClusterMessage, now: number): void {
    try {
      this.#receive(from, message, now);
    } finally {
      this.#changes++;
    }
  }

  #receive(from: string, message: ClusterMessage, now: number): void {
    this.observe(now);
    if (this.#phase === 'removed' || this.#phase === 'left') return;
    if (this.#isForeign(from, message)) return;
    this.#heard(from);
    switch (message.t) {
      case 'gossip':
        this.#onGossip(from, message.members, message.epoch, message.buckets);
        return this.#onStamps(from, message.at, message.echo, message.answer === true);
      case 'probe': {
        const reachable = this.#connected.has(message.target) && now - (this.#lastHeard.get(message.target) ?? -Infinity) < this.timings.suspectAfterMs;
        return this.#io.send(from, { t: 'probe-reply', target: message.target, round: message.round, reachable });
      }
      case 'probe-reply':
        return this.#onProbeReply(from, message.target, message.round, message.reachable);
      case 'propose':
        return this.#onPropose(from, message.layout);
      case 'accept':
        return this.#onAccept(from, message.epoch);
      case 'reject':
        return this.#onReject(from, message.epoch, message.highest);
      case 'commit':
        return this.#learn(message.layout);
      case 'layout-request':
        if (this.#committed !== null) this.#io.send(from, { t: 'commit', layout: this.#committed });
        return;
      case 'state-request':
        return this.#io.send(from, { t: 'state-reply', round: message.round, committed: this.#committed, accepted: this.#accepted });
      case 'state-reply':
        return this.#onStateReply(from, message.round, message.committed, message.accepted);
    }
  }

  tick(now: number): void {
    try {
      this.#tick(now);
    } finally {
      this.#changes++;
    }
  }

  #tick(now: number): void {
    this.observe(now);
    if (this.#phase === 'removed' || this.#phase === 'left') return;
    if (now - this.#lastGossipAt >= this.timings.heartbeatMs) this.#gossipAll();
    this.#detectFailures();
    if (this.#phase === 'joining') {
      if (this.#mayFormAfterWaiting() && now - this.#startedAt >= this.timings.formAfterMs && !this.#knowsAnUpMember()) {
        this.#form('no other member answered');
      }
      return;
    }
    this.#watchQuorum();
    this.#elect();
    if (this.#coordinator === this.id) this.#coordinate();
    if (this.#phase === 'leaving') this.#continueLeave();
  }

  /** Begins a graceful leave: announced at once; done when a committed layout no longer has this node. */
  leave(now: number): void {
    try {
      this.#leave(now);
    } finally {
      this.#changes++;
    }
  }

  #leave(now: number): void {
    this.#now = now;
    if (this.#phase === 'left' || this.#phase === 'removed' || this.#phase === 'leaving') return;
    this.#leaveStartedAt = now;
    if (this.#phase === 'joining' || this.#table.live().every((member) => member.id === this.id)) {
      this.#finishLeave('no other member to hand off to');
      return;
    }
    if (!this.hasQuorum()) {
      // No layout can be committed from a minority, so a handoff would never come: the majority
      // side declares this node down and rebuilds its buckets from what the members host.
      this.#finishLeave('in a minority: nobody can take the buckets over');
      return;
    }
    this.#phase = 'leaving';
    this.#table.advance(this.id, 'leaving');
    this.#io.log('info', 'leaving the cluster', { id: this.id });
    this.#gossipAll();
    this.#elect();
  }

  // views

  get committed(): Layout | null {
    return this.#committed;
  }

  get coordinator(): string | undefined {
    return this.#coordinator;
  }

  get phase(): Phase {
    return this.#phase;
  }

  /** Bumped after every event this state machine handled: a view derived from it (`quorumView`) holds until it changes. */
  get changes(): number {
    return this.#changes;
  }

  /** Stalls detected so far (see `observe`). */
  get stalls(): number {
    return this.#stalls;
  }

  status(): ClusterStatus {
    const members = this.#table.all().map((entry) => ({
      id: entry.id,
      url: entry.url,
      incarnation: entry.incarnation,
      state: (entry.state !== 'down' && this.#suspects.has(entry.id) ? 'suspect' : entry.state) as ObservedState,
    }));
    members.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    return {
      coordinator: this.#coordinator,
      epoch: this.#committed?.epoch ?? 0,
      members,
      layout: this.#committed,
      quorum: this.hasQuorum(),
      lease: this.quorumLease(),
      stalls: this.#stalls,
      lastStallMs: this.#lastStallMs,
    };
  }

  /**
   * Notes the time of an event before it is handled. A gap of `quorumGraceMs` or more since the
   * previous one is a stall (SIGSTOP, a debugger, a starved process): whatever arrives next may
   * have been sent long ago, and the members may have declared this node down meanwhile. Every
   * acknowledgement from before it is void, so the lease holds again only once a majority
   * answered gossip sent after it. Drivers call this on every inbound frame as well, before
   * routing it: after a pause, sockets may be read before any timer fires.
   */
  observe(now: number): void {
    const last = this.#lastEventAt;
    this.#now = now;
    this.#lastEventAt = now;
    if (last === undefined || now - last < this.timings.quorumGraceMs) return;
    this.#stalls++;
    this.#lastStallMs = now - last;
    // Lapsed as of now: only acknowledgements of gossip sent from now on renew it.
    for (const id of this.#acked.keys()) this.#acked.set(id, now - this.timings.quorumGraceMs);
    // What this node knew of the others' liveness is as old as the stall: it starts afresh rather
    // than take the silence it slept through (and the connections that closed meanwhile) for their
    // failure. Nodes paused together must not declare the one that kept running down on waking.
    this.#stalledAt = now;
    for (const id of this.#lastHeard.keys()) this.#lastHeard.set(id, now);
    this.#suspects.clear();
    this.#io.log('warn', `stalled for ${Math.round(now - last)} ms: serving no session until a majority answers gossip sent from now on`, { stalledMs: Math.round(now - last) });
    if (this.#phase !== 'removed' && this.#phase !== 'left') this.#gossipAll();
    this.#changes++;
  }

  /**
   * What this node's quorum lease is computed from (see quorum-gate.ts): when each member of the
   * committed layout it is connected to last acknowledged its gossip. A node with no layout yet,
   * or alone in its layout, has nothing to be fenced from; nor has one that left after handing
   * everything off (it only forwards calls still on their way). A node the cluster declared down,
   * or that gave its leave up, serves nothing.
   */
  quorumView(): QuorumView {
    const layout = this.#committed;
    const graceMs = this.timings.quorumGraceMs;
    // Declared down, or gone without handing off (a leave given up in a minority, or timed out): serve nothing.
    if (this.#phase === 'removed' || (this.#phase === 'left' && !this.#leftCleanly)) return { acks: [], members: layout?.members.length ?? 1, graceMs, reachable: false };
    if (layout === null || this.#phase === 'left') return UNFENCED;
    const acks: number[] = [];
    for (const member of layout.members) {
      if (member.id === this.id) acks.push(Infinity);
      else if (this.#connected.has(member.id)) acks.push(this.#acked.get(member.id) ?? -Infinity);
    }
    const view: QuorumView = { acks, members: layout.members.length, graceMs, reachable: this.hasQuorum(), joining: this.#phase === 'joining' };
    // A leaver the layout has dropped has no vote of its own (`acksNeeded`).
    const outside = this.#phase === 'leaving' && !layout.members.some((member) => member.id === this.id);
    return outside ? { ...view, outside } : view;
  }

  /** Until when this node may serve sessions (its clock), and how many members it reaches. */
  quorumLease(): QuorumLease {
    return leaseOf(this.quorumView(), this.#now);
  }

  /** A gossip's stamps: remember the sender's, and take its echo of ours as an acknowledgement. */
  #onStamps(from: string, at: number | undefined, echo: number | undefined, answer: boolean): void {
    if (this.#phase === 'removed' || this.#phase === 'left' || !this.#connected.has(from)) return;
    // An echo from the future is not one of ours (a clock of another incarnation): ignore it.
    if (echo !== undefined && echo <= this.#now && echo >= (this.#connectedAt.get(from) ?? Infinity) && echo > (this.#acked.get(from) ?? -Infinity)) this.#acked.set(from, echo);
    if (at === undefined) return;
    this.#stampFrom.set(from, at);
    // Answer a heartbeat at once, so the sender's lease is renewed within a round trip of each of
    // its heartbeats; an answer is not answered (no ping-pong).
    if (!answer) this.#sendGossip(from, true);
  }

  /** A message from a node of another cluster (same ids, separate history) is ignored. */
  #isForeign(from: string, message: ClusterMessage): boolean {
    if (this.#cluster === '') return false;
    let theirs: string | undefined;
    if (message.t === 'gossip') theirs = message.cluster;
    else if (message.t === 'propose' || message.t === 'commit') theirs = message.layout.cluster;
    else if (message.t === 'state-reply') theirs = message.committed?.cluster ?? message.accepted?.cluster;
    if (theirs === undefined || theirs === '' || theirs === this.#cluster) return false;
    if (!this.#foreign.has(from)) {
      this.#foreign.add(from);
      this.#io.log('error', `${from} belongs to another cluster (${theirs}; this node's is ${this.#cluster}): ignoring it`, { from });
    }
    return true;
  }

  // membership

  #form(reason: string): void {
    if (this.#phase !== 'joining') return;
    // A cluster restarting from its data keeps its id; a new one is named after its first node.
    if (this.#cluster === '') this.#cluster = `${this.id}@${this.incarnation}`;
    this.#table.advance(this.id, 'up', this.#table.nextUpNumber());
    this.#phase = 'member';
    this.#io.log('info', `forming a cluster (${reason})`, { id: this.id, epoch: this.#committed?.epoch ?? 0 });
    this.#elect();
  }

  /**
   * Whether this node knows of an up member it can reach (not suspect): one to join through. An
   * up member nobody reaches (it left or crashed, and only stale gossip says it is up) must not
   * keep every restarted node joining forever: joiners declare nobody down. Forming stays safe:
   * a layout still needs a majority of the remembered one's members.
   */
  #knowsAnUpMember(): boolean {
    return this.#table.all().some((member) => member.id !== this.id && member.state === 'up' && !this.#suspects.has(member.id));
  }

  #onGossip(from: string, members: MemberEntry[], epoch: number, buckets: number): void {
    if (buckets !== this.#options.buckets) {
      this.#io.log('error', `member ${from} has ${buckets} buckets, this node ${this.#options.buckets}: ignoring it`, { from });
      return;
    }
    let changed = false;
    for (const incoming of members) {
      if (incoming.id === this.id) {
        const declaredDown = incoming.incarnation === this.incarnation && incoming.state === 'down';
        if (declaredDown && this.#phase === 'leaving') {
          this.#finishLeave('declared down while leaving');
          return;
        }
        if (declaredDown || incoming.incarnation > this.incarnation) {
          this.#remove(`the cluster declared ${this.id} (incarnation ${this.incarnation}) down`);
          return;
        }
        // Nodes that formed at once (a whole cluster restarting) each took admission number 1 and
        // then admitted the others: everyone must converge on one number per member, this node's
        // own included, or each would go on electing itself.
        const own = this.#table.get(this.id)!;
        if (incoming.incarnation === this.incarnation && own.state !== 'joining' && incoming.upNumber > own.upNumber) {
          this.#table.merge({ ...own, upNumber: incoming.upNumber });
          changed = true;
        }
        continue;
      }
      const before = this.#table.get(incoming.id);
      const merged = this.#table.merge(incoming);
      if (merged === undefined) continue;
      changed = true;
      if (merged.state === 'down') {
        this.#suspects.delete(merged.id);
        this.#io.forget(merged.url);
        this.#io.memberDown?.(merged.id, before?.state !== 'leaving');
      } else if (before === undefined || before.incarnation !== merged.incarnation || before.url !== merged.url) {
        if (before !== undefined && before.url !== merged.url) this.#io.forget(before.url);
        // Watch a newcomer from when we learn of it, not from when this node started.
        this.#lastHeard.set(merged.id, this.#now);
        this.#suspects.delete(merged.id);
        this.#io.dial(merged.url);
      }
    }
    if (this.#phase === 'joining' && this.#table.get(this.id)!.state === 'joining') {
      // Admitted by the coordinator: our own entry came back as up.
      const self = members.find((entry) => entry.id === this.id && entry.incarnation === this.incarnation);
      if (self !== undefined && self.state === 'up') {
        this.#table.merge(self);
        this.#phase = 'member';
        this.#io.log('info', 'joined the cluster', { id: this.id, upNumber: self.upNumber });
        changed = true;
      }
    }
    if (epoch > (this.#committed?.epoch ?? 0)) this.#io.send(from, { t: 'layout-request' });
    if (changed) {
      this.#planAfter = this.#now + this.timings.settleMs;
      this.#elect();
    }
  }

  #sendGossip(to: string, answer = false): void {
    const echo = this.#stampFrom.get(to);
    this.#io.send(to, {
      t: 'gossip',
      members: this.#table.all(),
      epoch: this.#committed?.epoch ?? 0,
      buckets: this.#options.buckets,
      cluster: this.#cluster,
      at: this.#now,
      ...(echo === undefined ? {} : { echo }),
      ...(answer ? { answer: true } : {}),
    });
  }

  #gossipAll(): void {
    this.#lastGossipAt = this.#now;
    for (const id of this.#connected) this.#sendGossip(id);
  }

  #remove(reason: string): void {
    if (this.#phase === 'removed') return;
    this.#phase = 'removed';
    this.#proposal = undefined;
    this.#io.log('error', reason, { id: this.id });
    this.#io.removed(reason);
  }

  #continueLeave(): void {
    const layout = this.#committed;
    const stillOwns = layout !== null && layout.members.some((member) => member.id === this.id);
    const timedOut = this.#now - this.#leaveStartedAt >= this.timings.leaveTimeoutMs;
    if (timedOut) {
      this.#io.log('warn', 'leaving without a completed handoff: timed out', { id: this.id });
      this.#finishLeave('timed out');
    } else if (!stillOwns && (this.#options.handoffsDone?.() ?? true)) {
      this.#finishLeave('handed off');
    }
  }

  #finishLeave(reason: string): void {
    this.#leftCleanly = reason === 'handed off' || reason === 'no other member to hand off to';
    this.#table.advance(this.id, 'down');
    this.#gossipAll();
    this.#phase = 'left';
    this.#io.log('info', `left the cluster (${reason})`, { id: this.id });
    this.#io.left();
  }

  // failure detection

  #heard(id: string): void {
    this.#lastHeard.set(id, this.#now);
    const suspicion = this.#suspects.get(id);
    if (suspicion !== undefined && this.#connected.has(id)) {
      this.#suspects.delete(id);
      this.#io.log('info', `member ${id} is reachable again`, { id });
    }
  }

  #isWatched(id: string): boolean {
    const entry = this.#table.get(id);
    return entry !== undefined && id !== this.id && entry.state !== 'down';
  }

  #suspect(id: string): void {
    if (this.#suspects.has(id)) return;
    this.#suspects.set(id, { since: this.#now, round: 0, lastProbeAt: -Infinity, confirmed: new Set(), refutedAt: -Infinity });
    this.#io.log('warn', `member ${id} is suspect`, { id });
  }

  #detectFailures(): void {
    for (const entry of this.#table.all()) {
      if (!this.#isWatched(entry.id)) continue;
      const silentFor = this.#now - (this.#lastHeard.get(entry.id) ?? this.#startedAt);
      if (silentFor >= this.timings.suspectAfterMs) this.#suspect(entry.id);
    }
    for (const [id, suspicion] of this.#suspects) {
      if (!this.#isWatched(id)) {
        this.#suspects.delete(id);
        continue;
      }
      if (this.#now - suspicion.lastProbeAt >= this.timings.probeIntervalMs) this.#probe(id, suspicion);
      if (this.#shouldDeclareDown(suspicion)) this.#declareDown(id);
    }
  }

  /** Helpers for an indirect probe: members this node reaches that are not themselves suspect. */
  #probeHelpers(target: string): string[] {
    return this.#table
      .live()
      .map((entry) => entry.id)
      .filter((id) => id !== this.id && id !== target && this.#connected.has(id) && !this.#suspects.has(id))
      .sort();
  }

  #probe(target: string, suspicion: Suspicion): void {
    suspicion.round = ++this.#round;
    suspicion.lastProbeAt = this.#now;
    for (const helper of this.#probeHelpers(target)) this.#io.send(helper, { t: 'probe', target, round: suspicion.round });
  }

  #onProbeReply(from: string, target: string, round: number, reachable: boolean): void {
    const suspicion = this.#suspects.get(target);
    if (suspicion === undefined || round !== suspicion.round) return;
    if (reachable) {
      suspicion.refutedAt = this.#now;
      suspicion.confirmed.delete(from);
    } else {
      suspicion.confirmed.add(from);
    }
  }

  /**
   * Down needs this node plus confirmations to make a majority of the live members, so one slow
   * link (or a minority side of a partition) evicts nobody; and nobody may have reached the
   * suspect recently.
   */
  #shouldDeclareDown(suspicion: Suspicion): boolean {
    if (this.#phase === 'joining') return false;
    // Just woken from a stall: what it sees (closed connections, silence) is its own doing.
    if (this.#now - this.#stalledAt < this.timings.suspectAfterMs) return false;
    if (this.#now - suspicion.since < this.timings.downAfterMs) return false;
    if (this.#now - suspicion.refutedAt < 2 * this.timings.probeIntervalMs) return false;
    // Count voters as commits do: the committed layout's members. Nodes admitted since (perhaps
    // on a minority side) may help probe, but must not turn a minority into a "majority".
    const layout = this.#committed;
    if (layout === null) return suspicion.confirmed.size + 1 >= majority(this.#table.live().length);
    const voters = new Set(layout.members.map((member) => member.id));
    let votes = voters.has(this.id) ? 1 : 0;
    for (const id of suspicion.confirmed) if (voters.has(id)) votes++;
    return votes >= majority(voters.size);
  }

  #declareDown(id: string): void {
    const entry = this.#table.advance(id, 'down');
    this.#suspects.delete(id);
    if (entry === undefined) return;
    this.#io.log('warn', `member ${id} (incarnation ${entry.incarnation}) declared down`, { id });
    this.#io.forget(entry.url);
    this.#io.memberDown?.(id, true);
    this.#gossipAll();
    this.#planAfter = this.#now;
    this.#elect();
  }

  // election and coordination

  #elect(): void {
    const coordinator = this.#phase === 'joining' ? undefined : this.#election.elect(this.#table.all());
    if (coordinator === this.#coordinator) return;
    this.#coordinator = coordinator;
    this.#recovery = undefined;
    this.#proposal = undefined;
    this.#recovered = false;
    if (coordinator === this.id) {
      this.#io.log('info', 'elected coordinator', { id: this.id, epoch: this.#epochFloor });
      this.#startRecovery();
    }
  }

  #coordinate(): void {
    this.#admitJoiners();
    if (!this.#recovered) {
      this.#continueRecovery();
      return;
    }
    if (this.#proposal !== undefined) {
      this.#continueProposal(this.#proposal);
      return;
    }
    if (this.#now >= this.#planAfter) this.#planNext();
  }

  /** Joiners this coordinator can reach become up, in order of admission. */
  #admitJoiners(): void {
    // A coordinator on a minority side admits nobody: its admissions could never be committed.
    if (!this.hasQuorum()) return;
    let admitted = false;
    for (const entry of this.#table.all()) {
      if (entry.state !== 'joining' || !this.#connected.has(entry.id) || this.#suspects.has(entry.id)) continue;
      this.#table.advance(entry.id, 'up', this.#table.nextUpNumber());
      this.#io.log('info', `admitted member ${entry.id}`, { id: entry.id, incarnation: entry.incarnation });
      admitted = true;
    }
    if (admitted) {
      this.#gossipAll();
      this.#planAfter = Math.max(this.#planAfter, this.#now + this.timings.settleMs);
    }
  }

  #startRecovery(): void {
    this.#recovery = { round: ++this.#round, replies: new Map(), sentAt: -Infinity };
    this.#recovery.replies.set(this.id, { committed: this.#committed, accepted: this.#accepted });
    this.#continueRecovery();
  }

  /**
   * A new coordinator first collects committed and accepted layouts from a majority of the
   * highest committed layout's members it hears of: majorities intersect, so it learns every
   * layout that could have been committed, and proposes above it.
   */
  #continueRecovery(): void {
    const recovery = this.#recovery;
    if (recovery === undefined) return;
    let highest: Layout | null = null;
    for (const reply of recovery.replies.values()) {
      if (reply.committed !== null && (highest === null || reply.committed.epoch > highest.epoch)) highest = reply.committed;
    }
    const voters = highest?.members.map((member) => member.id) ?? [];
    const answered = voters.filter((id) => recovery.replies.has(id)).length;
    if (answered >= quorum(voters.length)) {
      let base = highest;
      for (const reply of recovery.replies.values()) {
        this.#epochFloor = Math.max(this.#epochFloor, reply.committed?.epoch ?? 0, reply.accepted?.epoch ?? 0);
        // An accepted layout above every committed one may have been committed by a coordinator
        // that then died: plan from it, so nothing it moved is moved back.
        if (reply.accepted !== null && (base === null || reply.accepted.epoch > base.epoch)) base = reply.accepted;
      }
      this.#base = base;
      this.#baseCommitted = highest;
      this.#recovered = true;
      this.#recovery = undefined;
      this.#planAfter = this.#now;
      this.#io.log('info', 'coordinator resumes', { epoch: this.#epochFloor, from: answered, of: voters.length });
      return;
    }
    if (this.#now - recovery.sentAt >= this.timings.retryMs) {
      recovery.sentAt = this.#now;
      for (const id of this.#connected) {
        if (!recovery.replies.has(id)) this.#io.send(id, { t: 'state-request', round: recovery.round });
      }
    }
  }

  #onStateReply(from: string, round: number, committed: Layout | null, accepted: Layout | null): void {
    const recovery = this.#recovery;
    if (recovery === undefined || recovery.round !== round) return;
    recovery.replies.set(from, { committed, accepted });
    this.#continueRecovery();
  }

  /** Plans from the recovered base and proposes a layout if it differs from it. */
  #planNext(): void {
    const base = this.#highestKnown();
    const eligible = this.#table.all().filter((entry) => entry.state === 'up');
    const leaving = this.#table.all().filter((entry) => entry.state === 'leaving');
    if (eligible.length === 0) return;
    const key = (member: { id: string; incarnation: number }): string => `${member.id}@${member.incarnation}`;
    // The plan is a pure function of these (planner.ts): if they are what they were when the plan
    // last changed nothing, it would change nothing again.
    // Incoming backups make it depend on `backupSynced` too, which may change at any time: a base
    // with any is planned again every time (incoming backups exist only while copies are made).
    const input = `${this.#cluster}|${base?.epoch}|${this.#committed?.epoch}|${eligible.map(key).join(',')}|${leaving.map(key).join(',')}`;
    if (input === this.#unchangedPlanInput && base === this.#unchangedPlanBase && (base?.incoming ?? []).length === 0) return;
    const owners = base === null ? new Array<string | null>(this.#options.buckets).fill(null) : base.owners.map((owner) => key(base.members[owner]!));
    const replicas = this.#options.replicas ?? 1;
    const keyOf = (index: number): string => key(base!.members[index]!);
    const baseMembers = new Map((base?.members ?? []).map((member) => [key(member), member]));
    const backupSynced = this.#options.backupSynced;
    const plan = planLayout({
      buckets: this.#options.buckets,
      owners,
      members: [...eligible, ...leaving].map(key),
      draining: leaving.map(key),
      ...(this.#options.maxMovesPerLayout === undefined ? {} : { maxMoves: this.#options.maxMovesPerLayout }),
      replicas,
      ...(base === null ? {} : { backups: base.owners.map((_, bucket) => backupsOf(base, bucket).map(keyOf)) }),
      incoming: (base?.incoming ?? []).map(([bucket, member, retiring]) => ({ bucket, id: keyOf(member), retiring: retiring < 0 ? null : keyOf(retiring) })),
      synced: (bucket, id) => {
        const member = baseMembers.get(id);
        return backupSynced === undefined || member === undefined || backupSynced(bucket, member);
      },
    });
    // Keep the previous order of members so indexes stay readable across epochs; newcomers append.
    const byKey = new Map<string, MemberEntry>([...eligible, ...leaving].map((entry) => [key(entry), entry]));
    const order: LayoutMember[] = [];
    const seen = new Set<string>();
    const add = (k: string): void => {
      if (seen.has(k)) return;
      const entry = byKey.get(k);
      if (entry === undefined) return;
      seen.add(k);
      order.push({ id: entry.id, incarnation: entry.incarnation, url: entry.url, workers: entry.workers });
    };
    // Members that hold only backups (or a retiring copy) are members of the layout too.
    const used = new Set<string>(plan.owners);
    for (const list of plan.backups) for (const id of list) used.add(id);
    for (const entry of plan.incoming) if (entry.retiring !== null) used.add(entry.retiring);
    for (const member of base?.members ?? []) if (used.has(key(member))) add(key(member));
    for (const id of used) add(id);
    const index = new Map(order.map((member, i) => [key(member), i]));
    if (this.#cluster === '') return; // admitted, but no layout learned yet: nothing to plan from.
    const layout: Layout = {
      cluster: this.#cluster,
      epoch: this.#epochFloor + 1,
      buckets: this.#options.buckets,
      members: order,
      owners: plan.owners.map((owner) => index.get(owner)!),
      coordinator: this.id,
      ...backupFields(replicas, plan.backups, plan.incoming, index),
    };
    if (base !== null && base.epoch === this.#committed?.epoch && sameAssignment(base, layout)) {
      this.#unchangedPlanInput = input;
      this.#unchangedPlanBase = base;
      return;
    }
    // While a member is unreachable but not yet down, no voter that is still up leaves the layout:
    // dropping one (a leaver's drain) could hand the next change to a majority that includes the
    // unreachable member, which may never come back. Down members' buckets still move at once.
    const unresolved = [...this.#suspects.keys()].some((id) => this.#table.get(id)?.state !== 'down');
    if (unresolved && base !== null) {
      const kept = new Set(layout.members.map((member) => member.id));
      if (base.members.some((member) => !kept.has(member.id) && this.#table.get(member.id)?.state !== 'down')) return;
    }
    // A base that was only accepted may or may not have been committed: the new layout needs a
    // majority of its members and of the last committed layout's (joint consensus), so that a
    // proposal accepted by its proposer alone can never hand the cluster to that proposer.
    const committed = [this.#committed, this.#baseCommitted].reduce<Layout | null>((a, b) => (b !== null && (a === null || b.epoch > a.epoch) ? b : a), null);
    const voters = [new Set(base?.members.map((member) => member.id) ?? [])];
    if (committed !== null && base !== null && committed.epoch < base.epoch) voters.push(new Set(committed.members.map((member) => member.id)));
    this.#proposal = { layout, voters, accepted: new Set(), startedAt: this.#now, sentAt: -Infinity };
    this.#io.log('info', 'proposing layout', { epoch: layout.epoch, moves: plan.moves.length, members: order.map((member) => member.id) });
    this.#onPropose(this.id, layout);
  }

  /** The newest layout this coordinator knows of: what it committed or what recovery found. */
  #highestKnown(): Layout | null {
    const base = this.#base;
    const committed = this.#committed;
    if (base === null) return committed;
    if (committed === null) return base;
    return committed.epoch >= base.epoch ? committed : base;
  }

  #continueProposal(proposal: Proposal): void {
    if (this.#now - proposal.startedAt >= this.timings.proposalTimeoutMs) {
      this.#io.log('warn', 'proposal not accepted by a majority in time; planning again', { epoch: proposal.layout.epoch, accepted: [...proposal.accepted] });
      this.#proposal = undefined;
      this.#epochFloor = Math.max(this.#epochFloor, proposal.layout.epoch);
      this.#startRecovery();
      return;
    }
    if (this.#now - proposal.sentAt < this.timings.retryMs) return;
    proposal.sentAt = this.#now;
    for (const id of this.#connected) {
      const entry = this.#table.get(id);
      if (entry !== undefined && entry.state !== 'down' && !proposal.accepted.has(id)) this.#io.send(id, { t: 'propose', layout: proposal.layout });
    }
  }

  #onPropose(from: string, layout: Layout): void {
    const committedEpoch = this.#committed?.epoch ?? 0;
    const acceptedSame = this.#accepted !== null && this.#accepted.epoch === layout.epoch && this.#accepted.coordinator === layout.coordinator;
    if (!acceptedSame && (layout.epoch <= committedEpoch || layout.epoch <= (this.#accepted?.epoch ?? 0))) {
      const highest = Math.max(committedEpoch, this.#accepted?.epoch ?? 0);
      if (from === this.id) return;
      this.#io.send(from, { t: 'reject', epoch: layout.epoch, highest });
      return;
    }
    if (!acceptedSame) {
      this.#accepted = layout;
      this.#epochFloor = Math.max(this.#epochFloor, layout.epoch);
      this.#io.persist({ committed: this.#committed, accepted: this.#accepted });
    }
    if (from === this.id) this.#onAccept(this.id, layout.epoch);
    else this.#io.send(from, { t: 'accept', epoch: layout.epoch });
  }

  #onAccept(from: string, epoch: number): void {
    const proposal = this.#proposal;
    if (proposal === undefined || proposal.layout.epoch !== epoch) return;
    proposal.accepted.add(from);
    const enough = proposal.voters.every((group) => [...group].filter((id) => proposal.accepted.has(id)).length >= quorum(group.size));
    if (enough && proposal.accepted.has(this.id)) {
      this.#proposal = undefined;
      this.#learn(proposal.layout);
      for (const id of this.#connected) this.#io.send(id, { t: 'commit', layout: proposal.layout });
    }
  }

  #onReject(from: string, epoch: number, highest: number): void {
    const proposal = this.#proposal;
    if (proposal === undefined || proposal.layout.epoch !== epoch) return;
    this.#io.log('info', `proposal refused by ${from}: it holds epoch ${highest}`, { epoch });
    this.#proposal = undefined;
    this.#epochFloor = Math.max(this.#epochFloor, highest);
    this.#startRecovery();
  }

  /** Adopts a committed layout if it is newer than the one held; older ones are refused (fencing). */
  #learn(layout: Layout): void {
    const previous = this.#committed;
    if (previous !== null && layout.epoch <= previous.epoch) return;
    if (this.#cluster !== '' && layout.cluster !== this.#cluster) return;
    this.#cluster = layout.cluster;
    this.#committed = layout;
    this.#epochFloor = Math.max(this.#epochFloor, layout.epoch);
    this.#io.persist({ committed: layout, accepted: this.#accepted });
    const counts = Object.fromEntries(ownedCounts(layout));
    this.#io.log('info', 'layout committed', { epoch: layout.epoch, coordinator: layout.coordinator, owned: counts });
    this.#io.committed(layout, previous);
    if (this.#phase === 'leaving') this.#continueLeave();
  }

  /**
   * Whether this node reaches a majority of the committed layout's members (itself included).
   * Without it no layout can be committed on this side: it is in a minority, or alone.
   */
  hasQuorum(): boolean {
    const layout = this.#committed;
    if (layout === null || this.#phase === 'joining') return true;
    const reachable = layout.members.filter((member) => member.id === this.id || (this.#connected.has(member.id) && !this.#suspects.has(member.id)));
    return reachable.length >= majority(layout.members.length);
  }

  #watchQuorum(): void {
    const quorum = this.hasQuorum();
    if (quorum === this.#hadQuorum) return;
    this.#hadQuorum = quorum;
    if (quorum) this.#io.log('info', 'a majority of the layout\'s members is reachable again', { epoch: this.#committed?.epoch ?? 0 });
    else this.#io.log('warn', 'in a minority: fewer than a majority of the layout\'s members are reachable; no layout can change until they are', { epoch: this.#committed?.epoch ?? 0 });
  }

  /**
   * Whether incarnation `incarnation` of node `id` is out of the cluster as far as this node
   * knows: declared down (it failed, or left), or replaced by a later incarnation.
   */
  isGone(id: string, incarnation: number): boolean {
    const entry = this.#table.get(id);
    return entry !== undefined && (entry.incarnation > incarnation || (entry.incarnation === incarnation && entry.state === 'down'));
  }

  /** Ids of the members that are not down (this node included). */
  liveMembers(): string[] {
    return this.#table.live().map((entry) => entry.id);
  }

  /** Buckets this node owns in the committed layout. */
  ownedBuckets(): number[] {
    return this.#committed === null ? [] : bucketsOf(this.#committed, this.id);
  }
}

export function majority(voters: number): number {
  return Math.floor(voters / 2) + 1;
}

function sameAssignment(a: Layout, b: Layout): boolean {
  const key = (member: LayoutMember): string => `${member.id}@${member.incarnation}`;
  if (a.members.length !== b.members.length || !a.members.every((member, i) => key(member) === key(b.members[i]!))) return false;
  if ((a.replicas ?? 0) !== (b.replicas ?? 0) || !sameNumbers(a.backups ?? [], b.backups ?? [])) return false;
  if (!sameNumbers((a.incoming ?? []).flat(), (b.incoming ?? []).flat())) return false;
  return a.owners.every((owner, bucket) => owner === b.owners[bucket]);
}

function sameNumbers(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

/** The backup fields of a planned layout: none at all with no replicas, as layouts had before. */
function backupFields(
  replicas: number,
  backups: readonly (readonly string[])[],
  incoming: readonly { bucket: number; id: string; retiring: string | null }[],
  index: ReadonlyMap<string, number>,
): Pick<Layout, 'replicas' | 'backups' | 'incoming'> {
  if (replicas === 0) return {};
  const slots = new Array<number>(backups.length * replicas).fill(-1);
  backups.forEach((list, bucket) => list.forEach((id, k) => (slots[bucket * replicas + k] = index.get(id)!)));
  return {
    replicas,
    backups: slots,
    ...(incoming.length === 0 ? {} : { incoming: incoming.map((entry) => [entry.bucket, index.get(entry.id)!, entry.retiring === null ? -1 : index.get(entry.retiring)!] as [number, number, number]) }),
  };
}

/** Votes needed from the previous layout's members; with none (a new cluster) the proposer's own suffices. */
export function quorum(voters: number): number {
  return voters === 0 ? 0 : majority(voters);
}
