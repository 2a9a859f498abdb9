/**
 * One node's whole side of the cluster protocol, without I/O: it drives the `ClusterMember`
 * (membership, layouts) and the `HandoffTracker` (buckets gained), serves the previous owner's
 * side of handoffs and each member's part of a rebuild, and routes directory updates between
 * nodes to the owners of their buckets.
 *
 * A real node (`@wadi/node`'s cluster-node.ts) drives it over WebSockets with a wall clock and
 * worker threads holding the bucket actors; the testkit's simulated node drives the very same code
 * over a simulated network with a virtual clock. Everything that could differ between the two is
 * behind `NodeProtocolIO` and `NodeDirectories`.
 */
import { Kind, type Envelope, type TellEnvelope } from '@wadi/core';
import { BUCKET_ACTOR } from './bucket-host.js';
import { ClusterMember, type ClusterIO, type ClusterMemberOptions } from './cluster-member.js';
import { HandoffTracker, type HandoffOptions } from './handoff.js';
import { ownerIds, type Layout } from './layout.js';
import type { ClusterMessage, DirectoryEntry } from './messages.js';
import type { ReplicaLag } from './replication.js';

/** How often a node asks its workers what they have not caught up yet of the incoming backups. */
const LAG_POLL_MS = 500;
/** How often a node sends its (unchanged) lag to the others anyway: a new coordinator needs it. */
const LAG_REPEAT_MS = 2000;
import { QuorumGate, type QuorumView } from './quorum-gate.js';

/**
 * The node's bucket actors, wherever they run (worker threads in a real node). Calls take effect
 * in the order they are made: an export or a report asked after `applyLayout` sees that layout.
 */
export interface NodeDirectories {
  /** Gives the bucket actors (and the session routers and hosts) the committed layout. */
  applyLayout(self: string, layout: Layout): void;
  /** Delivers a directory update to the bucket actor here. */
  deliver(update: TellEnvelope): void;
  /** Installs a handed-off or rebuilt directory; `done` once the bucket actor has it. */
  install(bucket: number, epoch: number, entries: DirectoryEntry[], done: () => void): void;
  /** Freezes and removes a lost bucket's directory; null when none is held here. */
  export(bucket: number, reply: (entries: DirectoryEntry[] | null) => void): void;
  /** What this node hosts in `bucket`. */
  report(bucket: number, reply: (entries: DirectoryEntry[]) => void): void;
  /**
   * Drops directory entries pointing at a node that is gone: `crashed` when it was declared down
   * (its sessions fail over to their replicas, and calls sent to it are lost), not when it left.
   */
  forgetNode(node: string, crashed: boolean): void;
  /**
   * An earlier incarnation of `node` is gone (a new one connected, or is in a layout), perhaps
   * before anyone declared it down: forwarding pointers to it lead nowhere, and session moves to or
   * from it will never finish. Its directory
   * entries stay: the new incarnation's resync on its first layout corrects them, and dropping
   * them here could drop what the new one registered already.
   */
  nodeRestarted(node: string, incarnation: number): void;
  /** Re-announces what this node hosts in `buckets` to their owners (see `BucketHost.resync`). */
  resync(buckets: readonly number[]): void;
  /**
   * What this node's workers have not caught up yet of the incoming backups (see
   * `Replication.lagging`). Without it, an incoming backup counts as synced once committed.
   */
  lagging?(reply: (lag: ReplicaLag) => void): void;
  /**
   * This node is leaving and owns no bucket any more: move every session it hosts to the owner of
   * its bucket in `layout` (rate limited), and call `done` once none is left.
   */
  evacuate(layout: Layout, done: () => void): void;
}

export interface NodeProtocolIO extends Omit<ClusterIO, 'committed' | 'memberDown'> {
  /** Sends a directory update to another node (best effort, like `send`). */
  sendUpdate(to: string, update: TellEnvelope): void;
  /** A layout was committed; the protocol has already applied it. */
  committed?(layout: Layout, previous: Layout | null): void;
  /** The driver's clock, for the quorum gate's checks between events (default: the time of the last event). */
  now?(): number;
}

