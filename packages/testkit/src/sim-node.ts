/**
 * One simulated node process: the real `NodeProtocol` (membership, layouts, handoffs, directory
 * routing) on its main thread, and per simulated worker thread what a real worker runs
 * (packages/node's worker.ts): a real `ActorSystem` hosting sessions, a `BucketHost` (the bucket
 * actors), a `SessionRouter` (the worker's calls to sessions elsewhere) and a `SessionHost` (calls
 * that reach the worker, placement, forwarding, migrations). The main thread has its own
 * `ActorSystem`, and relays session frames between the workers and the other nodes with the
 * cluster's `FrameRelay` (with its own `SessionRouter`, `node.ref()` in a real node), as
 * packages/node's main-routing.ts does. Everything is driven by the
 * simulation's clock (a `VirtualScheduler`, no real timers) and network instead of timers,
 * sockets and threads.
 *
 * What a real node does asynchronously stays asynchronous here: calls and frames between the
 * main thread and the workers (and between workers) take a simulated millisecond, in order, and
 * cross as copies (encoded and decoded, as a MessagePort link does); a frame a worker sends to
 * itself arrives on a microtask. A paused process does nothing at all; what reaches it waits in
 * its backlog until it resumes. Its disk (the persisted cluster state) outlives the process, so a
 * restart is a new incarnation with the same disk.
 *
 * Besides the real sessions, the node hosts the simulation's abstract sessions (type `Session`,
 * the `create`, `move` and `destroy` steps): entries that only exist to be registered with, and
 * checked against, the bucket directories.
 */
import {
  BucketHost,
  UNCONFIRMED_PLACEMENT_MS,
  CallFlag,
  Frame,
  FrameRelay,
  MAIN_THREAD,
  NodeProtocol,
  SessionHost,
  SessionRouter,
  mergeLags,
  ownerIds,
  parseClusterMessage,
  type ClusterMessage,
  type ClusterTimings,
  type DirectoryEntry,
  type Layout,
  type NodeDirectories,
  type NodeProtocolIO,
  type PersistedClusterState,
  type RoutedFrame,
} from '@wadi/cluster';
import {
  ActorSystem,
  LOCAL,
  ROUTED,
  Registry,
  Unavailable,
  activationKey,
  bucketOf,
  decode,
  encode,
  type AskEnvelope,
  type Envelope,
  type TellEnvelope,
} from '@wadi/core';
import type { EventQueue } from './event-queue.js';
import type { NetworkEndpoint, SimNetwork } from './network.js';
import { LOG_TYPE, logActor, type LogActor } from './sessions.js';
import { VirtualScheduler } from './virtual-scheduler.js';

/** What a simulated node reports to the simulation (the simulation checks and traces it). */
export interface SimNodeObserver {
  now(): number;
  trace(node: string, kind: string, detail: string): void;
  committed(node: SimNode, layout: Layout, previous: Layout | null): void;
  installed(node: SimNode, bucket: number, epoch: number, entries: DirectoryEntry[]): void;
  sent(node: SimNode, to: string, message: ClusterMessage): void;
  persisted(node: SimNode, state: PersistedClusterState): void;
  exited(node: SimNode, why: 'removed' | 'left', reason: string): void;
  /** A real session on `node`/`worker` applied a message (its activation's lineage: see `LogState`). */
  applied(node: SimNode, worker: number, session: string, sender: string, n: number, position: number, lineage: string): void;
  /** Something ran that may have queued microtasks (actor turns, promise callbacks): the run loop drains them. */
  touch(): void;
}

export interface SimNodeOptions {
  id: string;
  incarnation: number;
  buckets: number;
  workers: number;
  seeds: readonly string[];
  timings: Partial<ClusterTimings>;
  disk: PersistedClusterState;
  handoffTimeoutMs?: number;
  maxHandoffs?: number;
  /** Backups per bucket when this node coordinates (default 1). */
  replicas?: number;
  /** Ask deadline of the node's actor systems (default 30 s, as in a real node). */
  askTimeoutMs?: number;
  /** A worker delivers calls to sessions it hosts without its router, as worker.ts does (default true). */
  localShortcut?: boolean;
  /** Traces every session frame as a thread receives it (for debugging: long traces). */
  traceFrames?: boolean;
}

