/**
 * The simulated network between node processes, modelled on what wadi's transport really does
 * over TCP: one connection per pair, set up when either side dials the other and both can reach
 * each other; per-link latency and jitter; order kept on a connection unless reordering is on;
 * what is sent across a cut is held (TCP retransmits) until the cut heals, and lost if the
 * connection dies first; a connection that hears nothing for `livenessMs` is terminated (the
 * transport's ping timeout);
 * a crashed process's connections close at once; messages in flight on a closed connection are
 * lost. On top of that, faults a real network adds: loss, duplication, reordering, partitions
 * (symmetric, or one way) and healing.
 *
 * It knows nothing of what the messages mean: the simulation hands it payloads and a delivery
 * callback. Every random choice comes from the simulation's seeded generator.
 */
import type { EventQueue } from './event-queue.js';
import type { SeededRandom } from './random.js';

export interface LinkFaults {
  /** Base one-way latency of a link, drawn once per pair in [min, max] ms. */
  latencyMs: [min: number, max: number];
  /** Extra delay per message, uniform in [0, jitterMs]. */
  jitterMs: number;
  /** Probability that a message is silently lost (only payloads the simulation marks lossy). */
  loss: number;
  /** Probability that a message is delivered twice (only lossy payloads). */
  duplicate: number;
  /** Whether messages on one connection may overtake each other (only lossy payloads). */
  reorder: boolean;
  /** Probability that a message breaks its connection (a TCP reset: everything in flight is lost). */
  reset: number;
}

export const NO_FAULTS: LinkFaults = { latencyMs: [1, 3], jitterMs: 1, loss: 0, duplicate: 0, reorder: false, reset: 0 };

/** What the network needs from the processes it connects. */
export interface NetworkEndpoint {
  readonly id: string;
  readonly incarnation: number;
  /** Running (not crashed or exited). A paused process is running but does nothing. */
  readonly running: boolean;
  readonly paused: boolean;
  /** Node ids this process dials (kept connected while it wants them). */
  readonly dialing: ReadonlySet<string>;
  connected(peer: NetworkEndpoint): void;
  disconnected(peer: string): void;
  deliver(from: string, payload: unknown): void;
}

interface Connection {
  a: NetworkEndpoint;
  b: NetworkEndpoint;
  /** Last time each side heard anything from the other. */
  heardByA: number;
  heardByB: number;
  /** Delivery time of the last message per direction, for FIFO order. */
  lastAtToA: number;
  lastAtToB: number;
  open: boolean;
  /** Sent while the direction was cut: TCP keeps retransmitting them until the cut heals or the connection dies. */
  heldToA: (() => void)[];
  heldToB: (() => void)[];
}

export class SimNetwork {
  faults: LinkFaults;
  readonly livenessMs: number;
  readonly #queue: EventQueue;
  readonly #random: SeededRandom;
  readonly #clock: () => number;
  readonly #endpoints = new Map<string, NetworkEndpoint>();
  readonly #connections = new Map<string, Connection>();
  /** Directed cuts "a>b": nothing a sends reaches b. */
  readonly #cuts = new Set<string>();
  readonly #latency = new Map<string, number>();
  messages = 0;
  lost = 0;

  constructor(queue: EventQueue, random: SeededRandom, clock: () => number, faults: LinkFaults = NO_FAULTS, livenessMs = 2000) {
    this.#queue = queue;
    this.#random = random;
    this.#clock = clock;
    this.faults = faults;
    this.livenessMs = livenessMs;
  }

  attach(endpoint: NetworkEndpoint): void {
    this.#endpoints.set(endpoint.id, endpoint);
  }

  isConnected(a: string, b: string): boolean {
    return this.#connections.get(pairKey(a, b))?.open === true;
  }

  /** The process `id` stopped (crash, or exit): its connections close at once. */
  processStopped(id: string): void {
    for (const [key, connection] of this.#connections) {
      if (connection.a.id === id || connection.b.id === id) this.#close(key, connection);
    }
  }

  cut(from: string, to: string): void {
    this.#cuts.add(`${from}>${to}`);
  }