export interface NodeProtocolOptions extends Omit<ClusterMemberOptions, 'handoffsDone'> {
  handoff?: Omit<HandoffOptions, 'self'>;
  /** Buckets whose directory updates may have been lost are re-announced at least this often (ms, default 2000). */
  resyncIntervalMs?: number;
}

export class NodeProtocol {
  readonly id: string;
  readonly member: ClusterMember;
  readonly handoffs: HandoffTracker;
  /** The split-brain gate of this node's main thread (calls from other nodes and clients, `node.ref()`): see quorum-gate.ts. */
  readonly quorum: QuorumGate;
  /** Directory updates that could not be routed (no layout yet, or the owner unreachable). */
  droppedUpdates = 0;
  readonly #io: NodeProtocolIO;
  readonly #directories: NodeDirectories;
  readonly #buckets: number;
  /** Buckets this node lost and has not handed off yet: a leave waits for them. */
  readonly #toHandOff = new Set<number>();
  /**
   * Buckets this node reported on for a rebuild, with the epoch of the layout that moved them: their
   * new owner rebuilds rather than pulls them for that layout, even if the report came before this
   * node committed it.
   */
  readonly #reportedFor = new Map<number, number>();
  /** The layout before the committed one, as this node saw it. */
  #previousLayout: Layout | null = null;
  /** Buckets each peer was sent directory updates for: if the connection breaks, they may be lost. */
  readonly #updatedVia = new Map<string, Set<number>>();
  /** Other nodes' updates this node passed on, per peer (their node -> buckets): if that connection breaks, their nodes re-announce. */
  readonly #forwardedVia = new Map<string, Map<string, Set<number>>>();
  /** Buckets whose updates may have been lost: re-announced to their current owners. */
  readonly #unsynced = new Set<number>();
  /** Buckets whose last update could not be sent (warned about once until one is). */
  readonly #failing = new Set<number>();
  readonly #resyncIntervalMs: number;
  #resyncedAt = -Infinity;
  #now = 0;
  /** Directories handed to the bucket actors and not yet installed there. */
  #installing = 0;
  /** The incarnation of each peer this node is connected to. */
  readonly #peers = new Map<string, number>();
  /** The highest incarnation seen of each other node (connections, layouts): a higher one means the earlier died. */
  readonly #incarnations = new Map<string, number>();
  #view: QuorumView | undefined;
  #viewAt = -1;
  /** A leaving node moves its sessions away once it owns no bucket; its leave completes after that. */
  #evacuation: 'idle' | 'running' | 'done' = 'idle';
  /** Each member's last lag report (this node's own included), by member id. */
  readonly #lags = new Map<string, { epoch: number; lagging: Set<string> }>();
  #lagAskedAt = -Infinity;
  #lagAsking = false;
  #lagSent = '';
  #lagSentAt = -Infinity;

