/**
 * A small deterministic network for driving `ClusterMember`s in tests: virtual time, messages
 * delivered after a fixed delay in send order, connections that open and close with nodes, and
 * partitions. (The full fault simulator is the testkit's; this is just enough to test the protocol.)
 */
import { ClusterMember, parseClusterMessage, type ClusterIO, type ClusterMessage, type ClusterMemberOptions, type Layout, type PersistedClusterState } from '../src/index.js';

interface InFlight {
  at: number;
  from: string;
  to: string;
  message: ClusterMessage;
}

export interface TestNode {
  id: string;
  url: string;
  member: ClusterMember;
  alive: boolean;
  paused: boolean;
  persisted: PersistedClusterState;
  layouts: Layout[];
  removed: string | undefined;
  left: boolean;
  log: string[];
}

export class TestNetwork {
  now = 0;
  readonly nodes = new Map<string, TestNode>();
  #queue: InFlight[] = [];
  /** Pairs that cannot talk ("a|b" in both directions). */
  readonly #cut = new Set<string>();
  #incarnations = new Map<string, number>();
  readonly delayMs = 2;
  readonly tickMs = 50;

  constructor(readonly buckets = 64, readonly timings: ClusterMemberOptions['timings'] = {}) {}

  static url(id: string): string {
    return `ws://${id}`;
  }