  partition(groups: readonly (readonly string[])[]): void {
    for (let i = 0; i < groups.length; i++) {
      for (let j = 0; j < groups.length; j++) {
        if (i === j) continue;
        for (const a of groups[i]!) for (const b of groups[j]!) this.#cuts.add(`${a}>${b}`);
      }
    }
    // A symmetric cut breaks the connections at once, as the transport notices unanswered pings
    // soon after; one-way cuts are found by the liveness check.
    for (const [key, connection] of this.#connections) {
      if (this.#cuts.has(`${connection.a.id}>${connection.b.id}`) && this.#cuts.has(`${connection.b.id}>${connection.a.id}`)) this.#close(key, connection);
    }
  }

  heal(): void {
    this.#cuts.clear();
    for (const connection of this.#connections.values()) {
      for (const deliver of connection.heldToA.splice(0)) deliver();
      for (const deliver of connection.heldToB.splice(0)) deliver();
    }
  }

  get cuts(): string[] {
    return [...this.#cuts].sort();
  }

  /** Whether `a` and `b` could talk now (both running and unpaused, no cut either way). */
  reachable(a: string, b: string): boolean {
    const x = this.#endpoints.get(a);
    const y = this.#endpoints.get(b);
    return x !== undefined && y !== undefined && x.running && y.running && !this.#cuts.has(`${a}>${b}`) && !this.#cuts.has(`${b}>${a}`);
  }

  /**
   * Sends `payload` from `from` to `to`; false when they have no open connection (the transport
   * throws then), or, given an `incarnation`, when the connection is to another incarnation of
   * `to`. `lossy` payloads get the loss, duplication and reordering faults.
   */
  send(from: NetworkEndpoint, to: string, payload: unknown, lossy: boolean, incarnation?: number): boolean {
    const connection = this.#connections.get(pairKey(from.id, to));
    if (connection === undefined || !connection.open) return false;
    if (incarnation !== undefined && (connection.a.id === to ? connection.a : connection.b).incarnation !== incarnation) return false;
    const key = pairKey(from.id, to);
    this.messages++;
    const faults = this.faults;
    if (this.#random.chance(faults.reset)) {
      this.lost++;
      this.#close(key, connection);
      return true; // the send itself succeeded; the connection broke afterwards
    }
    if (lossy && this.#random.chance(faults.loss)) {
      this.lost++;
      return true;
    }
    const copies = lossy && this.#random.chance(faults.duplicate) ? 2 : 1;
    const toA = connection.a.id === to;
    if (this.#cuts.has(`${from.id}>${to}`)) {
      const held = toA ? connection.heldToA : connection.heldToB;
      for (let i = 0; i < copies; i++) held.push(() => this.#schedule(key, connection, from.id, toA, payload, lossy));
      return true;
    }
    for (let i = 0; i < copies; i++) this.#schedule(key, connection, from.id, toA, payload, lossy);
    return true;
  }

  #schedule(key: string, connection: Connection, from: string, toA: boolean, payload: unknown, lossy: boolean): void {
    let at = this.#clock() + this.#linkLatency(key) + this.#random.int(this.faults.jitterMs + 1);
    if (!(lossy && this.faults.reorder)) at = Math.max(at, toA ? connection.lastAtToA : connection.lastAtToB);
    // A message that may overtake others must not let a later in-order one overtake those too.
    if (toA) connection.lastAtToA = Math.max(connection.lastAtToA, at);
    else connection.lastAtToB = Math.max(connection.lastAtToB, at);
    this.#queue.push(at, () => {
      if (!connection.open || this.#connections.get(key) !== connection) return;
      if (toA) connection.heardByA = this.#clock();
      else connection.heardByB = this.#clock();
      (toA ? connection.a : connection.b).deliver(from, payload);
    });
  }

  /**
   * Sets up the connections processes want and can have, and terminates the ones that have been
   * silent too long. The simulation calls it periodically (the transport's redial and ping timers).
   */
  maintain(): void {
    const now = this.#clock();
    for (const [key, connection] of this.#connections) {
      if (!connection.open) continue;
      // A paused process answers no pings: its peer gives the connection up.
      const silentForA = now - connection.heardByA > this.livenessMs && !connection.a.paused;
      const silentForB = now - connection.heardByB > this.livenessMs && !connection.b.paused;
      if (silentForA || silentForB) this.#close(key, connection);
    }
    for (const endpoint of [...this.#endpoints.values()].sort(byId)) {
      if (!endpoint.running || endpoint.paused) continue;
      for (const peer of [...endpoint.dialing].sort()) {
        const other = this.#endpoints.get(peer);
        if (other === undefined || other === endpoint || !other.running || other.paused) continue;
        if (!this.reachable(endpoint.id, peer) || this.isConnected(endpoint.id, peer)) continue;
        this.#open(endpoint, other);
      }
    }
  }

  #open(a: NetworkEndpoint, b: NetworkEndpoint): void {
    const now = this.#clock();
    const connection: Connection = { a, b, heardByA: now, heardByB: now, lastAtToA: now, lastAtToB: now, open: true, heldToA: [], heldToB: [] };
    this.#connections.set(pairKey(a.id, b.id), connection);
    a.connected(b);
    b.connected(a);
  }

  #close(key: string, connection: Connection): void {
    if (!connection.open) return;
    connection.open = false;
    this.lost += connection.heldToA.length + connection.heldToB.length;
    connection.heldToA.length = 0;
    connection.heldToB.length = 0;
    this.#connections.delete(key);
    if (connection.a.running) connection.a.disconnected(connection.b.id);
    if (connection.b.running) connection.b.disconnected(connection.a.id);
  }

  /** The transport's pings: a connection whose ends can reach each other stays alive while idle. */
  ping(): void {
    const now = this.#clock();
    for (const connection of this.#connections.values()) {
      if (!connection.open) continue;
      const { a, b } = connection;
      if (!a.paused && b.running && !b.paused && !this.#cuts.has(`${b.id}>${a.id}`) && !this.#cuts.has(`${a.id}>${b.id}`)) connection.heardByA = now;
      if (!b.paused && a.running && !a.paused && !this.#cuts.has(`${a.id}>${b.id}`) && !this.#cuts.has(`${b.id}>${a.id}`)) connection.heardByB = now;
    }
  }

  #linkLatency(key: string): number {
    let latency = this.#latency.get(key);
    if (latency === undefined) {
      const [min, max] = this.faults.latencyMs;
      latency = this.#random.between(min, max);
      this.#latency.set(key, latency);
    }
    return latency;
  }
}

function pairKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}

function byId(a: NetworkEndpoint, b: NetworkEndpoint): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