/** An abstract session as the simulated node hosts it. */
export interface HostedSession {
  type: string;
  id: string;
  worker: number;
  /** The version of its location: how many times it moved. */
  version: number;
}

/** One simulated worker thread: what packages/node's worker.ts runs once the node is a cluster member. */
export interface SimWorker {
  index: number;
  system: ActorSystem;
  buckets: BucketHost;
  router: SessionRouter;
  host: SessionHost;
  log: LogActor;
}

/** The main thread's side of session routing: its own actor system (its calls), and the relay of frames with its router. */
export interface SimMainThread {
  system: ActorSystem;
  relay: FrameRelay;
  router: SessionRouter;
  log: LogActor;
}

export const SESSION_TYPE = 'Session';
/** Request ids and migration batch numbers of one incarnation start at incarnation * this. */
const ID_SPAN = 10_000_000;
/** How long a departed member's connection is kept for what is still in flight (ms, as cluster-node.ts). */
const FORGET_AFTER_MS = 3000;
/** How often the routers and hosts tick (ms), as the workers' interval does. */
const ROUTING_TICK_MS = 250;

export function nodeUrl(id: string): string {
  return `sim://${id}`;
}

export function idOfUrl(url: string): string {
  return url.startsWith('sim://') ? url.slice(6) : url;
}

/** What a frame looks like once it crossed a thread or a socket: a copy, as msgpack makes it. */
function copy<T>(value: T): T {
  return decode(encode(value)) as T;
}

export class SimNode implements NetworkEndpoint {
  readonly id: string;
  readonly incarnation: number;
  readonly url: string;
  readonly protocol: NodeProtocol;
  readonly workers: BucketHost[] = [];
  /** Abstract sessions hosted per worker: key -> session. */
  readonly hosted: Map<string, HostedSession>[] = [];
  readonly threads: SimWorker[] = [];
  readonly main: SimMainThread;
  readonly dialing = new Set<string>();
  /** Survives the process: what it persisted. */
  disk: PersistedClusterState;
  running = true;
  paused = false;
  leaving = false;
  readonly #observer: SimNodeObserver;
  readonly #network: SimNetwork;
  readonly #queue: EventQueue;
  readonly #backlog: (() => void)[] = [];
  /** Time of the last call between this node's threads, so they stay in order. */
  #threadHopAt = 0;
  #routingTickAt = -Infinity;
  readonly #traceFrames: boolean;
  /** Peers to forget once FORGET_AFTER_MS passed (unless dialed again meanwhile). */
  readonly #forgetting = new Map<string, object>();
  /** When the last session frame from another node arrived: a node that left exits once they stop. */
  lastFrameAt = 0;
  /** Whether any session frame or call went through this node (its routers and hosts then tick). */
  #routing = false;
  /** Active sessions dropped here because a newer copy lived elsewhere. */
  droppedDuplicates = 0;

