/**
 * One simulated node process: the real `NodeProtocol` (membership, layouts, handoffs, directory
 * routing) and one real `BucketHost` per simulated worker thread, driven by the simulation's clock
 * and network instead of timers, sockets and threads.
 *
 * What a real node does asynchronously stays asynchronous here: calls between the main thread and
 * the workers take a simulated millisecond, in order. A paused process does nothing at all; what
 * reaches it waits in its backlog until it resumes. Its disk (the persisted cluster state)
 * outlives the process, so a restart is a new incarnation with the same disk.
 */
import {
  BucketHost,
  NodeProtocol,
  ownerIds,
  parseClusterMessage,
  type ClusterMessage,
  type ClusterTimings,
  type DirectoryEntry,
  type Layout,
  type NodeDirectories,
  type NodeProtocolIO,
  type PersistedClusterState,
} from '@wadi/cluster';
import { activationKey, bucketOf, type Envelope, type TellEnvelope } from '@wadi/core';
import type { EventQueue } from './event-queue.js';
import type { NetworkEndpoint, SimNetwork } from './network.js';

/** What a simulated node reports to the simulation (the simulation checks and traces it). */
export interface SimNodeObserver {
  now(): number;
  trace(node: string, kind: string, detail: string): void;
  committed(node: SimNode, layout: Layout, previous: Layout | null): void;
  installed(node: SimNode, bucket: number, epoch: number, entries: DirectoryEntry[]): void;
  sent(node: SimNode, to: string, message: ClusterMessage): void;
  persisted(node: SimNode, state: PersistedClusterState): void;
  exited(node: SimNode, why: 'removed' | 'left', reason: string): void;
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
}

/** A session as the simulated node hosts it. */
export interface HostedSession {
  type: string;
  id: string;
  worker: number;
  /** The version of its location: how many times it moved. */
  version: number;
}

export const SESSION_TYPE = 'Session';

export function nodeUrl(id: string): string {
  return `sim://${id}`;
}

export function idOfUrl(url: string): string {
  return url.startsWith('sim://') ? url.slice(6) : url;
}

export class SimNode implements NetworkEndpoint {
  readonly id: string;
  readonly incarnation: number;
  readonly url: string;
  readonly protocol: NodeProtocol;
  readonly workers: BucketHost[] = [];
  /** Sessions hosted per worker: key -> session. */
  readonly hosted: Map<string, HostedSession>[] = [];
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
  /** Time of the last main-thread <-> worker call, so they stay in order. */
  #threadHopAt = 0;

  constructor(options: SimNodeOptions, network: SimNetwork, queue: EventQueue, observer: SimNodeObserver) {
    this.id = options.id;
    this.incarnation = options.incarnation;
    this.url = nodeUrl(options.id);
    this.disk = structuredClone(options.disk);
    this.#observer = observer;
    this.#network = network;
    this.#queue = queue;
    for (let index = 0; index < options.workers; index++) {
      const sessions = new Map<string, HostedSession>();
      this.hosted.push(sessions);
      this.workers.push(
        new BucketHost(index, options.workers, options.buckets, {
          toWorker: (target, envelope) => this.#onThreads(() => this.#deliverToWorker(target, envelope)),
          toNode: (envelope) => this.#onThreads(() => this.protocol.routeUpdate(envelope)),
          hosted: () => [...sessions.values()].map((session) => [session.type, session.id, session.version]),
          log: (message) => observer.trace(this.id, 'worker', `${index}: ${message}`),
        }),
      );
    }
    const persisted = options.disk.committed === null && options.disk.accepted === null ? undefined : structuredClone(options.disk);
    this.protocol = new NodeProtocol(
      {
        self: { id: this.id, incarnation: this.incarnation, url: this.url, workers: options.workers },
        buckets: options.buckets,
        seeds: options.seeds,
        timings: options.timings,
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
    if (!this.paused) this.protocol.tick(this.#observer.now());
  }

  connected(peer: NetworkEndpoint): void {
    this.#whenAwake(() => this.protocol.connected({ id: peer.id, incarnation: peer.incarnation }, this.#observer.now()));
  }

  disconnected(peer: string): void {
    this.#whenAwake(() => this.protocol.disconnected(peer, this.#observer.now()));
  }

  deliver(from: string, payload: unknown): void {
    this.#whenAwake(() => {
      const { kind, value } = payload as { kind: 'cluster' | 'update'; value: unknown };
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
    this.#network.processStopped(this.id);
  }

  leave(): void {
    this.leaving = true;
    this.#whenAwake(() => this.protocol.leave(this.#observer.now()));
  }

  // sessions

  activate(id: string, worker: number, version: number): void {
    const session = { type: SESSION_TYPE, id, worker, version };
    this.hosted[worker]!.set(activationKey(SESSION_TYPE, id), session);
    this.workers[worker]!.sessionActivated(SESSION_TYPE, id, version);
  }

  /** Destroys (or moves away) a session hosted here; false if it is not here. */
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

  #deliverToWorker(worker: number, envelope: TellEnvelope): void {
    this.workers[worker]!.receive(envelope);
  }

  #send(to: string, kind: 'cluster' | 'update', value: unknown): boolean {
    if (!this.running) return false;
    return this.#network.send(this, to, { kind, value: structuredClone(value) }, kind === 'cluster');
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
      dial: (url) => void this.dialing.add(idOfUrl(url)),
      forget: (url) => void this.dialing.delete(idOfUrl(url)),
      persist: (state) => {
        this.disk = structuredClone(state);
        observer.persisted(this, state);
      },
      committed: (layout, previous) => observer.committed(this, layout, previous),
      removed: (reason) => observer.exited(this, 'removed', reason),
      left: () => observer.exited(this, 'left', 'graceful leave complete'),
      log: (level, message, fields) => observer.trace(this.id, level, fields === undefined ? message : `${message} ${JSON.stringify(fields)}`),
    };
  }

  #directories(): NodeDirectories {
    const worker = (bucket: number): BucketHost => this.workers[bucket % this.workers.length]!;
    return {
      applyLayout: (self, layout) => this.#onThreads(() => this.workers.forEach((host) => host.setLayout(self, layout.epoch, ownerIds(layout)))),
      deliver: (update) => this.#onThreads(() => worker(Number(update[2])).receive(update)),
      install: (bucket, epoch, entries, done) =>
        this.#onThreads(() => {
          this.#observer.installed(this, bucket, epoch, entries);
          worker(bucket).install(bucket, epoch, entries);
          this.#onThreads(done);
        }),
      export: (bucket, reply) => this.#onThreads(() => {
        const entries = worker(bucket).export(bucket);
        this.#onThreads(() => reply(entries));
      }),
      // Sessions of a bucket can live on any worker: every one reports.
      report: (bucket, reply) => this.#onThreads(() => {
        const entries = this.workers.flatMap((host) => host.report(bucket));
        this.#onThreads(() => reply(entries));
      }),
      forgetNode: (node) => this.#onThreads(() => this.workers.forEach((host) => host.forgetNode(node))),
      resync: (buckets) => this.#onThreads(() => this.workers.forEach((host) => host.resync(buckets))),
      // The simulation moves a leaver's sessions itself before it leaves (see `Simulation`'s leave step).
      evacuate: (_layout, done) => this.#onThreads(done),
    };
  }
}