  constructor(options: NodeProtocolOptions, io: NodeProtocolIO, directories: NodeDirectories) {
    this.id = options.self.id;
    this.#io = io;
    this.#directories = directories;
    this.#buckets = options.buckets;
    this.#resyncIntervalMs = options.resyncIntervalMs ?? 2000;
    const { handoff, resyncIntervalMs: _, ...memberOptions } = options;
    this.handoffs = new HandoffTracker(
      { self: this.id, incarnation: options.self.incarnation, ...handoff },
      {
        send: (to, message) => io.send(to, message),
        install: (bucket, epoch, entries, source) => this.#install(bucket, epoch, entries, source),
        log: io.log,
      },
    );
    this.member = new ClusterMember(
      {
        ...memberOptions,
        ...(memberOptions.backupSynced !== undefined || directories.lagging === undefined ? {} : { backupSynced: (bucket: number, member: { id: string }) => this.#backupSynced(bucket, member.id) }),
        handoffsDone: () => this.#toHandOff.size === 0 && this.handoffs.pending === 0 && (this.member.phase !== 'leaving' || this.#evacuation === 'done'),
      },
      {
        send: io.send,
        dial: io.dial,
        forget: io.forget,
        persist: io.persist,
        committed: (layout, previous) => this.#onLayout(layout, previous),
        memberDown: (id, crashed) => {
          this.handoffs.membersChanged(this.member.liveMembers());
          directories.forgetNode(id, crashed);
        },
        removed: io.removed,
        left: io.left,
        log: io.log,
      },
    );
    this.quorum = new QuorumGate(this.id, () => this.#quorumView(), () => io.now?.() ?? this.#now, (level, message) => io.log(level, message));
  }

  get layout(): Layout | null {
    return this.member.committed;
  }

  /** The member's quorum view, derived again only after it handled an event (the gate asks on every call). */
  #quorumView(): QuorumView {
    if (this.#view === undefined || this.#viewAt !== this.member.changes) {
      this.#view = this.member.quorumView();
      this.#viewAt = this.member.changes;
    }
    return this.#view;
  }

  /**
   * Notes the time before an inbound frame of any kind is handled (a session frame too): after a
   * stall, what is read first may be stale, so the quorum lease is voided before it is routed.
   */
  observe(now: number): void {
    this.#now = now;
    this.member.observe(now);
  }

  /** Buckets still moving to or from this node. */
  get handoffsPending(): number {
    return this.handoffs.pending + this.#toHandOff.size + this.#installing;
  }

  start(now: number): void {
    this.member.start(now);
  }

  /** Whether this node is moving its sessions away (leaving), or has. */
  get evacuation(): 'idle' | 'running' | 'done' {
    return this.#evacuation;
  }

  tick(now: number): void {
    this.#now = now;
    this.#evacuateIfDrained();
    this.member.tick(now);
    this.handoffs.tick(now);
    this.quorum.tick();
    if (now - this.#resyncedAt >= this.#resyncIntervalMs) this.#resync();
    this.#pollLag(now);
  }

  /** Asks the workers what they have not caught up yet, and tells the members when it changed. */
  #pollLag(now: number): void {
    const lagging = this.#directories.lagging;
    if (lagging === undefined || this.#lagAsking || now - this.#lagAskedAt < LAG_POLL_MS || this.layout === null) return;
    this.#lagAskedAt = now;
    this.#lagAsking = true;
    lagging.call(this.#directories, (lag) => {
      this.#lagAsking = false;
      this.#lags.set(this.id, { epoch: lag.epoch, lagging: new Set(lag.pairs.map(([bucket, member]) => `${bucket}\u0000${member}`)) });
      const text = JSON.stringify(lag);
      if (text === this.#lagSent && this.#now - this.#lagSentAt < LAG_REPEAT_MS) return;
      this.#lagSent = text;
      this.#lagSentAt = this.#now;
      for (const member of this.member.liveMembers()) if (member !== this.id) this.#io.send(member, { t: 'replica-sync', epoch: lag.epoch, lagging: lag.pairs });
    });
  }

  /**
   * Whether incoming backup `member` of `bucket` has its whole copy: every live member reported on
   * the committed layout, and none still lists it.
   */
  #backupSynced(bucket: number, member: string): boolean {
    const layout = this.layout;
    if (layout === null) return false;
    const name = `${bucket}\u0000${member}`;
    for (const id of this.member.liveMembers()) {
      if (!layout.members.some((m) => m.id === id)) continue;
      const lag = this.#lags.get(id);
      if (lag === undefined || lag.epoch !== layout.epoch || lag.lagging.has(name)) return false;
    }
    return true;
  }

  connected(peer: { id: string; incarnation: number }, now: number): void {
    this.#now = now;
    this.#peers.set(peer.id, peer.incarnation);
    this.#seen(peer.id, peer.incarnation);
    this.member.connected(peer, now);
    // A new connection may be the way to an owner that updates could not reach.
    this.#resync();
  }

  disconnected(id: string, now: number): void {
    this.#now = now;
    this.#peers.delete(id);
    this.member.disconnected(id, now);
    // Updates in flight on the broken connection are lost with it.
    const buckets = this.#updatedVia.get(id);
    if (buckets !== undefined) for (const bucket of buckets) this.#unsynced.add(bucket);
    this.#updatedVia.delete(id);
    for (const [origin, forwarded] of this.#forwardedVia.get(id) ?? []) for (const bucket of forwarded) this.#askResync(origin, bucket);
    this.#forwardedVia.delete(id);
  }

  leave(now: number): void {
    this.member.leave(now);
  }

  /** A cluster message from another node (already validated by `parseClusterMessage`). */
  receive(from: string, message: ClusterMessage, now: number): void {
    switch (message.t) {
      case 'handoff-request':
        this.#handOff(from, message.bucket, message.epoch);
        return;
      case 'report-request':
        this.#report(from, message.bucket, message.epoch);
        return;
      case 'handoff-data':
      case 'handoff-refused':
      case 'report':
        this.handoffs.receive(from, message);
        return;
      case 'replica-sync':
        this.#lags.set(from, { epoch: message.epoch, lagging: new Set(message.lagging.map(([bucket, member]) => `${bucket}\u0000${member}`)) });
        return;
      default:
        this.member.receive(from, message, now);
    }
  }

  /** An envelope from another node: only directory updates cross nodes so far. */
  receiveUpdate(from: string, envelope: Envelope): void {
    if (!isDirectoryUpdate(envelope, this.#buckets)) {
      this.#io.log('warn', `refused an envelope from ${from}: not a directory update`, { peer: from });
      return;
    }
    // What a node says it hosts after the cluster declared it down (it reconnected after a
    // partition, on its way out) would outlive it: every member already forgot its sessions.
    const incarnation = this.#peers.get(from);
    if (envelope[4][1] === from && incarnation !== undefined && this.member.isGone(from, incarnation)) {
      this.droppedUpdates++;
      return;
    }
    if (envelope[3] === 'resync') {
      // Updates of this node's that a node passed on toward a bucket's owner were lost there.
      if (envelope[4][1] === this.id) this.#unsynced.add(Number(envelope[2]));
      return;
    }
    // The answer to this node's claims goes to its worker of the bucket; anyone else's is refused.
    if (envelope[3] === 'stale' && envelope[4][1] !== this.id) return;
    this.#directories.deliver(envelope);
  }

  /**
   * A directory update from a bucket actor here, for a bucket this node may not own; or a bucket
   * actor's request that the node an update came from re-announce the bucket ('resync').
   */
  routeUpdate(update: TellEnvelope): void {
    const bucket = Number(update[2]);
    // The node whose session the update is about: another one when a bucket actor here passes it on.
    const origin = update[4][1] as string;
    if (update[3] === 'resync') {
      if (origin === this.id) this.#unsynced.add(bucket);
      else this.#askResync(origin, bucket);
      return;
    }
    if (update[3] === 'stale') {
      if (origin === this.id) return this.#directories.deliver(update);
      try {
        this.#io.sendUpdate(origin, update);
      } catch {
        // It asks again with its next re-announcement.
      }
      return;
    }
    const layout = this.layout;
    const member = layout === null || this.#outOfCluster() ? undefined : layout.members[layout.owners[bucket]!];
    if (member === undefined) {
      this.droppedUpdates++;
      if (origin !== this.id) this.#askResync(origin, bucket);
      return;
    }
    const owner = member.id;
    if (owner === this.id) {
      this.#directories.deliver(update);
      return;
    }
    try {
      // The owner is that incarnation: a restarted process under its id is not (yet) the owner.
      if (this.#peers.get(owner) !== member.incarnation) throw new Error(`not connected to ${owner} (incarnation ${member.incarnation})`);
      this.#io.sendUpdate(owner, update);
      let buckets = this.#updatedVia.get(owner);
      if (buckets === undefined) this.#updatedVia.set(owner, (buckets = new Set()));
      buckets.add(bucket);
      if (origin !== this.id) {
        let byOrigin = this.#forwardedVia.get(owner);
        if (byOrigin === undefined) this.#forwardedVia.set(owner, (byOrigin = new Map()));
        let forwarded = byOrigin.get(origin);
        if (forwarded === undefined) byOrigin.set(origin, (forwarded = new Set()));
        forwarded.add(bucket);
      }
      this.#failing.delete(bucket);
    } catch (error) {
      // The owner is unreachable or overloaded: the bucket is re-announced to whoever owns it later.
      this.droppedUpdates++;
      if (!this.#failing.has(bucket)) this.#io.log('warn', `directory update for bucket ${bucket} not sent to ${owner}: ${(error as Error).message}; it will be re-announced`);
      this.#failing.add(bucket);
      this.#unsynced.add(bucket);
      // Another node's update is lost here unless that node re-announces the bucket.
      if (origin !== this.id) this.#askResync(origin, bucket);
    }
  }

  /**
   * Asks node `origin` to re-announce what it hosts in `bucket`: an update of its that this node
   * passed on may be lost. It travels as updates do (a sync is the truth of a node's bucket, where
   * replaying the lost update later could bring back a session removed meanwhile). If `origin`
   * cannot be reached either, the connection it sent the update on broke, and it re-announces anyway.
   */
  #askResync(origin: string, bucket: number): void {
    try {
      this.#io.sendUpdate(origin, [Kind.Tell, BUCKET_ACTOR, String(bucket), 'resync', [[], origin, 0, 0]]);
    } catch {
      // See above.
    }
  }

  /** Re-announces the buckets whose updates may have been lost (a failed one marks its bucket again). */
  #resync(): void {
    this.#resyncedAt = this.#now;
    if (this.#unsynced.size === 0 || this.layout === null || this.#outOfCluster()) return;
    const buckets = [...this.#unsynced];
    this.#unsynced.clear();
    this.#directories.resync(buckets);
  }

  /** Left, or declared down: the members forgot what this node hosts, and must not learn it again. */
  #outOfCluster(): boolean {
    return this.member.phase === 'left' || this.member.phase === 'removed';
  }

  /** The bucket actors holding `buckets` were replaced: rebuild those directories from the members. */
  rebuild(buckets: readonly number[]): void {
    const layout = this.layout;
    if (layout === null) return;
    this.#directories.applyLayout(this.id, layout);
    this.handoffs.rebuild(buckets, layout.epoch);
  }

  /** Notes an incarnation of node `id`; a newer one than before means the earlier one is gone. */
  #seen(id: string, incarnation: number): void {
    if (id === this.id) return;
    const known = this.#incarnations.get(id);
    if (known !== undefined && known >= incarnation) return;
    this.#incarnations.set(id, incarnation);
    if (known !== undefined) this.#directories.nodeRestarted(id, incarnation);
  }

  #onLayout(layout: Layout, previous: Layout | null): void {
    this.#previousLayout = previous;
    for (const member of layout.members) this.#seen(member.id, member.incarnation);
    const owners = ownerIds(layout);
    // Only the owner in the layout just before a new one is ever asked for a bucket's directory,
    // so what is left to hand off is what this incarnation (not an earlier self, whose
    // directories died with it) owned in `previous` and does not own now; anything older can no
    // longer be pulled and its new owner rebuilt it.
    this.#toHandOff.clear();
    const rebuiltElsewhere: number[] = [];
    if (previous !== null) {
      for (let bucket = 0; bucket < previous.owners.length; bucket++) {
        if (!this.#ownedBySelf(previous, bucket) || owners[bucket] === this.id) continue;
        // Its new owner already rebuilt it (it had skipped a layout): nobody will pull this copy.
        if ((this.#reportedFor.get(bucket) ?? 0) >= layout.epoch) rebuiltElsewhere.push(bucket);
        else this.#toHandOff.add(bucket);
      }
    }
    for (const [bucket, epoch] of this.#reportedFor) if (epoch < layout.epoch) this.#reportedFor.delete(bucket);
    this.#directories.applyLayout(this.id, layout);
    // A report drops the copy of a lost bucket that will never be pulled (after the layout that lost it).
    for (const bucket of rebuiltElsewhere) this.#directories.report(bucket, () => undefined);
    this.handoffs.layoutCommitted(layout, previous, this.member.liveMembers());
    this.#io.committed?.(layout, previous);
    this.#evacuateIfDrained();
  }

  #evacuateIfDrained(): void {
    const layout = this.layout;
    if (this.#evacuation !== 'idle' || this.member.phase !== 'leaving' || layout === null) return;
    if (layout.members.some((member) => member.id === this.id)) return;
    this.#evacuation = 'running';
    this.#io.log('info', 'evacuating the sessions hosted here', {});
    this.#directories.evacuate(layout, () => {
      this.#evacuation = 'done';
      this.#io.log('info', 'every session hosted here has moved', {});
    });
  }

  /** The previous owner's side of a handoff: freeze and ship the bucket's directory. */
  #handOff(requester: string, bucket: number, epoch: number): void {
    const layout = this.layout;
    const refuse = (reason: string): void => this.#io.send(requester, { t: 'handoff-refused', bucket, epoch, reason });
    if (layout === null || layout.epoch < epoch) return; // not there yet: the requester retries.
    if (layout.epoch > epoch) return refuse(`this node holds epoch ${layout.epoch}`);
    if (layout.members[layout.owners[bucket]!]?.id !== requester) return refuse(`${requester} does not own bucket ${bucket} in epoch ${epoch}`);
    // Only the owner right before `epoch` holds the current directory: a node that skipped a
    // layout (or lost the bucket earlier) may hold a stale copy.
    const previous = this.#previousLayout;
    if (previous === null || previous.epoch !== epoch - 1 || !this.#ownedBySelf(previous, bucket)) {
      return refuse(`this node did not own bucket ${bucket} in epoch ${epoch - 1}`);
    }
    this.#directories.export(bucket, (entries) => {
      if (entries === null) return refuse('no directory for it here');
      this.#toHandOff.delete(bucket);
      this.#io.send(requester, { t: 'handoff-data', bucket, epoch, entries });
    });
  }

  #ownedBySelf(layout: Layout, bucket: number): boolean {
    const owner = layout.members[layout.owners[bucket]!];
    return owner?.id === this.id && owner.incarnation === this.member.incarnation;
  }

  /** A member's part of a rebuild: what this node hosts in the bucket. */
  #report(requester: string, bucket: number, epoch: number): void {
    this.#reportedFor.set(bucket, Math.max(epoch, this.#reportedFor.get(bucket) ?? 0));
    this.#directories.report(bucket, (entries) => {
      // This node will never be asked to hand the bucket off any more.
      this.#toHandOff.delete(bucket);
      this.#io.send(requester, { t: 'report', bucket, epoch, entries });
    });
  }

  #install(bucket: number, epoch: number, entries: DirectoryEntry[], source: 'handoff' | 'rebuild' | 'new'): void {
    this.#installing++;
    const done = (): void => void this.#installing--;
    if (source !== 'rebuild') return this.#directories.install(bucket, epoch, entries, done);
    // A rebuild asks the other members; this node's own sessions in the bucket are added here.
    this.#directories.report(bucket, (local) => this.#directories.install(bucket, epoch, [...entries, ...local], done));
  }
}