  constructor(options: SimNodeOptions, network: SimNetwork, queue: EventQueue, observer: SimNodeObserver) {
    this.id = options.id;
    this.incarnation = options.incarnation;
    this.url = nodeUrl(options.id);
    this.disk = structuredClone(options.disk);
    this.#observer = observer;
    this.#network = network;
    this.#queue = queue;
    this.#traceFrames = options.traceFrames === true;
    const scheduler = new VirtualScheduler(queue, {
      now: () => observer.now(),
      whenAwake: (event) =>
        this.#whenAwake(() => {
          observer.touch();
          event();
        }),
    });
    const askTimeoutMs = options.askTimeoutMs ?? 30_000;
    const firstId = this.incarnation * ID_SPAN + 1;
    for (let index = 0; index < options.workers; index++) this.threads.push(this.#worker(index, options, scheduler, askTimeoutMs, firstId));
    this.main = this.#mainThread(options, scheduler, askTimeoutMs, firstId);
    const persisted = options.disk.committed === null && options.disk.accepted === null ? undefined : structuredClone(options.disk);
    this.protocol = new NodeProtocol(
      {
        self: { id: this.id, incarnation: this.incarnation, url: this.url, workers: options.workers },
        buckets: options.buckets,
        seeds: options.seeds,
        timings: options.timings,
        ...(options.replicas === undefined ? {} : { replicas: options.replicas }),
        ...(persisted === undefined ? {} : { persisted }),
        handoff: {
          ...(options.handoffTimeoutMs === undefined ? {} : { timeoutMs: options.handoffTimeoutMs }),
          ...(options.maxHandoffs === undefined ? {} : { maxInFlight: options.maxHandoffs }),
        },
      },
      this.#io(),
      this.#directories(),
    );
  }

  start(): void {
    this.protocol.start(this.#observer.now());
  }

  // events from the simulation, each deferred while the process is paused

  tick(): void {
    if (this.paused) return;
    const now = this.#observer.now();
    this.protocol.tick(now);
    if (!this.#routing && now - this.#routingTickAt >= ROUTING_TICK_MS) {
      // No session code ran here yet, but a directory handed over may hold placements to expire
      // (a real node's session hosts tick from the start).
      this.#routingTickAt = now;
      for (const host of this.workers) host.expirePlacements(now - UNCONFIRMED_PLACEMENT_MS);
    }
    if (this.#routing && now - this.#routingTickAt >= ROUTING_TICK_MS) {
      this.#routingTickAt = now;
      this.#observer.touch();
      this.main.relay.tick();
      for (const thread of this.threads) {
        thread.router.tick();
        thread.host.tick();
      }
    }
  }

  connected(peer: NetworkEndpoint): void {
    this.#whenAwake(() => {
      this.protocol.connected({ id: peer.id, incarnation: peer.incarnation }, this.#observer.now());
      this.main.relay.connected({ id: peer.id, incarnation: peer.incarnation });
    });
  }

  disconnected(peer: string): void {
    this.#whenAwake(() => this.protocol.disconnected(peer, this.#observer.now()));
  }

  deliver(from: string, payload: unknown): void {
    this.#whenAwake(() => {
      // As cluster-node.ts does: the time is noted before anything is routed (a stall voids the quorum lease).
      this.protocol.observe(this.#observer.now());
      const { kind, value } = payload as { kind: 'cluster' | 'update' | 'frame'; value: unknown };
      if (kind === 'frame') {
        this.lastFrameAt = this.#observer.now();
        return this.#fromNode(from, value);
      }
      if (kind === 'update') return this.protocol.receiveUpdate(from, structuredClone(value) as Envelope);
      let message: ClusterMessage;
      try {
        // What crosses the network is parsed, as the real node parses what it decodes.
        message = parseClusterMessage(structuredClone(value), this.workers[0]!.buckets);
      } catch (error) {
        this.#observer.trace(this.id, 'refused', `${from}: ${(error as Error).message}`);
        return;
      }
      this.protocol.receive(from, message, this.#observer.now());
    });
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    const backlog = this.#backlog.splice(0);
    for (const event of backlog) {
      if (!this.running) return;
      event();
    }
  }

  /** The process stops (crash, or exit): nothing it had in memory survives. */
  stop(): void {
    this.running = false;
    this.paused = false;
    this.#backlog.length = 0;
    for (const thread of this.threads) thread.system.stop();
    this.main.system.stop();
    this.#network.processStopped(this.id);
  }

  leave(): void {
    this.leaving = true;
    this.#whenAwake(() => this.protocol.leave(this.#observer.now()));
  }

  /** Runs `event` now if the process is awake, once it resumes if it is paused, never if it stopped. */
  whenAwake(event: () => void): void {
    this.#whenAwake(() => {
      this.#observer.touch();
      event();
    });
  }

  // real sessions

  /** The actor system of thread `thread` (a worker index, or MAIN_THREAD) and its Log type. */
  caller(thread: number): { system: ActorSystem; log: LogActor } {
    this.#routing = true;
    return thread === MAIN_THREAD ? this.main : this.threads[thread]!;
  }

  /** Real sessions (type Log) hosted per worker: active, frozen for a migration, or parked. */
  realSessions(): { id: string; worker: number }[] {
    const list: { id: string; worker: number }[] = [];
    for (const thread of this.threads) {
      for (const [type, id] of thread.system.hostedIds()) if (type === LOG_TYPE) list.push({ id, worker: thread.index });
    }
    return list;
  }

  // abstract sessions

  activate(id: string, worker: number, version: number): void {
    const session = { type: SESSION_TYPE, id, worker, version };
    this.hosted[worker]!.set(activationKey(SESSION_TYPE, id), session);
    this.workers[worker]!.sessionActivated(SESSION_TYPE, id, version);
  }

  /** Destroys (or moves away) an abstract session hosted here; false if it is not here. */
  deactivate(id: string): boolean {
    const key = activationKey(SESSION_TYPE, id);
    for (let worker = 0; worker < this.hosted.length; worker++) {
      const session = this.hosted[worker]!.get(key);
      if (session !== undefined) {
        this.hosted[worker]!.delete(key);
        this.workers[worker]!.sessionRemoved(SESSION_TYPE, id, session.version);
        return true;
      }
    }
    return false;
  }

  /** Abstract sessions hosted here. */
  sessions(): { key: string; worker: number }[] {
    const list: { key: string; worker: number }[] = [];
    this.hosted.forEach((sessions, worker) => {
      for (const key of sessions.keys()) list.push({ key, worker });
    });
    return list;
  }

  /** What the owner's bucket actor says about `bucket` (undefined if this node serves no directory for it). */
  directory(bucket: number): DirectoryEntry[] | undefined {
    return this.workers[bucket % this.workers.length]!.entries(bucket);
  }

  bucketOfSession(id: string): number {
    return bucketOf(id, this.workers[0]!.buckets);
  }

  // plumbing

  #whenAwake(event: () => void): void {
    if (!this.running) return;
    if (this.paused) this.#backlog.push(event);
    else event();
  }

  /** A call between this node's threads: a simulated millisecond later, after every earlier one. */
  #onThreads(event: () => void): void {
    const at = Math.max(this.#observer.now() + 1, this.#threadHopAt);
    this.#threadHopAt = at;
    this.#queue.push(at, () => this.#whenAwake(event));
  }

  /** A thread hop that runs session code (which may queue actor turns on microtasks). */
  #routedHop(event: () => void): void {
    this.#routing = true;
    this.#onThreads(() => {
      this.#observer.touch();
      event();
    });
  }

  #deliverToWorker(worker: number, envelope: TellEnvelope): void {
    this.workers[worker]!.receive(envelope);
  }

  #send(to: string, kind: 'cluster' | 'update' | 'frame', value: unknown, incarnation?: number): boolean {
    if (!this.running) return false;
    return this.#network.send(this, to, { kind, value: kind === 'frame' ? copy(value) : structuredClone(value) }, kind === 'cluster', incarnation);
  }

  #worker(index: number, options: SimNodeOptions, scheduler: VirtualScheduler, askTimeoutMs: number, firstId: number): SimWorker {
    const observer = this.#observer;
    const sessions = new Map<string, HostedSession>();
    this.hosted.push(sessions);
    let lineages = 0;
    const log = logActor(
      (id, sender, n, position, lineage) => observer.applied(this, index, id, sender, n, position, lineage),
      () => `${this.id}#${this.incarnation}/${index}:${++lineages}`,
    );
    const registry = new Registry();
    registry.add(log);
    const sendFrame = (node: string, thread: number, frame: RoutedFrame): void => this.#workerSend(index, node, thread, frame);
    const routingLog = (message: string): void => observer.trace(this.id, 'routing', `${index}: ${message}`);
    let worker: SimWorker;
    const system: ActorSystem = new ActorSystem({
      registry,
      scheduler,
      selfIndex: index,
      firstRequestId: firstId,
      askTimeoutMs,
      router: {
        route: (def, id, key): number => (options.localShortcut !== false && system.hosts(key, def.name, id) && worker.router.mayShortcut(key) ? LOCAL : ROUTED),
      },
      transport: {
        send: (destination, envelope) => {
          if (destination !== ROUTED) throw new Unavailable(`the simulation links no worker to destination ${destination}`);
          const refusal = this.protocol.quorum.refusal();
          if (refusal !== undefined) throw refusal;
          worker.router.send(envelope as AskEnvelope | TellEnvelope);
        },
      },
      onActivated: (type, id) => worker.host.activated(type, id),
      // The worker's split-brain gate (worker.ts gets the main thread's view; here it is read directly).
      turnGate: () => this.protocol.quorum.check(),
      onTellFailure: (type, id, method, error) => observer.trace(this.id, 'routing', `${index}: tell ${type}.${method} to '${id}' failed: ${(error as Error).message}`),
    });
    const buckets = new BucketHost(index, options.workers, options.buckets, {
      toWorker: (target, envelope) => this.#onThreads(() => this.#deliverToWorker(target, envelope)),
      toNode: (envelope) => this.#onThreads(() => this.protocol.routeUpdate(envelope)),
      hosted: () => [...[...sessions.values()].map((session): [string, string, number] => [session.type, session.id, session.version]), ...worker.host.hosted()],
      // As worker.ts: an active copy whose newer one lives elsewhere is dropped (two activations, reported).
      stale: (keys) => {
        for (const key of keys) {
          const split = key.indexOf('\u0000');
          if (worker.host.dropStale(key.slice(0, split), key.slice(split + 1))) {
            this.droppedDuplicates++;
            observer.trace(this.id, 'warn', `${index}: dropped ${key.replace('\u0000', ':')}: its bucket actor knows a newer copy elsewhere`);
          }
        }
      },
      log: (message) => observer.trace(this.id, 'worker', `${index}: ${message}`),
    });
    this.workers.push(buckets);
    const now = (): number => observer.now();
    const router = new SessionRouter(
      { node: this.id, incarnation: this.incarnation, thread: index, buckets: options.buckets },
      { send: sendFrame, settle: (envelope) => system.receive(envelope), now, log: routingLog },
    );
    const host = new SessionHost(
      { node: this.id, incarnation: this.incarnation, thread: index, buckets: options.buckets, migration: { firstBatch: firstId } },
      system,
      buckets,
      router,
      { send: sendFrame, now, log: routingLog },
    );
    worker = { index, system, buckets, router, host, log };
    return worker;
  }

  #mainThread(options: SimNodeOptions, scheduler: VirtualScheduler, askTimeoutMs: number, firstId: number): SimMainThread {
    const observer = this.#observer;
    const log = logActor(() => undefined);
    const registry = new Registry();
    registry.add(log);
    let main: SimMainThread;
    const system = new ActorSystem({
      registry,
      scheduler,
      selfIndex: MAIN_THREAD,
      firstRequestId: firstId,
      askTimeoutMs,
      // The main thread hosts no sessions: every call is routed.
      router: { route: () => ROUTED },
      transport: {
        send: (destination, envelope) => {
          if (destination !== ROUTED) throw new Unavailable(`the simulation links the main thread to no destination ${destination}`);
          // As node.ts: a node in a minority routes none of its own calls.
          const refusal = this.protocol.quorum.refusal();
          if (refusal !== undefined) throw refusal;
          main.router.send(envelope as AskEnvelope | TellEnvelope);
        },
      },
      onTellFailure: (type, id, method, error) => observer.trace(this.id, 'routing', `main: tell ${type}.${method} to '${id}' failed: ${(error as Error).message}`),
    });
    // As packages/node's main-routing.ts: the cluster's FrameRelay between the network and the workers.
    const relay = new FrameRelay(
      { node: this.id, incarnation: this.incarnation, buckets: options.buckets, workers: options.workers },
      {
        toNode: (node, value, incarnation) => {
          if (!this.#send(node, 'frame', value, incarnation)) throw new Unavailable(`not connected to ${incarnation === undefined ? node : `${node}@${incarnation}`}`);
        },
        toWorker: (thread, frame) => {
          // Across a thread: a copy, a simulated millisecond later.
          const sent = copy(frame);
          this.#routedHop(() => this.#deliverFrame(thread, sent));
        },
        settle: (envelope) => system.receive(envelope),
        now: () => observer.now(),
        admit: () => this.protocol.quorum.refusal(),
        log: (_level, message) => observer.trace(this.id, 'routing', `main: ${message}`),
        trace: (event, frame, detail) => {
          if (!this.#traceFrames) return;
          const where = event === 'out' ? `, for ${detail}` : event === 'in' ? '' : ` ${event === 'held' ? `held for ${detail}` : `undeliverable ${detail}`}`;
          observer.trace(this.id, 'frame', `main${where}: ${describeFrame(frame)}`);
        },
      },
    );
    main = { system, relay, router: relay.router, log };
    return main;
  }

  // session frames, as worker.ts and main-routing.ts move them

  /** A worker's `sendFrame`: to another node through the main thread; to itself at once; to another worker directly. */
  #workerSend(from: number, node: string, thread: number, frame: RoutedFrame): void {
    const sent = copy(frame);
    if (node !== this.id || thread === MAIN_THREAD) {
      this.#routedHop(() => this.main.relay.fromWorker(node, thread, sent));
    } else if (thread === from) {
      this.#deliverFrame(thread, sent);
    } else {
      this.#routedHop(() => this.#deliverFrame(thread, sent));
    }
  }

  /** A frame arrives at worker `thread`. */
  #deliverFrame(thread: number, frame: RoutedFrame): void {
    const worker = this.threads[thread];
    if (worker === undefined) return;
    if (this.#traceFrames) this.#observer.trace(this.id, 'frame', `${thread}: ${describeFrame(frame)}`);
    if (frame[0] === Frame.Call || frame[0] === Frame.Migration || frame[0] === Frame.Replica) worker.host.receive(frame);
    else if (frame[0] !== Frame.Held && frame[0] !== Frame.HeldOutcome) worker.router.receive(frame); // those two are for main threads only
  }

  /** A `Deliver` frame from another node, for the main thread's relay. */
  #fromNode(peer: string, value: unknown): void {
    this.#routing = true;
    this.#observer.touch();
    this.main.relay.fromNode(peer, value);
  }

  #io(): NodeProtocolIO {
    const observer = this.#observer;
    return {
      send: (to, message) => {
        observer.sent(this, to, message);
        this.#send(to, 'cluster', message);
      },
      sendUpdate: (to, update) => {
        if (!this.#send(to, 'update', update)) throw new Error(`not connected to ${to}`);
      },
      dial: (url) => {
        this.#forgetting.delete(idOfUrl(url));
        this.dialing.add(idOfUrl(url));
      },
      // As a real node does: a member that left may still forward calls that were on their way
      // to it, and results are still on their way out, so its connection is kept a while.
      forget: (url) => {
        const id = idOfUrl(url);
        if (this.#forgetting.has(id)) return;
        const token = {};
        this.#forgetting.set(id, token);
        this.#queue.push(this.#observer.now() + FORGET_AFTER_MS, () => {
          if (this.#forgetting.get(id) !== token) return;
          this.#forgetting.delete(id);
          this.dialing.delete(id);
        });
      },
      persist: (state) => {
        this.disk = structuredClone(state);
        observer.persisted(this, state);
      },
      committed: (layout, previous) => observer.committed(this, layout, previous),
      now: () => observer.now(),
      removed: (reason) => observer.exited(this, 'removed', reason),
      left: () => observer.exited(this, 'left', 'graceful leave complete'),
      log: (level, message, fields) => observer.trace(this.id, level, fields === undefined ? message : `${message} ${JSON.stringify(fields)}`),
    };
  }

  #directories(): NodeDirectories {
    const worker = (bucket: number): BucketHost => this.workers[bucket % this.workers.length]!;
    return {
      applyLayout: (self, layout) => {
        // The main thread's router takes it at once; the workers' bucket actors, routers and hosts a hop later.
        this.main.relay.setLayout(layout);
        this.#onThreads(() => {
          this.#observer.touch();
          for (const thread of this.threads) {
            thread.buckets.setLayout(self, layout.epoch, ownerIds(layout));
            thread.router.setLayout(layout);
            thread.host.setLayout(layout);
          }
        });
      },
      deliver: (update) => this.#onThreads(() => worker(Number(update[2])).receive(update)),
      install: (bucket, epoch, entries, done) =>
        this.#onThreads(() => {
          this.#observer.touch();
          this.#observer.installed(this, bucket, epoch, entries);
          worker(bucket).install(bucket, epoch, entries, this.#observer.now());
          this.threads[bucket % this.threads.length]!.host.bucketInstalled(bucket);
          this.#onThreads(done);
        }),
      export: (bucket, reply) =>
        this.#onThreads(() => {
          const entries = worker(bucket).export(bucket);
          this.#onThreads(() => reply(entries));
        }),
      // Sessions of a bucket can live on any worker: every one reports.
      report: (bucket, reply) =>
        this.#onThreads(() => {
          const entries = this.workers.flatMap((host) => host.report(bucket));
          this.#onThreads(() => reply(entries));
        }),
      forgetNode: (node, crashed) => {
        this.main.router.nodeGone(node, crashed);
        this.main.relay.memberGone(node, crashed);
        this.#onThreads(() => {
          this.#observer.touch();
          for (const thread of this.threads) {
            thread.router.nodeGone(node, crashed);
            thread.host.nodeGone(node, crashed);
            thread.buckets.forgetNode(node, crashed);
          }
        });
      },
      nodeRestarted: (node, incarnation) => {
        this.main.router.nodeGone(node, true);
        this.main.relay.memberGone(node, true, incarnation);
        this.#onThreads(() => {
          this.#observer.touch();
          for (const thread of this.threads) {
            thread.router.nodeGone(node, true);
            thread.host.nodeRestarted(node, incarnation);
          }
        });
      },
      resync: (buckets) => this.#onThreads(() => this.workers.forEach((host) => host.resync(buckets))),
      lagging: (reply) =>
        this.#onThreads(() => {
          const lag = mergeLags(this.threads.map((thread) => thread.host.replication.lagging()));
          this.#onThreads(() => reply(lag));
        }),
      // The real sessions evacuate (each worker's `SessionMigrations`, to the owner of their
      // bucket), and the leave completes once they all did; the abstract ones moved in the
      // simulation's model at the leave step.
      evacuate: (_layout, done) =>
        this.#onThreads(() => {
          this.#observer.touch();
          let evacuating = this.threads.length;
          const evacuated = (): void => this.#onThreads(() => void (--evacuating === 0 && done()));
          for (const thread of this.threads) thread.host.migrations.evacuate((bucket) => thread.router.ownerOf(bucket), evacuated);
        }),
    };
  }
}

