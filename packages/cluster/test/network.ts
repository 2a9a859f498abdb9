/**
 * A deterministic network for driving `ClusterMember`s in tests (the full simulator with replay
 * is the testkit's): virtual time, seeded random per-message delay (FIFO per link by default, optional reordering), optional
 * duplication and loss, partitions of arbitrary groups (including one-way cuts), crashes,
 * pauses, restarts with or without persisted state, and a global record of every layout any
 * node ever committed so that invariants can be checked over a whole history.
 */
import {
  ClusterMember,
  parseClusterMessage,
  type ClusterIO,
  type ClusterMessage,
  type ClusterMemberOptions,
  type Layout,
  type PersistedClusterState,
} from '../src/index.js';

export interface FaultOptions {
  /** Extra delay per message, uniform in [0, jitterMs] (FIFO per link unless `reorder`). */
  jitterMs?: number;
  reorder?: boolean;
  /** Probability that a message is delivered twice. */
  duplicate?: number;
  /** Probability that a message is silently lost (a real WebSocket would close instead). */
  drop?: number;
  /** Message types affected by duplicate/drop (default: all). */
  faultTypes?: ReadonlySet<ClusterMessage['t']>;
}

interface InFlight {
  at: number;
  seq: number;
  from: string;
  fromIncarnation: number;
  to: string;
  toIncarnation: number;
  message: ClusterMessage;
}

export interface TestNode {
  id: string;
  incarnation: number;
  url: string;
  member: ClusterMember;
  alive: boolean;
  paused: boolean;
  persisted: PersistedClusterState;
  /** Every layout this incarnation committed (via io.committed), in order. */
  layouts: Layout[];
  removed: string | undefined;
  left: boolean;
  log: string[];
}

export interface CommitRecord {
  node: string;
  incarnation: number;
  at: number;
  layout: Layout;
  previousEpoch: number | null;
}

