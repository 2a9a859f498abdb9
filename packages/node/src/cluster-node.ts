/**
 * Membership of a node in a cluster: drives the sans-IO `ClusterMember` state machine with real
 * I/O. It owns the WebSocket transport to the other nodes, the clock (a tick every
 * `tickMs`), the node's data directory (identity, incarnation, committed layout) and the HTTP
 * status endpoint.
 *
 * The state machine decides; this module only carries out what it asks (send, dial, persist) and
 * reports what happened (connections, messages, time).
 */
import { EventEmitter } from 'node:events';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import {
  CallFlag,
  Frame,
  NodeProtocol,
  isClientId,
  bucketsOf,
  ownedCounts,
  ownerIds,
  parseClusterMessage,
  validateLayout,
  type ClusterMessage,
  type ClusterStatus,
  type ClusterTimings,
  type DirectoryEntry,
  type DirectoryStats,
  type ElectionPolicy,
  type Layout,
  type NodeDirectories,
  type NodeProtocolIO,
  type PersistedClusterState,
  type QuorumView,
  type ReplicaLag,
  type ReplicationStats,
  shiftView,
} from '@wadi/cluster';
import { InvalidArgument, activationKey, bucketOf, type Envelope, type TellEnvelope } from '@wadi/core';
import { ClusterTransport, type PeerIdentity, type Rejection } from './internal/cluster-transport.js';
import { CloseCode } from './internal/handshake.js';