function isDirectoryUpdate(envelope: Envelope, buckets: number): envelope is TellEnvelope {
  if (!Array.isArray(envelope) || envelope[0] !== Kind.Tell || envelope[1] !== BUCKET_ACTOR || typeof envelope[2] !== 'string') return false;
  const bucket = Number(envelope[2]);
  const args = envelope[4] as unknown;
  if (!Number.isInteger(bucket) || bucket < 0 || bucket >= buckets || !Array.isArray(args)) return false;
  const [subject, node, worker, hops, version] = args as unknown[];
  if (typeof node !== 'string' || !Number.isSafeInteger(worker) || !Number.isSafeInteger(hops)) return false;
  switch (envelope[3]) {
    case 'register':
    case 'unregister':
      return typeof subject === 'string' && (version === undefined || (Number.isSafeInteger(version) && (version as number) >= 0));
    case 'tier':
      return typeof subject === 'string' && Number.isSafeInteger(version) && (version as number) >= 0 && ((args as unknown[])[5] === 0 || (args as unknown[])[5] === 1);
    case 'sync':
      return (
        Array.isArray(subject) &&
        subject.every((item) => Array.isArray(item) && (item.length === 2 || (item.length === 3 && item[2] === 1)) && typeof item[0] === 'string' && Number.isSafeInteger(item[1]))
      );
    case 'stale':
      return Array.isArray(subject) && subject.every((key) => typeof key === 'string');
    case 'claim':
      return (
        typeof (args as unknown[])[4] === 'string' &&
        Array.isArray(subject) &&
        subject.every((item) => Array.isArray(item) && item.length === 4 && typeof item[0] === 'string' && item.slice(1).every((n: unknown) => Number.isSafeInteger(n) && (n as number) >= 0))
      );
    case 'resync':
      return Array.isArray(subject) && subject.length === 0;
    default:
      return false;
  }
}