/** Mulberry32: a small seeded PRNG. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class TestNetwork {
  now = 0;
  readonly nodes = new Map<string, TestNode>();
  readonly commits: CommitRecord[] = [];
  /** Messages every node sent, for assertions (type counts). */
  readonly sentLog: { at: number; from: string; to: string; t: string }[] = [];
  /** Optional interceptor: return false to drop a message (after it was recorded). */
  filter: ((item: { from: string; to: string; message: ClusterMessage; at: number }) => boolean) | undefined;
  #queue: InFlight[] = [];
  #seq = 0;
  /** Directed cuts "a>b": a's messages do not reach b, and a sees no connection to b. */
  readonly #cut = new Set<string>();
  readonly #links = new Set<string>();
  readonly #incarnations = new Map<string, number>();
  readonly #lastAt = new Map<string, number>();
  readonly random: () => number;
  readonly delayMs = 2;
  readonly tickMs = 50;

  constructor(
    readonly buckets = 64,
    readonly timings: ClusterMemberOptions['timings'] = {},
    readonly faults: FaultOptions = {},
    seed = 1,
    readonly extra: Partial<ClusterMemberOptions> = {},
  ) {
    this.random = rng(seed);
  }

  static url(id: string): string {
    return `ws://${id}`;
  }

  start(id: string, seeds: string[], persisted?: PersistedClusterState, workers = 2, extra: Partial<ClusterMemberOptions> = {}): TestNode {
    const incarnation = (this.#incarnations.get(id) ?? 0) + 1;
    this.#incarnations.set(id, incarnation);
    const old = this.nodes.get(id);
    if (old !== undefined && old.alive) this.crash(id);
    const node: TestNode = {
      id,
      incarnation,
      url: TestNetwork.url(id),
      member: undefined as unknown as ClusterMember,
      alive: true,
      paused: false,
      persisted: structuredClone(persisted ?? { committed: null, accepted: null }),
      layouts: [],
      removed: undefined,
      left: false,
      log: [],
    };
    const io: ClusterIO = {
      send: (to, message) => this.#send(node, to, message),
      dial: () => undefined,
      forget: () => undefined,
      persist: (state) => (node.persisted = structuredClone(state)),
      committed: (layout, previous) => {
        node.layouts.push(structuredClone(layout));
        this.commits.push({ node: id, incarnation, at: this.now, layout: structuredClone(layout), previousEpoch: previous?.epoch ?? null });
      },
      removed: (reason) => (node.removed = reason),
      left: () => (node.left = true),
      log: (level, message, fields) => node.log.push(`${this.now} ${level} ${message}${fields === undefined ? '' : ' ' + JSON.stringify(fields)}`),
    };
    node.member = new ClusterMember(
      {
        self: { id, incarnation, url: node.url, workers },
        buckets: this.buckets,
        seeds,
        timings: this.timings,
        ...(persisted === undefined ? {} : { persisted: structuredClone(persisted) }),
        ...this.extra,
        ...extra,
      },
      io,
    );
    this.nodes.set(id, node);
    node.member.start(this.now);
    for (const other of this.nodes.values()) {
      if (other !== node && other.alive && (seeds.includes(other.url) || other.member.status().members.some((m) => m.id === id))) this.#connect(node, other);
    }
    return node;
  }

  node(id: string): TestNode {
    return this.nodes.get(id)!;
  }

  crash(id: string): void {
    const node = this.nodes.get(id)!;
    if (!node.alive) return;
    node.alive = false;
    for (const other of this.nodes.values()) {
      if (other !== node && other.alive && this.#links.delete(linkKey(id, other.id))) other.member.disconnected(id, this.now);
    }
    // Messages in flight to or from a crashed process are lost with its sockets.
    this.#queue = this.#queue.filter((item) => item.from !== id && item.to !== id);
  }

  pause(id: string): void {
    this.nodes.get(id)!.paused = true;
  }

  resume(id: string): void {
    this.nodes.get(id)!.paused = false;
  }

  /** Cuts every pair across the two groups, both ways. */
  partition(a: string[], b: string[]): void {
    for (const x of a) for (const y of b) {
      this.#cut.add(`${x}>${y}`);
      this.#cut.add(`${y}>${x}`);
      this.#disconnect(x, y);
    }
  }

  /** Splits the cluster into the given groups (everything between groups is cut). */
  split(...groups: string[][]): void {
    for (let i = 0; i < groups.length; i++) for (let j = i + 1; j < groups.length; j++) this.partition(groups[i]!, groups[j]!);
  }

  /** Lifts every cut and reconnects the pairs that were cut (as the transport redials), like `harness.ts`. */
  heal(): void {
    const pairs = [...this.#cut].map((pair) => pair.split('>') as [string, string]);
    this.#cut.clear();
    for (const [x, y] of pairs) {
      const a = this.nodes.get(x);
      const b = this.nodes.get(y);
      if (a !== undefined && b !== undefined && a.alive && b.alive && x < y) this.#connect(a, b);
    }
    this.#connectKnown();
  }

  /** Advances virtual time by `ms`, ticking every node and delivering due messages. */
  run(ms: number, check?: () => void): void {
    const end = this.now + ms;
    while (this.now < end) {
      this.now += 1;
      this.#deliverDue();
      if (this.now % this.tickMs === 0) {
        for (const node of [...this.nodes.values()]) if (node.alive && !node.paused) node.member.tick(this.now);
        this.#connectKnown();
        check?.();
      }
    }
  }

  until(predicate: () => boolean, limitMs = 60_000, check?: () => void): number {
    const start = this.now;
    while (!predicate()) {
      if (this.now - start > limitMs) throw new Error(`condition not reached within ${limitMs} ms of virtual time\n${this.dump()}`);
      this.run(this.tickMs, check);
    }
    return this.now - start;
  }

  live(): TestNode[] {
    return [...this.nodes.values()].filter((node) => node.alive && node.removed === undefined && !node.left);
  }

  agreed(ids = this.live().map((node) => node.id)): boolean {
    const epochs = new Set(ids.map((id) => this.nodes.get(id)!.member.committed?.epoch ?? 0));
    return epochs.size === 1 && !epochs.has(0);
  }

  dump(lines = 15): string {
    return [...this.nodes.values()]
      .map((node) => `${node.id}#${node.incarnation} alive=${node.alive} phase=${node.member.phase} epoch=${node.member.committed?.epoch} coord=${node.member.coordinator} members=${JSON.stringify(node.member.status().members.map((m) => `${m.id}:${m.state}`))}\n  ${node.log.slice(-lines).join('\n  ')}`)
      .join('\n');
  }

  /** Distinct layouts committed at the same epoch anywhere in the history (must be empty). */
  /** Epochs of one cluster (layouts carry the id of the cluster they belong to) with two different layouts. */
  conflictingEpochs(): { epoch: number; layouts: { by: string; coordinator: string; owners: string[] }[] }[] {
    const byEpoch = new Map<string, { epoch: number; variants: Map<string, { by: string; coordinator: string; owners: string[] }> }>();
    for (const record of this.commits) {
      const key = layoutKey(record.layout);
      const slot = `${record.layout.cluster}/${record.layout.epoch}`;
      let entry = byEpoch.get(slot);
      if (entry === undefined) byEpoch.set(slot, (entry = { epoch: record.layout.epoch, variants: new Map() }));
      if (!entry.variants.has(key)) entry.variants.set(key, { by: `${record.node}#${record.incarnation}`, coordinator: record.layout.coordinator, owners: ownerIds(record.layout) });
    }
    return [...byEpoch.values()].filter(({ variants }) => variants.size > 1).map(({ epoch, variants }) => ({ epoch, layouts: [...variants.values()] }));
  }

  /** Nodes whose sequence of committed epochs (across incarnations, via persisted state) went backwards. */
  epochRegressions(): string[] {
    const last = new Map<string, number>();
    const bad: string[] = [];
    for (const record of this.commits) {
      const before = last.get(record.node) ?? 0;
      if (record.layout.epoch <= before) bad.push(`${record.node}#${record.incarnation}: ${before} -> ${record.layout.epoch} at ${record.at}`);
      last.set(record.node, Math.max(before, record.layout.epoch));
    }
    return bad;
  }

  // connections

  #disconnect(x: string, y: string): void {
    if (!this.#links.delete(linkKey(x, y))) return;
    const a = this.nodes.get(x);
    const b = this.nodes.get(y);
    if (a?.alive) a.member.disconnected(y, this.now);
    if (b?.alive) b.member.disconnected(x, this.now);
  }

  #connect(a: TestNode, b: TestNode): void {
    if (this.#cut.has(`${a.id}>${b.id}`) || this.#cut.has(`${b.id}>${a.id}`)) return;
    if (this.#links.has(linkKey(a.id, b.id))) return;
    this.#links.add(linkKey(a.id, b.id));
    a.member.connected({ id: b.id, incarnation: b.incarnation }, this.now);
    b.member.connected({ id: a.id, incarnation: a.incarnation }, this.now);
  }

  #connectKnown(): void {
    for (const a of this.nodes.values()) {
      if (!a.alive) continue;
      for (const entry of a.member.status().members) {
        const b = this.nodes.get(entry.id);
        if (b === undefined || b === a || !b.alive || entry.state === 'down' || b.incarnation !== entry.incarnation) continue;
        this.#connect(a, b);
      }
    }
  }

  #send(from: TestNode, to: string, message: ClusterMessage): void {
    if (!from.alive) return;
    const target = this.nodes.get(to);
    this.sentLog.push({ at: this.now, from: from.id, to, t: message.t });
    if (target === undefined || !target.alive || !this.#links.has(linkKey(from.id, to))) return; // not connected: the transport throws, the caller ignores it
    const copy = parseClusterMessage(structuredClone(message), this.buckets);
    if (this.filter !== undefined && !this.filter({ from: from.id, to, message: copy, at: this.now })) return;
    const affected = this.faults.faultTypes === undefined || this.faults.faultTypes.has(message.t);
    if (affected && this.faults.drop !== undefined && this.random() < this.faults.drop) return;
    const copies = affected && this.faults.duplicate !== undefined && this.random() < this.faults.duplicate ? 2 : 1;
    for (let i = 0; i < copies; i++) {
      let at = this.now + this.delayMs + Math.floor(this.random() * ((this.faults.jitterMs ?? 0) + 1));
      const link = `${from.id}>${to}`;
      if (!this.faults.reorder) at = Math.max(at, this.#lastAt.get(link) ?? 0);
      this.#lastAt.set(link, at);
      this.#queue.push({ at, seq: this.#seq++, from: from.id, fromIncarnation: from.incarnation, to, toIncarnation: target.incarnation, message: structuredClone(copy) });
    }
  }

  #deliverDue(): void {
    const due = this.#queue.filter((item) => item.at <= this.now).sort((x, y) => x.at - y.at || x.seq - y.seq);
    if (due.length === 0) return;
    this.#queue = this.#queue.filter((item) => item.at > this.now);
    for (const item of due) {
      const from = this.nodes.get(item.from);
      const to = this.nodes.get(item.to);
      if (from === undefined || to === undefined || !from.alive || !to.alive) continue;
      if (from.incarnation !== item.fromIncarnation || to.incarnation !== item.toIncarnation) continue;
      if (this.#cut.has(`${item.from}>${item.to}`)) continue;
      if (to.paused) {
        this.#queue.push({ ...item, at: this.now + this.tickMs });
        continue;
      }
      to.member.receive(item.from, item.message, this.now);
    }
  }
}

export function ownerIds(layout: Layout): string[] {
  return layout.owners.map((owner) => layout.members[owner]!.id);
}

export function layoutKey(layout: Layout): string {
  return JSON.stringify({ members: layout.members.map((m) => `${m.id}@${m.incarnation}`), owners: layout.owners, coordinator: layout.coordinator });
}

function linkKey(a: string, b: string): string {
  return a < b ? `${a}|${b}` : `${b}|${a}`;
}