/** A session frame in a trace line. */
export function describeFrame(frame: RoutedFrame): string {
  switch (frame[0]) {
    case Frame.Call: {
      const flags = [frame[11] & CallFlag.Direct ? 'direct' : '', frame[11] & CallFlag.Grant ? `grant v${frame[12]}` : '', frame[11] & CallFlag.Bounced ? `bounced by ${frame[14]}` : ''].filter((flag) => flag !== '');
      return `call ${frame[1] === 0 ? 'tell' : `ask ${frame[1]}`} ${frame[6]}.${frame[7]}(${JSON.stringify(frame[8])}) from ${frame[2]}/${frame[4]} seq ${frame[10]} hops ${frame[9]} e${frame[15]}${flags.length > 0 ? ` [${flags.join(', ')}]` : ''}${frame[13] === '' ? '' : ` ${frame[13]}`}`;
    }
    case Frame.Result:
      return `result ${frame[3]} ${frame[4] ? 'ok' : 'failed'}${frame[6] === null ? '' : ` notice ${JSON.stringify(frame[6]).replace(/\\u0000/g, ':')}`}`;
    case Frame.Notice:
      return `notice ${JSON.stringify(frame[3]).replace(/\\u0000/g, ':')}`;
    case Frame.Pending:
      return `pending ${frame[3].replace('\u0000', ':')} up to seq ${frame[4]}`;
    case Frame.ReplicatedResult:
      return `result ${frame[3]} from replica ${frame[6]} (e${frame[7]}, written in e${frame[8]} to ${frame[9].join(', ')})`;
    case Frame.Migration: {
      const message = frame[4];
      const detail = message.t === 'offer' ? message.sessions.map((session) => `${session[1]} v${session[2]}`).join(' ') : message.t === 'handover' ? `${message.calls.length} calls` : message.t === 'accepted' ? `${message.accepted.length} accepted, ${message.refused.length} refused` : '';
      return `migration ${message.t} batch ${message.batch} from ${frame[2]}/${frame[3]}${detail === '' ? '' : `: ${detail}`}`;
    }
    case Frame.Replica: {
      const message = frame[5];
      const keys = message.t === 'ack' ? [...message.items.map((item) => `${item[0]} v${item[1]}.${item[2]}.${item[3]}`), ...message.refused.map((item) => `${item[0]} refused`)] : message.items.map((item) => `${item[0]} v${item[1]}`);
      return `replica ${message.t} from ${frame[2]}/${frame[4]}: ${keys.join(' ').replace(/\u0000/g, ':')}`;
    }
    default:
      return `frame ${String((frame as unknown[])[0])}`;
  }
}