export interface ClusterOptions {
  /** This node's id (default `host:port`); stable across restarts. */
  id?: string;
  /** Address to listen on for other nodes (default 127.0.0.1). */
  host?: string;
  /** WebSocket port (default 7101; 0 picks a free one). */
  port?: number;
  /** URL other nodes dial, when it differs from ws://host:port (e.g. behind NAT). */
  advertisedUrl?: string;
  /** HTTP port for `GET /status` (none if undefined; 0 picks a free one). */
  httpPort?: number;
  /** URLs of nodes to join through. Empty: this node forms a new cluster. */
  seeds?: readonly string[];
  /** Directory for this node's durable state (identity, incarnation, committed layout). */
  dataDir?: string;
  /** The cluster secret every member proves it holds (default: the WADI_SECRET environment variable). */
  secret?: string;
  /** Nodes with another cluster name are refused (default 'wadi'). */
  clusterName?: string;
  /** Serve and dial `wss://` with this key and certificate (PEM files). */
  tls?: { keyFile: string; certFile: string; caFile?: string };
  timings?: Partial<ClusterTimings>;
  election?: ElectionPolicy;
  /** Largest WebSocket frame accepted from a peer (default 16 MiB). */
  maxPayloadBytes?: number;
  /** Bytes queued to one peer past which sends fail with `Overloaded` (default 8 MiB), until below the low mark (1 MiB). */
  highWaterMarkBytes?: number;
  lowWaterMarkBytes?: number;
  /** How often the state machine's clock ticks (default 100 ms). */
  tickMs?: number;
  /** Bucket moves per committed layout (default: all; handoffs are rate limited separately); also the live backup moves in flight. */
  maxMovesPerLayout?: number;
  /** Backups per bucket besides its owner, placed on other nodes by the coordinator (default 1; 0: none; at most 8). */
  replicas?: number;
  /** Bucket handoffs in flight at once (default 8). */
  maxHandoffs?: number;
  /** A handoff phase with no answer in this long is retried (default 2000 ms); after 3 tries the bucket is rebuilt. */
  handoffTimeoutMs?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

/** What the cluster side needs from the node that hosts the actors. */
export interface ClusterHost {
  readonly workers: number;
  readonly buckets: number;
  sessionCounts(): Promise<{
    memory: number;
    disk: number;
    expired: number;
    hops: Record<string, number>;
    routing: Record<string, number>;
    store: StoreStatus | null;
    /** Calls and turns the workers refused with `NoQuorum`; active sessions they dropped as older duplicates. */
    fencing: { refused: number; droppedDuplicates: number };
    replication: ReplicationStatus;
  }>;
  /** The main thread's quorum gate: calls from other nodes and clients, and `node.ref()` calls, are refused while it says why. */
  quorumGate(refusal: () => Error | undefined): void;
  /** The quorum view for the workers, on the absolute clock (`performance.timeOrigin + performance.now()`). */
  setQuorum(view: QuorumView): Promise<void>;
  /**
   * This node is a member now, as `self`; `toNode` queues a value for another member's cluster
   * connection (throws when it cannot), and `flushToNodes` sends what is queued at once.
   */
  joined(self: { node: string; incarnation: number }, toNode: (node: string, value: unknown, incarnation?: number) => void, flushToNodes: () => void): Promise<void>;
  /** Gives every thread the committed layout. */
  applyLayout(self: string, layout: Layout): Promise<void>;
  /** A session frame (`Deliver`) from another node. */
  deliverFrame(peer: string, value: unknown[]): void;
  /** A connection to another member is up (frames that waited for it go now). */
  peerConnected(peer: { id: string; incarnation: number }): void;
  /** Moves every session hosted here to the owners of their buckets; resolves once none is left. */
  evacuate(): Promise<void>;
  /** Delivers a directory update to the worker holding its bucket here. */
  deliverToBucket(envelope: TellEnvelope): void;
  installBucket(bucket: number, epoch: number, entries: DirectoryEntry[]): Promise<void>;
  exportBucket(bucket: number): Promise<DirectoryEntry[] | null>;
  reportBucket(bucket: number): Promise<DirectoryEntry[]>;
  forgetNode(node: string, crashed: boolean): Promise<void>;
  /** An earlier incarnation of `node` is gone: session moves to or from it are given up. */
  nodeRestarted(node: string, incarnation: number): Promise<void>;
  /** Every worker re-announces what it hosts in `buckets` to their owners. */
  resyncDirectories(buckets: number[]): Promise<void>;
  /** What the workers have not caught up yet of the incoming backups (see `Replication.lagging`). */
  replicationLag(): Promise<ReplicaLag>;
  directoryStats(): Promise<DirectoryStats>;
  lookupSession(bucket: number, key: string): Promise<{ node: string; worker: number; tier: 'memory' | 'disk' } | undefined>;
}

/** What `/status` says of this node's quorum lease, refusals and duplicate activations. */
export interface FencingStatus {
  /** Whether this node serves sessions now: a majority of the layout's members acknowledged it within the grace. */
  serving: boolean;
  /** Layout members reached within the grace (this node included), of `members`. */
  reached: number;
  members: number;
  /** When the lease was lost (ISO time), or null while serving. */
  lostAt: string | null;
  /** How many times the lease was lost since the start. */
  losses: number;
  /** Calls and turns refused with `NoQuorum` (main thread and workers). */
  refusedCalls: number;
  /** Stalls of this process detected (a clock jump of `quorumGraceMs` or more), and the last one's length. */
  stalls: number;
  lastStallMs: number;
  /** Live claims of sessions whose newer copy lived elsewhere (two activations), seen by the bucket owners here. */
  duplicateClaims: number;
  /** Active copies dropped here because a newer one lived elsewhere. */
  droppedDuplicates: number;
}

/** What `/status` says of the store stack, summed over the workers. */
export interface StoreStatus {
  /** Sessions demoted to disk, promoted back, and found in the shared tier since the start. */
  demoted: number;
  promoted: number;
  fromShared: number;
  /** Demotions whose write is not durable yet. */
  writing: number;
  failedWrites: number;
  /** Copies on this node's disk dropped because their bucket actor knew a newer one elsewhere (after a restart). */
  droppedStale: number;
  /** Expired sessions this node removed from the shared tier (the buckets it owns). */
  expiredFromShared: number;
  /** True while the disk refuses writes for lack of space: demotion has stopped, sessions stay in memory. */
  diskFull: boolean;
  /** Sessions in the shared tier: cluster-wide, not this node's (refreshed every few seconds); null without a shared tier or before its first count. */
  shared: number | null;
}

/** Below this many characters a cluster secret is reported as weak at start (cookie secrets are refused below it). */
const MIN_STRONG_SECRET = 16;

export interface NodeStatus {
  id: string;
  incarnation: number;
  url: string;
  coordinator: string | null;
  epoch: number;
  /** Whether this node reaches a majority of the layout's members (false: a minority side). */
  quorum: boolean;
  /** Split brain and fencing (docs/cluster.md, "Split brain and fencing"). */
  fencing: FencingStatus;
  members: { id: string; url: string; state: string; incarnation: number }[];
  buckets: { total: number; owned: number; byMember: Record<string, number>; handoffsPending: number; handoffsCompleted: number; rebuilt: number };
  directory: DirectoryStats & { droppedUpdates: number };
  /** `expired`: sessions dropped since the start because their type's `expiresAt` passed (parked or going idle). */
  sessions: { memory: number; disk: number; expired: number };
  /** `hops`: calls that sessions here received, by node-to-node hops taken; the rest are routing counters. */
  routing: { hops: Record<string, number> } & Record<string, unknown>;
  /** 'idle', or this leaving node's progress moving its sessions away. */
  evacuation: 'idle' | 'running' | 'done';
  /** The store stack (null without a disk tier): see docs/store.md. */
  store: StoreStatus | null;
  /** Session replication on this node, summed over its workers: see docs/cluster.md "Replication". */
  replication: ReplicationStatus;
}

/**
 * `shipped`/`acked`: session states sent to replica targets and acknowledged; `refused`: writes
 * refused (fencing); `replicasHeld`/`bytesHeld`: the replicas this node holds for sessions hosted
 * elsewhere (their memory cost); `adopted`: replicas taken over after a failure;
 * `pendingSyncAcks`: sync replies waiting for acknowledgements; `catchingUp`: sessions waiting to
 * be shipped whole to new targets; `releasedByMain`: sync replies for other nodes that the main
 * thread let go on the replicas' acknowledgements alone (held-replies.ts), without waiting for the
 * worker's word; `deliveredByReplicas`: of those, the ones the replicas delivered to their
 * callers themselves (the host sent nothing).
 */
export type ReplicationStatus = ReplicationStats & { releasedByMain: number; deliveredByReplicas: number };

/** Events: 'layout' (layout, previous), 'left', 'removed' (reason). */
export interface ClusterHandle {
  readonly id: string;
  readonly incarnation: number;
  readonly url: string;
  /** `http://host:port` of the status endpoint, if one was asked for. */
  readonly httpUrl: string | undefined;
  readonly events: EventEmitter;
  layout(): Layout | null;
  status(): Promise<NodeStatus>;
  /** Graceful leave: announce it, hand off every bucket, resolve once the cluster no longer needs this node. */
  leave(): Promise<void>;
  /** Closes connections and servers at once (after `leave`, or to simulate a crash in tests). */
  close(): Promise<void>;
  /**
   * What this node's bucket directory says about session (`type`, `id`): its location, undefined
   * if the directory has no entry, or 'not-owner' when another node owns the bucket.
   */
  lookup(type: string, id: string): Promise<{ node: string; worker: number; tier: 'memory' | 'disk' } | undefined | 'not-owner'>;
  /** Sends a directory update from a worker here to the node owning its bucket. */
  forwardDirectoryUpdate(envelope: TellEnvelope): void;
  /** A worker was replaced: give it the layout and rebuild the directories it held. */
  workerRestarted(index: number): void;
}

const DEFAULT_PORT = 7101;
/** After a leave, the node closes once no call has reached it for this long... */
const QUIET_MS = 300;
/** ...or after this long at most. */
const LEFT_GRACE_MAX_MS = 3000;
/** How long a departed member's connection is kept for what is still in flight. */
const FORGET_AFTER_MS = 3000;

export async function startCluster(host: ClusterHost, options: ClusterOptions): Promise<ClusterHandle> {
  const membership = new Membership(host, options);
  try {
    await membership.start();
  } catch (error) {
    await membership.close();
    throw error;
  }
  return membership;
}

class Membership implements ClusterHandle {
  readonly events = new EventEmitter();
  id: string;
  incarnation = 0;
  httpUrl: string | undefined;
  readonly #host: ClusterHost;
  readonly #options: ClusterOptions;
  readonly #log: NonNullable<ClusterOptions['log']>;
  #transport: ClusterTransport | undefined;
  #protocol: NodeProtocol | undefined;
  #http: Server | undefined;
  #ticker: NodeJS.Timeout | undefined;
  #left: Promise<void> | undefined;
  #signalLeft: (() => void) | undefined;
  #closed = false;
  readonly #forgetting = new Map<string, NodeJS.Timeout>();
  /** When the last session frame from another node or a client arrived. */
  #lastReceivedAt = 0;
  /** Clients connected to this node. */
  readonly #clients = new Set<string>();
  /** The workers' directory operations, one after another: each sees the layout given before it. */
  #directoryOps: Promise<unknown> = Promise.resolve();
  /** What the workers were last given of the quorum view (a key), when, and the stalls counted then. */
  #quorumSent = '';
  #quorumSentAt = -Infinity;
  #stallsSeen = 0;