  start(id: string, seeds: string[], persisted?: PersistedClusterState, workers = 2): TestNode {
    const incarnation = (this.#incarnations.get(id) ?? 0) + 1;
    this.#incarnations.set(id, incarnation);
    const node: TestNode = {
      id,
      url: TestNetwork.url(id),
      member: undefined as unknown as ClusterMember,
      alive: true,
      paused: false,
      persisted: persisted ?? { committed: null, accepted: null },
      layouts: [],
      removed: undefined,
      left: false,
      log: [],
    };
    const io: ClusterIO = {
      send: (to, message) => this.#send(id, to, message),
      dial: () => undefined,
      forget: () => undefined,
      persist: (state) => (node.persisted = structuredClone(state)),
      committed: (layout) => node.layouts.push(layout),
      removed: (reason) => (node.removed = reason),
      left: () => (node.left = true),
      log: (level, message) => node.log.push(`${this.now} ${level} ${message}`),
    };
    node.member = new ClusterMember(
      { self: { id, incarnation, url: node.url, workers }, buckets: this.buckets, seeds, timings: this.timings, ...(persisted === undefined ? {} : { persisted }) },
      io,
    );
    this.nodes.set(id, node);
    node.member.start(this.now);
    // The transport dials every seed; model a connection to each live seed at once.
    for (const other of this.nodes.values()) {
      if (other !== node && other.alive && (seeds.includes(other.url) || other.member.status().members.some((m) => m.id === id))) this.#connect(node, other);
    }
    return node;
  }

  /** A crash: connections close, nothing more is sent or received. */
  crash(id: string): void {
    const node = this.nodes.get(id)!;
    node.alive = false;
    for (const other of this.nodes.values()) if (other !== node && other.alive) other.member.disconnected(id, this.now);
  }

  /** A stall: connections stay open but nothing is processed or answered. */
  pause(id: string): void {
    this.nodes.get(id)!.paused = true;
  }

  resume(id: string): void {
    this.nodes.get(id)!.paused = false;
  }

  partition(a: string[], b: string[]): void {
    for (const x of a) for (const y of b) {
      this.#cut.add(`${x}|${y}`);
      this.#cut.add(`${y}|${x}`);
      this.nodes.get(x)?.member.disconnected(y, this.now);
      this.nodes.get(y)?.member.disconnected(x, this.now);
    }
  }

  heal(): void {
    const pairs = [...this.#cut].map((pair) => pair.split('|') as [string, string]);
    this.#cut.clear();
    for (const [x, y] of pairs) {
      const a = this.nodes.get(x);
      const b = this.nodes.get(y);
      if (a !== undefined && b !== undefined && a.alive && b.alive && x < y) this.#connect(a, b);
    }
  }

  /** Advances virtual time by `ms`, ticking every node and delivering due messages in order. */
  run(ms: number): void {
    const end = this.now + ms;
    while (this.now < end) {
      this.now += 1;
      this.#deliverDue();
      if (this.now % this.tickMs === 0) {
        for (const node of this.nodes.values()) if (node.alive && !node.paused) node.member.tick(this.now);
        this.#connectKnown();
      }
    }
  }

  /** Runs until `predicate` holds (checked every tick), failing after `limitMs` of virtual time. */
  until(predicate: () => boolean, limitMs = 60_000): number {
    const start = this.now;
    while (!predicate()) {
      if (this.now - start > limitMs) throw new Error(`condition not reached within ${limitMs} ms of virtual time\n${this.dump()}`);
      this.run(this.tickMs);
    }
    return this.now - start;
  }

  live(): TestNode[] {
    return [...this.nodes.values()].filter((node) => node.alive && node.removed === undefined && !node.left);
  }

  /** True when every live node holds the same committed epoch and it assigns all buckets. */
  agreed(ids = this.live().map((node) => node.id)): boolean {
    const epochs = new Set(ids.map((id) => this.nodes.get(id)!.member.committed?.epoch ?? 0));
    return epochs.size === 1 && !epochs.has(0);
  }

  dump(): string {
    return [...this.nodes.values()]
      .map((node) => `${node.id} alive=${node.alive} phase=${node.member.phase} epoch=${node.member.committed?.epoch} coord=${node.member.coordinator}\n  ${node.log.slice(-12).join('\n  ')}`)
      .join('\n');
  }

  #connect(a: TestNode, b: TestNode): void {
    if (this.#cut.has(`${a.id}|${b.id}`)) return;
    a.member.connected({ id: b.id, incarnation: b.member.incarnation }, this.now);
    b.member.connected({ id: a.id, incarnation: a.member.incarnation }, this.now);
    this.#links.add(linkKey(a.id, b.id));
  }

  readonly #links = new Set<string>();

  /** The transport dials every member it learns of: connect pairs that know each other. */
  #connectKnown(): void {
    for (const a of this.nodes.values()) {
      if (!a.alive) continue;
      for (const entry of a.member.status().members) {
        const b = this.nodes.get(entry.id);
        if (b === undefined || b === a || !b.alive || entry.state === 'down' || b.member.incarnation !== entry.incarnation) continue;
        if (this.#links.has(linkKey(a.id, b.id)) && this.#linkUp(a.id, b.id)) continue;
        if (this.#cut.has(`${a.id}|${b.id}`)) continue;
        this.#connect(a, b);
      }
    }
  }

  #linkUp(a: string, b: string): boolean {
    return !this.#cut.has(`${a}|${b}`);
  }

  #send(from: string, to: string, message: ClusterMessage): void {
    // Round-trip through the parser, as the real node does with every message from the network.
    const copy = parseClusterMessage(structuredClone(message), this.buckets);
    this.#queue.push({ at: this.now + this.delayMs, from, to, message: copy });
  }

  #deliverDue(): void {
    const due = this.#queue.filter((item) => item.at <= this.now);
    if (due.length === 0) return;
    this.#queue = this.#queue.filter((item) => item.at > this.now);
    for (const item of due) {
      const from = this.nodes.get(item.from);
      const to = this.nodes.get(item.to);
      if (from === undefined || to === undefined || !from.alive || !to.alive) continue;
      if (this.#cut.has(`${item.from}|${item.to}`)) continue;
      if (to.paused) {
        // A paused process reads its socket later: keep the message for after it resumes.
        this.#queue.push({ ...item, at: this.now + this.tickMs });
        continue;
      }
      to.member.receive(item.from, item.message, this.now);
    }
  }
}

function linkKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}