  constructor(host: ClusterHost, options: ClusterOptions) {
    this.#host = host;
    this.#options = options;
    this.#log = options.log ?? defaultLog;
    const secret = options.secret ?? process.env['WADI_SECRET'];
    if (secret === undefined || secret.length === 0) {
      throw new InvalidArgument('a cluster needs a secret: set WADI_SECRET (or the `secret` option)');
    }
    if (typeof secret !== 'string') throw new InvalidArgument(`the cluster secret must be a string, got ${typeof secret}`);
    // Not refused (clusters run with shorter ones), but anyone who guesses it can join and read every session.
    if (secret.length < MIN_STRONG_SECRET) this.#log('warn', `the cluster secret has ${secret.length} characters: use at least ${MIN_STRONG_SECRET} random ones (anyone who guesses it can join the cluster)`);
    this.id = options.id ?? `${options.host ?? '127.0.0.1'}:${options.port ?? DEFAULT_PORT}`;
    if (!/^[\w.:@-]{1,128}$/.test(this.id)) throw new InvalidArgument(`node id '${this.id}' must be 1-128 characters of letters, digits, '.', ':', '@', '_' or '-'`);
  }

  get url(): string {
    return this.#transport?.url ?? '';
  }

  async start(): Promise<void> {
    const options = this.#options;
    if (options.advertisedUrl !== undefined && !(typeof options.advertisedUrl === 'string' && /^wss?:\/\/[^/\s]+/.test(options.advertisedUrl))) {
      throw new InvalidArgument(`cluster.advertisedUrl must be a ws:// or wss:// URL other nodes can dial, got ${JSON.stringify(options.advertisedUrl)}`);
    }
    const tickMs = options.tickMs ?? 100;
    if (!(typeof tickMs === 'number' && tickMs > 0 && Number.isFinite(tickMs))) throw new InvalidArgument(`cluster.tickMs must be a positive number, got ${JSON.stringify(options.tickMs)}`);
    let port = options.port ?? DEFAULT_PORT;
    if (port === 0) {
      // The default id names the port, so pick a free one now rather than let the server choose.
      port = await freePort(options.host ?? '127.0.0.1');
      if (options.id === undefined) this.id = `${options.host ?? '127.0.0.1'}:${port}`;
    }
    const persisted = this.#readDataDir();
    this.#transport = new ClusterTransport({
      host: options.host ?? '127.0.0.1',
      port,
      clusterName: options.clusterName ?? 'wadi',
      secret: options.secret ?? process.env['WADI_SECRET'] ?? '',
      self: { id: this.id, incarnation: this.incarnation },
      ...(options.advertisedUrl === undefined ? {} : { advertisedUrl: options.advertisedUrl }),
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      ...(options.maxPayloadBytes === undefined ? {} : { maxPayloadBytes: options.maxPayloadBytes }),
      ...(options.highWaterMarkBytes === undefined ? {} : { highWaterMarkBytes: options.highWaterMarkBytes }),
      ...(options.lowWaterMarkBytes === undefined ? {} : { lowWaterMarkBytes: options.lowWaterMarkBytes }),
      log: this.#log,
    });
    await this.#transport.start();
    const transport = this.#transport;
    await this.#host.joined({ node: this.id, incarnation: this.incarnation }, (node, value, incarnation) => transport.send(node, value, incarnation),
      () => transport.flush(),
    );
    const protocol = new NodeProtocol(
      {
        self: { id: this.id, incarnation: this.incarnation, url: this.#transport.url, workers: this.#host.workers },
        buckets: this.#host.buckets,
        seeds: options.seeds ?? [],
        ...(options.timings === undefined ? {} : { timings: options.timings }),
        ...(options.election === undefined ? {} : { election: options.election }),
        ...(options.maxMovesPerLayout === undefined ? {} : { maxMovesPerLayout: options.maxMovesPerLayout }),
        ...(options.replicas === undefined ? {} : { replicas: options.replicas }),
        ...(persisted === undefined ? {} : { persisted }),
        handoff: {
          ...(options.maxHandoffs === undefined ? {} : { maxInFlight: options.maxHandoffs }),
          ...(options.handoffTimeoutMs === undefined ? {} : { timeoutMs: options.handoffTimeoutMs }),
        },
      },
      this.#io(),
      this.#directories(),
    );
    this.#protocol = protocol;
    this.#host.quorumGate(() => protocol.quorum.refusal());
    transport.on('peer-up', (peer: PeerIdentity) => {
      if (isClientId(peer.id)) return this.#clientUp(peer.id);
      protocol.connected(peer, now());
      this.#host.peerConnected(peer);
    });
    transport.on('peer-down', (peer: PeerIdentity) => (isClientId(peer.id) ? this.#clients.delete(peer.id) : protocol.disconnected(peer.id, now())));
    transport.on('message', (peer: PeerIdentity, value: unknown) => {
      // Before anything is routed: after a pause, sockets are read before any timer fires.
      protocol.observe(now());
      if (protocol.member.stalls !== this.#stallsSeen) this.#publishQuorum();
      if (Array.isArray(value) && value[0] === Frame.Deliver) this.#lastReceivedAt = now();
      if (isClientId(peer.id)) this.#fromClient(peer.id, value);
      else this.#receive(peer, value);
    });
    transport.on('rejected', (rejection: Rejection) => {
      // A peer that knows a newer incarnation of this node's id refuses us: this process is stale.
      if (rejection.by === 'remote' && rejection.code === CloseCode.staleIncarnation) {
        this.events.emit('removed', `${rejection.remote} knows a newer incarnation of ${this.id}: ${rejection.reason}`);
      }
    });
    if (options.httpPort !== undefined) await this.#startHttp(options.httpPort);
    protocol.start(now());
    this.#ticker = setInterval(() => {
      protocol.tick(now());
      this.#publishQuorum();
    }, tickMs);
  }

  layout(): Layout | null {
    return this.#protocol?.layout ?? null;
  }

  /** Gives the workers the quorum view when it changed (or every second, for a replaced worker). */
  #publishQuorum(): void {
    const protocol = this.#protocol;
    if (protocol === undefined || this.#closed) return;
    this.#stallsSeen = protocol.member.stalls;
    const view = shiftView(protocol.member.quorumView(), performance.timeOrigin);
    const key = `${view.members}|${view.graceMs}|${view.reachable}|${view.joining === true}|${view.acks.map((at) => Math.round(at)).join(',')}`;
    const at = now();
    if (key === this.#quorumSent && at - this.#quorumSentAt < 1000) return;
    this.#quorumSent = key;
    this.#quorumSentAt = at;
    this.#host.setQuorum(view).catch((error: unknown) => this.#log('warn', `could not give the workers the quorum view: ${String(error)}`));
  }

  async status(): Promise<NodeStatus> {
    const protocol = this.#protocol!;
    const cluster: ClusterStatus = protocol.member.status();
    const layout = cluster.layout;
    const [sessions, directory] = await Promise.all([this.#host.sessionCounts(), this.#host.directoryStats()]);
    const gate = protocol.quorum.status();
    return {
      id: this.id,
      incarnation: this.incarnation,
      url: this.url,
      coordinator: cluster.coordinator ?? null,
      epoch: cluster.epoch,
      quorum: cluster.quorum,
      fencing: {
        serving: gate.serving,
        reached: gate.reached,
        members: gate.members,
        lostAt: gate.lostAt === null ? null : new Date(performance.timeOrigin + gate.lostAt).toISOString(),
        losses: gate.losses,
        refusedCalls: gate.refused + sessions.fencing.refused,
        stalls: cluster.stalls,
        lastStallMs: Math.round(cluster.lastStallMs),
        duplicateClaims: directory.duplicateClaims,
        droppedDuplicates: sessions.fencing.droppedDuplicates,
      },
      members: cluster.members,
      buckets: {
        total: this.#host.buckets,
        owned: layout === null ? 0 : bucketsOf(layout, this.id).length,
        byMember: layout === null ? {} : Object.fromEntries(ownedCounts(layout)),
        handoffsPending: protocol.handoffsPending,
        handoffsCompleted: protocol.handoffs.completed,
        rebuilt: protocol.handoffs.rebuilt,
      },
      directory: { ...directory, droppedUpdates: protocol.droppedUpdates },
      sessions: { memory: sessions.memory, disk: sessions.disk, expired: sessions.expired },
      routing: { hops: sessions.hops, ...sessions.routing },
      evacuation: protocol.evacuation,
      store: sessions.store,
      replication: sessions.replication,
    };
  }

  leave(): Promise<void> {
    this.#left ??= new Promise<void>((resolve) => {
      const phase = this.#protocol?.member.phase;
      // Closed (a crash in tests, or a stop after close) or never a member: nothing to hand off.
      if (this.#closed || phase === undefined || phase === 'removed' || phase === 'left') return resolve();
      this.#signalLeft = resolve;
      this.#protocol!.leave(now());
    });
    return this.#left;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ticker !== undefined) clearInterval(this.#ticker);
    for (const timer of this.#forgetting.values()) clearTimeout(timer);
    await this.#transport?.close();
    const http = this.#http;
    if (http === undefined) return;
    // close() waits for every open connection, and a client polling /status keeps its own alive:
    // they are all cut at once, or the process would not end while anyone watches it.
    const closed = new Promise<void>((resolve) => http.close(() => resolve()));
    http.closeAllConnections();
    await closed;
  }

  forwardDirectoryUpdate(envelope: TellEnvelope): void {
    this.#protocol?.routeUpdate(envelope);
  }

  async lookup(type: string, id: string): Promise<{ node: string; worker: number; tier: 'memory' | 'disk' } | undefined | 'not-owner'> {
    const layout = this.layout();
    const bucket = bucketOf(id, this.#host.buckets);
    if (layout === null || layout.members[layout.owners[bucket]!]?.id !== this.id) return 'not-owner';
    await this.#directoryOps;
    return this.#host.lookupSession(bucket, activationKey(type, id));
  }

  workerRestarted(index: number): void {
    // A new worker starts unfenced: give it the quorum view on the next tick.
    this.#quorumSent = '';
    const layout = this.layout();
    if (layout === null) return;
    this.#protocol?.rebuild(bucketsOf(layout, this.id).filter((bucket) => bucket % this.#host.workers === index));
  }

  /** A client connected: it routes its own calls, so it needs the layout, now and after every change. */
  #clientUp(client: string): void {
    this.#clients.add(client);
    const layout = this.layout();
    if (layout !== null) this.#send(client, { t: 'commit', layout });
  }

  /** Resolves once nothing has arrived for QUIET_MS (bounded by LEFT_GRACE_MAX_MS). */
  async #quiet(): Promise<void> {
    const deadline = now() + LEFT_GRACE_MAX_MS;
    await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
    while (now() < deadline && now() - this.#lastReceivedAt < QUIET_MS) await new Promise((resolve) => setTimeout(resolve, 50));
  }

  /** A client may only send calls, as itself. */
  #fromClient(client: string, value: unknown): void {
    const frame = Array.isArray(value) && value[0] === Frame.Deliver && Array.isArray(value[2]) ? (value[2] as unknown[]) : undefined;
    if (frame === undefined || frame[0] !== Frame.Call || frame[2] !== client || frame.length !== 16) {
      this.#log('warn', `refused a value from client ${client}: clients may only send their own calls`);
      return;
    }
    // Only members may grant an activation or vouch for a bounce; a client's call starts afresh.
    frame[9] = 0;
    frame[11] = Number(frame[11]) & CallFlag.Direct;
    frame[12] = 0;
    frame[14] = '';
    frame[15] = 0;
    this.#host.deliverFrame(client, value as unknown[]);
  }

  #receive(peer: PeerIdentity, value: unknown): void {
    const protocol = this.#protocol;
    if (protocol === undefined) return;
    if (Array.isArray(value)) {
      if (value[0] === Frame.Deliver) this.#host.deliverFrame(peer.id, value);
      else protocol.receiveUpdate(peer.id, value as Envelope);
      return;
    }
    let message: ClusterMessage;
    try {
      message = parseClusterMessage(value, this.#host.buckets);
    } catch (error) {
      this.#log('warn', `refused a cluster message from ${peer.id}: ${(error as Error).message}`, { peer: peer.id });
      return;
    }
    protocol.receive(peer.id, message, now());
  }

  #send(to: string, message: unknown): void {
    try {
      this.#transport?.send(to, message);
    } catch {
      // Not connected or overloaded: the state machines retry on their own timers.
    }
  }

  /** Runs a workers' directory operation after every one asked before it. */
  #directoryOp<T>(operation: () => Promise<T>, fallback: T, done: (value: T) => void = () => undefined): void {
    const next = this.#directoryOps.then(operation).catch((error: unknown) => {
      this.#log('error', `a directory operation on the workers failed: ${String(error)}`);
      return fallback;
    });
    this.#directoryOps = next;
    void next.then(done);
  }

  #directories(): NodeDirectories {
    const host = this.#host;
    return {
      applyLayout: (self, layout) => this.#directoryOp(() => host.applyLayout(self, layout), undefined),
      evacuate: (_layout, done) => this.#directoryOp(() => host.evacuate(), undefined, done),
      deliver: (update) => host.deliverToBucket(update),
      install: (bucket, epoch, entries, done) => this.#directoryOp(() => host.installBucket(bucket, epoch, entries), undefined, done),
      export: (bucket, reply) => this.#directoryOp<DirectoryEntry[] | null>(() => host.exportBucket(bucket), null, reply),
      report: (bucket, reply) => this.#directoryOp<DirectoryEntry[]>(() => host.reportBucket(bucket), [], reply),
      forgetNode: (node, crashed) => this.#directoryOp(() => host.forgetNode(node, crashed), undefined),
      nodeRestarted: (node, incarnation) => this.#directoryOp(() => host.nodeRestarted(node, incarnation), undefined),
      resync: (buckets) => this.#directoryOp(() => host.resyncDirectories([...buckets]), undefined),
      lagging: (reply) => this.#directoryOp<ReplicaLag>(() => host.replicationLag(), { epoch: -1, pairs: [] }, reply),
    };
  }

  #io(): NodeProtocolIO {
    return {
      send: (to, message) => this.#send(to, message),
      sendUpdate: (to, update) => this.#transport!.send(to, update),
      dial: (url) => {
        clearTimeout(this.#forgetting.get(url));
        this.#forgetting.delete(url);
        this.#transport?.dial(url);
      },
      // A member that left may still forward calls that were on their way to it, and results of
      // calls it ran are still on their way out: keep its connection a little longer.
      forget: (url) => {
        if (this.#forgetting.has(url)) return;
        const timer = setTimeout(() => {
          this.#forgetting.delete(url);
          this.#transport?.forget(url);
        }, FORGET_AFTER_MS);
        timer.unref();
        this.#forgetting.set(url, timer);
      },
      persist: (state) => this.#persist(state),
      now: () => now(),
      committed: (layout, previous) => {
        for (const client of this.#clients) this.#send(client, { t: 'commit', layout });
        this.events.emit('layout', layout, previous);
      },
      removed: (reason) => this.events.emit('removed', reason),
      left: () => {
        this.events.emit('left');
        // Clients route by cached locations too: tell them to stop sending here.
        for (const client of this.#clients) this.#send(client, { t: 'gone', node: this.id });
        // Give the final gossip a moment to leave, and calls still on their way here time to be
        // forwarded to where the sessions went: close once none has arrived for a while.
        void this.#quiet().then(() => this.#signalLeft?.());
      },
      log: this.#log,
    };
  }

  // data directory

  #readDataDir(): PersistedClusterState | undefined {
    const dir = this.#options.dataDir;
    if (dir === undefined) {
      // Without a data directory, wall-clock milliseconds still give every restart a larger incarnation.
      this.incarnation = Date.now();
      return undefined;
    }
    mkdirSync(dir, { recursive: true });
    const identity = readJson(join(dir, 'node.json')) as { id?: string; incarnation?: number } | undefined;
    if (identity?.id !== undefined && identity.id !== this.id) {
      throw new InvalidArgument(`data directory ${dir} belongs to node '${identity.id}', not '${this.id}'`);
    }
    this.incarnation = (identity?.incarnation ?? 0) + 1;
    writeDurably(join(dir, 'node.json'), JSON.stringify({ id: this.id, incarnation: this.incarnation }));
    const state = readJson(join(dir, 'cluster.json')) as { committed?: unknown; accepted?: unknown } | undefined;
    if (state === undefined) return undefined;
    const layout = (value: unknown): Layout | null => {
      if (value === null || value === undefined) return null;
      try {
        return validateLayout(value, this.#host.buckets);
      } catch (error) {
        throw new InvalidArgument(`${join(dir, 'cluster.json')}: ${(error as Error).message}`);
      }
    };
    return { committed: layout(state.committed), accepted: layout(state.accepted) };
  }

  #persist(state: PersistedClusterState): void {
    const dir = this.#options.dataDir;
    if (dir !== undefined) writeDurably(join(dir, 'cluster.json'), JSON.stringify(state));
  }

  // HTTP

  async #startHttp(port: number): Promise<void> {
    const server = createServer((request, response) => {
      const path = (request.url ?? '/').split('?')[0];
      const reply = (status: number, body: unknown): void => {
        response.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        response.end(JSON.stringify(body));
      };
      if (request.method !== 'GET') return reply(405, { error: 'only GET is supported' });
      if (path === '/status') {
        this.status().then(
          (status) => reply(200, status),
          (error: unknown) => reply(500, { error: String(error) }),
        );
      } else if (path === '/layout') {
        const layout = this.layout();
        reply(200, layout === null ? null : { ...layout, ownerIds: ownerIds(layout) });
      } else {
        reply(404, { error: `no such path: ${path}`, paths: ['/status', '/layout'] });
      }
    });
    this.#http = server;
    const host = this.#options.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    const address = server.address();
    const actualPort = typeof address === 'object' && address !== null ? address.port : port;
    this.httpUrl = `http://${host.includes(':') ? `[${host}]` : host}:${actualPort}`;
  }
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createNetServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function now(): number {
  return performance.now();
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new InvalidArgument(`${path} is not valid JSON (${(error as Error).message}); fix or remove it`);
  }
}

/** Write, fsync, then rename over the old file: a crash leaves either the old or the new content. */
function writeDurably(path: string, content: string): void {
  const temporary = `${path}.tmp`;
  const fd = openSync(temporary, 'w');
  try {
    writeSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
}

function defaultLog(level: 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>): void {
  const line = `${new Date().toISOString()} wadi ${level}: ${message}${fields === undefined ? '' : ` ${JSON.stringify(fields)}`}`;
  if (level === 'error') console.error(line);
  else if (level === 'warn') console.warn(line);
  else console.log(line);
}
